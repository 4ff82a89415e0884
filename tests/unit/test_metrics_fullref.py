"""PSNR/SSIM against scikit-image, MS-SSIM against pytorch_msssim, on real photographs.

Data range convention: images are 8-bit values divided by 255 (range 1.0);
scikit-image is called with data_range=1 on the same float64 arrays.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from metric_references import assert_agrees, pair_inputs
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
    inputs = pair_inputs(degraded, reference)  # the table's cases (tests/support/metric_references.py)
    assert_agrees("psnr", inputs)
    assert_agrees("ssim", inputs)


def test_ms_ssim_equals_pytorch_msssim() -> None:
    pytest.importorskip("pytorch_msssim")
    reference, degraded = _pairs()[1]
    [ours] = assert_agrees("ms_ssim", pair_inputs(degraded, reference))  # pytorch_msssim is float32
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


def test_tiles_and_strips_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Odd sizes cut into many small tiles and strips (SSIM, PSNR, the MS-SSIM pyramid) give
    scikit-image's and pytorch_msssim's values, and the whole-image ones to rounding."""
    pytorch_msssim = pytest.importorskip("pytorch_msssim")
    from harness.metrics import fullref

    rng = np.random.default_rng(1)
    reference = rng.integers(0, 256, (2, 3, 203, 229)).astype(np.float64) / 255
    degraded = np.clip(np.round((reference + rng.normal(0, 0.05, reference.shape)) * 255), 0, 255) / 255
    x, y = torch.from_numpy(degraded), torch.from_numpy(reference)
    whole = [metric().score(x, y) for metric in (PSNR, SSIM, MSSSIM)]
    for name, value in (("TILE_ROWS", 17), ("TILE_COLUMNS", 40), ("TILE_BYTES", 1)):
        monkeypatch.setitem(getattr(fullref, name), "cpu", value)
    monkeypatch.setitem(fullref.STRIP_BYTES, "cpu", 1)
    tiled = [metric().score(x, y) for metric in (PSNR, SSIM, MSSSIM)]
    for a, b in zip(whole, tiled, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)
    for i in range(2):
        ref, deg = reference[i].transpose(1, 2, 0), degraded[i].transpose(1, 2, 0)
        assert tiled[0][i].item() == pytest.approx(peak_signal_noise_ratio(ref, deg, data_range=1), abs=1e-10)
        assert tiled[1][i].item() == pytest.approx(structural_similarity(
            ref, deg, channel_axis=-1, data_range=1, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False), abs=1e-12)
    theirs = pytorch_msssim.ms_ssim(x, y, data_range=1.0, size_average=False)
    torch.testing.assert_close(tiled[2], theirs, rtol=0, atol=1e-5)


def test_halve_is_pytorch_msssims_pooling_exactly() -> None:
    from harness.metrics.fullref import halve

    for height, width in ((9, 7), (8, 8), (33, 64), (5, 2)):
        x = torch.rand(2, 3, height, width)
        expected = torch.nn.functional.avg_pool2d(x.double(), kernel_size=2, padding=[height % 2, width % 2])
        assert torch.equal(halve(x), expected)
