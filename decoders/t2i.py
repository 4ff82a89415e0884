"""Text-to-image pipelines that produce latents for the `prompts` source ("from text").

A diffusers pipeline (FLUX.1, Z-Image, SD3, SDXL, FLUX.2) runs to its final
step, or stops early after `stop_at_step` steps (PiD's early-termination
study): the latent x_t and its sigma are captured from
`callback_on_step_end` and the pipeline is interrupted. Latents come back
normalized in the family's latent space (decoders.spaces), unpacked to
[B, C, h, w]; SDXL's variance-exploding Euler frame is converted to the
variance-preserving frame (x / √(σ²+1), σ / √(σ²+1)) as PiD does, so sigma
is always in [0, 1]. The initial noise comes from a CPU generator seeded by
the case seed, so it does not depend on the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from decoders.base import DecoderUnavailable
from decoders.lazy import torch
from decoders.plugins import Params
from decoders.weights import dtype_kwargs, folder_sha256, require, resolve_pretrained


@dataclass(frozen=True)
class PipelineFamily:
    pipeline_class: str
    space: str
    default_weights: str
    steps: int
    guidance: float
    packing: Literal["none", "flux1", "flux2"] = "none"
    frame: Literal["flow", "ve"] = "flow"


FAMILIES = {
    "flux1": PipelineFamily("FluxPipeline", "flux1", "black-forest-labs/FLUX.1-dev", 28, 3.5, "flux1"),
    "zimage": PipelineFamily("ZImagePipeline", "flux1", "Tongyi-MAI/Z-Image", 50, 5.0),
    "zimage-turbo": PipelineFamily("ZImagePipeline", "flux1", "Tongyi-MAI/Z-Image-Turbo", 9, 0.0),
    "sd3": PipelineFamily("StableDiffusion3Pipeline", "sd3",
                          "stabilityai/stable-diffusion-3-medium-diffusers", 28, 4.0),
    "sdxl": PipelineFamily("StableDiffusionXLPipeline", "sdxl", "stabilityai/stable-diffusion-xl-base-1.0",
                           30, 7.5, frame="ve"),
    "flux2": PipelineFamily("Flux2Pipeline", "flux2", "black-forest-labs/FLUX.2-dev", 50, 4.0, "flux2"),
}


class PipelineParams(Params):
    family: Literal["flux1", "zimage", "zimage-turbo", "sd3", "sdxl", "flux2"]
    weights: str | None = Field(default=None, description="HF id or local diffusers folder; "
                                "default: the family's official repository")
    steps: int | None = Field(default=None, ge=1)
    guidance: float | None = Field(default=None, ge=0)
    stop_at_step: int | None = Field(default=None, ge=1, description="capture x_t after this many steps")
    dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    without: list[str] = Field(
        default_factory=list, description="components loaded as None, e.g. SD3 without T5: "
        "['text_encoder_3', 'tokenizer_3'] (diffusers' documented memory saver)")

    @model_validator(mode="after")
    def _stop_before_end(self) -> PipelineParams:
        if self.stop_at_step is not None and self.stop_at_step > self.resolved_steps:
            raise ValueError(f"stop_at_step {self.stop_at_step} is after the last step "
                             f"({self.resolved_steps})")
        return self

    @property
    def info(self) -> PipelineFamily:
        return FAMILIES[self.family]

    @property
    def resolved_steps(self) -> int:
        return self.steps or self.info.steps

    @property
    def resolved_guidance(self) -> float:
        return self.info.guidance if self.guidance is None else self.guidance

    @property
    def reference(self) -> str:
        return self.weights or self.info.default_weights


def variance_preserving(latents: torch.Tensor, sigma: float) -> tuple[torch.Tensor, float]:
    """Euler (variance-exploding) x0 + σε → variance-preserving √(1-s²)x0 + sε, s = σ/√(σ²+1)."""
    scale = (sigma**2 + 1) ** 0.5
    return latents / scale, sigma / scale


def pipeline_weights(params: PipelineParams) -> dict[str, str]:
    reference, _ = resolve_pretrained(params.reference, None, f"{params.family} pipeline")
    if not Path(reference).is_dir():  # online and not cached yet
        return {params.reference: "not yet downloaded"}
    return folder_sha256(Path(reference), params.reference)


class TextToLatent:
    """One loaded pipeline; `generate` returns (normalized latents [B, C, h, w], sigma)."""

    def __init__(self, params: PipelineParams, device: torch.device) -> None:
        require("diffusers")
        require("transformers")
        import diffusers

        self.params, self.device = params, device
        cls = getattr(diffusers, params.info.pipeline_class)
        reference, _ = resolve_pretrained(params.reference, None, f"{params.family} pipeline")
        try:
            pipe = cls.from_pretrained(reference, **dtype_kwargs(getattr(torch, params.dtype)),
                                       **dict.fromkeys(params.without))
        except OSError as exc:
            raise DecoderUnavailable(f"{params.family} pipeline: cannot load {reference}: {exc}") from None
        self.pipe = pipe.to(device)
        self.pipe.set_progress_bar_config(disable=True)

    def generate(self, prompts: list[str], seed: int, size: tuple[int, int]) -> tuple[torch.Tensor, float]:
        width, height = size
        captured: dict[str, Any] = {}
        stop = self.params.stop_at_step

        def capture(pipe: Any, step_index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            if stop is not None and step_index == stop - 1 and "latents" not in captured:
                sigmas = pipe.scheduler.sigmas
                captured["latents"] = tensors["latents"].detach().clone()
                captured["sigma"] = float(sigmas[min(stop, len(sigmas) - 1)])
                pipe._interrupt = True  # skip the remaining steps
            return tensors

        output = self.pipe(
            prompt=prompts, height=height, width=width, num_inference_steps=self.params.resolved_steps,
            guidance_scale=self.params.resolved_guidance,
            generator=torch.Generator("cpu").manual_seed(seed), output_type="latent",
            callback_on_step_end=capture, callback_on_step_end_tensor_inputs=["latents"],
        )
        if stop is not None:
            latents, sigma = captured["latents"], captured["sigma"]
        else:
            latents, sigma = output.images, float(self.pipe.scheduler.sigmas[-1])
        latents = self._unpack(latents, width, height)
        if self.params.info.frame == "ve":
            latents, sigma = variance_preserving(latents, sigma)
        return latents.float().cpu(), sigma

    def _unpack(self, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
        packing = self.params.info.packing
        if packing == "flux1" and latents.ndim == 3:
            from diffusers import FluxPipeline

            return FluxPipeline._unpack_latents(latents, height, width, self.pipe.vae_scale_factor)
        if packing == "flux2" and latents.ndim == 3:
            from diffusers import Flux2Pipeline

            factor = self.pipe.vae_scale_factor * 2
            shape = torch.zeros(latents.shape[0], 1, height // factor, width // factor)
            ids = Flux2Pipeline._prepare_latent_ids(shape).to(latents.device)
            return torch.stack(list(Flux2Pipeline._unpack_latents_with_ids(latents, ids)))
        return latents
