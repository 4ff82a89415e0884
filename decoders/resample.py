"""Named, reproducible image resampling on torch tensors (CPU or GPU).

Used by the classical decoders, by the images source (reference and input
preparation) and by the harness when a decoder's native output size differs
from the suite's comparison size. Each method is a fixed, documented kernel:

- nearest:  torch "nearest-exact" (pixel centres, as PIL and scikit-image).
- bilinear, bicubic: torch with antialias=True (PIL's triangle and a=-0.5
  cubic kernels, widened when downsampling).
- area:     average over each output pixel's footprint (adaptive average pooling).
- lanczos:  Lanczos-3, widened when downsampling, weights renormalised at the
  borders, exactly as PIL's LANCZOS filter (checked against PIL in the tests).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal, get_args

from decoders.lazy import F, torch

Method = Literal["nearest", "bilinear", "bicubic", "area", "lanczos"]
METHODS: tuple[str, ...] = get_args(Method)


def resize(x: torch.Tensor, size: tuple[int, int], method: Method) -> torch.Tensor:
    """Resize [B, C, H, W] floats to `size` = (width, height). No clamping."""
    width, height = size
    if x.shape[-2:] == (height, width):
        return x
    if method == "nearest":
        return F.interpolate(x, size=(height, width), mode="nearest-exact")
    if method in ("bilinear", "bicubic"):
        return F.interpolate(
            x, size=(height, width), mode=method, align_corners=False, antialias=True
        )
    if method == "area":
        return F.adaptive_avg_pool2d(x, (height, width))
    if method == "lanczos":
        return _lanczos(x, height, width)
    raise ValueError(f"unknown resampling method {method!r}; known: {', '.join(METHODS)}")


def _lanczos(x: torch.Tensor, height: int, width: int, lobes: int = 3) -> torch.Tensor:
    in_h, in_w = x.shape[-2:]
    if in_w != width:
        weights = _lanczos_matrix(in_w, width, lobes, str(x.device), x.dtype)
        x = torch.matmul(x, weights.T)
    if in_h != height:
        weights = _lanczos_matrix(in_h, height, lobes, str(x.device), x.dtype)
        x = torch.matmul(weights, x)
    return x


@lru_cache(maxsize=64)
def _lanczos_matrix(
    n_in: int, n_out: int, lobes: int, device: str, dtype: torch.dtype
) -> torch.Tensor:
    """Dense [n_out, n_in] resampling matrix with PIL's tap placement and normalisation."""
    scale = n_in / n_out
    filter_scale = max(scale, 1.0)
    support = lobes * filter_scale
    centers = (torch.arange(n_out, dtype=torch.float64) + 0.5) * scale
    taps = math.ceil(2 * support) + 2
    first = torch.floor(centers - support - 0.5).long()
    index = first[:, None] + torch.arange(taps)[None, :]
    t = (index.to(torch.float64) + 0.5 - centers[:, None]) / filter_scale
    kernel = torch.sinc(t) * torch.sinc(t / lobes)
    kernel = torch.where((t >= -lobes) & (t < lobes), kernel, torch.zeros_like(kernel))
    kernel = torch.where((index >= 0) & (index < n_in), kernel, torch.zeros_like(kernel))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    matrix = torch.zeros(n_out, n_in, dtype=torch.float64)
    matrix.scatter_add_(1, index.clamp(0, n_in - 1), kernel)
    return matrix.to(device=device, dtype=dtype)
