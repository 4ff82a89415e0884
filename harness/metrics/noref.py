"""No-reference image quality through pyiqa: MUSIQ, CLIP-IQA, MANIQA, NIQE, BRISQUE, TOPIQ-NR, PIQE.

pyiqa's models at their defaults; images larger than `max_side` are scored by a declared policy
(tile, resize, centre crop) recorded in the protocol (docs/metrics.md, protocols and policies).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import Field

from decoders.lazy import no_grad, torch
from decoders.plugins import Params
from decoders.resample import resize
from harness.metrics.base import Family, PerImageMetric, pixel_chunks, require_weights
from harness.metrics.pyiqa_models import create_pyiqa_metric, pyiqa_protocol

LargeImagePolicy = Literal["tile", "resize", "centre_crop"]
# Pixels per forward pass: the pieces of a batch (e.g. the sixteen 1024² tiles of a 4096² image)
# go to the model eight megapixels at a time, which bounds its activation memory.
MAX_PIXELS = 8 << 20


class NoReferenceParams(Params):
    large_image: LargeImagePolicy = Field(
        default="tile", description="what to do with images whose longer side exceeds max_side")
    max_side: int = Field(default=1024, ge=64, description="largest side scored in one piece (px)")


def tile_origins(length: int, tile: int) -> list[int]:
    """Evenly spaced tile starts covering [0, length), the last flush with the end."""
    if length <= tile:
        return [0]
    count = math.ceil(length / tile)
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def apply_policy(images: torch.Tensor, policy: LargeImagePolicy, max_side: int) -> tuple[torch.Tensor, int]:
    """[B, 3, H, W] → ([B·n, 3, h, w], n): the pieces to score, n per image (averaged by the caller)."""
    height, width = images.shape[-2:]
    if max(height, width) <= max_side:
        return images, 1
    if policy == "resize":
        scale = max_side / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return resize(images.double(), size, "lanczos").clamp(0, 1).to(images.dtype), 1
    tile_h, tile_w = min(height, max_side), min(width, max_side)
    if policy == "centre_crop":
        top, left = (height - tile_h) // 2, (width - tile_w) // 2
        return images[..., top:top + tile_h, left:left + tile_w], 1
    tiles = [images[..., y:y + tile_h, x:x + tile_w]
             for y in tile_origins(height, tile_h) for x in tile_origins(width, tile_w)]
    return torch.stack(tiles, dim=1).flatten(0, 1), len(tiles)


class PyiqaNoReference(PerImageMetric):
    """A pyiqa NR model behind the large-image policy."""

    family = Family.NO_REFERENCE
    Params: ClassVar = NoReferenceParams
    requires = ("pyiqa",)
    pyiqa_name: ClassVar[str]
    pyiqa_options: ClassVar[dict[str, Any]] = {}

    def load(self, device: torch.device) -> None:
        super().load(device)
        require_weights(self)
        self.model = create_pyiqa_metric(self.pyiqa_name, device, **self.pyiqa_options)

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), **pyiqa_protocol(self.pyiqa_name, self.pyiqa_options),
                "large_image_resize": "lanczos3 antialiased"}

    @no_grad
    def score(self, preds: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        pieces, per_image = apply_policy(preds.float(), self.params.large_image, self.params.max_side)
        scores = torch.cat([self.model(pieces[part]).reshape(-1).double()
                            for part in pixel_chunks(pieces, MAX_PIXELS)])
        return scores.view(preds.shape[0], per_image).mean(dim=1)


class MUSIQ(PyiqaNoReference):
    name = "musiq"
    unit = "0–100"
    higher_is_better = True
    pyiqa_name = "musiq"
    summary = "MUSIQ (KonIQ-10k), multi-scale image quality transformer, ~0–100"


class CLIPIQA(PyiqaNoReference):
    name = "clipiqa"
    unit = "0–1"
    higher_is_better = True
    pyiqa_name = "clipiqa"
    summary = "CLIP-IQA (CLIP RN50 antonym prompts), 0–1"


class MANIQA(PyiqaNoReference):
    name = "maniqa"
    unit = "0–1"
    higher_is_better = True
    pyiqa_name = "maniqa"
    summary = "MANIQA (KonIQ-10k), multi-dimension attention network, ~0–1"


class TOPIQNR(PyiqaNoReference):
    name = "topiq_nr"
    unit = "0–1"
    higher_is_better = True
    pyiqa_name = "topiq_nr"
    pyiqa_options: ClassVar[dict[str, Any]] = {"backbone_pretrain": False}
    summary = "TOPIQ-NR (CFANet ResNet50, KonIQ-10k), ~0–1"


class NIQE(PyiqaNoReference):
    name = "niqe"
    unit = "score (≥ 0)"
    higher_is_better = False
    pyiqa_name = "niqe"
    summary = "NIQE natural image quality evaluator (Y channel), lower is better"


class BRISQUE(PyiqaNoReference):
    name = "brisque"
    unit = "0–100"
    higher_is_better = False
    pyiqa_name = "brisque"
    summary = "BRISQUE blind spatial quality (Y channel), lower is better"


class PIQE(PyiqaNoReference):
    name = "piqe"
    unit = "0–100"
    higher_is_better = False
    pyiqa_name = "piqe"
    summary = "PIQE perception-based quality (weight-free), 0–100, lower is better"
