"""Distribution metrics: FID, KID and patch-FID of a decoder's outputs against the references.

One value per set, from features of a `FeatureNetwork` (inception.py); reference features are
cached on disk per (reference set, feature protocol); too few samples give warnings
(docs/metrics.md, protocols and policies).
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from decoders.lazy import torch
from decoders.plugins import Params
from harness.images import quantize
from harness.metrics.base import (
    Family,
    ImageContext,
    Metric,
    MetricUnavailable,
    MetricValues,
    ReferenceSet,
    Scope,
    require_weights,
)
from harness.metrics.inception import (
    INCEPTION,
    RESIZE_VERSION,
    TORCHSCRIPT_PREFIX,
    FeatureNetwork,
    ResizeMode,
    load_network,
)
from harness.metrics.patches import PatchParams, extract, patch_protocol, protocol_sha256
from harness.sources.cache import TensorCache, cache_key


class FeatureParams(Params):
    resize_mode: ResizeMode = Field(default="clean", description="clean | legacy_tensorflow | legacy_pytorch")
    feature_network: str = Field(
        default=INCEPTION, description=f"'{INCEPTION}' or 'torchscript:/path/to/network.pt'")
    feature_batch_size: int = Field(default=32, ge=1)
    reference_folder: str | None = Field(
        default=None, description="real images to compare with instead of the run's references (text-to-"
        "image runs have none); each is centre-cropped and resized to the set's size as references are")


class KIDParams(FeatureParams):
    subsets: int = Field(default=100, ge=1)
    subset_size: int = Field(default=1000, ge=2)
    seed: int = 0


class PatchFIDParams(FeatureParams, PatchParams):
    pass


# --------------------------------------------------------------------------- the statistics


def mean_and_covariance(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    root = _psd_sqrt(sigma1)
    inner = root @ sigma2 @ root
    eigenvalues = np.linalg.eigvalsh((inner + inner.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def kernel_inception_distance(generated: np.ndarray, reference: np.ndarray, subsets: int,
                              subset_size: int, seed: int) -> tuple[float, float, int]:
    """(mean, std over subsets, subset size used) of the unbiased polynomial-kernel MMD²."""
    dims = generated.shape[1]
    m = min(len(generated), len(reference), subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(generated)} and {len(reference)}")
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(subsets):
        x = generated[rng.choice(len(generated), m, replace=False)]
        y = reference[rng.choice(len(reference), m, replace=False)]
        within = (x @ x.T / dims + 1) ** 3 + (y @ y.T / dims + 1) ** 3
        across = (x @ y.T / dims + 1) ** 3
        estimates.append(((within.sum() - np.diag(within).sum()) / (m - 1) - across.sum() * 2 / m) / m)
    return float(np.mean(estimates)), float(np.std(estimates)), m


# --------------------------------------------------------------------------- the metrics


class DistributionMetric(Metric):
    """Features of the generated set (fed by update) against those of the reference set."""

    family = Family.DISTRIBUTION
    version = "2"  # 2: the `clean` resize clips to [0, 255] as clean-fid does
    scope = Scope.SET
    higher_is_better = False
    Params: ClassVar = FeatureParams

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self._generated: list[torch.Tensor] = []
        self._reference: ReferenceSet | None = None
        self._reference_memo: dict[str, np.ndarray] = {}
        self.network: FeatureNetwork | None = None

    def check(self) -> None:
        spec = self.params.feature_network
        if spec == INCEPTION:
            super().check()
        elif spec.startswith(TORCHSCRIPT_PREFIX):
            path = Path(spec.removeprefix(TORCHSCRIPT_PREFIX)).expanduser()
            if not path.is_file():
                raise MetricUnavailable(f"feature network file not found: {path}")
        else:
            raise MetricUnavailable(f"unknown feature network {spec!r}")

    def load(self, device: torch.device) -> None:
        super().load(device)
        spec = self.params.feature_network
        if spec == INCEPTION:
            path = next(iter(require_weights(self).values()))
        elif spec.startswith(TORCHSCRIPT_PREFIX):
            from harness.metrics.weights import file_sha256

            path = Path(spec.removeprefix(TORCHSCRIPT_PREFIX)).expanduser()
            if not path.is_file():
                raise MetricUnavailable(f"feature network file not found: {path}")
            self.weights_sha256 = {str(path): file_sha256(path)}
        else:
            raise MetricUnavailable(f"unknown feature network {spec!r}; use '{INCEPTION}' or "
                                    f"'{TORCHSCRIPT_PREFIX}/path/to/network.pt'")
        self.network = load_network(path, spec, self.params.resize_mode, device)
        if self.params.reference_folder:
            from harness.metrics.reference_folder import reference_images

            reference_images(self.params.reference_folder)  # MetricUnavailable when it holds none

    def feature_protocol(self) -> dict[str, Any]:
        """What determines a feature vector: network and its weights, resize mode, patches."""
        return {"network": self.params.feature_network, "network_sha256": self.weights_sha256,
                "resize_mode": self.params.resize_mode, "features": "float32, as the network returns them",
                "resize_version": RESIZE_VERSION}

    def protocol(self) -> dict[str, Any]:
        reference = ("every image of params.reference_folder, as a reference of the set's comparison size"
                     if self.params.reference_folder else
                     "every reference image of the run at the set's comparison size")
        return {**super().protocol(), "features": self.feature_protocol(), "reference": reference}

    def features(self, images: torch.Tensor, keys: list[str]) -> torch.Tensor:
        """uint8 [B, 3, H, W] → float32 [N, D] (N = B for whole-image metrics)."""
        assert self.network is not None, "load() first"
        chunks = [self.network(images[i:i + self.params.feature_batch_size].to(self.device))
                  for i in range(0, len(images), self.params.feature_batch_size)]
        return torch.cat(chunks).float().cpu()

    def set_reference(self, reference: ReferenceSet) -> None:
        if self.params.reference_folder:
            from harness.metrics.reference_folder import folder_reference

            reference = folder_reference(self.params.reference_folder, reference.size, reference.cache_dir)
        self._reference = reference

    def update(self, keys: list[str], preds: torch.Tensor, targets: torch.Tensor | None,
               contexts: list[ImageContext] | None = None) -> None:
        # Patches of a generated image are cut like those of its reference: keyed by the reference.
        # (An image without a reference, from a text-to-image source, is keyed by its case.)
        feature_keys = [c.reference_key or c.case_id for c in contexts] if contexts else keys
        self._generated.append(self.features(quantize(preds), feature_keys))

    def reference_features(self) -> np.ndarray:
        """The reference set's features: from memory, from the disk cache, or computed (and cached)."""
        reference = self._reference
        if reference is None:
            raise RuntimeError(f"{self.name}: no reference set was given")
        key = cache_key("reference-features", {"dataset_sha256": reference.dataset_sha256,
                                               "features": self.feature_protocol()})
        if key in self._reference_memo:
            return self._reference_memo[key]
        cache = TensorCache(reference.cache_dir) if reference.cache_dir else None
        cached = cache.get(key) if cache else None
        if cached is not None:
            features = cached["features"]
        else:
            features = torch.cat([self.features(batch, keys)
                                  for keys, batch in reference.batches(self.params.feature_batch_size)])
            if cache is not None:
                mu, sigma = mean_and_covariance(features.double().numpy())
                cache.put(key, {"features": features, "mu": torch.from_numpy(mu),
                                "sigma": torch.from_numpy(sigma)},
                          {"dataset_sha256": reference.dataset_sha256, "images": reference.count,
                           "features": self.feature_protocol()})
        self._reference_memo[key] = features.double().numpy()
        return self._reference_memo[key]

    def compute(self) -> MetricValues:
        generated = torch.cat(self._generated).double().numpy()
        return self.compare(generated, self.reference_features())

    @abstractmethod
    def compare(self, generated: np.ndarray, reference: np.ndarray) -> MetricValues:
        """The set's value from generated and reference features [N, D] (float64)."""

    def reset(self) -> None:
        self._generated = []
        self._reference = None


