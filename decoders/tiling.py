"""Tiled decoding with a declared grid and linear cross-fades, and where its seams are.

The latent is cut into square tiles of `tile` latent pixels, as few per axis
as keep neighbours overlapping by at least `overlap`, spread evenly from
border to border (so all overlaps of an axis are equal up to rounding). Every
tile is decoded on its own; inside each overlap the two tiles are cross-faded
with complementary linear ramps, and the sum is divided by the summed
weights. A seam is the centre line of an overlap, in output pixels: that is
what `TileGrid.as_fact()` records for seam metrics, with each overlap's width
(the band a mismatch between two tiles is spread over).

`diffusers_grid` records the grid of diffusers' own `AutoencoderKL.tiled_decode`
(diffusers 0.42.1, models/autoencoders/autoencoder_kl.py): tiles of
`tile_latent_min_size` latent pixels start every `int(tile · (1 − overlap))`;
each decoded tile is blended into its upper and left neighbours over
`int(tile_sample · overlap)` output pixels (`blend_v/blend_h`, linear), then
cropped to `tile_sample − blend` rows and columns and concatenated. The seam
is the centre line of each blend band in the concatenated output.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

from decoders.lazy import torch


@dataclass(frozen=True)
class TileGrid:
    factor: int  # output pixels per latent pixel
    tile: int  # latent pixels
    overlap: int  # latent pixels (minimum)
    xs: tuple[int, ...]  # tile starts, latent pixels
    ys: tuple[int, ...]
    width: int  # latent pixels
    height: int

    @property
    def tile_w(self) -> int:
        return min(self.tile, self.width)

    @property
    def tile_h(self) -> int:
        return min(self.tile, self.height)

    def seams(self, starts: tuple[int, ...], size: int) -> list[int]:
        """Centre lines of the overlaps between consecutive tiles, in output pixels."""
        return [round((b + a + size) * self.factor / 2) for a, b in itertools.pairwise(starts)]

    def overlaps(self, starts: tuple[int, ...], size: int) -> list[int]:
        """Width of each overlap (the cross-fade band around a seam), in output pixels."""
        return [(a + size - b) * self.factor for a, b in itertools.pairwise(starts)]

    def as_fact(self) -> dict[str, object]:
        return {
            "tile_px": self.tile * self.factor, "overlap_px": self.overlap * self.factor,
            "x_seams": self.seams(self.xs, self.tile_w), "y_seams": self.seams(self.ys, self.tile_h),
            "x_overlaps": self.overlaps(self.xs, self.tile_w),
            "y_overlaps": self.overlaps(self.ys, self.tile_h),
            "native_size": [self.width * self.factor, self.height * self.factor],
        }


DIFFUSERS_OVERLAP = 0.25  # AutoencoderKL.tile_overlap_factor after enable_tiling()


def _diffusers_axis(length: int, tile: int, tile_sample: int, overlap: float,
                    factor: int) -> tuple[list[int], list[int], int]:
    """(seam centres, blend widths, output length) along one axis of diffusers' tiled_decode."""
    stride = int(tile * (1 - overlap))
    blend = int(tile_sample * overlap)
    limit = tile_sample - blend
    sizes = [(min(start + tile, length) - start) * factor for start in range(0, length, stride)]
    seams, widths, position = [], [], 0
    for index, size in enumerate(sizes):
        if index > 0:
            width = min(sizes[index - 1], size, blend)
            seams.append(round(position + width / 2))
            widths.append(width)
        position += min(size, limit)
    return seams, widths, position


def diffusers_grid(latent_hw: tuple[int, int], tile: int, tile_sample: int, overlap: float,
                   factor: int) -> dict[str, object]:
    """The tile grid diffusers' tiled_decode uses for a [h, w] latent (no tiles when it fits one)."""
    height, width = latent_hw
    blend = int(tile_sample * overlap)
    if height <= tile and width <= tile:  # AutoencoderKL._decode decodes it whole
        return {"tile_px": tile_sample, "overlap_px": blend, "x_seams": [], "y_seams": [],
                "native_size": [width * factor, height * factor], "tiled": False}
    x_seams, x_widths, out_w = _diffusers_axis(width, tile, tile_sample, overlap, factor)
    y_seams, y_widths, out_h = _diffusers_axis(height, tile, tile_sample, overlap, factor)
    return {"tile_px": tile_sample, "overlap_px": blend, "x_seams": x_seams, "y_seams": y_seams,
            "x_overlaps": x_widths, "y_overlaps": y_widths, "native_size": [out_w, out_h], "tiled": True}


