"""Invention: how much a stochastic decoder's output depends on the seed alone.

A group is the same case (item, sizes, noise level and input seed, so the same latent) decoded
with K ≥ 2 decoder seeds. Only outputs of byte-identical inputs are compared: the sha256 of the
tensor each decoder worker received must be equal across the group (prompt-only decoders receive
the same prompt), otherwise the group is not applicable — differing inputs would measure the input
noise, not invention.
Where the decoder reproduces what the latent determines, the K outputs agree;
where it invents detail, they disagree. Two scores per group:

- `invention_std`: the per-pixel standard deviation over the K outputs
  (sample std, K − 1), averaged over pixels and channels, in [0, 1] units.
  A heat map of the per-pixel std (channel mean; magma colour map, fixed
  scale 0 … `heatmap_max`, so maps are comparable across decoders) is stored
  with every group as an artifact.
- `invention_lpips`: the mean LPIPS (v0.1, AlexNet) over the K(K−1)/2 pairs.

A deterministic decoder scores 0. Groups with a single seed are not applicable.
"""

from __future__ import annotations

import itertools
from abc import abstractmethod
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from decoders.lazy import no_grad, torch
from decoders.plugins import Params
from harness.images import quantize
from harness.metrics.base import Family, ImageContext, Metric, MetricValues, Scope, require_weights
from harness.metrics.perceptual import load_lpips, lpips_distances


def single_seed_reason(contexts: list[ImageContext]) -> str:
    return (f"needs ≥ 2 decoder seeds of the same case; this case has seed {contexts[0].seed} only "
            "(list several seeds in the suite's `seeds`)")


def differing_inputs_reason(contexts: list[ImageContext]) -> str | None:
    """Why a group cannot measure invention (its inputs are not byte-identical), or None."""
    hashes = {c.input_sha256 for c in contexts}
    if len(hashes) == 1:
        return None
    listed = ", ".join(f"seed {c.seed}: {(c.input_sha256 or 'none')[:12]}" for c in contexts)
    return (f"the decoder received different inputs for the seeds of this case ({listed}); "
            "invention compares only outputs of byte-identical inputs")


class GroupMetric(Metric):
    """Scope.SEED_GROUP: each update holds one whole group; `score_group` gives its value."""

    family = Family.SEED_VARIATION
    higher_is_better = False
    scope = Scope.SEED_GROUP
    version = "2"  # 2: groups compare only byte-identical inputs (input seeds apart)

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self._values = MetricValues()

    def update(self, keys: list[str], preds: torch.Tensor, targets: torch.Tensor | None,
               contexts: list[ImageContext] | None = None) -> None:
        assert contexts is not None and len({c.seed_group for c in contexts}) == 1
        if len(keys) < 2:
            self._values.not_applicable[keys[0]] = single_seed_reason(contexts)
            return
        differing = differing_inputs_reason(contexts)
        if differing is not None:
            self._values.not_applicable[keys[0]] = differing
            return
        self._values.per_key[keys[0]] = self.score_group(keys[0], preds)
        self._values.details[keys[0]] = {
            "seeds": [c.seed for c in contexts],
            "input_sha256": contexts[0].input_sha256,  # identical for every seed (checked)
        }

    @abstractmethod
    def score_group(self, key: str, group: torch.Tensor) -> float:
        """The value of one group [K, 3, H, W]; may add an artifact under `key`."""

    def compute(self) -> MetricValues:
        return self._values

    def reset(self) -> None:
        self._values = MetricValues()


class InventionStdParams(Params):
    heatmap_max: float = Field(default=0.1, gt=0, le=1, description="std shown at the top of the colour map")


@lru_cache(maxsize=1)
def _magma() -> torch.Tensor:
    """matplotlib's 256-entry magma map as uint8 RGB [256, 3]."""
    from matplotlib import colormaps

    return quantize(torch.from_numpy(colormaps["magma"](np.arange(256))[:, :3].copy()))


def heatmap(std_map: torch.Tensor, vmax: float) -> torch.Tensor:
    """[H, W] floats → uint8 [3, H, W] magma colour map of std_map / vmax (matplotlib's binning)."""
    index = (std_map.cpu().double() / vmax * 256).floor().clamp(0, 255).long()
    return _magma()[index].permute(2, 0, 1).contiguous()


def seed_std(group: torch.Tensor) -> torch.Tensor:
    """Sample std over the first dimension, from differences to the first image: exactly 0 where
    all agree, and ~5× faster than torch's std over a leading dimension at 512². Float32 is
    exact for the differences of 8-bit images; the mean over pixels is taken in float64."""
    count = group.shape[0]
    diffs = group[1:].float() - group[0].float()
    variance = (diffs.pow(2).sum(dim=0) - diffs.sum(dim=0).pow(2) / count) / (count - 1)
    return variance.clamp(min=0).sqrt()


class InventionStd(GroupMetric):
    name = "invention_std"
    unit = "0–1 (pixel std)"
    summary = "mean per-pixel std over K seeds of the same latent (0 = deterministic); heat map per case"
    Params: ClassVar = InventionStdParams

    def score_group(self, key: str, group: torch.Tensor) -> float:
        std = seed_std(group)  # [3, H, W]
        self._values.artifacts[key] = heatmap(std.mean(dim=0), self.params.heatmap_max)
        return float(std.double().mean())

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "std": "sample std over seeds (K − 1), mean over pixels and channels",
                "inputs": "byte-identical (equal input_sha256) across the seeds of a group",
                "heatmap": "channel-mean std, magma, 0 … heatmap_max"}


class InventionLPIPS(GroupMetric):
    name = "invention_lpips"
    unit = "distance (≈0–1)"
    summary = "mean pairwise LPIPS (alex) between outputs of K seeds of the same latent"

    def load(self, device: torch.device) -> None:
        super().load(device)
        self.network = load_lpips("alex", require_weights(self), device)

    @no_grad
    def score_group(self, key: str, group: torch.Tensor) -> float:
        pairs = list(itertools.combinations(range(group.shape[0]), 2))
        first, second = group[[a for a, _ in pairs]], group[[b for _, b in pairs]]
        return float(lpips_distances(self.network, first, second).double().mean())

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "lpips": "v0.1 alex, inputs mapped to [-1, 1]", "pairs": "all K(K-1)/2",
                "inputs": "byte-identical (equal input_sha256) across the seeds of a group"}
