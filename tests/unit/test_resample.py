"""Resampling kernels against PIL on float ("F" mode) images, where PIL computes in float."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from decoders.resample import resize

PIL_FILTERS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
}


def _pil_resize(channel: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    return np.asarray(Image.fromarray(channel.astype(np.float32), mode="F").resize(
        size, PIL_FILTERS[method]))


@pytest.mark.parametrize("method", sorted(PIL_FILTERS))
@pytest.mark.parametrize(("src", "dst"), [((37, 29), (148, 116)), ((200, 150), (61, 47)),
                                          ((64, 64), (256, 96))])
def test_matches_pil(method: str, src: tuple[int, int], dst: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    image = rng.random((3, src[1], src[0]))
    ours = resize(torch.from_numpy(image)[None], dst, method)[0].numpy()  # type: ignore[arg-type]
    theirs = np.stack([_pil_resize(c, dst, method) for c in image])
    assert ours.shape == theirs.shape == (3, dst[1], dst[0])
    assert np.abs(ours - theirs).max() < 2e-5


def test_nearest_samples_pixel_centres() -> None:
    image = torch.rand(1, 3, 29, 37)
    out = resize(image, (61, 47), "nearest")
    rows = ((torch.arange(47) + 0.5) * 29 / 47).floor().long()
    cols = ((torch.arange(61) + 0.5) * 37 / 61).floor().long()
    assert torch.equal(out[0], image[0][:, rows][:, :, cols])


def test_area_is_a_box_average_for_integer_factors() -> None:
    image = torch.arange(16.0).view(1, 1, 4, 4)
    out = resize(image, (2, 2), "area")
    assert out.flatten().tolist() == [2.5, 4.5, 10.5, 12.5]


def test_identity_and_unknown_method() -> None:
    image = torch.rand(1, 3, 8, 8)
    assert resize(image, (8, 8), "lanczos") is image
    with pytest.raises(ValueError, match="unknown resampling method 'magic'"):
        resize(image, (4, 4), "magic")  # type: ignore[arg-type]


def test_lanczos_preserves_constants_and_runs_in_bfloat16() -> None:
    flat = torch.full((1, 3, 10, 13), 0.25)
    out = resize(flat, (40, 52), "lanczos")
    assert torch.allclose(out, flat.new_full(out.shape, 0.25), atol=1e-6)
    assert resize(flat.bfloat16(), (40, 52), "lanczos").dtype == torch.bfloat16
