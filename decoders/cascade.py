"""VAE decode, then a super-resolution stage (`sd-x4`, `spandrel`, `resample`): the honest baseline
for 4× decoders. Each stage is timed (`vae_decode`, `upscale`) and compiles on its own.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from decoders.base import Consumes, DecodeBatch, Decoder, DecoderSpec, DecoderUnavailable
from decoders.compiled import CompileParams, CompileRecord, compile_in_place, requests_compile
from decoders.lazy import torch
from decoders.plugins import Params
from decoders.resample import Method, resize
from decoders.spaces import get_space
from decoders.stages import StageClock
from decoders.vae import LoadedVae, VaeDecoderParams, check_vae, vae_weights
from decoders.weights import (
    dtype_kwargs,
    file_sha256,
    folder_sha256,
    require,
    resolve_file,
    resolve_pretrained,
)

DIFFUSERS_SD_X4_STEPS = 75  # StableDiffusionUpscalePipeline.__call__ default, diffusers 0.42.1


class SdX4Upscaler(CompileParams):
    kind: Literal["sd-x4"]
    weights: str = "stabilityai/stable-diffusion-x4-upscaler"
    steps: int = Field(default=20, ge=1, description=f"diffusers' default is {DIFFUSERS_SD_X4_STEPS}")
    noise_level: int = Field(default=20, ge=0, le=350)
    guidance: float = Field(default=9.0, ge=0)
    prompt: str | None = Field(default=None, description="default: each case's prompt (or empty)")
    negative_prompt: str | None = None

    @property
    def scale(self) -> float:
        return 4.0


class SpandrelUpscaler(CompileParams):
    kind: Literal["spandrel"]
    weights: str = Field(description="weights file: a path or hf://OWNER/REPO/FILE")
    scale: int = Field(ge=1, description="the model's scale, checked on load")


class ResampleUpscaler(Params):
    kind: Literal["resample"]
    method: Method = "lanczos"
    scale: float = Field(default=4.0, gt=0)


Upscaler = Annotated[SdX4Upscaler | SpandrelUpscaler | ResampleUpscaler, Field(discriminator="kind")]


class CascadeParams(Params):
    vae: VaeDecoderParams = VaeDecoderParams()
    upscaler: Upscaler


class Cascade(Decoder):
    Params = CascadeParams
    preload = ("diffusers",)
    spec = DecoderSpec(
        name="cascade", consumes=Consumes.LATENT,
        latent_spaces=("flux1", "flux2", "flux2-unpacked", "sd3", "sdxl", "sd"), native_scale=4.0,
        summary="VAE decode + super-resolution (SD x4 upscaler, spandrel GAN, classical resampler)")

    @classmethod
    def spec_for(cls, params: CascadeParams) -> DecoderSpec:  # type: ignore[override]
        return replace(cls.spec, latent_spaces=get_space(params.vae.space).forms,
                       stochastic=params.upscaler.kind == "sd-x4", native_scale=float(params.upscaler.scale))

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device, self.dtype = device, dtype
        self.clock = StageClock(device)
        self.compiled = CompileRecord({}) if requests_compile(self.params) else None
        self.vae = LoadedVae(self.params.vae, device, dtype)
        up = self.params.upscaler
        self._upscale = {"sd-x4": self._load_sd_x4, "spandrel": self._load_spandrel,
                         "resample": self._load_resample}[up.kind]()
        if self.compiled is not None:
            self._compile_stages()

    def _compile_stages(self) -> None:
        """Compile each stage that asks for it; record per stage what (and what not)."""
        assert self.compiled is not None
        vae, up = self.params.vae, self.params.upscaler
        if vae.compile:
            self.vae.compile_decoder(vae)
            self.compiled.stage_target("vae_decode", f"{vae.family.model_class}.decoder",
                                       f"mode {vae.compile_mode}, backend {vae.compile_backend}")
        else:
            self.compiled.stage_target("vae_decode", "", "vae.compile = false")
        if isinstance(up, CompileParams) and up.compile:
            target = self._upscaler_module()
            compile_in_place(target[1], up)
            self.compiled.stage_target("upscale", target[0],
                                       f"mode {up.compile_mode}, backend {up.compile_backend}")
        else:
            self.compiled.stage_target("upscale", "", f"{up.kind}: upscaler.compile = false"
                                       if up.kind != "resample" else "resample: a fixed kernel")

    def _upscaler_module(self) -> tuple[str, Any]:
        if self.params.upscaler.kind == "sd-x4":
            return ("StableDiffusionUpscalePipeline.unet (text encoder, VAE, scheduler eager)",
                    self._sd_x4_pipe.unet)
        return (f"spandrel {self._spandrel[1]}", self._spandrel_model.model)

    def check(self) -> None:
        check_vae(self.params.vae)
        up = self.params.upscaler
        if isinstance(up, SdX4Upscaler):
            require("diffusers")
            require("transformers")
            resolve_pretrained(up.weights, None, "SD x4 upscaler")
        elif isinstance(up, SpandrelUpscaler):
            require("spandrel")
            resolve_file(up.weights, "spandrel upscaler")

    # ------------------------------------------------------------------ upscalers

    def _load_sd_x4(self) -> Any:
        require("diffusers")
        require("transformers")
        from diffusers import StableDiffusionUpscalePipeline

        up: SdX4Upscaler = self.params.upscaler  # type: ignore[assignment]
        reference, _ = resolve_pretrained(up.weights, None, "SD x4 upscaler")
        try:
            pipe = StableDiffusionUpscalePipeline.from_pretrained(reference, **dtype_kwargs(self.dtype))
        except OSError as exc:
            raise DecoderUnavailable(f"SD x4 upscaler: cannot load {reference}: {exc}") from None
        pipe = pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        self._sd_x4_pipe = pipe

        def upscale(images: torch.Tensor, batch: DecodeBatch) -> torch.Tensor:
            prompts = [up.prompt if up.prompt is not None else (p or "") for p in batch.prompts] \
                if batch.prompts else [up.prompt or ""] * images.shape[0]
            generators = [torch.Generator("cpu").manual_seed(seed) for seed in batch.seeds]
            result = pipe(
                prompt=prompts, image=images.to(self.dtype), num_inference_steps=up.steps,
                guidance_scale=up.guidance, noise_level=up.noise_level,
                negative_prompt=[up.negative_prompt] * len(prompts) if up.negative_prompt else None,
                generator=generators, output_type="pt",
            )
            return result.images.float()

        return upscale

    def _load_spandrel(self) -> Any:
        require("spandrel")
        import spandrel

        up: SpandrelUpscaler = self.params.upscaler  # type: ignore[assignment]
        path = resolve_file(up.weights, "spandrel upscaler")
        model = spandrel.ModelLoader().load_from_file(str(path))
        if not isinstance(model, spandrel.ImageModelDescriptor):
            raise ValueError(f"{path} is not a single-image model ({type(model).__name__})")
        if model.scale != up.scale:
            raise ValueError(f"{path} is a {model.scale}× {model.architecture.name} model, "
                             f"but params.scale says {up.scale}")
        model = model.to(self.device).eval()
        if (self.dtype == torch.bfloat16 and model.supports_bfloat16) or \
                (self.dtype == torch.float16 and model.supports_half):
            model = model.to(self.dtype)
        self._spandrel = (path, model.architecture.name, str(model.dtype).removeprefix("torch."))
        self._spandrel_model = model

        def upscale(images: torch.Tensor, batch: DecodeBatch) -> torch.Tensor:
            return model(images.to(model.dtype)).float()

        return upscale

    def _load_resample(self) -> Any:
        up: ResampleUpscaler = self.params.upscaler  # type: ignore[assignment]

        def upscale(images: torch.Tensor, batch: DecodeBatch) -> torch.Tensor:
            return resize(images, batch.output_size, up.method)

        return upscale

    # ------------------------------------------------------------------ protocol

    def decode(self, batch: DecodeBatch) -> torch.Tensor:
        assert batch.latents is not None
        if self.compiled is None:
            return self._decode(batch)
        with self.compiled.call():
            return self._decode(batch)

    def _decode(self, batch: DecodeBatch) -> torch.Tensor:
        assert batch.latents is not None
        self.clock.start()
        with torch.no_grad():
            with self.clock.stage("vae_decode"), self._compile_stage("vae_decode"):
                images = self.vae.decode(batch.latents)
            with self.clock.stage("upscale"), self._compile_stage("upscale"):
                out = self._upscale(images, batch).clamp(0, 1)
        self.clock.finish()
        return out

    def _compile_stage(self, name: str) -> Any:
        return self.compiled.stage(name) if self.compiled is not None else contextlib.nullcontext()

    def stage_times_ms(self) -> dict[str, float]:
        return dict(self.clock.last)

    def weights(self) -> dict[str, str]:
        found = vae_weights(self.params.vae)
        up = self.params.upscaler
        if isinstance(up, SpandrelUpscaler):
            path = resolve_file(up.weights, "spandrel upscaler")
            found[up.weights] = file_sha256(path)
        elif isinstance(up, SdX4Upscaler):
            reference, _ = resolve_pretrained(up.weights, None, "SD x4 upscaler")
            if Path(reference).is_dir():
                found.update(folder_sha256(Path(reference), up.weights))
        return found

    def facts(self) -> dict[str, Any]:
        if not hasattr(self, "vae"):
            return {}
        up = self.params.upscaler
        facts: dict[str, Any] = {"vae": self.vae.facts(), "upscaler": up.model_dump()}
        if isinstance(up, SpandrelUpscaler):
            facts["upscaler"].update(architecture=self._spandrel[1], dtype=self._spandrel[2])
        if "quality_not_applicable" in facts["vae"]:
            facts["quality_not_applicable"] = facts["vae"]["quality_not_applicable"]
        if self.compiled is not None:
            facts["compile"] = self.compiled.as_fact()
        return facts
