"""Text-to-image pipelines that produce latents for the `prompts` source ("from text").

A diffusers pipeline runs to its final step or stops early (PiD's early-termination study),
capturing x_t with its sigma or the x0 prediction; latents come back normalized and unpacked in
the family's latent space, seeded per case (docs/suites.md, sources for learned decoders).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from decoders.base import DecoderUnavailable
from decoders.lazy import torch
from decoders.plugins import Params
from decoders.spaces import fold
from decoders.weights import dtype_kwargs, folder_sha256, require, resolve_pretrained

Packing = Literal["none", "flux1", "flux2", "flux2-klein", "qwenimage"]


@dataclass(frozen=True)
class PipelineFamily:
    pipeline_class: str
    space: str
    default_weights: str
    steps: int
    guidance: float
    packing: Packing = "none"
    frame: Literal["flow", "ve"] = "flow"
    guidance_kwarg: str = "guidance_scale"  # Qwen-Image: true_cfg_scale (with a negative prompt)
    call_kwargs: dict[str, Any] = field(default_factory=dict)  # as PiD's pipeline_registry passes them
    recommended_stop: int | None = None  # PiD's README "Recommended latent"; None: the final x0


_QWEN_CALL = {"negative_prompt": " "}
FAMILIES = {
    "flux1": PipelineFamily("FluxPipeline", "flux1", "black-forest-labs/FLUX.1-dev", 28, 3.5, "flux1",
                            recommended_stop=24),
    "zimage": PipelineFamily("ZImagePipeline", "flux1", "Tongyi-MAI/Z-Image", 50, 5.0, recommended_stop=46),
    "zimage-turbo": PipelineFamily("ZImagePipeline", "flux1", "Tongyi-MAI/Z-Image-Turbo", 9, 0.0),
    "sd3": PipelineFamily("StableDiffusion3Pipeline", "sd3",
                          "stabilityai/stable-diffusion-3-medium-diffusers", 28, 4.0, recommended_stop=24),
    "sdxl": PipelineFamily("StableDiffusionXLPipeline", "sdxl", "stabilityai/stable-diffusion-xl-base-1.0",
                           30, 7.5, frame="ve", recommended_stop=26),
    "flux2": PipelineFamily("Flux2Pipeline", "flux2", "black-forest-labs/FLUX.2-dev", 50, 4.0, "flux2",
                            recommended_stop=46),
    "flux2-klein-4b": PipelineFamily("Flux2KleinPipeline", "flux2", "black-forest-labs/FLUX.2-klein-4B",
                                     4, 1.0, "flux2-klein"),
    "flux2-klein-9b": PipelineFamily("Flux2KleinPipeline", "flux2", "black-forest-labs/FLUX.2-klein-9B",
                                     4, 1.0, "flux2-klein"),
    "qwenimage": PipelineFamily("QwenImagePipeline", "qwenimage", "Qwen/Qwen-Image", 50, 4.0, "qwenimage",
                                guidance_kwarg="true_cfg_scale", call_kwargs=_QWEN_CALL, recommended_stop=44),
    "qwenimage-2512": PipelineFamily("QwenImagePipeline", "qwenimage", "Qwen/Qwen-Image-2512", 50, 4.0,
                                     "qwenimage", guidance_kwarg="true_cfg_scale", call_kwargs=_QWEN_CALL,
                                     recommended_stop=44),
}
FamilyName = Literal["flux1", "zimage", "zimage-turbo", "sd3", "sdxl", "flux2", "flux2-klein-4b",
                     "flux2-klein-9b", "qwenimage", "qwenimage-2512"]


class PipelineParams(Params):
    family: FamilyName
    weights: str | None = Field(default=None, description="HF id or local diffusers folder; "
                                "default: the family's official repository")
    steps: int | None = Field(default=None, ge=1)
    guidance: float | None = Field(default=None, ge=0)
    stop_at_step: int | None = Field(default=None, ge=1, description="capture after this many steps")
    capture: Literal["x_t", "x0"] = Field(
        default="x_t", description="with stop_at_step: the noisy latent x_t (sigma = sigmas[K]) or the "
        "model's x0 prediction of step K (sigma = sigmas[K-1], as PiD's X0CaptureCallback)")
    dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    without: list[str] = Field(
        default_factory=list, description="components loaded as None, e.g. SD3 without T5: "
        "['text_encoder_3', 'tokenizer_3'] (diffusers' documented memory saver)")
    cpu_offload: Literal["none", "model", "sequential"] = Field(
        default="none", description="diffusers' enable_model_cpu_offload / enable_sequential_cpu_offload "
        "for pipelines that do not fit one GPU")
    generator_device: Literal["pipeline", "cpu"] = Field(
        default="pipeline", description="where the initial noise is drawn: the pipeline's device (as "
        "PiD's demos), or the CPU")

    @model_validator(mode="after")
    def _stop_before_end(self) -> PipelineParams:
        if self.stop_at_step is not None and self.stop_at_step > self.resolved_steps:
            raise ValueError(f"stop_at_step {self.stop_at_step} is after the last step "
                             f"({self.resolved_steps})")
        if self.capture == "x0" and self.stop_at_step is None:
            raise ValueError("capture = 'x0' needs stop_at_step (the run's end is x0 already)")
        if self.capture == "x0" and self.info.frame != "flow":
            raise ValueError(f"capture = 'x0' is defined for flow-matching pipelines, not {self.family} "
                             "(PiD captures x0 for Flux)")
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


def place(pipe: Any, offload: str, device: torch.device) -> Any:
    """Put the pipeline on `device`, whole or with diffusers' CPU offload."""
    if offload == "none":
        return pipe.to(device)
    if device.type != "cuda":
        raise ValueError(f"cpu_offload = {offload!r} moves components to a GPU when they run; the "
                         f"device is {device}")
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.enable_sequential_cpu_offload(device=device)
    return pipe


