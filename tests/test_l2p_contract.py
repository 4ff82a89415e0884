"""Contract tests of the L2P adapter against L2P's public inference API (no weights, no GPU here).

Read: github.com/TencentYoutuResearch/T2I-L2P README.md (commit a9c429210a0dd781504da7100934b21eb3982cfa;
the same call in NJU-PCALab/L2P README.md at 522cce6cd1f817d15095ad503cc06543cb7322bf) and
github.com/HaojunChen663/PixVerve-95K L2P-ZImage-HR/diffsynth/pipelines/z_image_L2P.py and
batch_z-image_infer_L2P_test_8gpu.py (commit 91e352266128ff00af8ddf275b88c0826ff6f76f):
`from diffsynth.pipelines.z_image_L2P import ZImagePipeline, ModelConfig`;
`ZImagePipeline.from_pretrained(torch_dtype, device, model_configs=[ModelConfig(path=[main]),
ModelConfig(path=text_encoder_shards)], tokenizer_config=ModelConfig(path=tokenizer_folder))`;
`pipe(prompt, negative_prompt="", cfg_scale, input_image, denoising_strength, height, width, seed,
rand_device, num_inference_steps, progress_bar_cmd)` → one PIL image; the prompt is encoded by
`pipe.text_encoder` inside the call (positive and, with cfg, negative: seperate_cfg units).
The fake module below reproduces that API and is injected into sys.modules.
"""

from __future__ import annotations

import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from decoders.base import DecodeBatch, DecoderUnavailable
from decoders.l2p import L2pDecoder, L2pParams


@dataclass
class ModelConfig:
    path: str | list[str] | None = None
    model_id: str | None = None
    origin_file_pattern: str | None = None


class FakeTextEncoder(torch.nn.Module):
    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        time.sleep(0.01)
        return input_ids.float()


@dataclass
class FakePipe:
    kwargs: dict
    text_encoder: FakeTextEncoder = field(default_factory=FakeTextEncoder)
    calls: list[dict] = field(default_factory=list)

    def __call__(self, prompt: str, negative_prompt: str = "", cfg_scale: float = 1.0,
                 input_image=None, denoising_strength: float = 1.0, height: int = 4096,
                 width: int = 4096, seed: int | None = None, rand_device: str = "cpu",
                 num_inference_steps: int = 8, progress_bar_cmd=None) -> Image.Image:
        self.calls.append({"prompt": prompt, "negative_prompt": negative_prompt, "cfg_scale": cfg_scale,
                           "height": height, "width": width, "seed": seed, "rand_device": rand_device,
                           "num_inference_steps": num_inference_steps})
        self.text_encoder(torch.ones(1, 4))
        if cfg_scale != 1.0:
            self.text_encoder(torch.ones(1, 4))
        steps = list(progress_bar_cmd(range(num_inference_steps)))
        assert steps == list(range(num_inference_steps))
        rng = np.random.default_rng(seed)
        return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture
