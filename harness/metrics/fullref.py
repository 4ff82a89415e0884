"""Pixel-fidelity metrics against the reference image: PSNR, SSIM, MS-SSIM.

The definitions of scikit-image and pytorch_msssim, in float64 on 8-bit images ÷ 255, computed by
tiles and strips so that memory does not grow with the image (docs/metrics.md, speed and memory).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import ClassVar, TypeVar

from pydantic import Field

from decoders.lazy import F, torch
from decoders.plugins import Params
from harness.metrics.base import Family, PerImageMetric

T = TypeVar("T")
R = TypeVar("R")
DATA_RANGE = 1.0
K1, K2 = 0.01, 0.03
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# Work units of the float64 passes. CPU: a tile of output rows × columns (plus the window's halo)
# whose five moment planes fit the L2 cache (~2 MiB); elsewhere (CUDA): large tiles, big kernels.
TILE_ROWS = {"cpu": 128, "other": 8192}
TILE_COLUMNS = {"cpu": 512, "other": 8192}
TILE_BYTES = {"cpu": 2 << 20, "other": 1 << 30}
# Single-pass float64 work (PSNR's squared errors, MS-SSIM's pooling) goes by strips of this size.
STRIP_BYTES = {"cpu": 4 << 20, "other": 1 << 30}


def _device_kind(images: torch.Tensor) -> str:
    return "cpu" if images.device.type == "cpu" else "other"


def strip_rows(images: torch.Tensor, planes: int) -> int:
    """Rows per strip so that `planes` float64 copies of a strip of `images` fill STRIP_BYTES."""
    per_row = planes * images.shape[0] * images.shape[1] * images.shape[-1] * 8
    return max(1, STRIP_BYTES[_device_kind(images)] // per_row)


class PSNR(PerImageMetric):
    name = "psnr"
    unit = "dB"
    family = Family.FULL_REFERENCE
    higher_is_better = True
    summary = "peak signal-to-noise ratio (dB), data range 1.0, per image"

    @staticmethod
    def finite_ceiling(size: tuple[int, int]) -> float:
        """Identical images score +∞ (recorded as such, shown as ∞). Means, intervals and decisions
        count ∞ as this: the PSNR of the smallest difference two 8-bit images of `size` can have
        (one channel of one pixel one level apart), 10·log10(255²·3·W·H) dB — at or above every
        finite PSNR at this size, so an exact reproduction never ranks below an inexact one."""
        return 10 * math.log10(255**2 * 3 * size[0] * size[1])

    def score(self, preds: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        assert targets is not None
        squared = torch.zeros(preds.shape[0], dtype=torch.float64, device=preds.device)
        rows = strip_rows(preds[:1], 2)
        for index in range(preds.shape[0]):
            for top in range(0, preds.shape[-2], rows):
                strip = preds[index, :, top:top + rows]
                error = torch.empty(strip.shape, dtype=torch.float64, device=strip.device).copy_(strip)
                error = error.sub_(targets[index, :, top:top + rows].double()).view(-1)
                squared[index] += torch.dot(error, error)
        mse = squared / preds[0].numel()
        return 10 * torch.log10(DATA_RANGE**2 / mse)


def _window(sigma: float) -> int:
    """Gaussian window width for σ (pure arithmetic: suites check it without torch)."""
    return 2 * int(3.5 * sigma + 0.5) + 1


@lru_cache(maxsize=8)
def gaussian_taps(sigma: float) -> tuple[float, ...]:
    """scikit-image's window: exp(−x²/2σ²) for |x| ≤ ⌊3.5σ + ½⌋, normalised to sum 1."""
    radius = _window(sigma) // 2
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-(offsets**2) / (2 * sigma**2))
    return tuple((taps / taps.sum()).tolist())


def _filter(planes: torch.Tensor, taps: tuple[float, ...]) -> torch.Tensor:
    """Separable correlation with `taps`, valid region only: [..., H, W] → [..., H-w+1, W-w+1]."""
    window = len(taps)
    height, width = planes.shape[-2] - window + 1, planes.shape[-1] - window + 1
    across = planes[..., :, :width] * taps[0]
    for k in range(1, window):
        across.add_(planes[..., :, k:k + width], alpha=taps[k])
    down = across[..., :height, :] * taps[0]
    for k in range(1, window):
        down.add_(across[..., k:k + height, :], alpha=taps[k])
    return down