class X0Stash:
    """Wraps the scheduler's step: the x0 prediction (x_in − σ_in·v) of the step just taken."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler, self.original = scheduler, scheduler.step
        self.x0: torch.Tensor | None = None
        self.sigma = 0.0
        scheduler.step = self._step

    def _step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, *args: Any,
              **kwargs: Any) -> Any:
        result = self.original(model_output, timestep, sample, *args, **kwargs)
        sigma = float(self.scheduler.sigmas[self.scheduler.step_index - 1])  # step_index has advanced
        self.x0 = sample.float() - sigma * model_output.float()
        self.sigma = sigma
        return result

    def remove(self) -> None:
        self.scheduler.step = self.original


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
        self.pipe = place(pipe, params.cpu_offload, device)
        self.pipe.set_progress_bar_config(disable=True)
        self.generator_device = (torch.device(self.pipe._execution_device)
                                 if params.generator_device == "pipeline" else torch.device("cpu"))

    def facts(self) -> dict[str, Any]:
        return {"family": self.params.family, "pipeline": self.params.info.pipeline_class,
                "generator_device": str(self.generator_device), "cpu_offload": self.params.cpu_offload,
                "capture": self.params.capture if self.params.stop_at_step else "final",
                "recommended_stop": self.params.info.recommended_stop}

    def generate(self, prompts: list[str], seed: int, size: tuple[int, int]) -> tuple[torch.Tensor, float]:
        width, height = size
        captured: dict[str, Any] = {}
        stop, x0 = self.params.stop_at_step, self.params.capture == "x0"
        stash = X0Stash(self.pipe.scheduler) if stop is not None and x0 else None

        def capture(pipe: Any, step_index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            if stop is not None and step_index == stop - 1 and "latents" not in captured:
                if stash is not None:
                    captured["latents"], captured["sigma"] = stash.x0, stash.sigma
                else:
                    sigmas = pipe.scheduler.sigmas
                    captured["latents"] = tensors["latents"].detach().clone()
                    captured["sigma"] = float(sigmas[min(stop, len(sigmas) - 1)])
                pipe._interrupt = True  # skip the remaining steps
            return tensors

        info = self.params.info
        try:
            output = self.pipe(
                prompt=prompts, height=height, width=width, num_inference_steps=self.params.resolved_steps,
                **{info.guidance_kwarg: self.params.resolved_guidance}, **info.call_kwargs,
                generator=torch.Generator(self.generator_device).manual_seed(seed), output_type="latent",
                callback_on_step_end=capture, callback_on_step_end_tensor_inputs=["latents"],
            )
        finally:
            if stash is not None:
                stash.remove()
        if stop is not None:
            latents, sigma, final = captured["latents"], captured["sigma"], False
        else:
            latents, sigma, final = output.images, float(self.pipe.scheduler.sigmas[-1]), True
        latents = self._unpack(latents, width, height, final)
        if info.frame == "ve":
            latents, sigma = variance_preserving(latents, sigma)
        return latents.float().cpu(), sigma

    def _unpack(self, latents: torch.Tensor, width: int, height: int, final: bool) -> torch.Tensor:
        packing = self.params.info.packing
        if packing == "flux1" and latents.ndim == 3:
            from diffusers import FluxPipeline

            return FluxPipeline._unpack_latents(latents, height, width, self.pipe.vae_scale_factor)
        if packing == "qwenimage" and latents.ndim == 3:
            from diffusers import QwenImagePipeline

            unpacked = QwenImagePipeline._unpack_latents(latents, height, width, self.pipe.vae_scale_factor)
            return unpacked[:, :, 0]  # [B, C, 1, h, w]: Qwen-Image's VAE is a video VAE
        if packing == "flux2-klein" and final:
            return self._klein_normalized(latents)
        if packing in ("flux2", "flux2-klein") and latents.ndim == 3:
            from diffusers import Flux2Pipeline

            factor = self.pipe.vae_scale_factor * 2
            shape = torch.zeros(latents.shape[0], 1, height // factor, width // factor)
            ids = Flux2Pipeline._prepare_latent_ids(shape).to(latents.device)
            return torch.stack(list(Flux2Pipeline._unpack_latents_with_ids(latents, ids)))
        return latents

    def _klein_normalized(self, raw: torch.Tensor) -> torch.Tensor:
        """Flux2KleinPipeline's final latent is raw [B, 32, H/8, W/8]: fold 2×2, BatchNorm-normalize."""
        bn = self.pipe.vae.bn
        eps = self.pipe.vae.config.batch_norm_eps
        mean = bn.running_mean.view(1, -1, 1, 1).to(raw.device, torch.float32)
        std = torch.sqrt(bn.running_var.view(1, -1, 1, 1).to(raw.device, torch.float32) + eps)
        return (fold(raw.float(), 2) - mean) / std
