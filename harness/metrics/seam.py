"""Seam score for tiled decoders: the brightness step a decoder's tiling adds across its seams.

Measured on the decoder's error (output − reference) across each overlap band of the tile grid the
decoder reports, in 8-bit luma levels, with the same measure mid-tile as the floor
(docs/metrics.md, protocols and policies).
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

from pydantic import Field

from decoders.lazy import torch
from decoders.plugins import Params
from harness.metrics.base import Family, ImageContext, Metric, MetricValues
from harness.metrics.spectral import luma

Line = tuple[float, float]  # (centre, half-width of the band), comparison pixels


class SeamParams(Params):
    strip_px: float | None = Field(default=None, gt=0, description="strip width beside the band "
                                   "(comparison px); default max(2, band / 4)")


def axis_steps(gray: torch.Tensor, lines: list[Line], breaks: list[float],
               strip_px: float | None) -> list[float]:
    """Mean step across each vertical line (band centre ± half-width), one value per stretch of rows
    between consecutive `breaks` (the perpendicular seams). gray: [H, W] float64."""
    height, width = gray.shape
    edges = [0, *[round(b) for b in breaks if 0 < b < height], height]
    steps = []
    for centre, half in lines:
        strip = max(2.0, half / 2) if strip_px is None else strip_px
        left = (round(centre - half - strip), round(centre - half))
        right = (round(centre + half), round(centre + half + strip))
        if left[0] < 0 or right[1] > width or left[1] <= left[0] or right[1] <= right[0]:
            continue
        profile = gray[:, right[0]:right[1]].mean(dim=1) - gray[:, left[0]:left[1]].mean(dim=1)  # [H]
        steps.extend(float(profile[a:b].mean()) for a, b in itertools.pairwise(edges) if b > a)
    return steps


def control_lines(seams: list[Line], length: int, strip_px: float | None) -> list[Line]:
    """A line in the middle of every tile along an axis, kept only where its band and strips stay
    clear of every seam band (heavily overlapping tiles leave no such room)."""
    half = max((h for _, h in seams), default=0.0)
    bands = [(c - h, c + h) for c, h in seams]
    bounds = [0.0, *sorted(c for c, _ in seams), float(length)]
    found = []
    for a, b in itertools.pairwise(bounds):
        centre = (a + b) / 2
        reach = half + (max(2.0, half / 2) if strip_px is None else strip_px)
        if all(centre + reach <= low or centre - reach >= high for low, high in bands):
            found.append((centre, half))
    return found


def seam_score(error: torch.Tensor, x_lines: list[Line], y_lines: list[Line],
               strip_px: float | None = None) -> tuple[float, dict[str, Any]] | None:
    """error [3, H, W] (output − reference); lines in its own pixel coordinates. None: no seam
    stretch fits in the image."""
    gray = luma(error[None].double())[0]
    height, width = gray.shape
    xs, ys = [c for c, _ in x_lines], [c for c, _ in y_lines]
    seam = axis_steps(gray, x_lines, ys, strip_px) + axis_steps(gray.T, y_lines, xs, strip_px)
    controls = axis_steps(gray, control_lines(x_lines, width, strip_px), ys, strip_px) + axis_steps(
        gray.T, control_lines(y_lines, height, strip_px), xs, strip_px)
    if not seam:
        return None

    def levels(values: list[float]) -> float:
        return 255 * (sum(v * v for v in values) / len(values)) ** 0.5

    return levels(seam), {"control_levels": levels(controls) if controls else None,
                          "stretches": {"seam": len(seam), "control": len(controls)}}


def grid_lines(grid: dict[str, Any], output_size: tuple[int, int]) -> tuple[list[Line], list[Line]]:
    """Seam centres and band half-widths of a tile grid, scaled to the comparison size."""
    native_w, native_h = grid["native_size"]
    width, height = output_size
    sx, sy = width / native_w, height / native_h

    def lines(seams: list[float], overlaps: list[float] | None, scale: float) -> list[Line]:
        widths = overlaps if overlaps is not None else [grid.get("overlap_px", 0)] * len(seams)
        return [(c * scale, w * scale / 2) for c, w in zip(seams, widths, strict=True)]

    return (lines(grid.get("x_seams", []), grid.get("x_overlaps"), sx),
            lines(grid.get("y_seams", []), grid.get("y_overlaps"), sy))


class SeamScore(Metric):
    name = "seam_score"
    unit = "8-bit levels"
    family = Family.FULL_REFERENCE  # the error against the reference cancels the image's own content
    summary_group = None  # a diagnostic of tiled decoders, not a quality ranking
    higher_is_better = False
    version = "2"  # 2: the step across the whole overlap band, on the error (1: gradients at the seam)
    summary = "RMS brightness step the tiling adds across seams, 8-bit levels (0 = seamless); tiled decoders"
    Params: ClassVar = SeamParams

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self._values = MetricValues()

    def update(self, keys: list[str], preds: torch.Tensor, targets: torch.Tensor | None,
               contexts: list[ImageContext] | None = None) -> None:
        assert contexts is not None and targets is not None
        for key, image, target, context in zip(keys, preds, targets, contexts, strict=True):
            grid = context.facts.get("tile_grid")
            if not grid:
                self._values.not_applicable[key] = "the decoder reports no tile grid (not tiled)"
                continue
            x_lines, y_lines = grid_lines(grid, context.output_size)
            if not x_lines and not y_lines:
                self._values.not_applicable[key] = "the tile grid has a single tile (no seams)"
                continue
            scored = seam_score(image.double() - target.double(), x_lines, y_lines, self.params.strip_px)
            if scored is None:
                self._values.not_applicable[key] = "no seam stretch with room for its strips in the image"
                continue
            self._values.per_key[key], details = scored
            self._values.details[key] = {"seams": {"x": len(x_lines), "y": len(y_lines)}, **details}

    def compute(self) -> MetricValues:
        return self._values

    def reset(self) -> None:
        self._values = MetricValues()

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "luma": "BT.601 of output − reference",
                "step": "mean over each seam stretch of (strip beyond the overlap band − strip before it)",
                "score": "RMS of the seam steps × 255 (8-bit levels)",
                "control": "the same RMS across lines in the middle of the tiles, clear of every band",
                "seams": "facts.tile_grid seam lines and overlap widths, native → comparison size"}
