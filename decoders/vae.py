"""VAE decoders and encoders through diffusers: FLUX.1, FLUX.2, SD3, SDXL, Qwen-Image (and SD 1.x).

Weights from a Hugging Face id or a local folder, or random (the family's exact architecture,
seeded: real performance numbers, quality recorded as not applicable); `vae-tiled` decodes tile by
tile and records its grid for seam metrics (docs/decoders/vae.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from decoders.base import (
    Consumes,
    DecodeBatch,
    Decoder,
    DecoderSpec,
    DecoderUnavailable,
    Encoder,
    EncoderSpec,
)
from decoders.compiled import CompileParams, CompileRecord, compile_in_place
from decoders.lazy import torch
from decoders.plugins import Params
from decoders.spaces import LatentSpace, as_space, fold, get_space, unfold
from decoders.tiling import DIFFUSERS_OVERLAP, TileGrid, decode_tiled, diffusers_grid, make_grid
from decoders.weights import (
    build_seeded,
    dtype_kwargs,
    folder_sha256,
    random_recipe,
    require,
    resolve_pretrained,
    state_dict_sha256,
)

RANDOM = "random"
RANDOM_WEIGHTS_NOTE = "random weights: performance-only"
DtypeName = Literal["float32", "bfloat16", "float16"]

_KL_BLOCKS = {
    "in_channels": 3, "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "act_fn": "silu",
    "norm_num_groups": 32, "mid_block_add_attention": True,
}


@dataclass(frozen=True)
class VaeFamily:
    space: str
    model_class: str  # diffusers class
    default_weights: str  # Hugging Face repository (subfolder "vae")
    config: dict[str, Any] = field(default_factory=dict)  # the exact architecture
    frames: bool = False  # a video VAE: latents and images carry a time axis of length 1


VAE_FAMILIES: dict[str, VaeFamily] = {
    "flux1": VaeFamily("flux1", "AutoencoderKL", "black-forest-labs/FLUX.1-dev", {
        **_KL_BLOCKS, "latent_channels": 16, "sample_size": 1024, "scaling_factor": 0.3611,
        "shift_factor": 0.1159, "use_quant_conv": False, "use_post_quant_conv": False,
        "force_upcast": True}),
    "sd3": VaeFamily("sd3", "AutoencoderKL", "stabilityai/stable-diffusion-3-medium-diffusers", {
        **_KL_BLOCKS, "latent_channels": 16, "sample_size": 1024, "scaling_factor": 1.5305,
        "shift_factor": 0.0609, "use_quant_conv": False, "use_post_quant_conv": False,
        "force_upcast": True}),
    "sdxl": VaeFamily("sdxl", "AutoencoderKL", "stabilityai/stable-diffusion-xl-base-1.0", {
        **_KL_BLOCKS, "latent_channels": 4, "sample_size": 1024, "scaling_factor": 0.13025,
        "force_upcast": True}),
    "sd": VaeFamily("sd", "AutoencoderKL", "stable-diffusion-v1-5/stable-diffusion-v1-5", {
        **_KL_BLOCKS, "latent_channels": 4, "sample_size": 512, "scaling_factor": 0.18215}),
    "flux2": VaeFamily("flux2", "AutoencoderKLFlux2", "black-forest-labs/FLUX.2-dev", {
        **_KL_BLOCKS, "latent_channels": 32, "sample_size": 1024, "use_quant_conv": True,
        "use_post_quant_conv": True, "batch_norm_eps": 1e-4, "batch_norm_momentum": 0.1,
        "patch_size": [2, 2]}),
    # Qwen/Qwen-Image vae/config.json = diffusers' AutoencoderKLQwenImage defaults (Wan 2.1).
    "qwenimage": VaeFamily("qwenimage", "AutoencoderKLQwenImage", "Qwen/Qwen-Image", {
        "base_dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
        "temperal_downsample": [False, True, True], "dropout": 0.0}, frames=True),
}
DIFFUSERS_TILED = ("AutoencoderKL", "AutoencoderKLFlux2")  # the classes sharing KL's tiled_decode


class VaeParams(Params):
    space: Literal["flux1", "flux2", "sd3", "sdxl", "sd", "qwenimage"] = "flux1"
    weights: str | None = Field(
        default=None, description="HF id or local folder; 'random' = exact architecture, random "
        "weights (performance only); default: the family's official repository")
    subfolder: str | None = "vae"
    dtype: DtypeName | None = Field(default=None, description="default: the suite's timing.dtype")
    init_seed: int = Field(default=0, description="seed of the random initialisation")
    config: dict[str, Any] = Field(
        default_factory=dict, description="architecture overrides, with random weights only")

    @model_validator(mode="after")
    def _config_only_random(self) -> VaeParams:
        if self.config and self.weights != RANDOM:
            raise ValueError("config overrides need weights = 'random' (real weights bring their config)")
        return self

    @property
    def family(self) -> VaeFamily:
        return VAE_FAMILIES[self.space]

    def describe_weights(self) -> str:
        if self.weights == RANDOM:
            return "random"
        return self.weights or self.family.default_weights


class LoadedVae:
    """A diffusers VAE plus the normalization of its latent space."""

    def __init__(self, params: VaeParams, device: torch.device, dtype: torch.dtype) -> None:
        require("diffusers")
        import diffusers

        self.params, self.space, self.init_device = params, get_space(params.space), device.type
        self.dtype = getattr(torch, params.dtype) if params.dtype else dtype
        cls = getattr(diffusers, params.family.model_class)
        what = f"{params.space} VAE"
        if params.weights == RANDOM:  # built and initialised on the device itself
            config = {**params.family.config, **params.config}
            model = build_seeded(lambda: cls.from_config(config), params.init_seed, device)
        else:
            reference, subfolder = resolve_pretrained(params.describe_weights(), params.subfolder, what)
            try:
                model = cls.from_pretrained(reference, subfolder=subfolder, **dtype_kwargs(self.dtype))
            except OSError as exc:
                raise DecoderUnavailable(f"{what}: cannot load {reference}: {exc}") from None
        if next(model.parameters()).dtype != self.dtype:  # random init is float32
            model = model.to(dtype=self.dtype)
        self.model = model.to(device).eval().requires_grad_(False)
        self.parameters = sum(p.numel() for p in self.model.parameters())
        self._check_channel_stats()

    def compile_decoder(self, params: CompileParams) -> CompileRecord:
        """Compile the model's decoder module in place (lazily, at its first call)."""
        compile_in_place(self.model.decoder, params)
        record = CompileRecord(params.compile_setting())
        record.stage_target("vae_decode", f"{self.params.family.model_class}.decoder")
        return record

    def _check_channel_stats(self) -> None:
        """Per-channel spaces: the VAE's own config must hold the table's mean and std."""
        if self.space.normalization != "per-channel":
            return
        config = self.model.config
        for name, expected in (("latents_mean", self.space.channel_mean),
                               ("latents_std", self.space.channel_std)):
            found = torch.tensor([float(v) for v in getattr(config, name)])
            if found.shape != (len(expected),) or not torch.allclose(found, torch.tensor(expected)):
                raise ValueError(f"this {self.params.space} VAE's {name} {found.tolist()} differs from the "
                                 f"{self.space.name} latent space's {list(expected)}")

    def _batchnorm(self) -> tuple[torch.Tensor, torch.Tensor]:
        """FLUX.2: the per-channel mean and std of the VAE's BatchNorm running statistics."""
        bn = self.model.bn
        std = torch.sqrt(bn.running_var + bn.eps).view(1, -1, 1, 1)
        return bn.running_mean.view(1, -1, 1, 1).to(self.dtype), std.to(self.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalized latents (this space or its sibling form) → images in [0, 1]."""
        z = as_space(latents, self.space).to(self.dtype)
        if self.space.normalization == "batchnorm":
            mean, std = self._batchnorm()
            raw = unfold(z * std + mean, self.space.packing)
        else:
            raw = self.space.to_raw(z)
        frames = self.params.family.frames
        images = self.model.decode(raw[:, :, None] if frames else raw).sample
        images = images[:, :, 0] if frames else images
        return images.float().add_(1).div_(2).clamp_(0, 1)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] → normalized latents (the posterior mean, deterministic)."""
        x = (images * 2 - 1).to(self.dtype)
        frames = self.params.family.frames
        raw = self.model.encode(x[:, :, None] if frames else x).latent_dist.mode()
        raw = raw[:, :, 0] if frames else raw
        if self.space.normalization == "batchnorm":
            mean, std = self._batchnorm()
            return (fold(raw, self.space.packing) - mean) / std
        return self.space.from_raw(raw)

    @cached_property
    def state_dict_sha256(self) -> str:
        return state_dict_sha256(self.model)

    def facts(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "space": self.params.space, "architecture": self.params.family.model_class,
            "parameters": self.parameters, "dtype": str(self.dtype).removeprefix("torch."),
            "weights": self.params.describe_weights(),
        }
        if self.params.weights == RANDOM:
            facts["quality_not_applicable"] = RANDOM_WEIGHTS_NOTE
            facts["state_dict_sha256"] = self.state_dict_sha256
            facts["init_device"] = self.init_device
            if self.params.config:
                facts["config_overrides"] = self.params.config
        return facts


def check_vae(params: VaeParams) -> None:
    """What LoadedVae needs, checked without loading: diffusers, and the weights (unless random)."""
    require("diffusers")
    if params.weights != RANDOM:
        resolve_pretrained(params.describe_weights(), params.subfolder, f"{params.space} VAE")


def vae_weights(params: VaeParams) -> dict[str, str]:
    """sha256 of the weight files (resolved without loading), or the random-init recipe."""
    if params.weights == RANDOM:
        return random_recipe(params.space, params.config, params.init_seed)
    reference, subfolder = resolve_pretrained(params.describe_weights(), params.subfolder,
                                              f"{params.space} VAE")
    folder = Path(reference) / subfolder if subfolder else Path(reference)
    if not folder.is_dir():  # online and not cached yet: from_pretrained will fetch it
        return {params.describe_weights(): "not yet downloaded"}
    return folder_sha256(folder, params.describe_weights())


class VaeDecoderParams(VaeParams, CompileParams):
    """A VAE used for decoding (a `vae` row, or a cascade's first stage): compilable."""


def _vae_spec(name: str, space: LatentSpace, summary: str) -> DecoderSpec:
    return DecoderSpec(name=name, consumes=Consumes.LATENT, latent_spaces=space.forms, native_scale=1.0,
                       summary=summary)


class VaeDecoder(Decoder):
    Params = VaeDecoderParams
    spec = DecoderSpec(
        name="vae", consumes=Consumes.LATENT, latent_spaces=("flux1", "flux2", "flux2-unpacked",
                                                             "sd3", "sdxl", "sd", "qwenimage"),
        native_scale=1.0, summary="diffusers VAE decoder (flux1, flux2, sd3, sdxl, sd, qwenimage); "
        "HF id, local folder or random weights")

    @classmethod
    def spec_for(cls, params: VaeDecoderParams) -> DecoderSpec:  # type: ignore[override]
        return _vae_spec(cls.spec.name, get_space(params.space), cls.spec.summary)

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        self.vae = LoadedVae(self.params, device, dtype)
        self.compiled = self.vae.compile_decoder(self.params) if self.params.compile else None

    def check(self) -> None:
        check_vae(self.params)

    def decode(self, batch: DecodeBatch) -> torch.Tensor:
        assert batch.latents is not None
        if self.compiled is None:
            return self._decode(batch.latents)
        with self.compiled.call(stage="vae_decode"):
            return self._decode(batch.latents)

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents)

    def weights(self) -> dict[str, str]:
        return vae_weights(self.params)

    def facts(self) -> dict[str, Any]:
        if not hasattr(self, "vae"):
            return {}
        facts = self.vae.facts()
        if self.compiled is not None:
            facts["compile"] = self.compiled.as_fact()
        return facts


