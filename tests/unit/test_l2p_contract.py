"""Contract tests of the L2P adapter against L2P's public inference API (no weights, no GPU here).

Read: github.com/TencentYoutuResearch/T2I-L2P README.md (commits a9c429210a0dd781504da7100934b21eb3982cfa
and 1a63e2f103640381b956ed5ad1521c2b350db671; the same call in NJU-PCALab/L2P README.md at
522cce6cd1f817d15095ad503cc06543cb7322bf) and github.com/HaojunChen663/PixVerve-95K
(commit 91e352266128ff00af8ddf275b88c0826ff6f76f) L2P-ZImage-HR/README.md,
diffsynth/pipelines/z_image_L2P.py, diffsynth/diffusion/base_pipeline_L2P.py and
batch_z-image_infer_L2P_test_8gpu.py:
`from diffsynth.pipelines.z_image_L2P import ZImagePipeline, ModelConfig`;
`ZImagePipeline.from_pretrained(torch_dtype, device, model_configs=[ModelConfig(path=[main]),
ModelConfig(path=text_encoder_shards)], tokenizer_config=ModelConfig(path=tokenizer_folder),
vram_limit=None)`, whose HR version sets `height/width_division_factor` from `dit.all_patch_size`
(64 / 128 / 160 for 4K / 8K / 10K) and rounds other sides up (check_resize_height_width);
`pipe(prompt, negative_prompt="", cfg_scale, input_image, denoising_strength, height, width, seed,
rand_device, num_inference_steps, progress_bar_cmd)` → one PIL image; the noise is drawn with
`torch.Generator(rand_device)` (the batch script passes `cuda:{gpu_id}`); the prompt is encoded by
`pipe.text_encoder` inside the call (positive and, with cfg, negative: seperate_cfg units).
The 1K pipeline's source was not available to read; its patch 16 and its token rule (the DiT fails
when (H/16)·(W/16) is not a multiple of 32) are as issue 14 states them.
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
    height_division_factor: int = 16
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


HR_SOURCE = "pipe.height_division_factor = pipe.dit.all_patch_size[0]\n"  # PixVerve's HR pipeline
ONE_K_SOURCE = ("super().__init__(device=device, torch_dtype=torch_dtype, height_division_factor=16, "
                "width_division_factor=16)\n    patch_size=dit.all_patch_size[0],\n")  # model_fn reads it too


@pytest.fixture
def fake_l2p(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    state = types.SimpleNamespace(pipes=[], loads=[], patch=16)

    class ZImagePipeline:
        @staticmethod
        def from_pretrained(torch_dtype=torch.bfloat16, device="cuda", model_configs=(),
                            tokenizer_config=None, vram_limit=None):
            state.loads.append({"torch_dtype": torch_dtype, "device": device,
                                "model_configs": [c.path for c in model_configs],
                                "tokenizer_config": tokenizer_config.path, "vram_limit": vram_limit})
            pipe = FakePipe(kwargs={}, height_division_factor=state.patch)
            state.pipes.append(pipe)
            return pipe

    module = types.ModuleType("diffsynth.pipelines.z_image_L2P")
    module.ZImagePipeline, module.ModelConfig = ZImagePipeline, ModelConfig
    source = tmp_path / "diffsynth" / "pipelines" / "z_image_L2P.py"
    source.parent.mkdir(parents=True)
    source.write_text(ONE_K_SOURCE)
    module.__file__ = str(source)
    state.source = source
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
                               "tokenizer_config": str(fake_l2p.zimage / "tokenizer"), "vram_limit": None}]
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
    assert (facts["steps"], facts["cfg"], facts["variant"], facts["patch"]) == (30, 2.0, "1k", 16)
    assert facts["package"] == {"expected": "1k", "detected": "1k", "source": str(fake_l2p.source)}
    assert "not a decoding" in facts["full_reference_not_applicable"]
    assert set(decoder.weights()) == {str(fake_l2p.checkpoint), *shards}


def test_1k_size_rules() -> None:
    """Patch 16, not 64: 1024×1040 is a valid 1K size; (H/16)·(W/16) must be a multiple of 32."""
    one_k = L2pParams(variant="1k")
    assert L2pDecoder.spec_for(one_k).size_multiple == 16
    assert L2pDecoder.size_problem(one_k, (1024, 1040)) is None  # 64 × 65 = 4160 = 32 × 130
    assert L2pDecoder.size_problem(one_k, (1008, 1008)) == (
        "L2P 1K fails at 1008x1008: (H/16)·(W/16) = 3969 is not a multiple of 32 (a known failure of "
        "the 1K DiT)")
    assert "multiples of its DiT patch 16, not 1000x1024" in L2pDecoder.size_problem(one_k, (1000, 1024))
    assert [L2pDecoder.spec_for(L2pParams(variant=v)).size_multiple for v in ("4k", "8k", "10k")] == [
        64, 128, 160]
    assert L2pDecoder.size_problem(L2pParams(variant="10k"), (10240, 10240)) is None
    assert "patch 128, not 4096x4160" in L2pDecoder.size_problem(L2pParams(variant="8k"), (4096, 4160))


def test_4k_defaults_and_refusals(fake_l2p) -> None:
    fake_l2p.source.write_text(HR_SOURCE)
    fake_l2p.patch = 64
    decoder = L2pDecoder(L2pParams(variant="4k", checkpoint=str(fake_l2p.checkpoint),
                                   text_encoder=str(fake_l2p.zimage), cfg=1.0, vram_limit=20))
    decoder.load(torch.device("cpu"), torch.bfloat16)
    assert fake_l2p.loads[-1]["vram_limit"] == 20
    decoder.decode(_batch(["a cat"], [0], (64, 64)))
    call = fake_l2p.pipes[0].calls[0]
    assert (call["num_inference_steps"], call["cfg_scale"]) == (50, 1.0)
    with pytest.raises(ValueError, match="multiples of its DiT patch 64, not 96x64"):
        decoder.decode(_batch(["a cat"], [0], (96, 64)))
    with pytest.raises(ValueError, match="every case needs one"):
        decoder.decode(_batch([None], [0], (64, 64)))
    spec = L2pDecoder.spec_for(decoder.params)
    assert (spec.consumes, spec.needs_prompt, spec.native_scale, spec.size_multiple) == (
        "prompt", True, None, 64)
    # A checkpoint of another resolution loads with another patch: refused, not rounded.
    fake_l2p.patch = 128
    with pytest.raises(ValueError, match="loads as a patch-128 L2P model, but variant '4k' is patch 64"):
        L2pDecoder(L2pParams(variant="4k", checkpoint=str(fake_l2p.checkpoint),
                             text_encoder=str(fake_l2p.zimage))).load(torch.device("cpu"), torch.bfloat16)


def test_the_wrong_diffsynth_package_is_refused(fake_l2p) -> None:
    """Both repositories install `diffsynth`: the one installed must be the variant's."""
    fake_l2p.source.write_text(HR_SOURCE)
    with pytest.raises(DecoderUnavailable) as info:
        L2pDecoder(L2pParams(variant="1k", checkpoint=str(fake_l2p.checkpoint),
                             text_encoder=str(fake_l2p.zimage))).load(torch.device("cpu"), torch.bfloat16)
    assert str(info.value) == (
        "L2P 1k needs TencentYoutuResearch/T2I-L2P (1K), but the installed `diffsynth` "
        f"({fake_l2p.source}) is PixVerve-95K's L2P-ZImage-HR (4K/8K/10K): both install a package named "
        "diffsynth; use an environment with `git clone https://github.com/TencentYoutuResearch/T2I-L2P "
        "&& pip install -e T2I-L2P`")
    fake_l2p.source.write_text(ONE_K_SOURCE)
    with pytest.raises(DecoderUnavailable, match="L2P 8k needs PixVerve-95K's L2P-ZImage-HR"):
        L2pDecoder(L2pParams(variant="8k", checkpoint=str(fake_l2p.checkpoint),
                             text_encoder=str(fake_l2p.zimage))).load(torch.device("cpu"), torch.bfloat16)


def test_noise_is_drawn_on_the_full_device(fake_l2p, monkeypatch) -> None:
    """rand_device is `cuda:N`, as upstream's batch script passes it; `cuda` alone is resolved."""
    import decoders.l2p as l2p_adapter

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert l2p_adapter._noise_device(torch.device("cuda")) == "cuda:3"
    assert l2p_adapter._noise_device(torch.device("cuda:1")) == "cuda:1"
    assert l2p_adapter._noise_device(torch.device("cpu")) == "cpu"


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