def fid_values(generated: np.ndarray, reference: np.ndarray) -> MetricValues:
    if min(len(generated), len(reference)) < 2:
        raise ValueError(f"FID needs at least 2 samples per set, got {len(generated)} and {len(reference)}")
    dims = generated.shape[1]
    warnings = [f"FID from {n} {what} samples < feature dimension {dims} + 1: the covariance is "
                f"rank-deficient, the value is biased upwards and comparable only at equal sample counts"
                for what, n in (("generated", len(generated)), ("reference", len(reference))) if n <= dims]
    value = frechet_distance(*mean_and_covariance(generated), *mean_and_covariance(reference))
    return MetricValues(aggregate=value, warnings=warnings, aggregate_details={
        "generated_samples": len(generated), "reference_samples": len(reference), "feature_dims": dims})


class FID(DistributionMetric):
    name = "fid"
    unit = "Fréchet distance"
    summary = "Fréchet Inception distance vs the references (clean-fid features and resize modes)"

    def compare(self, generated: np.ndarray, reference: np.ndarray) -> MetricValues:
        return fid_values(generated, reference)


class KID(DistributionMetric):
    name = "kid"
    unit = "MMD²"
    summary = "kernel Inception distance (unbiased MMD², cubic kernel) vs the references"
    Params: ClassVar = KIDParams

    def compare(self, generated: np.ndarray, reference: np.ndarray) -> MetricValues:
        params = self.params
        mean, std, used = kernel_inception_distance(generated, reference, params.subsets,
                                                    params.subset_size, params.seed)
        warnings = []
        if used < params.subset_size:
            warnings.append(f"KID subset size {params.subset_size} > samples available "
                            f"({len(generated)} generated, {len(reference)} reference): "
                            f"subsets of {used} were used; compare only at equal subset sizes")
        return MetricValues(aggregate=mean, warnings=warnings, aggregate_details={
            "std_over_subsets": std, "subset_size": used, "subsets": params.subsets,
            "generated_samples": len(generated), "reference_samples": len(reference)})


class PatchFID(DistributionMetric):
    name = "patch_fid"
    unit = "Fréchet distance"
    summary = "FID over patches cut by a named protocol (random_crops | grid_halfshift | native_crops)"
    Params: ClassVar = PatchFIDParams

    def feature_protocol(self) -> dict[str, Any]:
        patches = patch_protocol(self.params)
        return {**super().feature_protocol(), "patches": patches,
                "patches_sha256": protocol_sha256(patches)}

    def features(self, images: torch.Tensor, keys: list[str]) -> torch.Tensor:
        protocol = patch_protocol(self.params)
        patches = torch.cat([extract(image, key, protocol) for image, key in zip(images, keys, strict=True)])
        return super().features(patches, keys)

    def compare(self, generated: np.ndarray, reference: np.ndarray) -> MetricValues:
        values = fid_values(generated, reference)
        values.aggregate_details["patches_sha256"] = protocol_sha256(patch_protocol(self.params))
        return values