def fake_l2p(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    state = types.SimpleNamespace(pipes=[], loads=[])

    class ZImagePipeline:
        @staticmethod
        def from_pretrained(torch_dtype=torch.bfloat16, device="cuda", model_configs=(),
                            tokenizer_config=None, vram_limit=None):
            state.loads.append({"torch_dtype": torch_dtype, "device": device,
                                "model_configs": [c.path for c in model_configs],
                                "tokenizer_config": tokenizer_config.path})
            pipe = FakePipe(kwargs={})
            state.pipes.append(pipe)
            return pipe

    module = types.ModuleType("diffsynth.pipelines.z_image_L2P")
    module.ZImagePipeline, module.ModelConfig = ZImagePipeline, ModelConfig
    for name in ("diffsynth", "diffsynth.pipelines"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "diffsynth.pipelines.z_image_L2P", module)
    zimage = tmp_path / "Z-Image-Turbo"
    (zimage / "text_encoder").mkdir(parents=True)
    (zimage / "tokenizer").mkdir()
    for i in (1, 2, 3):
        (zimage / "text_encoder" / f"model-0000{i}-of-00003.safetensors").write_bytes(b"shard %d" % i)
    (tmp_path / "model-1k-merge.safetensors").write_bytes(b"l2p")
    state.zimage, state.checkpoint = zimage, tmp_path / "model-1k-merge.safetensors"
    return state


def _batch(prompts: list[str | None], seeds: list[int], size: tuple[int, int]) -> DecodeBatch:
    return DecodeBatch(latents=None, input_size=size, output_size=size, seeds=seeds,
                       sigmas=[0.0] * len(seeds), prompts=list(prompts))


def test_load_call_and_decode(fake_l2p) -> None:
    decoder = L2pDecoder(L2pParams(variant="1k", checkpoint=str(fake_l2p.checkpoint),
                                   text_encoder=str(fake_l2p.zimage)))
    decoder.load(torch.device("cpu"), torch.bfloat16)
    shards = [str(fake_l2p.zimage / "text_encoder" / f"model-0000{i}-of-00003.safetensors")
              for i in (1, 2, 3)]
    assert fake_l2p.loads == [{"torch_dtype": torch.bfloat16, "device": "cpu",
                               "model_configs": [[str(fake_l2p.checkpoint)], shards],
                               "tokenizer_config": str(fake_l2p.zimage / "tokenizer")}]
    out = decoder.decode(_batch(["a cat", "a dog"], [3, 4], (128, 64)))
    calls = fake_l2p.pipes[0].calls
    assert calls == [
        {"prompt": "a cat", "negative_prompt": "", "cfg_scale": 2.0, "height": 64, "width": 128, "seed": 3,
         "rand_device": "cpu", "num_inference_steps": 30},
        {"prompt": "a dog", "negative_prompt": "", "cfg_scale": 2.0, "height": 64, "width": 128, "seed": 4,
         "rand_device": "cpu", "num_inference_steps": 30},
    ]
    assert out.shape == (2, 3, 64, 128) and out.dtype == torch.float32
    expected = np.random.default_rng(3).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    assert torch.equal((out[0] * 255).round().byte(), torch.from_numpy(expected).permute(2, 0, 1))
    stages = decoder.stage_times_ms()
    assert set(stages) == {"text_encode", "generate"} and stages["text_encode"] >= 35  # 2 images × cfg
    facts = decoder.facts()
    assert (facts["steps"], facts["cfg"], facts["variant"]) == (30, 2.0, "1k")
    assert "not a decoding" in facts["full_reference_not_applicable"]
    assert set(decoder.weights()) == {str(fake_l2p.checkpoint), *shards}


def test_4k_defaults_and_refusals(fake_l2p) -> None:
    decoder = L2pDecoder(L2pParams(variant="4k", checkpoint=str(fake_l2p.checkpoint),
                                   text_encoder=str(fake_l2p.zimage), cfg=1.0))
    decoder.load(torch.device("cpu"), torch.bfloat16)
    decoder.decode(_batch(["a cat"], [0], (64, 64)))
    call = fake_l2p.pipes[0].calls[0]
    assert (call["num_inference_steps"], call["cfg_scale"]) == (50, 1.0)
    with pytest.raises(ValueError, match="multiples of 64, not 96x64"):
        decoder.decode(_batch(["a cat"], [0], (96, 64)))
    with pytest.raises(ValueError, match="every case needs one"):
        decoder.decode(_batch([None], [0], (64, 64)))
    spec = L2pDecoder.spec
    assert (spec.consumes, spec.needs_prompt, spec.native_scale, spec.size_multiple) == (
        "prompt", True, None, 64)


def test_unavailable_messages(fake_l2p, tmp_path, monkeypatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DecoderUnavailable, match=r"needs text_encoder/\*\.safetensors and tokenizer/"):
        L2pDecoder(L2pParams(checkpoint=str(fake_l2p.checkpoint), text_encoder=str(empty))).load(
            torch.device("cpu"), torch.bfloat16)
    with pytest.raises(DecoderUnavailable, match=r"weight file /nowhere/l2p\.safetensors not found"):
        L2pDecoder(L2pParams(checkpoint="/nowhere/l2p.safetensors")).load(torch.device("cpu"), torch.bfloat16)
    monkeypatch.setitem(sys.modules, "diffsynth.pipelines.z_image_L2P", None)  # not installed
    with pytest.raises(DecoderUnavailable) as info:
        L2pDecoder(L2pParams(variant="4k")).load(torch.device("cpu"), torch.bfloat16)
    assert "pip install -e PixVerve-95K/L2P-ZImage-HR" in str(info.value)
