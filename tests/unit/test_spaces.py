"""The latent-space table: constants, folding (FLUX.2 packing), normalization, noise forms."""

from __future__ import annotations

import pytest
import torch

from decoders.spaces import SPACES, as_space, fold, get_space, unfold
from decoders.t2i import variance_preserving


def test_table_holds_the_published_conventions() -> None:
    expected = {  # name: (channels, factor, scaling, shift, noise, normalization)
        "flux1": (16, 8, 0.3611, 0.1159, "flow", "affine"),
        "sd3": (16, 8, 1.5305, 0.0609, "flow", "affine"),
        "sdxl": (4, 8, 0.13025, 0.0, "vp", "affine"),
        "sd": (4, 8, 0.18215, 0.0, "vp", "affine"),
        "flux2": (128, 16, 1.0, 0.0, "flow", "batchnorm"),
        "flux2-unpacked": (32, 8, 1.0, 0.0, "flow", "batchnorm"),
    }
    for name, (channels, factor, scaling, shift, noise, normalization) in expected.items():
        space = get_space(name)
        assert (space.channels, space.factor, space.scaling_factor, space.shift_factor, space.noise,
                space.normalization) == (channels, factor, scaling, shift, noise, normalization), name
    assert get_space("flux1").latent_shape((512, 768)) == (16, 96, 64)
    assert get_space("flux2").latent_shape((512, 512)) == (128, 32, 32)
    with pytest.raises(ValueError, match="not a multiple of the flux2 latent factor 16"):
        get_space("flux2").latent_shape((520, 512))
    with pytest.raises(KeyError, match="unknown latent space 'flux3'"):
        get_space("flux3")
    assert {SPACES["flux2"].sibling, SPACES["flux2-unpacked"].sibling} == {"flux2-unpacked", "flux2"}


def test_fold_matches_the_flux2_patchify_convention() -> None:
    """PiD (pid/_src/tokenizers/flux2_vae.py) and diffusers' Flux2Pipeline._patchify_latents:
    "c (i pi) (j pj) -> (c pi pj) i j" — channel index c·4 + 2·pi + pj."""
    x = torch.randn(2, 3, 6, 4)
    folded = fold(x, 2)
    assert folded.shape == (2, 12, 3, 2)
    for c in range(3):
        for pi in range(2):
            for pj in range(2):
                assert torch.equal(folded[:, c * 4 + pi * 2 + pj], x[:, c, pi::2, pj::2])
    assert torch.equal(unfold(folded, 2), x)
    packed = torch.randn(1, 128, 4, 4)
    assert as_space(packed, get_space("flux2-unpacked")).shape == (1, 32, 8, 8)
    assert torch.equal(as_space(as_space(packed, get_space("flux2-unpacked")), get_space("flux2")), packed)
    assert as_space(packed, get_space("flux2")) is packed
    with pytest.raises(ValueError, match="latents with 16 channels are not in the flux2 space"):
        as_space(torch.randn(1, 16, 4, 4), get_space("flux2"))


def test_affine_normalization_round_trip_and_batchnorm_refusal() -> None:
    raw = torch.randn(1, 16, 4, 4)
    flux = get_space("flux1")
    z = flux.from_raw(raw)
    assert torch.allclose(z, 0.3611 * (raw - 0.1159))
    assert torch.allclose(flux.to_raw(z), raw, atol=1e-6)
    with pytest.raises(ValueError, match="BatchNorm running statistics"):
        get_space("flux2").to_raw(torch.randn(1, 128, 2, 2))


def test_noise_forms_are_seeded_and_exact() -> None:
    x = torch.randn(4, 8, 8)
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    flow = get_space("flux1").add_noise(x, 0.3, torch.Generator().manual_seed(3))
    assert torch.allclose(flow, 0.7 * x + 0.3 * eps)
    vp = get_space("sdxl").add_noise(x, 0.6, torch.Generator().manual_seed(3))
    assert torch.allclose(vp, 0.8 * x + 0.6 * eps, atol=1e-6)
    assert get_space("flux1").add_noise(x, 0.0, torch.Generator()) is x
    with pytest.raises(ValueError, match="sigma must be in"):
        get_space("flux1").add_noise(x, 1.5, torch.Generator())


def test_sdxl_euler_frame_converts_to_the_variance_preserving_frame() -> None:
    """PiD's to_training_frame: x_vp = x_eu / √(σ²+1), σ_vp = σ / √(σ²+1) — same noise draw."""
    x0, eps, sigma_eu = torch.randn(4, 8, 8), torch.randn(4, 8, 8), 3.0
    x_vp, sigma_vp = variance_preserving(x0 + sigma_eu * eps, sigma_eu)
    assert sigma_vp == pytest.approx(3.0 / 10**0.5)
    assert torch.allclose(x_vp, (1 - sigma_vp**2) ** 0.5 * x0 + sigma_vp * eps, atol=1e-5)


def test_qwenimage_and_semantic_spaces() -> None:
    """Qwen-Image: per-channel mean/std (diffusers AutoencoderKLQwenImage defaults, = PiD's
    qwenimage_vae.py); dinov2 / siglip: encoder features at one fixed image size (PiD's
    dinov2_vae.py 512 → 32×32×768, scale_rae_vae.py 256 → 16×16×1152), normalized by the encoder."""
    import inspect

    from diffusers import AutoencoderKLQwenImage

    qwen = get_space("qwenimage")
    defaults = inspect.signature(AutoencoderKLQwenImage.__init__).parameters
    assert list(qwen.channel_mean) == defaults["latents_mean"].default
    assert list(qwen.channel_std) == defaults["latents_std"].default
    raw = torch.randn(2, 16, 4, 4)
    z = qwen.from_raw(raw)
    mean = torch.tensor(qwen.channel_mean).view(1, -1, 1, 1)
    std = torch.tensor(qwen.channel_std).view(1, -1, 1, 1)
    assert torch.allclose(z, (raw - mean) / std) and torch.allclose(qwen.to_raw(z), raw, atol=1e-5)
    assert get_space("dinov2").latent_shape((512, 512)) == (768, 32, 32)
    assert get_space("siglip").latent_shape((256, 256)) == (1152, 16, 16)
    with pytest.raises(ValueError, match=r"the dinov2 space has one image size, 512x512 .* not 1024x1024"):
        get_space("dinov2").latent_shape((1024, 1024))
    with pytest.raises(ValueError, match="holds encoder features normalized by the encoder itself"):
        get_space("siglip").to_raw(torch.randn(1, 1152, 16, 16))
    assert {get_space(n).noise for n in ("qwenimage", "dinov2", "siglip")} == {"flow"}  # PiD's add_noise
