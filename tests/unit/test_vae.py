"""VAE decoders and encoders: the exact FLUX.1 architecture, tiling, normalization, weights.

Random weights everywhere (no hub here): the architecture, shapes, normalization and tiling
logic are what is tested; quality numbers of random weights are recorded as not applicable.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from tiny_models import TINY_VAE, tiny_vae_config

from decoders.base import DecodeBatch, DecoderUnavailable
from decoders.spaces import fold, unfold
from decoders.tiling import decode_tiled, make_grid, seam_difference, tile_starts
from decoders.vae import (
    LoadedVae,
    TiledVaeDecoder,
    TiledVaeParams,
    VaeDecoder,
    VaeEncoder,
    VaeParams,
    vae_weights,
)
from decoders.weights import file_sha256, require

CPU = torch.device("cpu")
# Tiled vs untiled, random weights, random latents: the gap is per-tile GroupNorm statistics
# (and mid-block attention), present everywhere, not only at seams. Stated tolerance:
AWAY_FROM_SEAMS_MEAN_ABS = 0.05


def _batch(latents: torch.Tensor, size: int) -> DecodeBatch:
    n = latents.shape[0]
    return DecodeBatch(latents=latents, input_size=(size, size), output_size=(size, size),
                       seeds=[0] * n, sigmas=[0.0] * n)


def _loaded(decoder_cls: type, **params: object) -> object:
    decoder = decoder_cls(decoder_cls.Params(**params))
    decoder.load(CPU, torch.float32)
    return decoder


@pytest.mark.e2e
def test_exact_flux1_architecture_untiled_and_tiled() -> None:
    """REFERENCE.md's FLUX.1 VAE: 84 M parameters, 16 latent channels, no quant convs."""
    tiled = _loaded(TiledVaeDecoder, space="flux1", weights="random", tile_px=48, overlap_px=16)
    config = tiled.vae.model.config
    assert tiled.facts()["parameters"] == 83_819_683
    assert (config.latent_channels, list(config.block_out_channels), config.layers_per_block) == (
        16, [128, 256, 512, 512], 2)
    assert (config.scaling_factor, config.shift_factor, config.norm_num_groups) == (0.3611, 0.1159, 32)
    assert not config.use_quant_conv and not config.use_post_quant_conv and config.mid_block_add_attention
    assert tiled.facts()["quality_not_applicable"] == "random weights: performance-only"
    vae = _loaded(VaeDecoder, space="flux1", weights="random")
    # The same init seed builds the very same random model: only the tiling differs.
    assert vae.facts()["state_dict_sha256"] == tiled.facts()["state_dict_sha256"]
    latents = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = vae.decode(_batch(latents, 64))
        out = tiled.decode(_batch(latents, 64))
    assert full.shape == (1, 3, 64, 64) and float(full.min()) >= 0 and float(full.max()) <= 1
    grid = tiled.facts()["tile_grid"]
    # Tiles spread evenly: the actual overlap (32 px) exceeds the declared minimum (16 px).
    assert grid == {"tile_px": 48, "overlap_px": 16, "x_seams": [32], "y_seams": [32],
                    "x_overlaps": [32], "y_overlaps": [32], "native_size": [64, 64]}
    report = seam_difference(out, full, grid, band_px=16)
    print("exact FLUX.1 architecture, random weights, tiled vs untiled:", report)
    assert out.shape == full.shape and report["near_seams_max_abs"] > 0


