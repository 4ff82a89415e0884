"""Semantic latents of representation autoencoders (RAE): the `dinov2` and `siglip` encoders.

The latents PiD's dinov2 / siglip decoders were trained on, made as PiD's tokenizers make them,
through transformers; `weights = "random"` builds the published architecture with seeded random
weights for CPU runs (docs/decoders.md, latent spaces).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, model_validator

from decoders.base import DecoderUnavailable, Encoder, EncoderSpec
from decoders.lazy import F, torch
from decoders.pid import ROOT_ENV
from decoders.plugins import Params
from decoders.weights import (
    build_seeded,
    file_sha256,
    folder_sha256,
    random_recipe,
    require,
    resolve_file,
    resolve_pretrained,
)

RANDOM = "random"
DINOV2_STATS = "checkpoints/rae/stats/dinov2/wReg_base/imagenet1k_512/stat.pt"  # in PiD's checkout
STATS_EPS = 1e-5  # DINOv2VAE latent_norm_eps
SIGLIP_LN_EPS = 1e-6  # ScaleRAEVAE.encode's F.layer_norm


@dataclass(frozen=True)
class RaeFamily:
    space: str
    model_class: str  # transformers class for random weights
    config_class: str
    default_weights: str
    resize: int
    antialias: bool
    mean: tuple[float, float, float]  # the published processor's, for random weights
    std: tuple[float, float, float]
    config: dict[str, Any]  # the published architecture (config.json)


FAMILIES = {
    "dinov2": RaeFamily(
        "dinov2", "Dinov2WithRegistersModel", "Dinov2WithRegistersConfig",
        "facebook/dinov2-with-registers-base", 448, False, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
        {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "mlp_ratio": 4,
         "patch_size": 14, "image_size": 518, "num_register_tokens": 4, "layer_norm_eps": 1e-6,
         "hidden_act": "gelu", "layerscale_value": 1.0}),
    "siglip": RaeFamily(
        "siglip", "SiglipVisionModel", "SiglipVisionConfig", "google/siglip2-so400m-patch14-224", 224, True,
        (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
        {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
         "patch_size": 14, "image_size": 224, "layer_norm_eps": 1e-6, "hidden_act": "gelu_pytorch_tanh"}),
}


class RaeParams(Params):
    weights: str | None = Field(default=None, description="HF id or local folder (transformers), or "
                                "'random'; default: the published encoder")
    init_seed: int = Field(default=0, description="seed of the random initialisation")
    config: dict[str, Any] = Field(default_factory=dict, description="architecture overrides, random "
                                   "weights only (e.g. num_hidden_layers = 1 for CPU runs)")

    @model_validator(mode="after")
    def _config_only_random(self) -> RaeParams:
        if self.config and self.weights != RANDOM:
            raise ValueError("config overrides need weights = 'random' (real weights bring their config)")
        return self


class Dinov2Params(RaeParams):
    stats: str | None = Field(default=None, description="RAE's stat.pt (path or hf://); default: "
                              f"${ROOT_ENV}/{DINOV2_STATS}; random weights: none (identity)")


class _LoadedRae:
    """The encoder module, its input normalization and (dinov2) the latent statistics."""

    def __init__(self, family: RaeFamily, params: RaeParams, device: torch.device,
                 dtype: torch.dtype) -> None:
        require("transformers", "decoders")
        self.family, self.params, self.device, self.dtype = family, params, device, dtype
        model, mean, std = self._model()
        self.model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)

    def _model(self) -> tuple[torch.nn.Module, Any, Any]:
        import transformers

        family, params = self.family, self.params
        if params.weights == RANDOM:
            config = getattr(transformers, family.config_class)(**{**family.config, **params.config})
            model = build_seeded(lambda: getattr(transformers, family.model_class)(config), params.init_seed,
                                 self.device)
            return model, family.mean, family.std
        reference, _ = resolve_pretrained(params.weights or family.default_weights, None,
                                          f"{family.space} encoder")
        try:
            model = transformers.AutoModel.from_pretrained(reference)
            processor = transformers.AutoImageProcessor.from_pretrained(reference)
        except OSError as exc:
            raise DecoderUnavailable(f"{family.space} encoder: cannot load {reference}: {exc}") from None
        return getattr(model, "vision_model", model), processor.image_mean, processor.image_std

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] → the encoder's input: resized to its interface, normalized."""
        side = self.family.resize
        x = images.float()
        if x.shape[-2:] != (side, side):
            x = F.interpolate(x, size=(side, side), mode="bicubic", align_corners=False,
                              antialias=self.family.antialias)
        return ((x - self.mean) / self.std).to(self.dtype)


