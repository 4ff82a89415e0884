"""Semantic (RAE) latents: the dinov2 and siglip encoders against PiD's tokenizers, tiny and random.

Read in github.com/nv-tlabs/PiD at 2c8814c: pid/_src/tokenizers/dinov2_vae.py (DINOv2Encoder with the
final LayerNorm's affine removed; DINOv2VAE.encode: [-1, 1] → [0, 1], bicubic to 448 without
antialias, ImageNet mean/std from the processor, drop 1 CLS + registers, [B, N, C] → [B, C, h, w],
(z − mean) / √(var + 1e-5) with RAE's per-(C, H, W) stat.pt) and scale_rae_vae.py (ScaleRAEEncoder:
vision tower with post_layernorm = Identity; ScaleRAEVAE.encode: bicubic with antialias to 224,
processor mean/std, F.layer_norm(tokens, (1152,), eps=1e-6), [B, 256, C] → [B, C, 16, 16]).
The expected values below follow that recipe step by step, independently of decoders.rae.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from decoders.base import DecoderUnavailable
from decoders.rae import Dinov2Encoder, Dinov2Params, RaeParams, SiglipEncoder
from decoders.registry import ENCODERS

CPU = torch.device("cpu")
TINY_DINO = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
TINY_SIGLIP = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 2}
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
IMAGENET = (torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))


def _images(size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _dinov2_expected(model: torch.nn.Module, images: torch.Tensor, stats: dict | None) -> torch.Tensor:
    x = F.interpolate(images, size=(448, 448), mode="bicubic", align_corners=False)
    x = (x - IMAGENET[0]) / IMAGENET[1]
    model.layernorm.weight, model.layernorm.bias = None, None  # PiD: elementwise_affine = False
    model.layernorm.elementwise_affine = False
    tokens = model(x).last_hidden_state[:, 1 + model.config.num_register_tokens:]
    z = tokens.transpose(1, 2).reshape(images.shape[0], -1, 32, 32)
    return z if stats is None else (z - stats["mean"][None]) / torch.sqrt(stats["var"][None] + 1e-5)


def test_dinov2_encoder_follows_the_rae_recipe(tmp_path: Path) -> None:
    import transformers

    stats = {"mean": torch.randn(32, 32, 32), "var": torch.rand(32, 32, 32) + 0.5}
    torch.save(stats, tmp_path / "stat.pt")
    params = Dinov2Params(weights="random", config=TINY_DINO, init_seed=1, stats=str(tmp_path / "stat.pt"))
    encoder = Dinov2Encoder(params)
    encoder.load(CPU, torch.float32)
    with torch.no_grad():
        latents = encoder.encode(_images(512))
        reference = transformers.Dinov2WithRegistersModel(transformers.Dinov2WithRegistersConfig(
            **{**Dinov2Encoder.family.config, **TINY_DINO}))
        reference.load_state_dict(encoder.rae.model.state_dict(), strict=False)  # ours has no LN affine
        expected = _dinov2_expected(reference.eval(), _images(512), stats)
    assert latents.shape == (2, 32, 32, 32) and torch.allclose(latents, expected, atol=1e-4)
    assert str(tmp_path / "stat.pt") in encoder.weights()
    # A transformers folder (model + processor), loaded the way PiD does (AutoModel, AutoImageProcessor).
    folder = tmp_path / "dinov2"
    reference.save_pretrained(folder)
    transformers.BitImageProcessor(image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD).save_pretrained(folder)
    from_folder = Dinov2Encoder(Dinov2Params(weights=str(folder), stats=str(tmp_path / "stat.pt")))
    from_folder.load(CPU, torch.float32)
    with torch.no_grad():
        assert torch.allclose(from_folder.encode(_images(512)), expected, atol=1e-4)
    assert any(key.startswith(f"{folder}/") for key in from_folder.weights())


def test_dinov2_needs_rae_statistics_for_real_weights(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("DECODERBENCH_PID_ROOT", raising=False)
    (tmp_path / "config.json").write_text("{}")
    encoder = Dinov2Encoder(Dinov2Params(weights=str(tmp_path)))
    with pytest.raises(DecoderUnavailable) as info:
        encoder.weights()
    assert ("RAE's latent statistics are needed (PiD's checkpoints/rae/stats/dinov2/wReg_base/"
            "imagenet1k_512/stat.pt)") in str(info.value)
    torch.save({"mu": torch.zeros(1)}, tmp_path / "bad.pt")
    bad = Dinov2Encoder(Dinov2Params(weights="random", config=TINY_DINO, stats=str(tmp_path / "bad.pt")))
    with pytest.raises(ValueError, match="RAE statistics must hold 'mean' and 'var' tensors"):
        bad.load(CPU, torch.float32)


def test_siglip_encoder_follows_the_scale_rae_recipe() -> None:
    import transformers

    encoder = SiglipEncoder(RaeParams(weights="random", config=TINY_SIGLIP, init_seed=2))
    encoder.load(CPU, torch.float32)
    with torch.no_grad():
        latents = encoder.encode(_images(256, seed=3))
        reference = transformers.SiglipVisionModel(transformers.SiglipVisionConfig(
            **{**SiglipEncoder.family.config, **TINY_SIGLIP}))
        reference.load_state_dict(encoder.rae.model.state_dict(), strict=False)
        x = F.interpolate(_images(256, seed=3), size=(224, 224), mode="bicubic", align_corners=False,
                          antialias=True)
        hidden = reference.encoder(inputs_embeds=reference.embeddings((x - 0.5) / 0.5)).last_hidden_state
        tokens = F.layer_norm(hidden, (32,), eps=1e-6)
        expected = tokens.transpose(1, 2).reshape(2, 32, 16, 16)
    assert latents.shape == (2, 32, 16, 16) and torch.allclose(latents, expected, atol=1e-4)
    assert ENCODERS.get("siglip").spec_for(RaeParams()).latent_space == "siglip"
    assert ENCODERS.get("dinov2").spec.latent_space == "dinov2"


@pytest.mark.e2e
def test_images_source_makes_rae_latents_for_pid(write_suite, image_folder: Path, tmp_path: Path) -> None:
    """The images source, through a spawned source worker, makes [768, 32, 32] dinov2 latents (exact
    channel count, one layer, random weights); suites pair them with PiD's dinov2 backbone."""
    from harness.cases import expand
    from harness.sources.cache import TensorCache
    from harness.sources.listing import list_items
    from harness.sources.prepare import InputPreparer, source_protocol
    from harness.suite import SuiteError, load_suite

    text = f"""
name = "rae"
metrics = []
[source]
kind = "images"
folder = "{image_folder}"
limit = 1
encoder = {{name = "dinov2", params = {{weights = "random", config = {{num_hidden_layers = 1}}}}}}
[resolution]
input = {{size}}
output_scale = 4
[[decoder]]
name = "pid"
params = {{backbone = "dinov2"}}
[timing]
load_timeout_s = 300
"""
    suite = load_suite(write_suite(text.replace("{size}", "512")))
    items = list_items(suite)
    sizes = suite.model.resolution.pairs()
    cases = expand([e.item for e in items], sizes, [0.0], [0], source_protocol(suite))
    preparer = InputPreparer(suite, TensorCache(tmp_path / "cache"), tmp_path / "logs")
    try:
        prepared = list(preparer.prepare(cases, items))
    finally:
        preparer.close()
    assert prepared[0].latent_shape == (768, 32, 32)
    with pytest.raises(SuiteError, match=r"resolution\.input\[0\]: the dinov2 space has one image size"):
        load_suite(write_suite(text.replace("{size}", "256")))
    siglip = text.replace('name = "dinov2"', 'name = "siglip"').replace("{size}", "256")
    with pytest.raises(SuiteError, match=r"decoder 'pid' consumes latent spaces \['dinov2'\], but the "
                       r"source produces 'siglip'"):
        load_suite(write_suite(siglip))
    assert load_suite(write_suite(siglip.replace('backbone = "dinov2"', 'backbone = "siglip"'))).model