def ssim_terms(x: torch.Tensor, y: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean SSIM and contrast-structure terms, [B, C] each (float64), tile by tile."""
    taps = gaussian_taps(sigma)
    halo = len(taps) - 1
    batch, channels, height, width = x.shape
    out_h, out_w = height - halo, width - halo
    x, y = x.reshape(batch * channels, height, width), y.reshape(batch * channels, height, width)
    kind = _device_kind(x)
    rows, columns = min(out_h, TILE_ROWS[kind]), min(out_w, TILE_COLUMNS[kind])
    planes = max(1, TILE_BYTES[kind] // (5 * 8 * (rows + halo) * (columns + halo)))
    tiles = [(slice(first, first + planes), slice(top, top + rows + halo), slice(left, left + columns + halo))
             for first in range(0, x.shape[0], planes)
             for top in range(0, out_h, rows) for left in range(0, out_w, columns)]

    def tile_sums(tile: tuple[slice, slice, slice]) -> tuple[torch.Tensor, torch.Tensor]:
        ssim_map, cs_map = _ssim_maps(x[tile].double(), y[tile].double(), taps)
        return ssim_map.sum(dim=(1, 2)), cs_map.sum(dim=(1, 2))

    sums = map_tiles(tile_sums, tiles, kind)
    ssim_sum = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    cs_sum = torch.zeros_like(ssim_sum)
    for tile, (ssim_part, cs_part) in zip(tiles, sums, strict=True):  # in tile order: deterministic
        ssim_sum[tile[0]] += ssim_part
        cs_sum[tile[0]] += cs_part
    count = out_h * out_w
    return (ssim_sum / count).view(batch, channels), (cs_sum / count).view(batch, channels)


def map_tiles(fn: Callable[[T], R], tiles: Iterable[T], kind: str) -> Iterator[R]:
    """fn over the tiles, results in tile order: on the CPU in parallel on `tile_pool`."""
    return tile_pool().map(fn, tiles) if kind == "cpu" else map(fn, tiles)


@lru_cache(maxsize=1)
def tile_pool() -> ThreadPoolExecutor:
    """As many workers as torch has threads, each running its torch ops on one thread.

    CPU tiles are small (cache-sized), so a multi-threaded op is mostly an OpenMP barrier: when
    another process holds a core, every op waits for a descheduled thread (measured: 4-10x slower
    on a shared 2-core machine). Whole tiles in parallel keep both cores busy without barriers.
    """
    return ThreadPoolExecutor(max(1, torch.get_num_threads()), initializer=torch.set_num_threads,
                              initargs=(1,), thread_name_prefix="decoderbench-tiles")


def _ssim_maps(x: torch.Tensor, y: torch.Tensor,
               taps: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM and contrast-structure maps of the valid region of float64 planes [N, h, w]."""
    mu_x, mu_y, xx, yy, xy = _filter(torch.stack([x, y, x * x, y * y, x * y]), taps)
    mu_xy, mu_xx, mu_yy = mu_x * mu_y, mu_x * mu_x, mu_y * mu_y
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    cs_map = (2 * (xy - mu_xy) + c2) / ((xx - mu_xx) + (yy - mu_yy) + c2)
    return (2 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs_map, cs_map


def halve(x: torch.Tensor) -> torch.Tensor:
    """2×2 average pooling in float64, zero padding on an odd side counted (pytorch_msssim's
    `avg_pool2d(padding=size % 2)`), by strips of rows: a float32 input is never copied whole."""
    pad_h, pad_w = x.shape[-2] % 2, x.shape[-1] % 2
    out_height = x.shape[-2] // 2 + pad_h
    rows = strip_rows(x, 2)
    strips = []
    for top in range(0, out_height, rows):
        first, last = max(0, 2 * top - pad_h), min(x.shape[-2], 2 * (top + rows) - pad_h)
        strip = F.pad(x[..., first:last, :].double(), (pad_w, 0, pad_h if top == 0 else 0, 0))
        strips.append(F.avg_pool2d(strip, kernel_size=2))
    return torch.cat(strips, dim=-2)


class SSIMParams(Params):
    sigma: float = Field(default=1.5, gt=0, description="Gaussian window σ (window 2·⌊3.5σ+½⌋+1)")


def _check_size(images: torch.Tensor, needed: int, what: str) -> None:
    if min(images.shape[-2:]) < needed:
        raise ValueError(f"{what} needs images of at least {needed} px per side, "
                         f"got {images.shape[-1]}x{images.shape[-2]}")


class SSIM(PerImageMetric):
    name = "ssim"
    unit = "0–1"
    family = Family.FULL_REFERENCE
    higher_is_better = True
    summary = "structural similarity (scikit-image convention), data range 1.0"
    Params: ClassVar = SSIMParams

    @classmethod
    def min_side(cls, params: Params) -> int:
        return _window(params.sigma)  # type: ignore[attr-defined]

    def score(self, preds: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        assert targets is not None
        _check_size(preds, self.min_side(self.params), "ssim")
        return ssim_terms(preds, targets, self.params.sigma)[0].mean(dim=1)


class MSSSIM(PerImageMetric):
    name = "ms_ssim"
    unit = "0–1"
    family = Family.FULL_REFERENCE
    higher_is_better = True
    summary = "multi-scale SSIM, 5 scales (pytorch_msssim definition), data range 1.0"
    Params: ClassVar = SSIMParams

    @classmethod
    def min_side(cls, params: Params) -> int:
        """The window must fit the coarsest of the five scales (161 px at σ = 1.5)."""
        window = _window(params.sigma)  # type: ignore[attr-defined]
        return (window - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1

    def score(self, preds: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        assert targets is not None
        _check_size(preds, self.min_side(self.params), "ms_ssim")
        x, y = preds, targets
        terms = []
        for level in range(len(MS_SSIM_WEIGHTS)):
            ssim, cs = ssim_terms(x, y, self.params.sigma)
            if level == len(MS_SSIM_WEIGHTS) - 1:
                terms.append(torch.relu(ssim))
                break
            terms.append(torch.relu(cs))
            x, y = halve(x), halve(y)
        weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=torch.float64, device=x.device)
        per_channel = torch.prod(torch.stack(terms) ** weights.view(-1, 1, 1), dim=0)
        return per_channel.mean(dim=1)
