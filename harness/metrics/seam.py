"""Seam score for tiled decoders: gradient energy on tile boundaries vs off them.

A tiled decoder reports its grid in its decode facts:
`tile_grid = {"tile_px", "overlap_px", "x_seams", "y_seams", "native_size": [w, h]}`
with seam centre lines in native-output pixels. They are scaled to the
comparison size. On the luma of the output (BT.601), the squared difference
between horizontally adjacent pixels is the gradient energy across vertical
seams, vertically adjacent pixels across horizontal ones. A difference
located at x + ½ lies on a seam when it is within `band_px` of the seam
line. The score is

    mean energy of differences on seams / mean energy of all other differences

(both directions pooled). 1 means the boundaries are as busy as the rest of
the image (no visible seam); a visible seam raises it. Images of decoders
without a tile grid are not applicable.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field

from decoders.plugins import Params
from harness.metrics.base import Family, ImageContext, Metric, MetricValues
from harness.metrics.spectral import luma


class SeamParams(Params):
    band_px: float = Field(default=1.0, gt=0, description="half-width of a seam band (comparison px)")


def seam_mask(length: int, seams: list[float], band: float, device: torch.device) -> torch.Tensor:
    """Which of the length−1 adjacent-pixel differences lie within `band` of a seam line."""
    centres = torch.arange(length - 1, dtype=torch.float64, device=device) + 1.0
    if not seams:
        return torch.zeros(length - 1, dtype=torch.bool, device=device)
    lines = torch.tensor(seams, dtype=torch.float64, device=device)
    return ((centres[:, None] - lines[None, :]).abs() <= band).any(dim=1)


def seam_ratio(image: torch.Tensor, x_seams: list[float], y_seams: list[float], band: float) -> float:
    """image [3, H, W] in [0, 1]; seams in its own pixel coordinates."""
    gray = luma(image[None])[0]
    dx = (gray[:, 1:] - gray[:, :-1]).pow(2)  # [H, W-1], the difference between x and x+1 sits at x+1
    dy = (gray[1:, :] - gray[:-1, :]).pow(2)  # [H-1, W]
    on_x = seam_mask(gray.shape[1], x_seams, band, gray.device)[None, :].expand_as(dx)
    on_y = seam_mask(gray.shape[0], y_seams, band, gray.device)[:, None].expand_as(dy)
    on = torch.cat([dx[on_x], dy[on_y]])
    off = torch.cat([dx[~on_x], dy[~on_y]])
    return float(on.mean() / off.mean().clamp(min=1e-20))


class SeamScore(Metric):
    name = "seam_score"
    family = Family.NO_REFERENCE
    summary_group = None  # a diagnostic of tiled decoders, not a quality ranking
    higher_is_better = False
    summary = "gradient energy on tile seams ÷ off seams (1 = invisible); tiled decoders only"
    Params: ClassVar = SeamParams

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self._values = MetricValues()

    def update(self, keys: list[str], preds: torch.Tensor, targets: torch.Tensor | None,
               contexts: list[ImageContext] | None = None) -> None:
        assert contexts is not None
        for key, image, context in zip(keys, preds, contexts, strict=True):
            grid = context.facts.get("tile_grid")
            if not grid:
                self._values.not_applicable[key] = "the decoder reports no tile grid (not tiled)"
                continue
            native_w, native_h = grid["native_size"]
            width, height = context.output_size
            x_seams = [x * width / native_w for x in grid.get("x_seams", [])]
            y_seams = [y * height / native_h for y in grid.get("y_seams", [])]
            if not x_seams and not y_seams:
                self._values.not_applicable[key] = "the tile grid has a single tile (no seams)"
                continue
            self._values.per_key[key] = seam_ratio(image.double(), x_seams, y_seams, self.params.band_px)
            self._values.details[key] = {"seams": {"x": len(x_seams), "y": len(y_seams)}}

    def compute(self) -> MetricValues:
        return self._values

    def reset(self) -> None:
        self._values = MetricValues()

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "luma": "BT.601",
                "energy": "squared adjacent-pixel differences across each seam direction",
                "seams": "facts.tile_grid seam lines scaled from native to comparison size"}