def test_tiling_is_exact_wherever_the_receptive_field_allows() -> None:
    """With a local decoder (3×3 conv, then ×8), tiles agree with the whole decode to float
    precision outside the overlaps, and the cross-fade weights sum to one."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 3, 3, padding=1)

    def decode(z: torch.Tensor) -> torch.Tensor:
        return F.interpolate(conv(z), scale_factor=8, mode="nearest")

    latents = torch.randn(2, 4, 28, 28)
    grid = make_grid((28, 28), tile=16, overlap=4, factor=8)
    assert grid.xs == grid.ys == (0, 12)
    fact = grid.as_fact()
    assert (fact["x_seams"], fact["native_size"]) == ([112], [224, 224])
    with torch.no_grad():
        report = seam_difference(decode_tiled(decode, latents, grid), decode(latents), fact, band_px=16)
    assert report["away_max_abs"] < 1e-5
    assert report["near_seams_max_abs"] > 1e-3  # each tile is wrong near its own border
    ones = decode_tiled(lambda z: torch.ones(z.shape[0], 3, z.shape[2] * 8, z.shape[3] * 8), latents, grid)
    assert torch.allclose(ones, torch.ones_like(ones))
    # As few tiles as keep the declared overlap, spread evenly from border to border.
    assert tile_starts(100, 64, 16) == (0, 36)
    assert tile_starts(200, 64, 16) == (0, 45, 91, 136)
    assert tile_starts(64, 64, 16) == (0,)


def _untiled_and_tiled(latent_side: int, tile_px: int, overlap_px: int,
                       seed: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """One random tiny FLUX.1 VAE decoding the same latents untiled and tiled: (untiled, tiled,
    the tiled decoder's tile grid)."""
    cfg = {"space": "flux1", "weights": "random", "config": TINY_VAE}
    vae = _loaded(VaeDecoder, **cfg)
    tiled = _loaded(TiledVaeDecoder, **cfg, tile_px=tile_px, overlap_px=overlap_px)
    latents = torch.randn(1, 16, latent_side, latent_side, generator=torch.Generator().manual_seed(seed))
    size = latent_side * 8
    with torch.no_grad():
        full, out = vae.decode(_batch(latents, size)), tiled.decode(_batch(latents, size))
    return full, out, tiled.facts()["tile_grid"]


def test_tiled_vae_agrees_with_untiled_away_from_seams() -> None:
    full, out, grid = _untiled_and_tiled(latent_side=32, tile_px=160, overlap_px=32, seed=1)
    assert grid["x_seams"] == grid["y_seams"] == [128]
    report = seam_difference(out, full, grid, band_px=32)
    print("tiny VAE, random weights, tiled vs untiled:", report)
    assert report["away_mean_abs"] < AWAY_FROM_SEAMS_MEAN_ABS
    assert report["near_seams_mean_abs"] > 0


def test_affine_normalization_matches_the_vae_latent() -> None:
    vae = LoadedVae(VaeParams(space="flux1", weights="random", config=TINY_VAE), CPU, torch.float32)
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        z = vae.encode(images)
        raw = vae.model.encode(images * 2 - 1).latent_dist.mode()
        assert torch.allclose(z, 0.3611 * (raw - 0.1159), atol=1e-6)
        direct = ((vae.model.decode(raw).sample + 1) / 2).clamp(0, 1)
        assert torch.allclose(vae.decode(z), direct, atol=1e-5)


def test_flux2_latents_are_folded_and_batchnorm_normalized() -> None:
    """FLUX.2 (diffusers AutoencoderKLFlux2): raw 32×/8 mean → fold 2×2 → (x − μ_bn)/√(σ²_bn + ε)."""
    params = VaeParams(space="flux2", weights="random", config=TINY_VAE)
    vae = LoadedVae(params, CPU, torch.float32)
    generator = torch.Generator().manual_seed(3)
    vae.model.bn.running_mean.copy_(torch.randn(128, generator=generator))
    vae.model.bn.running_var.copy_(torch.rand(128, generator=generator) + 0.5)
    images = torch.rand(1, 3, 64, 64, generator=generator)
    with torch.no_grad():
        z = vae.encode(images)
        raw = vae.model.encode(images * 2 - 1).latent_dist.mode()
        bn = vae.model.bn
        expected = (fold(raw, 2) - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(
            bn.running_var.view(1, -1, 1, 1) + 1e-4)
        assert z.shape == (1, 128, 4, 4) and torch.allclose(z, expected, atol=1e-5)
        direct = ((vae.model.decode(raw).sample + 1) / 2).clamp(0, 1)
        assert torch.allclose(vae.decode(z), direct, atol=1e-5)
        assert torch.allclose(vae.decode(unfold(z, 2)), direct, atol=1e-5)  # the TAEF2 form too


def test_specs_follow_params() -> None:
    assert VaeEncoder.spec_for(VaeParams(space="sd3")).latent_space == "sd3"
    assert VaeDecoder.spec_for(VaeParams(space="flux2")).latent_spaces == ("flux2", "flux2-unpacked")
    assert TiledVaeDecoder.spec_for(TiledVaeParams(space="sdxl")).native_scale == 1.0
    with pytest.raises(ValidationError, match="config overrides need weights = 'random'"):
        VaeParams(config={"layers_per_block": 1})
    with pytest.raises(ValidationError, match="multiples of the flux2 latent factor 16"):
        TiledVaeParams(space="flux2", tile_px=520)
    with pytest.raises(ValidationError, match="overlap_px must be smaller than tile_px"):
        TiledVaeParams(tile_px=256, overlap_px=256)
    # Random weights are named by their recipe: family, overrides and seed.
    a, b = vae_weights(VaeParams(weights="random")), vae_weights(VaeParams(weights="random", init_seed=1))
    assert list(a) == ["random:flux1"] and a != b


def test_local_folder_weights_load_and_are_hashed(tmp_path: Path) -> None:
    from diffusers import AutoencoderKL

    torch.manual_seed(4)
    model = AutoencoderKL(**tiny_vae_config(16), use_quant_conv=False, use_post_quant_conv=False,
                          scaling_factor=0.3611, shift_factor=0.1159)
    model.save_pretrained(tmp_path / "model" / "vae")
    params = VaeParams(space="flux1", weights=str(tmp_path / "model"))
    weights = vae_weights(params)
    weight_file = tmp_path / "model" / "vae" / "diffusion_pytorch_model.safetensors"
    assert weights == {f"{tmp_path / 'model'}/diffusion_pytorch_model.safetensors": file_sha256(weight_file)}
    vae = _loaded(VaeDecoder, space="flux1", weights=str(tmp_path / "model"))
    latents = torch.randn(1, 16, 4, 4)
    with torch.no_grad():
        direct = ((model.decode(latents / 0.3611 + 0.1159).sample + 1) / 2).clamp(0, 1)
        assert torch.allclose(vae.decode(_batch(latents, 32)), direct, atol=1e-5)
    assert "quality_not_applicable" not in vae.facts()


def test_missing_weights_fail_fast_with_instructions(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    began = time.perf_counter()
    with pytest.raises(DecoderUnavailable) as info:
        VaeDecoder(VaeParams(space="flux1")).load(CPU, torch.float32)
    assert time.perf_counter() - began < 1.0
    message = str(info.value)
    assert "black-forest-labs/FLUX.1-dev (subfolder vae) is not in the Hugging Face cache" in message
    assert "hf download black-forest-labs/FLUX.1-dev --include 'vae/*'" in message
    with pytest.raises(DecoderUnavailable, match="holds no diffusers model"):
        VaeDecoder(VaeParams(weights=str(tmp_path))).load(CPU, torch.float32)
    with pytest.raises(DecoderUnavailable, match=r"pip install 'decoderbench\[decoders\]'"):
        require("a_package_that_is_not_installed")


@pytest.mark.e2e
def test_seam_score_sees_the_real_tiled_vae_path() -> None:
    """Tiles of a VAE disagree (GroupNorm and attention see only their tile). Against the untiled
    decode of the same latent as the reference, the seam score of the tiled output stands far above
    the steps across lines inside the tiles; the untiled output scores 0 by construction."""
    from harness.metrics.base import ImageContext
    from harness.metrics.seam import SeamScore

    full, out, grid = _untiled_and_tiled(latent_side=40, tile_px=192, overlap_px=64, seed=2)
    context = ImageContext(case_id="t", item_id="i", prompt=None, seed=0, seed_group="g", reference_key="r",
                           output_size=(320, 320), native_size=(320, 320), facts={"tile_grid": grid})
    metric = SeamScore()
    metric.update(["tiled", "untiled"], torch.cat([out, full]), torch.cat([full, full]), [context, context])
    values = metric.compute()
    print("tiny VAE, random weights, seam score (8-bit levels):", values.per_key, values.details["tiled"])
    assert values.per_key["untiled"] == 0.0
    assert values.details["tiled"]["control_levels"] is not None
    assert values.per_key["tiled"] > 3 * values.details["tiled"]["control_levels"]


class _TileStub(torch.nn.Module):
    """Stands for a VAE's decoder: every tile decodes to one constant, its call number."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.full((z.shape[0], 3, z.shape[2] * 8, z.shape[3] * 8), self.calls / 100 - 0.5)


def test_diffusers_tiling_records_the_grid_it_decodes_with() -> None:
    """tiling = "diffusers": AutoencoderKL.tiled_decode itself (diffusers 0.42.1), tiles of
    config.sample_size (here 64 px = 8 latent px), overlap factor 0.25, blend_v/blend_h; the recorded
    seams are exactly where the output blends two tiles."""
    params = TiledVaeParams(space="flux1", weights="random", config={**TINY_VAE, "sample_size": 64},
                            tiling="diffusers")
    tiled = _loaded(TiledVaeDecoder, **params.model_dump())
    model = tiled.vae.model
    assert (model.use_tiling, model.tile_sample_min_size, model.tile_latent_min_size,
            model.tile_overlap_factor) == (True, 64, 8, 0.25)
    model.decoder = _TileStub()
    latents = torch.randn(1, 16, 20, 26)
    with torch.no_grad():
        out = tiled.decode(DecodeBatch(latents=latents, input_size=(208, 160), output_size=(208, 160),
                                       seeds=[0], sigmas=[0.0]))
    grid = tiled.facts()["tile_grid"]
    assert grid == {"tile_px": 64, "overlap_px": 16, "x_seams": [56, 104, 152, 200],
                    "y_seams": [56, 104, 152], "x_overlaps": [16, 16, 16, 16], "y_overlaps": [16, 16, 16],
                    "native_size": [208, 160], "tiled": True}
    assert out.shape == (1, 3, 160, 208) and model.decoder.calls == 4 * 5
    constants = {round(k / 100 - 0.5, 6) for k in range(1, 21)}
    column = ((out[0, 0, :, 0] * 2 - 1) * 1e6).round() / 1e6  # first tile column: vertical blends only
    for row, value in enumerate(column.tolist()):
        in_band = any(seam - 8 < row < seam + 8 for seam in grid["y_seams"])
        assert (round(value, 6) not in constants) == in_band, (row, value)
    assert tiled.facts()["tiling"]["mode"] == "diffusers"
    small = _loaded(TiledVaeDecoder, **params.model_dump())
    with torch.no_grad():
        small.decode(DecodeBatch(latents=torch.randn(1, 16, 8, 8), input_size=(64, 64), output_size=(64, 64),
                                 seeds=[0], sigmas=[0.0]))
    assert small.facts()["tile_grid"]["tiled"] is False  # one tile: diffusers decodes it whole
    with pytest.raises(ValidationError, match=r"the qwenimage VAE \(AutoencoderKLQwenImage\) tiles"):
        TiledVaeParams(space="qwenimage", tiling="diffusers")
    custom = TiledVaeParams(space="flux1", weights="random", config=TINY_VAE, tiling="diffusers", tile_px=128)
    assert _loaded(TiledVaeDecoder, **custom.model_dump()).vae.model.tile_latent_min_size == 16


def test_qwenimage_vae_per_channel_latents() -> None:
    """Qwen-Image's video VAE (T = 1): z = (raw − mean_c) / std_c with its config's 16-vectors."""
    from decoders.spaces import QWENIMAGE_MEAN, QWENIMAGE_STD

    tiny = {"base_dim": 8, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1}
    vae = LoadedVae(VaeParams(space="qwenimage", weights="random", config=tiny), CPU, torch.float32)
    assert list(vae.model.config.latents_mean) == list(QWENIMAGE_MEAN)
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        z = vae.encode(images)
        raw = vae.model.encode((images * 2 - 1)[:, :, None]).latent_dist.mode()[:, :, 0]
        mean = torch.tensor(QWENIMAGE_MEAN).view(1, -1, 1, 1)
        std = torch.tensor(QWENIMAGE_STD).view(1, -1, 1, 1)
        assert z.shape == (1, 16, 4, 4) and torch.allclose(z, (raw - mean) / std, atol=1e-5)
        direct = ((vae.model.decode((z * std + mean)[:, :, None]).sample[:, :, 0] + 1) / 2).clamp(0, 1)
        assert torch.allclose(vae.decode(z), direct, atol=1e-5)
    with pytest.raises(ValueError, match=r"latents_mean .* differs from the qwenimage latent space's"):
        LoadedVae(VaeParams(space="qwenimage", weights="random", config={**tiny, "latents_mean": [0.0] * 16}),
                  CPU, torch.float32)
    assert VaeDecoder.spec_for(VaeDecoder.Params(space="qwenimage")).latent_spaces == ("qwenimage",)


def test_random_weights_are_built_on_the_decoders_device(monkeypatch) -> None:
    """weights = "random" creates and initialises the parameters where the model will live (no CPU
    initialisation before the move to a GPU): every init call of the exact FLUX.1 VAE runs on the
    decoder's device — here the meta device, which has no storage — and the architecture keeps its
    83,819,683 parameters."""
    seen: list[str] = []
    real = torch.nn.init.kaiming_uniform_

    def kaiming_uniform_(tensor, *args, **kwargs):
        seen.append(tensor.device.type)
        return real(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.nn.init, "kaiming_uniform_", kaiming_uniform_)
    vae = LoadedVae(VaeParams(space="flux1", weights="random"), torch.device("meta"), torch.float32)
    assert len(seen) > 50 and set(seen) == {"meta"}  # every conv and linear layer, none on the CPU
    assert {p.device.type for p in vae.model.parameters()} == {"meta"}
    assert vae.parameters == 83_819_683 and vae.init_device == "meta"


def test_random_init_on_the_cpu_is_the_seeded_init_it_always_was() -> None:
    import diffusers

    from decoders.vae import VAE_FAMILIES

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        reference = diffusers.AutoencoderKL.from_config({**VAE_FAMILIES["flux1"].config, **TINY_VAE})
    state = torch.get_rng_state()
    params = VaeParams(space="flux1", weights="random", config=TINY_VAE, init_seed=3)
    vae = LoadedVae(params, CPU, torch.float32)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left alone
    expected = reference.state_dict()
    assert all(torch.equal(tensor, expected[key]) for key, tensor in vae.model.state_dict().items())
    other = LoadedVae(VaeParams(space="flux1", weights="random", config=TINY_VAE, init_seed=4), CPU,
                      torch.float32)
    assert other.state_dict_sha256 != vae.state_dict_sha256
    assert vae.facts()["init_device"] == "cpu"