class TiledVaeParams(VaeDecoderParams):
    tiling: Literal["crossfade", "diffusers"] = Field(
        default="crossfade", description="crossfade: decoderbench's evenly spread tiles with linear "
        "cross-fades; diffusers: the VAE's own tiled_decode, as pipelines run it after enable_tiling()")
    tile_px: int | None = Field(default=None, gt=0, description="tile side in output pixels; default "
                                "512 (crossfade) or the VAE config's sample_size (diffusers)")
    overlap_px: int | None = Field(default=None, ge=0, description="overlap of neighbours, output "
                                   "pixels; default 64 (crossfade) or tile_px/4 (diffusers)")

    @model_validator(mode="after")
    def _tiles(self) -> TiledVaeParams:
        if self.tiling == "diffusers":
            if self.family.model_class not in DIFFUSERS_TILED:
                raise ValueError(f"tiling = 'diffusers' is diffusers' AutoencoderKL tiled_decode; the "
                                 f"{self.space} VAE ({self.family.model_class}) tiles differently")
            if self.overlap_px is not None and self.tile_px is None:
                raise ValueError("with tiling = 'diffusers', overlap_px needs tile_px")
            return self
        factor = get_space(self.space).factor
        tile, overlap = self.crossfade_tile
        if tile % factor or overlap % factor:
            raise ValueError(f"tile_px and overlap_px must be multiples of the {self.space} latent "
                             f"factor {factor}")
        if overlap < factor:
            raise ValueError(f"overlap_px must be at least one latent pixel ({factor} px for {self.space}): "
                             "neighbouring tiles are cross-faded across their overlap")
        if overlap >= tile:
            raise ValueError("overlap_px must be smaller than tile_px")
        return self

    @property
    def crossfade_tile(self) -> tuple[int, int]:
        return (512 if self.tile_px is None else self.tile_px,
                64 if self.overlap_px is None else self.overlap_px)


