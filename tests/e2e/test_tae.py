"""Tiny autoencoders: our implementation against the real TAEF2 weights and diffusers' AutoencoderTiny."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED

from decoders.base import DecodeBatch, DecoderUnavailable
from decoders.spaces import fold
from decoders.tae import TaeDecoder, TaeEncoder, TaeParams, load_half

TAEF2 = SHARED / "weights" / "taef2"
CPU = torch.device("cpu")


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    quantize = lambda x: (x.clamp(0, 1) * 255 + 0.5).floor() / 255  # noqa: E731
    return float(10 * np.log10(1 / float(((quantize(a) - quantize(b)) ** 2).mean())))


def _pair(params: TaeParams) -> tuple[TaeEncoder, TaeDecoder]:
    encoder, decoder = TaeEncoder(params), TaeDecoder(params)
    encoder.load(CPU, torch.float32)
    decoder.load(CPU, torch.float32)
    return encoder, decoder


def _decode(decoder: TaeDecoder, latents: torch.Tensor) -> torch.Tensor:
    size = latents.shape[-1] * 8
    batch = DecodeBatch(latents=latents, input_size=(size, size), output_size=(size, size),
                        seeds=[0], sigmas=[0.0])
    with torch.no_grad():
        return decoder.decode(batch)


@pytest.mark.skipif(not TAEF2.is_dir(), reason="needs ../shared/weights/taef2 (the real TAEF2 weights)")
def test_taef2_round_trip_of_the_astronaut() -> None:
    import skimage.data

    encoder, decoder = _pair(TaeParams(variant="taef2", weights=str(TAEF2)))
    assert decoder.facts()["pool_branch"] is True and decoder.facts()["space"] == "flux2-unpacked"
    image = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        latents = encoder.encode(image)
    assert latents.shape == (1, 32, 64, 64)
    # Normalized FLUX.2 latents: roughly unit scale, centred.
    assert 0.5 < float(latents.std()) < 1.5 and abs(float(latents.mean())) < 0.2
    decoded = _decode(decoder, latents)
    psnr = _psnr(decoded, image)
    assert psnr >= 30.0, psnr
    # The packed 128-channel form of the same latent decodes to the same image.
    assert torch.allclose(_decode(decoder, fold(latents, 2)), decoded)
    # Without the FLUX.2 pool branch the same weights fall apart (REFERENCE.md: ≈17 dB).
    plain = load_half(TaeParams(variant="taef1", weights="random"), "decoder")
    state = {k: v for k, v in decoder.model.state_dict().items() if ".pool." not in k}
    plain[1] = torch.nn.Conv2d(32, 64, 3, padding=1)
    plain.load_state_dict(state)
    with torch.no_grad():
        assert _psnr(plain(latents).clamp(0, 1), image) < 25.0


def test_our_architecture_equals_diffusers_autoencoder_tiny(tmp_path: Path) -> None:
    """Loaded from a diffusers AutoencoderTiny folder, our modules compute what diffusers does;
    saved in the original .pth layout, they load back to the same outputs."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    reference = AutoencoderTiny(latent_channels=16).eval()
    reference.save_pretrained(tmp_path / "taef1-diffusers")
    encoder, decoder = _pair(TaeParams(variant="taef1", weights=str(tmp_path / "taef1-diffusers")))
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        latents = encoder.encode(images)
        assert torch.allclose(latents, reference.encode(images * 2 - 1).latents, atol=1e-5)
        decoded = _decode(decoder, latents)
        expected = (reference.decode(latents).sample + 1) / 2
        assert torch.allclose(decoded, expected.clamp(0, 1), atol=1e-5)
    folder = tmp_path / "original"
    folder.mkdir()
    torch.save(encoder.model.state_dict(), folder / "taef1_encoder.pth")
    torch.save(decoder.model.state_dict(), folder / "taef1_decoder.pth")
    assert all(key.split(".")[0].isdigit() for key in torch.load(folder / "taef1_decoder.pth"))
    encoder2, decoder2 = _pair(TaeParams(variant="taef1", weights=str(folder)))
    with torch.no_grad():
        assert torch.equal(encoder2.encode(images), latents)
    assert torch.equal(_decode(decoder2, latents), decoded)
    assert list(decoder2.weights()) == [str(folder / "taef1_decoder.pth")]
    assert decoder2.facts()["pool_branch"] is False


