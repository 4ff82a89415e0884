"""VAE + super-resolution cascades: SD x4 upscaler (tiny, built locally), spandrel, classical."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from tiny_models import TINY_VAE, sd_x4_upscaler

from decoders.base import DecodeBatch
from decoders.cascade import Cascade, CascadeParams
from decoders.weights import file_sha256

CPU = torch.device("cpu")
VAE = {"space": "flux1", "weights": "random", "config": TINY_VAE}


def _cascade(upscaler: dict) -> Cascade:
    cascade = Cascade(CascadeParams(vae=VAE, upscaler=upscaler))
    cascade.load(CPU, torch.float32)
    return cascade


def _batch(n: int, seeds: list[int] | None = None, scale: int = 4) -> DecodeBatch:
    latents = torch.randn(n, 16, 4, 4, generator=torch.Generator().manual_seed(0))
    return DecodeBatch(latents=latents, input_size=(32, 32), output_size=(32 * scale, 32 * scale),
                       seeds=seeds or [0] * n, sigmas=[0.0] * n, prompts=["a red cat"] * n)


def test_resample_cascade_reports_stage_times() -> None:
    params = CascadeParams(vae=VAE, upscaler={"kind": "resample", "method": "bicubic", "scale": 4})
    spec = Cascade.spec_for(params)
    assert (spec.native_scale, spec.latent_spaces, spec.stochastic) == (4.0, ("flux1",), False)
    cascade = _cascade({"kind": "resample", "method": "bicubic", "scale": 4})
    out = cascade.decode(_batch(2))
    assert out.shape == (2, 3, 128, 128) and float(out.min()) >= 0 and float(out.max()) <= 1
    stages = cascade.stage_times_ms()
    assert set(stages) == {"vae_decode", "upscale"} and all(v > 0 for v in stages.values())
    assert cascade.facts()["quality_not_applicable"] == "random weights: performance-only"
    with pytest.raises(ValidationError, match="'sd-x4', 'spandrel', 'resample'"):
        CascadeParams(vae=VAE, upscaler={"kind": "magic"})


def test_spandrel_gan_upscaler_from_a_weights_file(tmp_path: Path) -> None:
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    weights = tmp_path / "tiny_esrgan_x4.pth"
    torch.save(ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4).state_dict(), weights)
    upscaler = {"kind": "spandrel", "weights": str(weights), "scale": 4}
    cascade = _cascade(upscaler)
    out = cascade.decode(_batch(1))
    assert out.shape == (1, 3, 128, 128)
    assert cascade.facts()["upscaler"]["architecture"] == "ESRGAN"
    assert cascade.weights()[str(weights)] == file_sha256(weights)
    with pytest.raises(ValueError, match=r"is a 4× ESRGAN model, but params.scale says 2"):
        _cascade({**upscaler, "scale": 2})


def test_sd_x4_upscaler_cascade_is_seeded_per_case(tmp_path: Path) -> None:
    folder = sd_x4_upscaler(tmp_path / "x4")
    upscaler = {"kind": "sd-x4", "weights": str(folder), "steps": 2, "noise_level": 20}
    assert Cascade.spec_for(CascadeParams(vae=VAE, upscaler=upscaler)).stochastic
    cascade = _cascade(upscaler)
    first = cascade.decode(_batch(2, seeds=[0, 1]))
    assert first.shape == (2, 3, 128, 128)
    again = cascade.decode(_batch(2, seeds=[0, 2]))
    assert torch.allclose(first[0], again[0], atol=1e-5)  # same seed, same case: same pixels
    assert not torch.allclose(first[1], again[1], atol=1e-3)  # another seed: another sample
    assert set(cascade.stage_times_ms()) == {"vae_decode", "upscale"}
    assert any(key.startswith(f"{folder}/unet/") for key in cascade.weights())
