"""Pixel-fidelity metrics against the reference image.

Conventions: images are the stored 8-bit PNGs divided by 255, so the data
range is 1.0; RGB channels are pooled (grayscale sources are replicated to
RGB before anything else). Arithmetic is float64.

- PSNR: 10·log10(1 / MSE) per image over all pixels and channels
  (scikit-image's `peak_signal_noise_ratio(data_range=1)`).
- SSIM: Gaussian window σ=1.5 truncated at 3.5σ (11 taps), K1=0.01,
  K2=0.03, population covariances, averaged over the "valid" region (no
  padding) and the channels — exactly scikit-image's
  `structural_similarity(gaussian_weights=True, use_sample_covariance=False,
  channel_axis=-1)`. (torchmetrics' SSIM also averages a reflect-padded
  border, which differs by ~1e-3.)
- MS-SSIM: five scales with Wang et al. (2003) weights, 2×2 average pooling
  between scales, per-channel products averaged over channels, negative
  terms clipped to 0 — the definition of the reference `pytorch_msssim`.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from decoders.lazy import F, torch
from decoders.plugins import Params
from harness.metrics.base import Family, PerImageMetric

DATA_RANGE = 1.0
K1, K2 = 0.01, 0.03
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


class PSNR(PerImageMetric):
    name = "psnr"
    unit = "dB"
    family = Family.FULL_REFERENCE
    higher_is_better = True
    summary = "peak signal-to-noise ratio (dB), data range 1.0, per image"

    def score(self, preds: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        assert targets is not None
        mse = (preds.double() - targets.double()).pow(2).mean(dim=(1, 2, 3))
        return 10 * torch.log10(DATA_RANGE**2 / mse)


def _window(sigma: float) -> int:
    """Gaussian window width for σ (pure arithmetic: suites check it without torch)."""
    return 2 * int(3.5 * sigma + 0.5) + 1


def _gaussian_taps(sigma: float) -> torch.Tensor:
    radius = _window(sigma) // 2
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-(offsets**2) / (2 * sigma**2))
    return taps / taps.sum()


def _filter(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian, valid region only: [B, C, H, W] → [B, C, H-2r, W-2r]."""
    channels = x.shape[1]
    taps = taps.to(x.device)
    x = F.conv2d(x, taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(x, taps.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def ssim_terms(x: torch.Tensor, y: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean SSIM and contrast-structure terms, [B, C] each (float64)."""
    x, y = x.double(), y.double()
    taps = _gaussian_taps(sigma)
    channels = x.shape[1]
    moments = _filter(torch.cat([x, y, x * x, y * y, x * y], dim=1), taps)
    mu_x, mu_y, xx, yy, xy = moments.split(channels, dim=1)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs_map
    return ssim_map.mean(dim=(2, 3)), cs_map.mean(dim=(2, 3))


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
        x, y = preds.double(), targets.double()
        terms = []
        for level in range(len(MS_SSIM_WEIGHTS)):
            ssim, cs = ssim_terms(x, y, self.params.sigma)
            if level == len(MS_SSIM_WEIGHTS) - 1:
                terms.append(torch.relu(ssim))
                break
            terms.append(torch.relu(cs))
            padding = [size % 2 for size in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=padding)
            y = F.avg_pool2d(y, kernel_size=2, padding=padding)
        weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=torch.float64, device=x.device)
        per_channel = torch.prod(torch.stack(terms) ** weights.view(-1, 1, 1), dim=0)
        return per_channel.mean(dim=1)