def tile_starts(length: int, tile: int, overlap: int) -> tuple[int, ...]:
    if length <= tile:
        return (0,)
    count = 1 + math.ceil((length - tile) / (tile - overlap))
    return tuple(round(i * (length - tile) / (count - 1)) for i in range(count))


def make_grid(latent_hw: tuple[int, int], tile: int, overlap: int, factor: int) -> TileGrid:
    height, width = latent_hw
    return TileGrid(factor=factor, tile=tile, overlap=overlap, xs=tile_starts(width, tile, overlap),
                    ys=tile_starts(height, tile, overlap), width=width, height=height)


def _axis_weights(starts: tuple[int, ...], size: int, factor: int) -> list[torch.Tensor]:
    """Per tile, a 1-D weight over its output pixels: ramps where it overlaps a neighbour."""
    weights = []
    for index, start in enumerate(starts):
        weight = torch.ones(size * factor, dtype=torch.float32)
        if index > 0:  # fade in over the overlap with the previous tile
            span = (starts[index - 1] + size - start) * factor
            weight[:span] = (torch.arange(span, dtype=torch.float32) + 0.5) / span
        if index + 1 < len(starts):  # fade out over the overlap with the next tile
            span = (start + size - starts[index + 1]) * factor
            weight[-span:] = 1 - (torch.arange(span, dtype=torch.float32) + 0.5) / span
        weights.append(weight)
    return weights


def decode_tiled(
    decode: Callable[[torch.Tensor], torch.Tensor], latents: torch.Tensor, grid: TileGrid
) -> torch.Tensor:
    """Decode [B, C, h, w] latents tile by tile; returns [B, 3, h·f, w·f] float32."""
    f, th, tw = grid.factor, grid.tile_h, grid.tile_w
    batch = latents.shape[0]
    device = latents.device
    out = torch.zeros(batch, 3, grid.height * f, grid.width * f, dtype=torch.float32, device=device)
    total = torch.zeros(grid.height * f, grid.width * f, dtype=torch.float32, device=device)
    wy = [w.to(device) for w in _axis_weights(grid.ys, th, f)]
    wx = [w.to(device) for w in _axis_weights(grid.xs, tw, f)]
    for yi, y in enumerate(grid.ys):
        for xi, x in enumerate(grid.xs):
            tile = decode(latents[:, :, y:y + th, x:x + tw]).float()
            weight = wy[yi][:, None] * wx[xi][None, :]
            out[:, :, y * f:(y + th) * f, x * f:(x + tw) * f] += tile * weight
            total[y * f:(y + th) * f, x * f:(x + tw) * f] += weight
            del tile
    return out.div_(total)


def seam_mask(native_size: tuple[int, int], x_seams: list[int], y_seams: list[int],
              band_px: int) -> torch.Tensor:
    """[H, W] bool: True within `band_px` of a seam centre line."""
    width, height = native_size
    mask = torch.zeros(height, width, dtype=torch.bool)
    for x in x_seams:
        mask[:, max(0, x - band_px):x + band_px] = True
    for y in y_seams:
        mask[max(0, y - band_px):y + band_px, :] = True
    return mask


def seam_difference(tiled: torch.Tensor, untiled: torch.Tensor, fact: dict, band_px: int) -> dict[str, float]:
    """Mean/max absolute difference of two [B, 3, H, W] decodes near seams and away from them."""
    mask = seam_mask(tuple(fact["native_size"]), fact["x_seams"], fact["y_seams"], band_px)
    diff = (tiled.float() - untiled.float()).abs().amax(dim=1).cpu()  # [B, H, W], worst channel
    near, away = diff[:, mask], diff[:, ~mask]
    return {
        "band_px": band_px,
        "near_seams_mean_abs": float(near.mean()) if near.numel() else 0.0,
        "near_seams_max_abs": float(near.max()) if near.numel() else 0.0,
        "away_mean_abs": float(away.mean()) if away.numel() else 0.0,
        "away_max_abs": float(away.max()) if away.numel() else 0.0,
    }