def _grid(tokens: torch.Tensor) -> torch.Tensor:
    """[B, N, C] patch tokens → [B, C, √N, √N]."""
    batch, count, channels = tokens.shape
    side = math.isqrt(count)
    if side * side != count:
        raise ValueError(f"{count} patch tokens do not form a square grid")
    return tokens.transpose(1, 2).reshape(batch, channels, side, side)


def _encoder_weights(family: RaeFamily, params: RaeParams) -> dict[str, str]:
    if params.weights == RANDOM:
        return random_recipe(family.space, params.config, params.init_seed)
    reference = params.weights or family.default_weights
    folder, _ = resolve_pretrained(reference, None, f"{family.space} encoder")
    if not Path(folder).is_dir():  # online and not cached yet
        return {reference: "not yet downloaded"}
    return folder_sha256(Path(folder), reference)


class _RaeEncoder(Encoder):
    family: ClassVar[RaeFamily]

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        self.rae = _LoadedRae(self.family, self.params, device, dtype)

    def weights(self) -> dict[str, str]:
        return _encoder_weights(self.family, self.params)


class Dinov2Encoder(_RaeEncoder):
    Params = Dinov2Params
    family = FAMILIES["dinov2"]
    spec = EncoderSpec(name="dinov2", latent_space="dinov2",
                       summary="RAE: DINOv2-B-with-registers patch tokens, RAE-normalized (PiD's dinov2)")

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        super().load(device, dtype)
        encoder = self.rae.model
        hidden, eps = encoder.config.hidden_size, encoder.config.layer_norm_eps
        encoder.layernorm = torch.nn.LayerNorm(hidden, eps=eps, elementwise_affine=False).to(device)
        self.specials = 1 + int(getattr(encoder.config, "num_register_tokens", 0))  # CLS + registers
        self.stats = self._stats(device)

    def _stats_file(self) -> Path | None:
        if self.params.stats is not None:
            return resolve_file(self.params.stats, "RAE latent statistics")
        if self.params.weights == RANDOM:
            return None
        root = os.environ.get(ROOT_ENV)
        candidate = Path(root).expanduser() / DINOV2_STATS if root else None
        if candidate is None or not candidate.is_file():
            raise DecoderUnavailable(
                f"dinov2 encoder: RAE's latent statistics are needed (PiD's {DINOV2_STATS}); set "
                f"params.stats to that file, or ${ROOT_ENV} to a PiD checkout with `hf download nvidia/PiD "
                f"--include 'checkpoints/rae/*'`")
        return candidate

    def _stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
        path = self._stats_file()
        if path is None:
            return None
        stats = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(stats, dict) or "mean" not in stats or "var" not in stats:
            raise ValueError(f"{path}: RAE statistics must hold 'mean' and 'var' tensors")
        self.stats_path = path
        return (stats["mean"].float().to(device)[None], stats["var"].float().to(device)[None])

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.rae.model(self.rae.pixels(images)).last_hidden_state[:, self.specials:]
        z = _grid(tokens.float())
        if self.stats is None:
            return z
        mean, var = self.stats
        return (z - mean) / torch.sqrt(var + STATS_EPS)

    def weights(self) -> dict[str, str]:
        found = super().weights()
        path = self._stats_file()
        if path is not None:
            found[str(path)] = file_sha256(path)
        return found


class SiglipEncoder(_RaeEncoder):
    Params = RaeParams
    family = FAMILIES["siglip"]
    spec = EncoderSpec(name="siglip", latent_space="siglip",
                       summary="Scale-RAE: SigLIP-2 So400M patch tokens, affine-free LayerNorm "
                       "(PiD's siglip)")

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        super().load(device, dtype)
        self.rae.model.post_layernorm = torch.nn.Identity()  # Scale-RAE reads the pre-LN tokens

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.rae.model(self.rae.pixels(images)).last_hidden_state
        tokens = F.layer_norm(tokens.float(), (tokens.shape[-1],), eps=SIGLIP_LN_EPS)
        return _grid(tokens)