def test_random_weights_and_missing_weights() -> None:
    encoder, decoder = _pair(TaeParams(variant="taesdxl", weights="random"))
    assert decoder.facts()["quality_not_applicable"] == "random weights: performance-only"
    assert TaeDecoder.spec_for(TaeParams(variant="taesdxl")).latent_spaces == ("sdxl",)
    assert TaeDecoder.spec_for(TaeParams(variant="taef2")).latent_spaces == ("flux2-unpacked", "flux2")
    assert TaeEncoder.spec_for(TaeParams(variant="taesd3")).latent_space == "sd3"
    with torch.no_grad():
        latents = encoder.encode(torch.rand(1, 3, 32, 32))
    assert latents.shape == (1, 4, 4, 4) and _decode(decoder, latents).shape == (1, 3, 32, 32)
    with pytest.raises(DecoderUnavailable) as info:
        TaeDecoder(TaeParams(variant="taef2")).load(CPU, torch.float32)
    message = str(info.value)  # the default is the Hub's single file; the .pth pair is the alternative
    assert "taef2.safetensors from madebyollin/taef2 is not in the Hugging Face cache" in message
    assert "taef2_encoder.pth and taef2_decoder.pth from https://github.com/madebyollin/taesd" in message
    with pytest.raises(DecoderUnavailable, match="madebyollin/taef1"):
        TaeDecoder(TaeParams(variant="taef1", weights="/nonexistent/folder")).load(CPU, torch.float32)


def _single_file(encoder: torch.nn.Module, decoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """madebyollin/taef2's taef2.safetensors layout: diffusers AutoencoderTiny names for both halves
    (decoder.layers.N is our N+1: the clamp has no weights)."""
    state = {}
    for part, module, shift in (("encoder", encoder, 0), ("decoder", decoder, -1)):
        for key, tensor in module.state_dict().items():
            index, _, rest = key.partition(".")
            state[f"{part}.layers.{int(index) + shift}.{rest}"] = tensor.contiguous()
    return state


def test_taef2_single_file_from_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TAEF2 as the Hub ships it (madebyollin/taef2, taef2.safetensors) decodes exactly as the .pth pair."""
    import huggingface_hub.constants
    from safetensors.torch import save_file

    source = TaeParams(variant="taef2", weights="random", init_seed=3)
    encoder, decoder = load_half(source, "encoder"), load_half(source, "decoder")
    pair = tmp_path / "pair"
    pair.mkdir()
    torch.save(encoder.state_dict(), pair / "taef2_encoder.pth")
    torch.save(decoder.state_dict(), pair / "taef2_decoder.pth")
    snapshot = tmp_path / "hf" / "models--madebyollin--taef2" / "snapshots" / ("1" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("1" * 40)
    save_file(_single_file(encoder, decoder), str(snapshot / "taef2.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    latents = torch.randn(1, 32, 8, 8, generator=torch.Generator().manual_seed(4))
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    outputs = []
    for weights in (str(pair), None, str(snapshot / "taef2.safetensors"), str(snapshot)):
        enc, dec = _pair(TaeParams(variant="taef2", weights=weights))
        assert dec.facts()["pool_branch"] is True
        with torch.no_grad():
            outputs.append((_decode(dec, latents), enc.encode(images)))
    for decoded, encoded in outputs[1:]:
        assert torch.equal(decoded, outputs[0][0]) and torch.equal(encoded, outputs[0][1])
    assert list(TaeDecoder(TaeParams(variant="taef2")).weights()) == [str(snapshot / "taef2.safetensors")]