class TiledVaeDecoder(VaeDecoder):
    Params = TiledVaeParams
    spec = DecoderSpec(
        name="vae-tiled", consumes=Consumes.LATENT, latent_spaces=VaeDecoder.spec.latent_spaces,
        native_scale=1.0, summary="the VAE decoded tile by tile (decoderbench's cross-fades or "
        "diffusers' enable_tiling); records its tile grid")

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        super().load(device, dtype)
        self.grid: dict[str, Any] | None = None
        if self.params.tiling == "diffusers":
            self._enable_diffusers_tiling()

    def _enable_diffusers_tiling(self) -> None:
        model, p = self.vae.model, self.params
        model.enable_tiling()
        if p.tile_px is not None:  # what enable_tiling's defaults derive from config.sample_size
            model.tile_sample_min_size = p.tile_px
            model.tile_latent_min_size = p.tile_px // self._raw_factor
            overlap = DIFFUSERS_OVERLAP if p.overlap_px is None else p.overlap_px / p.tile_px
            model.tile_overlap_factor = overlap

    @property
    def _raw_factor(self) -> int:
        """Image pixels per pixel of the VAE's own (unfolded) latent."""
        return 2 ** (len(self.vae.model.config.block_out_channels) - 1)

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        latents = as_space(latents, self.vae.space)
        if self.params.tiling == "diffusers":
            model, packing = self.vae.model, self.vae.space.packing
            grid = diffusers_grid((latents.shape[-2] * packing, latents.shape[-1] * packing),
                                  model.tile_latent_min_size, model.tile_sample_min_size,
                                  model.tile_overlap_factor, self._raw_factor)
            self.grid = grid
            return self.vae.decode(latents)
        factor = self.vae.space.factor
        tile, overlap = self.params.crossfade_tile
        crossfade: TileGrid = make_grid((latents.shape[-2], latents.shape[-1]), tile // factor,
                                        overlap // factor, factor)
        self.grid = crossfade.as_fact()
        return decode_tiled(self.vae.decode, latents, crossfade)

    def facts(self) -> dict[str, Any]:
        facts = super().facts()
        if self.params.tiling == "diffusers":
            model = self.vae.model if hasattr(self, "vae") else None
            facts["tiling"] = {
                "mode": "diffusers", "blend": "diffusers blend_v/blend_h (linear, then crop)",
                "tile_px": getattr(model, "tile_sample_min_size", None),
                "overlap_factor": getattr(model, "tile_overlap_factor", None)}
        else:
            tile, overlap = self.params.crossfade_tile
            facts["tiling"] = {"mode": "crossfade", "tile_px": tile, "overlap_px": overlap,
                               "blend": "linear cross-fade"}
        if getattr(self, "grid", None) is not None:
            facts["tile_grid"] = self.grid
        return facts


class VaeEncoder(Encoder):
    Params = VaeParams
    spec = EncoderSpec(name="vae", latent_space="flux1",
                       summary="diffusers VAE encoder (posterior mean), normalized to its latent space")

    @classmethod
    def spec_for(cls, params: VaeParams) -> EncoderSpec:  # type: ignore[override]
        return EncoderSpec(name=cls.spec.name, latent_space=params.space, summary=cls.spec.summary)

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        self.vae = LoadedVae(self.params, device, dtype)

    def check(self) -> None:
        check_vae(self.params)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(images)

    def weights(self) -> dict[str, str]:
        return vae_weights(self.params)
