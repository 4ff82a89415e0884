"""Tiny autoencoders (TAESD, TAESDXL, TAESD3, TAEF1, TAEF2) — our own implementation.

The architecture follows madebyollin/taesd (MIT): a stack of 3×3 conv + ReLU
residual blocks with three stride-2 convolutions in the encoder and three
nearest-neighbour 2× upsamplings in the decoder, 64 channels throughout,
images in [0, 1], latents directly in the diffusion model's normalized space
(no scaling factor). The decoder first soft-clamps latents to (-3, 3).
TAEF2 (FLUX.2) adds a residual 1×1-conv "pool" branch (64 → 256, GroupNorm
with 4 groups, ReLU, 256 → 64) to the three blocks at the coarsest
resolution of encoder and decoder; its presence is read from the weights.

Layer indices match the original `.pth` files (`N.…` keys, loaded as they
are) and diffusers' AutoencoderTiny folders (`encoder.layers.N.…` → `N.…`,
`decoder.layers.N.…` → `N+1.…`, the clamp having no weights). TAEF2 also
ships on the Hugging Face Hub as one file, `madebyollin/taef2` /
`taef2.safetensors`, with both halves under those same diffusers names; it is
the default source of TAEF2 weights. `compile = true` compiles the decoder in
place (decoders.compiled).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

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
from decoders.lazy import nn, torch
from decoders.plugins import Params
from decoders.spaces import as_space, get_space
from decoders.weights import (
    HF_PREFIX,
    build_seeded,
    file_sha256,
    is_local,
    resolve_file,
    resolve_pretrained,
    state_dict_sha256,
)

RANDOM = "random"


@dataclass(frozen=True)
class TaeVariant:
    name: str
    space: str
    latent_channels: int
    pooled: bool  # FLUX.2's extra pool branch
    diffusers_repo: str | None  # madebyollin's diffusers-format repository, where there is one
    single_file_repo: str | None = None  # a repository holding one <variant>.safetensors


TAE_VARIANTS = {v.name: v for v in (
    TaeVariant("taesd", "sd", 4, False, "madebyollin/taesd"),
    TaeVariant("taesdxl", "sdxl", 4, False, "madebyollin/taesdxl"),
    TaeVariant("taesd3", "sd3", 16, False, "madebyollin/taesd3"),
    TaeVariant("taef1", "flux1", 16, False, "madebyollin/taef1"),
    TaeVariant("taef2", "flux2-unpacked", 32, True, None, "madebyollin/taef2"),
)}
GITHUB = "https://github.com/madebyollin/taesd"


# --------------------------------------------------------------------------- weights


class TaeParams(Params):
    variant: Literal["taesd", "taesdxl", "taesd3", "taef1", "taef2"] = "taef1"
    weights: str | None = Field(
        default=None, description="folder with <variant>_encoder.pth / <variant>_decoder.pth or "
        "<variant>.safetensors, a single .safetensors file (path or hf://), a diffusers AutoencoderTiny "
        "folder or HF id, or 'random'; default: madebyollin/<variant>")
    init_seed: int = 0

    @property
    def info(self) -> TaeVariant:
        return TAE_VARIANTS[self.variant]


def _pth_hint(v: TaeVariant) -> str:
    return (f"download {v.name}_encoder.pth and {v.name}_decoder.pth from {GITHUB} into a folder and "
            f"set params.weights to it")


def _missing_weights(params: TaeParams, part: str) -> DecoderUnavailable:
    v = params.info
    hint = _pth_hint(v)
    if v.diffusers_repo:
        hint += f", or use the diffusers-format repository {v.diffusers_repo}"
    if v.single_file_repo:
        hint += f", or `hf download {v.single_file_repo} {v.name}.safetensors`"
    return DecoderUnavailable(f"{v.name} {part} weights not found ({params.weights}); {hint}")


def _single_file(params: TaeParams, reference: str) -> Path | None:
    """The one-file form (both halves, diffusers names), when `reference` names one."""
    v = params.info
    if reference.startswith(HF_PREFIX) or reference.endswith(".safetensors"):
        return resolve_file(reference, f"{v.name} weights")
    if is_local(reference):
        single = Path(reference).expanduser() / f"{v.name}.safetensors"
        return single if single.is_file() else None
    if reference == v.single_file_repo:
        try:
            return resolve_file(f"{HF_PREFIX}{reference}/{v.name}.safetensors", f"{v.name} weights")
        except DecoderUnavailable as exc:
            raise DecoderUnavailable(f"{exc}; or {_pth_hint(v)}") from None
    return None


def _weight_source(params: TaeParams, part: Literal["encoder", "decoder"]) -> tuple[str, Path]:
    """("pth" | "diffusers", file) for one half of the autoencoder."""
    v = params.info
    reference = params.weights or v.diffusers_repo or v.single_file_repo
    if reference is None:
        raise _missing_weights(params, part)
    if is_local(reference):
        pth = Path(reference).expanduser() / f"{v.name}_{part}.pth"
        if pth.is_file():
            return "pth", pth
    single = _single_file(params, reference)
    if single is not None:
        return "diffusers", single
    try:
        folder, _ = resolve_pretrained(reference, None, f"{v.name} {part}")
    except DecoderUnavailable as exc:
        raise _missing_weights(params, part) if is_local(reference) else exc from None
    path = Path(folder) / "diffusion_pytorch_model.safetensors"
    if not path.is_file():
        raise _missing_weights(params, part)
    return "diffusers", path


def _state_dict(kind: str, path: Path, part: str) -> dict[str, torch.Tensor]:
    if kind == "pth":
        return torch.load(path, map_location="cpu", weights_only=True)
    from safetensors.torch import load_file

    prefix, shift = f"{part}.layers.", 1 if part == "decoder" else 0
    state: dict[str, torch.Tensor] = {}
    for key, tensor in load_file(str(path)).items():
        if key.startswith(prefix):
            index, _, rest = key.removeprefix(prefix).partition(".")
            state[f"{int(index) + shift}.{rest}"] = tensor
    return state


def load_half(params: TaeParams, part: Literal["encoder", "decoder"]) -> nn.Sequential:
    from decoders.tae_network import build_decoder, build_encoder  # torch.nn classes: on load only

    v = params.info
    build = build_encoder if part == "encoder" else build_decoder
    if params.weights == RANDOM:
        return build_seeded(lambda: build(v.latent_channels, v.pooled), params.init_seed, torch.device("cpu"))
    kind, path = _weight_source(params, part)
    state = _state_dict(kind, path, part)
    pooled = any(".pool." in key for key in state)
    model = build(v.latent_channels, pooled)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not hold {v.name} {part} weights: {exc}") from None
    return model


def tae_weights(params: TaeParams, part: Literal["encoder", "decoder"]) -> dict[str, str]:
    if params.weights == RANDOM:
        recipe = json.dumps({"variant": params.variant, "part": part, "seed": params.init_seed})
        return {f"random:{params.variant}_{part}": hashlib.sha256(recipe.encode()).hexdigest()}
    _, path = _weight_source(params, part)
    return {str(path): file_sha256(path)}


def _facts(params: TaeParams, model: nn.Module) -> dict[str, Any]:
    from decoders.tae_network import ResidualBlock

    facts: dict[str, Any] = {
        "variant": params.variant, "space": params.info.space,
        "pool_branch": any(isinstance(m, ResidualBlock) and m.pool is not None for m in model),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if params.weights == RANDOM:
        facts["quality_not_applicable"] = "random weights: performance-only"
        facts["state_dict_sha256"] = state_dict_sha256(model)
    return facts


# --------------------------------------------------------------------------- components


class TaeDecoderParams(TaeParams, CompileParams):
    """A tiny autoencoder used for decoding: compilable."""


class TaeDecoder(Decoder):
    Params = TaeDecoderParams
    spec = DecoderSpec(
        name="tae", consumes=Consumes.LATENT,
        latent_spaces=("sd", "sdxl", "sd3", "flux1", "flux2", "flux2-unpacked"), native_scale=1.0,
        summary="tiny autoencoder decoder (TAESD, TAESDXL, TAESD3, TAEF1, TAEF2)")

    @classmethod
    def spec_for(cls, params: TaeParams) -> DecoderSpec:  # type: ignore[override]
        return replace(cls.spec, latent_spaces=get_space(params.info.space).forms)

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        self.space = get_space(self.params.info.space)
        self.model = load_half(self.params, "decoder").to(device=device, dtype=dtype).eval()
        self.model.requires_grad_(False)
        self.dtype = dtype
        self.compiled: CompileRecord | None = None
        if isinstance(self.params, CompileParams) and self.params.compile:
            compile_in_place(self.model, self.params)
            self.compiled = CompileRecord(self.params.compile_setting())
            self.compiled.stage_target("decode", f"{self.params.variant} decoder (nn.Sequential)")

    def decode(self, batch: DecodeBatch) -> torch.Tensor:
        assert batch.latents is not None
        latents = as_space(batch.latents, self.space).to(self.dtype)
        if self.compiled is None:
            return self.model(latents).float().clamp_(0, 1)
        with self.compiled.call(stage="decode"):
            return self.model(latents).float().clamp_(0, 1)

    def check(self) -> None:
        if self.params.weights != RANDOM:
            _weight_source(self.params, "decoder")

    def weights(self) -> dict[str, str]:
        return tae_weights(self.params, "decoder")

    def facts(self) -> dict[str, Any]:
        if not hasattr(self, "model"):
            return {}
        facts = _facts(self.params, self.model)
        if self.compiled is not None:
            facts["compile"] = self.compiled.as_fact()
        return facts


class TaeEncoder(Encoder):
    Params = TaeParams
    spec = EncoderSpec(name="tae", latent_space="flux1",
                       summary="tiny autoencoder encoder: images in [0, 1] → normalized latents")

    @classmethod
    def spec_for(cls, params: TaeParams) -> EncoderSpec:  # type: ignore[override]
        return EncoderSpec(name=cls.spec.name, latent_space=params.info.space, summary=cls.spec.summary)

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        self.model = load_half(self.params, "encoder").to(device=device, dtype=dtype).eval()
        self.model.requires_grad_(False)
        self.dtype = dtype

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images.to(self.dtype)).float()

    def check(self) -> None:
        if self.params.weights != RANDOM:
            _weight_source(self.params, "encoder")

    def weights(self) -> dict[str, str]:
        return tae_weights(self.params, "encoder")
