"""PSNR/SSIM against scikit-image, MS-SSIM against pytorch_msssim, on real photographs.

Data range convention: images are 8-bit values divided by 255 (range 1.0);
scikit-image is called with data_range=1 on the same float64 arrays.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from harness.metrics import METRICS
from harness.metrics.base import Family
from harness.metrics.fullref import MSSSIM, PSNR, SSIM


def _pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    pairs = []
    for name in ("astronaut", "coffee", "camera"):
        image = data.__getattribute__(name)()
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        image = image[:200, :240].astype(np.float64) / 255
        for noise in (0.01, 0.08):
            degraded = np.round(np.clip(image + rng.normal(0, noise, image.shape), 0, 1) * 255) / 255
            pairs.append((image, degraded))
    return pairs


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).permute(2, 0, 1)[None]


@pytest.mark.parametrize("index", range(6))
def test_psnr_and_ssim_equal_scikit_image(index: int) -> None:
    reference, degraded = _pairs()[index]
    psnr = PSNR().score(_tensor(degraded), _tensor(reference)).item()
    ssim = SSIM().score(_tensor(degraded), _tensor(reference)).item()
    assert psnr == pytest.approx(peak_signal_noise_ratio(reference, degraded, data_range=1), abs=1e-4)
    expected = structural_similarity(reference, degraded, channel_axis=-1, data_range=1,
                                     gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim == pytest.approx(expected, abs=1e-4)


def test_ms_ssim_equals_pytorch_msssim() -> None:
    pytorch_msssim = pytest.importorskip("pytorch_msssim")
    reference, degraded = _pairs()[1]
    ours = MSSSIM().score(_tensor(degraded), _tensor(reference)).item()
    theirs = pytorch_msssim.ms_ssim(_tensor(degraded), _tensor(reference), data_range=1.0).item()
    assert ours == pytest.approx(theirs, abs=1e-4)
    assert 0.8 < ours < 1.0


def test_batched_update_gives_per_key_values() -> None:
    metric = PSNR()
    x, y = torch.rand(3, 3, 16, 16, dtype=torch.float64), torch.rand(3, 3, 16, 16, dtype=torch.float64)
    metric.update(["a", "b", "c"], x, y)
    values = metric.compute().per_key
    assert list(values) == ["a", "b", "c"]
    assert values["b"] == pytest.approx(PSNR().score(x[1:2], y[1:2]).item())
    metric.reset()
    assert metric.compute().per_key == {}


def test_identical_images_and_small_images() -> None:
    x = torch.rand(1, 3, 64, 64)
    assert SSIM().score(x, x).item() == pytest.approx(1.0)
    assert PSNR().score(x, x).item() == float("inf")
    with pytest.raises(ValueError, match="at least 161 px"):
        MSSSIM().score(x, x)
    with pytest.raises(ValueError, match="needs targets"):
        PSNR().update(["a"], x, None)


def test_registry_and_protocol_hash() -> None:
    assert {"psnr", "ssim", "ms_ssim"} <= set(METRICS.names())
    cls = METRICS.get("ssim")
    assert cls.family == Family.FULL_REFERENCE and cls.higher_is_better
    a, b = cls(), cls(cls.Params(sigma=2.0))
    assert a.protocol_sha256() == cls().protocol_sha256() != b.protocol_sha256()
