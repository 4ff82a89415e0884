"""Spectral fidelity: how an output's frequency content compares with the reference's.

Both images are converted to luma (BT.601: 0.299 R + 0.587 G + 0.114 B), the
mean is removed, a separable Hann window is applied (no wrap-around edge
leakage), and the power |FFT|² is averaged over annuli of radial frequency
in `bins` equal-width bins from 0 to 0.5 cycles/pixel (the corners beyond
Nyquist along the diagonal are left out; the DC bin is excluded from every
value). Float64 throughout.

- `spectral_distance`: mean over bins of |10·log10 P_out − 10·log10 P_ref|,
  in dB (0 = same spectrum). The record's details hold both curves.
- `hf_energy_ratio`: power above `cutoff` cycles/pixel in the output divided
  by that of the reference. 1 = the reference's fine detail; below 1 detail
  was lost (blur); above 1 detail was added (noise, ringing, invented texture).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar

from pydantic import Field

from decoders.lazy import torch
from decoders.plugins import Params
from harness.metrics.base import Family, ImageContext, MetricValues, PerImageMetric, pixel_chunks

LUMA = (0.299, 0.587, 0.114)
FLOOR = 1e-20  # power floor before the log (a flat image has no energy)
# Pixels transformed at once: the FFT needs the whole image (no tiling by definition), so large
# images go one at a time — a 4096² image takes ~1 GB of float64/complex128 working memory.
MAX_PIXELS = 4 << 20


class SpectrumParams(Params):
    bins: int = Field(default=32, ge=4, le=512, description="radial frequency bins over [0, 0.5] cycles/px")


class HFRatioParams(Params):
    cutoff: float = Field(default=0.25, gt=0, lt=0.5,
                          description="high-frequency band starts here (cycles/px)")


def luma(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] → float64 [B, H, W]: 0.299 R + 0.587 G + 0.114 B, channel by channel."""
    red, green, blue = images.unbind(1)
    gray = red.double() * LUMA[0]
    gray += green.double() * LUMA[1]
    gray += blue.double() * LUMA[2]
    return gray


