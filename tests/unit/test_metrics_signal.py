"""Spectral fidelity, seam score and invention: values against direct numpy computations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage import data

from harness.metrics.base import ImageContext
from harness.metrics.invention import InventionLPIPS, InventionStd
from harness.metrics.lpips_network import LPIPSNetwork
from harness.metrics.seam import SeamScore
from harness.metrics.spectral import HFEnergyRatio, SpectralDistance, radial_profile


def _photo(size: int = 128) -> torch.Tensor:
    crop = data.astronaut()[:size, 100:100 + size].copy()
    return torch.from_numpy(crop).permute(2, 0, 1)[None].double() / 255


def numpy_profile(image: np.ndarray, bins: int) -> np.ndarray:
    """Radially averaged power spectrum written directly: BT.601 luma, Hann window, annuli."""
    gray = image @ np.array([0.299, 0.587, 0.114])
    gray = gray - gray.mean()
    window = np.outer(np.hanning(gray.shape[0]), np.hanning(gray.shape[1]))
    power = np.abs(np.fft.fft2(gray * window)) ** 2 / (window**2).sum()
    fy, fx = np.meshgrid(np.fft.fftfreq(gray.shape[0]), np.fft.fftfreq(gray.shape[1]), indexing="ij")
    radius = np.hypot(fy, fx)
    return np.array([power[(radius >= b * 0.5 / bins) & (radius < (b + 1) * 0.5 / bins)].mean()
                     for b in range(bins)])


def test_radial_profile_equals_a_direct_numpy_computation() -> None:
    image = _photo(96)
    centres, profile = radial_profile(image, 24)
    expected = numpy_profile(image[0].permute(1, 2, 0).numpy(), 24)
    np.testing.assert_allclose(profile[0].numpy(), expected, rtol=1e-9)
    assert centres[0] == pytest.approx(0.5 / 48) and centres[-1] == pytest.approx(0.5 - 0.5 / 48)


def test_spectral_values_react_to_blur_and_noise() -> None:
    image = _photo()
    blurred = torch.from_numpy(gaussian_filter(image.numpy(), sigma=(0, 0, 1.5, 1.5)))
    noisy = (image + 0.05 * torch.randn(image.shape, generator=torch.Generator().manual_seed(0),
                                         dtype=torch.float64)).clamp(0, 1)
    ratio, distance = HFEnergyRatio(), SpectralDistance()
    batch, targets = torch.cat([image, blurred, noisy]), torch.cat([image] * 3)
    ratio.update(["same", "blur", "noise"], batch, targets)
    distance.update(["same", "blur", "noise"], batch, targets)
    r, d = ratio.compute().per_key, distance.compute()
    assert r["same"] == pytest.approx(1.0) and r["blur"] < 0.05 and r["noise"] > 2
    assert d.per_key["same"] == pytest.approx(0.0, abs=1e-9) and d.per_key["blur"] > d.per_key["noise"] > 0
    curves = d.details["blur"]["power_db"]
    assert len(curves["output"]) == 32 and curves["output"][-1] < curves["reference"][-1] - 10
    assert HFEnergyRatio.target == 1.0


def _tile_context(native: int, tile: int, output: int, overlap: int = 0) -> ImageContext:
    grid = {"tile_px": tile, "overlap_px": overlap, "native_size": [native, native],
            "x_seams": list(range(tile, native, tile)), "y_seams": list(range(tile, native, tile))}
    return ImageContext(case_id="t", item_id="i", prompt=None, seed=0, seed_group="g", reference_key="r",
                        output_size=(output, output), native_size=(native, native), facts={"tile_grid": grid})


def test_seam_score_sees_tile_boundaries_scaled_to_the_comparison_size() -> None:
    rng = np.random.default_rng(0)
    texture = gaussian_filter(rng.random((3, 128, 128)), sigma=(0, 2, 2))
    texture = torch.from_numpy((texture - texture.min()) / (texture.max() - texture.min()) * 0.6 + 0.2)
    checker = torch.from_numpy(np.kron((np.indices((4, 4)).sum(axis=0) % 2), np.ones((32, 32))) * 0.08)
    noise = torch.from_numpy(rng.normal(0, 0.01, (3, 128, 128)))  # the decoder's own, seam-free error
    seamed, clean = (texture + noise + checker)[None], (texture + noise)[None]
    metric = SeamScore()
    # The decoder tiled its 64² native output in 16 px tiles; the comparison size is 128².
    context = _tile_context(64, 16, 128)
    metric.update(["seamed"], seamed, texture[None], [context])
    metric.update(["clean"], clean, texture[None], [context])
    metric.update(["untiled"], clean, texture[None], [ImageContext(
        case_id="u", item_id="i", prompt=None, seed=0, seed_group="g", reference_key="r",
        output_size=(128, 128), native_size=(128, 128))])
    values = metric.compute()
    # A 0.08 step is 20.4 levels; the clean error's steps average out along each stretch.
    assert values.per_key["seamed"] == pytest.approx(0.08 * 255, rel=0.05)
    assert values.per_key["clean"] < 1.0
    assert values.details["seamed"]["seams"] == {"x": 3, "y": 3}
    assert values.details["seamed"]["control_levels"] < 1.0  # lines inside tiles: the floor
    assert "no tile grid" in values.not_applicable["untiled"]
    # Misplaced seams (scaled wrongly) would not see the steps:
    wrong = SeamScore()
    wrong.update(["x"], seamed, texture[None], [_tile_context(128, 20, 128)])  # seams at 20, 40, …
    assert wrong.compute().per_key["x"] < values.per_key["seamed"] / 2


def _named_photo(name: str, size: int) -> torch.Tensor:
    import skimage.data
    from PIL import Image

    array = getattr(skimage.data, name)()
    array = np.stack([array] * 3, axis=-1) if array.ndim == 2 else array
    resized = np.asarray(Image.fromarray(array).resize((size, size), Image.Resampling.LANCZOS))
    return torch.from_numpy(resized.copy()).permute(2, 0, 1).double() / 255


@pytest.mark.parametrize("overlap", [16, 64, 256])
@pytest.mark.parametrize("photo", ["astronaut", "coffee", "camera"])
def test_cross_faded_seams_score_far_above_invisible_ones(overlap: int, photo: str) -> None:
    """Tiles that disagree by 0.2 in brightness, cross-faded over 16/64/256 px (the old ±1 px
    gradient band scored these 5.63 / 1.105 / 0.919): the step is the same at every overlap."""
    from decoders.tiling import decode_tiled, make_grid

    tile = max(192, 3 * overlap)
    size = 2 * tile - overlap  # two tiles per axis, overlapping by exactly `overlap`
    reference = _named_photo(photo, size)
    decoded = reference + torch.from_numpy(np.random.default_rng(1).normal(0, 0.02, reference.shape))
    grid = make_grid((size, size), tile=tile, overlap=overlap, factor=1)
    fact = grid.as_fact()
    assert fact["x_overlaps"] == fact["y_overlaps"] == [overlap]
    calls = iter(range(4))  # tiles come row by row: a checkerboard of brightness offsets
    offset = lambda t: t + 0.2 * (sum(divmod(next(calls), 2)) % 2)  # noqa: E731
    mismatched = decode_tiled(offset, decoded[None].float(), grid)
    seamless = decode_tiled(lambda t: t, decoded[None].float(), grid)
    context = ImageContext(case_id="t", item_id="i", prompt=None, seed=0, seed_group="g", reference_key="r",
                           output_size=(size, size), native_size=(size, size), facts={"tile_grid": fact})
    metric = SeamScore()
    metric.update(["seamed", "seamless"], torch.cat([mismatched, seamless]).double(),
                  torch.stack([reference, reference]), [context, context])
    values = metric.compute()
    # Every neighbour pair differs by 51 levels; where two bands cross, the 2-D blend softens it.
    assert 0.8 * 51 < values.per_key["seamed"] <= 1.02 * 51
    assert values.per_key["seamless"] < 1.5
    assert values.per_key["seamed"] > 30 * values.per_key["seamless"]


def _group_contexts(seeds: list[int]) -> list[ImageContext]:
    return [ImageContext(case_id=f"c{s}", item_id="i", prompt=None, seed=s, seed_group="g", reference_key="r",
                         output_size=(32, 32), native_size=(32, 32)) for s in seeds]


def test_invention_std_is_the_mean_per_pixel_std_with_a_heat_map() -> None:
    rng = np.random.default_rng(1)
    group = torch.from_numpy(rng.random((3, 3, 32, 48)))
    metric = InventionStd()
    metric.update(["c0", "c1", "c2"], group, None, _group_contexts([0, 1, 2]))
    metric.update(["d0"], group[:1], None, _group_contexts([0]))
    identical = group[:1].repeat(3, 1, 1, 1)
    metric.update(["e0", "e1", "e2"], identical, None, _group_contexts([0, 1, 2]))
    values = metric.compute()
    assert values.per_key["c0"] == pytest.approx(group.numpy().std(axis=0, ddof=1).mean())
    assert values.per_key["e0"] == 0.0
    assert "needs ≥ 2 decoder seeds" in values.not_applicable["d0"]
    heat = values.artifacts["c0"]
    assert heat.dtype == torch.uint8 and heat.shape == (3, 32, 48)
    flat = values.artifacts["e0"]
    assert torch.equal(flat, flat[:, :1, :1].expand(3, 32, 48))  # no variation: one colour
    assert values.details["c0"] == {"seeds": [0, 1, 2], "input_sha256": None}


@pytest.mark.e2e
def test_invention_lpips_is_the_mean_over_all_pairs() -> None:
    torch.manual_seed(0)
    network = LPIPSNetwork("alex")
    metric = InventionLPIPS()
    metric.network = network
    group = torch.rand(4, 3, 64, 64)
    metric.update([f"c{i}" for i in range(4)], group, None, _group_contexts([0, 1, 2, 3]))
    with torch.no_grad():
        pairs = [network(group[a:a + 1] * 2 - 1, group[b:b + 1] * 2 - 1).item()
                 for a, b in itertools.combinations(range(4), 2)]
    assert metric.compute().per_key["c0"] == pytest.approx(float(np.mean(pairs)), rel=1e-5)


def test_invention_lpips_bounds_its_forward_passes_like_lpips(monkeypatch: pytest.MonkeyPatch) -> None:
    """The K(K−1)/2 pairs go through the network in passes of at most MAX_PIXELS (a 4096² group
    of 4 seeds would otherwise be 6 full-size pairs at once), with the same mean."""
    from harness.metrics import perceptual

    torch.manual_seed(0)
    network = LPIPSNetwork("alex")
    group = torch.rand(4, 3, 64, 64)

    def mean_and_passes() -> tuple[float, list[int]]:
        metric, passes = InventionLPIPS(), []
        metric.network = network
        hook = network.register_forward_pre_hook(lambda _, args: passes.append(args[0].shape[0]))
        try:
            metric.update([f"c{i}" for i in range(4)], group, None, _group_contexts([0, 1, 2, 3]))
            return metric.compute().per_key["c0"], passes
        finally:
            hook.remove()

    whole, passes = mean_and_passes()
    assert passes == [6]
    monkeypatch.setitem(perceptual.MAX_PIXELS, "alex", 2 * 64 * 64)
    chunked, passes = mean_and_passes()
    assert passes == [2, 2, 2] and chunked == pytest.approx(whole, rel=1e-6)