@lru_cache(maxsize=8)
def _window_and_radius(height: int, width: int,
                       device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Separable symmetric Hann window, its energy, and the radial frequency (cycles/px) of an
    H×W FFT grid."""
    window = (torch.hann_window(height, periodic=False, dtype=torch.float64, device=device)[:, None]
              * torch.hann_window(width, periodic=False, dtype=torch.float64, device=device)[None, :])
    fy = torch.fft.fftfreq(height, dtype=torch.float64, device=device)[:, None]
    fx = torch.fft.fftfreq(width, dtype=torch.float64, device=device)[None, :]
    return window, window.pow(2).sum(), torch.hypot(fy, fx)


def power_spectrum(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] → power [B, H, W] (the radial frequency of each bin: _window_and_radius)."""
    gray = luma(images)
    gray = gray - gray.mean(dim=(1, 2), keepdim=True)
    window, energy, _ = _window_and_radius(*gray.shape[-2:], gray.device)
    spectrum = torch.view_as_real(torch.fft.fft2(gray.mul_(window)))
    power = spectrum[..., 0].square().add_(spectrum[..., 1].square()).div_(energy)  # re² + im²
    return power


@lru_cache(maxsize=8)
def _bin_index(height: int, width: int, bins: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Each frequency's radial bin (edges[i] ≤ r < edges[i+1]; beyond Nyquist: the extra bin `bins`),
    and the count of frequencies per bin."""
    radius = _window_and_radius(height, width, device)[2].flatten()
    edges = torch.arange(bins + 1, dtype=torch.float64, device=device) * 0.5 / bins
    index = (torch.bucketize(radius, edges, right=True) - 1).long().clamp(max=bins)
    counts = torch.bincount(index, minlength=bins + 1)[:bins].clamp(min=1).double()
    return index, counts


@lru_cache(maxsize=8)
def _band_index(height: int, width: int, cutoff: float, device: torch.device) -> torch.Tensor:
    radius = _window_and_radius(height, width, device)[2].flatten()
    return torch.nonzero((radius >= cutoff) & (radius <= 0.5)).flatten()


def radial_profile(images: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Radially averaged power spectrum: (bin centres [bins], power [B, bins])."""
    profiles = [_radial_profile(images[part], bins) for part in pixel_chunks(images, MAX_PIXELS)]
    return profiles[0][0], torch.cat([power for _, power in profiles])


def _radial_profile(images: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    power = power_spectrum(images)
    index, counts = _bin_index(*power.shape[-2:], bins, power.device)
    sums = torch.zeros(power.shape[0], bins + 1, dtype=torch.float64, device=power.device)
    sums.index_add_(1, index, power.flatten(1))  # in pixel order within each bin, as a masked sum
    centres = (torch.arange(bins, dtype=torch.float64) + 0.5) * 0.5 / bins
    return centres, sums[:, :bins] / counts


def profiles_db(preds: torch.Tensor, targets: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Radial power profiles of outputs and references in dB, [B, bins] each."""
    ours, theirs = radial_profile(preds, bins)[1], radial_profile(targets, bins)[1]
    return 10 * ours.clamp(min=FLOOR).log10(), 10 * theirs.clamp(min=FLOOR).log10()


class SpectralDistance(PerImageMetric):
    name = "spectral_distance"
    unit = "dB"
    family = Family.FULL_REFERENCE
    summary_group = None  # a diagnostic (blur or ringing), not a quality ranking
    higher_is_better = False
    summary = "mean |dB difference| of radially averaged power spectra vs the reference (luma, Hann)"
    Params: ClassVar = SpectrumParams

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self._details: dict[str, dict[str, Any]] = {}

    def score(self, preds: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        assert targets is not None
        ours, theirs = profiles_db(preds, targets, self.params.bins)
        return (ours - theirs)[:, 1:].abs().mean(dim=1)

    def update(self, keys: list[str], preds: torch.Tensor, targets: torch.Tensor | None,
               contexts: list[ImageContext] | None = None) -> None:
        """Score, and keep both curves of every image for the report."""
        if targets is None:
            raise ValueError(f"{self.name} is full-reference and needs targets")
        ours, theirs = profiles_db(preds, targets, self.params.bins)
        distances = (ours - theirs)[:, 1:].abs().mean(dim=1)
        for key, value, out_db, ref_db in zip(keys, distances.tolist(), ours.tolist(), theirs.tolist(),
                                              strict=True):
            self._values[key] = value
            self._details[key] = {"power_db": {"output": [round(v, 3) for v in out_db],
                                               "reference": [round(v, 3) for v in ref_db]}}

    def compute(self) -> MetricValues:
        return MetricValues(per_key=dict(self._values), details=dict(self._details))

    def reset(self) -> None:
        super().reset()
        self._details.clear()

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "luma": "BT.601", "window": "hann (separable, symmetric)",
                "bins": "equal width over [0, 0.5] cycles/px, DC bin excluded"}


def high_frequency_energy(images: torch.Tensor, cutoff: float) -> torch.Tensor:
    energies = []
    for part in pixel_chunks(images, MAX_PIXELS):
        power = power_spectrum(images[part])
        band = _band_index(*power.shape[-2:], cutoff, power.device)
        energies.append(power.flatten(1)[:, band].sum(dim=1))
    return torch.cat(energies)


class HFEnergyRatio(PerImageMetric):
    name = "hf_energy_ratio"
    unit = "ratio"
    family = Family.FULL_REFERENCE
    summary_group = None  # a diagnostic (blur or ringing), not a quality ranking
    higher_is_better = True
    target = 1.0
    summary = "high-frequency power (≥ cutoff cycles/px) of the output ÷ the reference's; 1 = same"
    Params: ClassVar = HFRatioParams

    def score(self, preds: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        assert targets is not None
        reference = high_frequency_energy(targets, self.params.cutoff).clamp(min=FLOOR)
        return high_frequency_energy(preds, self.params.cutoff) / reference

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "luma": "BT.601", "window": "hann (separable, symmetric)",
                "band": "cutoff ≤ radial frequency ≤ 0.5 cycles/px"}
