"""Contract tests of the PiD adapter against PiD's public inference API (no weights, no GPU here).

Read in github.com/nv-tlabs/PiD at commit 2c8814c2b91cc41a2be7809962c891e0d0ccff5f:
- pid/_src/utils/model_loader.py: load_model_from_checkpoint(experiment_name, checkpoint_path,
  config_file, enable_fsdp, instantiate_ema, load_ema_to_reg, seed, experiment_opts, strict)
  → (model, config); `model.load_state_dict(easy_io.load(path), strict=strict)` for .pth files;
  configs and checkpoints are paths relative to the checkout.
- pid/_src/inference/checkpoint_registry.py: get_pid_checkpoint(backbone, ckpt_type) →
  PIDCheckpoint(experiment, checkpoint_path, pid_scale); KeyError for unknown pairs; aliases
  zimage*/flux2-klein-*/qwenimage-2512; dinov2 sr4x, siglip sr8x.
- pid/_src/inference/decoder.py, from_clean.py: the batch {model.config.input_caption_key:
  [caption], "LQ_latent": latent bf16 on cuda, "degrade_sigma": float32 tensor [B]} and
  model.generate_samples_from_batch(batch, cfg_scale, num_steps, seed, shift, image_size=(H, W)).
- pid/_src/models/pid_distill_model_infer.py (distilled) and pid_model.py (teacher):
  _validate_inference_data_batch (exactly those three keys, LQ_latent [B, C, H, W]),
  _encode_text_raw(captions) called inside, output x.clamp(-1, 1).unsqueeze(2) = [B, 3, 1, H, W];
  load_state_dict drops net_ema./fake_score./discriminator. and loads the net with strict=False;
  the student's net runs through _maybe_compile_net (compiled per output size after
  enable_compile), the teacher's through self.net.
- pid/_src/models/pixeldit_model.py: enable_compile() wraps text_encoder in torch.compile;
  _load_text_encoder("gemma-2-2b-it") = Efficient-Large-Model/gemma-2-2b-it from the Hub.
- pid/_src/inference_internal/pid_inference.py and docs/inference.md: the teacher experiment
  pid_v1pt5_teacher_<family>_h1024_d4_fix_backbone_res_2048_to_3840 with config
  pid/_src/configs/pid_training/config.py (families flux, flux2, qwenimage; cfg 5, 25 steps);
  docs/checkpoints.md: checkpoint and VAE/RAE file paths.
The fakes below reproduce those signatures and checks; they are injected into sys.modules.
"""

from __future__ import annotations

import os
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

import decoders.pid as pid_adapter
from decoders.base import DecodeBatch, DecoderUnavailable
from decoders.pid import PidDecoder, PidParams

_FLUX = "PiD_res2k_sr4x_official_flux_distill_4step"
_FLUX2 = "PiD_res2k_sr4x_official_flux2_distill_4step"
_V15_FLUX = "PiD_v1pt5_res2kto4k_sr4x_official_flux_distill_4step"
_V15_QWEN = "PiD_v1pt5_res2kto4k_sr4x_official_qwenimage_distill_4step"
REGISTRY = {  # a subset of PID_CHECKPOINT_REGISTRY, as PiD declares it (aliases included)
    ("flux", "2k"): (_FLUX, 4), ("flux2", "2k"): (_FLUX2, 4), ("flux2-klein-4b", "2k"): (_FLUX2, 4),
    ("zimage-turbo", "2kto4k_v1pt5"): (_V15_FLUX, 4), ("flux", "2kto4k_v1pt5"): (_V15_FLUX, 4),
    ("qwenimage", "2kto4k_v1pt5"): (_V15_QWEN, 4), ("qwenimage-2512", "2kto4k_v1pt5"): (_V15_QWEN, 4),
    ("dinov2", "2k"): ("PiD_res2k_sr4x_official_dinov2_distill_4step", 4),
    ("siglip", "2k"): ("PiD_res2k_sr8x_official_siglip_distill_4step", 8),
}
HUB_MODELS = ("Efficient-Large-Model/gemma-2-2b-it", "facebook/dinov2-with-registers-base",
              "google/siglip2-so400m-patch14-224")
RAE_FILES = ("checkpoints/rae/decoders/dinov2/wReg_base/ViTXL_n08_i512/model.pt",
             "checkpoints/rae/stats/dinov2/wReg_base/imagenet1k_512/stat.pt",
             "checkpoints/scale_rae/decoder/siglip2_sop14_i224_web73M_ganw3_decXL.pt",
             "checkpoints/scale_rae/decoder/XL_decoder_config.json")


@dataclass(frozen=True)
class PIDCheckpoint:
    experiment: str
    checkpoint_path: str
    pid_scale: int


def get_pid_checkpoint(backbone: str, ckpt_type: str = "2k") -> PIDCheckpoint:
    if (backbone, ckpt_type) not in REGISTRY:
        raise KeyError(f"Unknown (backbone, ckpt_type)=({backbone!r}, {ckpt_type!r}).")
    name, scale = REGISTRY[(backbone, ckpt_type)]
    return PIDCheckpoint(name, f"checkpoints/{name}/model_ema_bf16.pth", scale)


class FakeNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lq_proj = torch.nn.Conv2d(4, 4, 1)
        self.block = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.block(x))


class FakePidModel:
    def __init__(self, distilled: bool) -> None:
        self.config = types.SimpleNamespace(input_caption_key="caption")
        self.distilled = distilled
        self.net = FakeNet()
        self.text_encoder = torch.nn.Linear(4, 4)
        self.calls: list[dict] = []
        self.text_batches: list[list[str]] = []

    def eval(self) -> FakePidModel:
        return self

    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False) -> None:
        """PiD's override: drop EMA/critic prefixes, load the net with strict=False, only log."""
        net_sd = {k.removeprefix("net."): v for k, v in state_dict.items()
                  if not k.startswith(("net_ema.", "fake_score.", "discriminator."))}
        self.net.load_state_dict(net_sd, strict=False, assign=assign)

    def enable_compile(self) -> None:  # the text encoder at once, the net lazily per size
        self.text_encoder = torch.compile(self.text_encoder, backend="eager", dynamic=False)
        self._compiled_nets: dict = {}
        self._compile_enabled = True

    def _maybe_compile_net(self, height: int, width: int) -> torch.nn.Module:
        if not getattr(self, "_compile_enabled", False):
            return self.net
        if (height, width) not in self._compiled_nets:
            self._compiled_nets[(height, width)] = torch.compile(self.net, backend="eager", dynamic=False)
        return self._compiled_nets[(height, width)]

    def _encode_text_raw(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        time.sleep(0.02)  # stands for Gemma-2-2B
        self.text_batches.append(list(captions))
        return self.text_encoder(torch.ones(len(captions), 4)), torch.ones(len(captions), 4)

    def generate_samples_from_batch(self, data_batch: dict, cfg_scale: float | None = None,
                                    num_steps: int | None = None, seed: int = 0, image_size=None,
                                    shift: float | None = None, **kwargs: object) -> torch.Tensor:
        expected = {self.config.input_caption_key, "LQ_latent", "degrade_sigma"}
        if set(data_batch) != expected:
            raise ValueError(f"PiD inference batch must contain exactly {sorted(expected)}")
        latent = data_batch["LQ_latent"]
        if not isinstance(latent, torch.Tensor) or latent.ndim != 4:
            raise ValueError("PiD inference expects LQ_latent with shape [B, C, H, W]")
        height, width = image_size
        self.calls.append({"batch": data_batch, "cfg_scale": cfg_scale, "num_steps": num_steps,
                           "seed": seed, "image_size": image_size, "shift": shift, "kwargs": kwargs})
        self._encode_text_raw(data_batch[self.config.input_caption_key])
        net = self._maybe_compile_net(height, width) if self.distilled else self.net
        net(torch.ones(height * width // 256, 4))  # the pixel tokens: one shape per size
        time.sleep(0.01)
        values = torch.linspace(-1.5, 1.5, height * width).reshape(1, 1, 1, height, width)
        return values.expand(latent.shape[0], 3, 1, height, width).clamp(-1, 1)


def _cache_repo(cache: Path, repo: str) -> None:
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")


@pytest.fixture
def fake_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """A PiD checkout (checkpoints as empty files), a HF cache with what PiD downloads at load,
    and PiD's modules, faked in sys.modules."""
    import huggingface_hub.constants

    root = tmp_path / "PiD"
    for name, _ in REGISTRY.values():
        (root / "checkpoints" / name).mkdir(parents=True, exist_ok=True)
        (root / "checkpoints" / name / "model_ema_bf16.pth").write_bytes(b"weights " + name.encode())
    for family in ("flux", "qwenimage"):
        teacher = root / "checkpoints" / f"PiD_v1pt5_res2kto4k_sr4x_official_{family}_undistilled"
        teacher.mkdir(parents=True)
        (teacher / "model_ema_bf16.pth").write_bytes(b"teacher")
    for relative in ("checkpoints/ae.safetensors", "checkpoints/flux2_ae.safetensors",
                     "checkpoints/QwenImage_VAE_2d.pth", *RAE_FILES):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"vae")
    cache = tmp_path / "hf"
    for repo in HUB_MODELS:
        _cache_repo(cache, repo)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    state = types.SimpleNamespace(root=root, cache=cache, loads=[], models=[], drop=(), add={})

    def load_model_from_checkpoint(experiment_name, checkpoint_path,
                                   config_file="pid/_src/configs/pid/config.py", enable_fsdp=False,
                                   instantiate_ema=True, load_ema_to_reg=False, seed=0,
                                   experiment_opts=(), strict=True):
        state.loads.append({
            "experiment_name": experiment_name, "checkpoint_path": checkpoint_path,
            "config_file": config_file, "enable_fsdp": enable_fsdp, "load_ema_to_reg": load_ema_to_reg,
            "experiment_opts": list(experiment_opts), "strict": strict, "cwd": os.getcwd()})
        torch.manual_seed(0)  # PiD sets process-wide state on load
        model = FakePidModel(distilled="teacher" not in experiment_name)
        checkpoint = {f"net.{k}": v for k, v in FakeNet().state_dict().items() if k not in state.drop}
        checkpoint.update({"net_ema.block.weight": torch.zeros(4, 4), **state.add})
        model.load_state_dict(checkpoint, strict=strict)  # as model_loader.py does for .pth files
        state.models.append(model)
        return model, types.SimpleNamespace()

    modules = {
        "pid": types.ModuleType("pid"), "pid._src": types.ModuleType("pid._src"),
        "pid._src.inference": types.ModuleType("pid._src.inference"),
        "pid._src.inference.checkpoint_registry": types.ModuleType("pid._src.inference.checkpoint_registry"),
        "pid._src.utils": types.ModuleType("pid._src.utils"),
        "pid._src.utils.model_loader": types.ModuleType("pid._src.utils.model_loader"),
    }
    modules["pid._src.inference.checkpoint_registry"].get_pid_checkpoint = get_pid_checkpoint
    modules["pid._src.utils.model_loader"].load_model_from_checkpoint = load_model_from_checkpoint
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(pid_adapter, "_require_cuda", lambda device: None)  # CPU stands for CUDA here
    monkeypatch.syspath_prepend(str(tmp_path))
    return state


def _batch(latents: torch.Tensor, output: tuple[int, int], prompts: list[str | None],
           seeds: list[int] | None = None, sigmas: list[float] | None = None) -> DecodeBatch:
    n = latents.shape[0]
    return DecodeBatch(latents=latents, input_size=(output[0] // 4, output[1] // 4), output_size=output,
                       seeds=seeds or [7] * n, sigmas=sigmas or [0.0] * n, prompts=list(prompts))


def _loaded(**params: object) -> PidDecoder:
    decoder = PidDecoder(PidParams(**params))
    decoder.load(torch.device("cpu"), torch.bfloat16)
    return decoder


def test_distilled_load_call_and_decode(fake_pid) -> None:
    before = os.getcwd()
    decoder = _loaded(backbone="flux", variant="2k", steps=4, root=str(fake_pid.root),
                      experiment_opts=["model.config.dynamic_shift.base_shift=1.15"])
    assert os.getcwd() == before
    assert fake_pid.loads == [{
        "experiment_name": _FLUX, "checkpoint_path": f"checkpoints/{_FLUX}/model_ema_bf16.pth",
        "config_file": "pid/_src/configs/pid/config.py", "enable_fsdp": False, "load_ema_to_reg": False,
        "experiment_opts": ["model.config.dynamic_shift.base_shift=1.15"], "strict": False,
        "cwd": str(fake_pid.root.resolve()),
    }]
    latents = torch.randn(2, 16, 8, 12)
    out = decoder.decode(_batch(latents, (48, 32), ["a cat", "a dog"], sigmas=[0.0, 0.3]))
    call = fake_pid.models[0].calls[0]
    batch = call["batch"]
    assert set(batch) == {"caption", "LQ_latent", "degrade_sigma"} and batch["caption"] == ["a cat", "a dog"]
    assert batch["LQ_latent"].dtype == torch.bfloat16 and batch["LQ_latent"].shape == (2, 16, 8, 12)
    assert torch.equal(batch["LQ_latent"], latents.to(torch.bfloat16))
    assert batch["degrade_sigma"].dtype == torch.float32
    assert batch["degrade_sigma"].tolist() == pytest.approx([0.0, 0.3])
    assert (call["image_size"], call["num_steps"], call["cfg_scale"], call["seed"], call["shift"]) == (
        (32, 48), 4, 1.0, 7, None)  # image_size is (H, W); the output size is (W, H)
    assert out.shape == (2, 3, 32, 48) and out.dtype == torch.float32
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0  # [-1, 1] → [0, 1]
    stages = decoder.stage_times_ms()
    assert set(stages) == {"text_encode", "decode"}
    assert stages["text_encode"] >= 15 and stages["decode"] >= 5
    facts = decoder.facts()
    assert (facts["distilled"], facts["steps"], facts["experiment"], facts["scale"]) == (True, 4, _FLUX, 4)
    assert facts["experiment_opts"] == ["model.config.dynamic_shift.base_shift=1.15"]
    assert facts["text_encoder"] == "Efficient-Large-Model/gemma-2-2b-it"
    # The EMA copy PiD drops itself is not a mismatch; the net's keys matched exactly.
    assert facts["checkpoint_keys"] == {"checked": True, "missing": [], "unexpected": [],
                                        "accepted_prefixes": [], "other_loads": []}
    assert set(decoder.weights()) == {f"checkpoints/{_FLUX}/model_ema_bf16.pth", "checkpoints/ae.safetensors"}


def test_checkpoint_key_mismatches_are_refused_unless_accepted(fake_pid) -> None:
    """strict=False must not hide a checkpoint that leaves the latent projection at its init."""
    fake_pid.drop = ("lq_proj.weight",)
    fake_pid.add = {"net.extra.bias": torch.zeros(2)}
    with pytest.raises(ValueError) as info:
        _loaded(root=str(fake_pid.root))
    message = str(info.value)
    assert "missing keys ['lq_proj.weight'], unexpected keys ['extra.bias']" in message
    assert "a released decoder matches exactly" in message
    decoder = _loaded(root=str(fake_pid.root), accept_key_mismatch=["lq_proj.", "extra."])
    keys = decoder.facts()["checkpoint_keys"]
    assert (keys["missing"], keys["unexpected"], keys["accepted_prefixes"]) == (
        ["lq_proj.weight"], ["extra.bias"], ["lq_proj.", "extra."])


def test_teacher_steps_and_new_backbones(fake_pid) -> None:
    teacher = _loaded(backbone="flux", variant="undistilled_v1pt5", root=str(fake_pid.root))
    load = fake_pid.loads[-1]
    assert load["experiment_name"] == "pid_v1pt5_teacher_flux_h1024_d4_fix_backbone_res_2048_to_3840"
    assert load["config_file"] == "pid/_src/configs/pid_training/config.py"
    assert load["checkpoint_path"] == (
        "checkpoints/PiD_v1pt5_res2kto4k_sr4x_official_flux_undistilled/model_ema_bf16.pth")
    teacher.decode(_batch(torch.randn(1, 16, 4, 4), (16, 16), ["a cat"]))
    call = fake_pid.models[-1].calls[-1]
    assert (call["num_steps"], call["cfg_scale"]) == (50, 5.0)  # the config's steps, the docs' cfg
    documented = _loaded(backbone="qwenimage-2512", variant="undistilled_v1pt5", steps=25,
                         root=str(fake_pid.root))
    assert fake_pid.loads[-1]["experiment_name"] == (
        "pid_v1pt5_teacher_qwenimage_h1024_d4_fix_backbone_res_2048_to_3840")
    documented.decode(_batch(torch.randn(1, 16, 4, 4), (16, 16), ["a cat"]))
    assert (fake_pid.models[-1].calls[-1]["num_steps"], documented.facts()["space"]) == (25, "qwenimage")
    klein = _loaded(backbone="flux2-klein-4b", variant="2k", root=str(fake_pid.root))
    klein.decode(_batch(torch.randn(1, 32, 8, 8), (64, 64), ["a cat"]))  # TAEF2's unpacked form
    assert fake_pid.models[-1].calls[-1]["batch"]["LQ_latent"].shape == (1, 128, 4, 4)
    assert fake_pid.loads[-1]["experiment_name"] == _FLUX2
    assert PidDecoder.spec_for(PidParams(backbone="flux2")).latent_spaces == ("flux2", "flux2-unpacked")
    assert PidDecoder.spec_for(PidParams()).native_scale == 4.0
    assert PidDecoder.spec_for(PidParams(output="suite")).native_scale is None  # the suite's size


def test_semantic_rae_backbones(fake_pid) -> None:
    """dinov2 (RAE, 768 ch, 4×) and siglip (Scale-RAE, 1152 ch, 8×): their RAE files and encoders."""
    assert PidDecoder.spec_for(PidParams(backbone="siglip")).native_scale == 8.0
    assert PidDecoder.spec_for(PidParams(backbone="dinov2")).latent_spaces == ("dinov2",)
    siglip = _loaded(backbone="siglip", root=str(fake_pid.root))
    siglip.decode(_batch(torch.randn(1, 1152, 16, 16), (2048, 2048), ["a cat"]))
    assert fake_pid.models[-1].calls[-1]["image_size"] == (2048, 2048)
    facts = siglip.facts()
    assert (facts["scale"], facts["space"]) == (8, "siglip")
    assert facts["hub_models"] == ["Efficient-Large-Model/gemma-2-2b-it", "google/siglip2-so400m-patch14-224"]
    assert set(siglip.weights()) == {"checkpoints/PiD_res2k_sr8x_official_siglip_distill_4step/"
                                     "model_ema_bf16.pth", *RAE_FILES[2:]}
    dinov2 = _loaded(backbone="dinov2", root=str(fake_pid.root))
    assert set(dinov2.weights()) - {f"checkpoints/{REGISTRY[('dinov2', '2k')][0]}/model_ema_bf16.pth"} == set(
        RAE_FILES[:2])
    (fake_pid.root / RAE_FILES[1]).unlink()
    with pytest.raises(DecoderUnavailable, match=r"PiD file missing: .*imagenet1k_512/stat\.pt"):
        _loaded(backbone="dinov2", root=str(fake_pid.root))
    with pytest.raises(ValueError, match=r"Unknown \(backbone, ckpt_type\)=\('siglip', '2kto4k_v1pt5'\)"):
        _loaded(backbone="siglip", variant="2kto4k_v1pt5", root=str(fake_pid.root))


def test_compile_records_what_actually_compiled(fake_pid) -> None:
    """Student: text encoder and net compile; teacher: upstream runs its net eagerly."""
    student = _loaded(root=str(fake_pid.root), compile=True)
    for size in ((16, 16), (16, 16), (32, 16)):
        student.decode(_batch(torch.randn(1, 16, 4, 4), size, ["a cat"]))
    compiled = student.facts()["compile"]
    assert compiled["stages"]["decode"]["compiled"] and compiled["stages"]["text_encode"]["compiled"]
    assert compiled["decode_calls"] == 3 and compiled["calls_with_compilation"] == [1, 3]  # a new size
    assert compiled["net_cache_sizes"] == [[16, 16], [16, 32]]
    assert compiled["compile_ms"] > 0 and compiled["last_call_compile_ms"] > 0
    torch._dynamo.reset()  # each decoder has its own process: no code cached from the student
    teacher = _loaded(variant="undistilled_v1pt5", root=str(fake_pid.root), compile=True)
    teacher.decode(_batch(torch.randn(1, 16, 4, 4), (16, 16), ["a cat"]))
    stages = teacher.facts()["compile"]["stages"]
    assert stages["decode"]["compiled"] is False and "runs self.net eagerly" in stages["decode"]["note"]
    assert stages["text_encode"]["compiled"] is True


def test_decode_refuses_what_pid_cannot_do(fake_pid) -> None:
    decoder = _loaded(root=str(fake_pid.root))
    with pytest.raises(ValueError, match="PiD needs a caption for every case"):
        decoder.decode(_batch(torch.randn(1, 16, 4, 4), (16, 16), [None]))
    with pytest.raises(ValueError, match=r"a batch must share its seed \(got \[0, 1\]\)"):
        decoder.decode(_batch(torch.randn(2, 16, 4, 4), (16, 16), ["a", "b"], seeds=[0, 1]))


def test_params_follow_the_released_checkpoints() -> None:
    with pytest.raises(ValidationError, match="steps must be 1-4"):
        PidParams(steps=8)
    with pytest.raises(ValidationError, match="cfg and shift have no effect on distilled"):
        PidParams(cfg=5.0)
    with pytest.raises(ValidationError, match="the undistilled teacher exists for"):
        PidParams(backbone="sd3", variant="undistilled_v1pt5")
    with pytest.raises(ValidationError, match=r"Hydra overrides .*not \['--shift 3'\]"):
        PidParams(experiment_opts=["model.config.shift=3", "--shift 3"])
    assert PidParams(experiment_opts=["+a.b=1", "~c.d", "x/y@z=2"]).experiment_opts[0] == "+a.b=1"
    assert PidParams(variant="undistilled_v1pt5", steps=25).cfg == 5.0
    assert PidParams(backbone="qwenimage", variant="undistilled_v1pt5").steps == 50


def test_unavailable_messages_say_what_to_install_and_where(fake_pid, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("DECODERBENCH_PID_ROOT", raising=False)
    with pytest.raises(DecoderUnavailable) as info:
        PidDecoder(PidParams()).load(torch.device("cpu"), torch.bfloat16)
    message = str(info.value)
    assert "neither params.root nor $DECODERBENCH_PID_ROOT is set" in message
    assert "git clone https://github.com/nv-tlabs/PiD" in message
    assert "pip install hydra-core omegaconf pyyaml attrs einops loguru termcolor fvcore iopath wandb " \
           "imageio opencv-python-headless pandas safetensors sentencepiece boto3 botocore" in message
    assert "hf download nvidia/PiD --local-dir DIR --include 'checkpoints/*'" in message
    monkeypatch.setenv("DECODERBENCH_PID_ROOT", str(fake_pid.root))
    root = fake_pid.root.resolve()
    checkpoint = root / "checkpoints" / _FLUX / "model_ema_bf16.pth"
    checkpoint.unlink()
    with pytest.raises(DecoderUnavailable) as info:
        PidDecoder(PidParams()).load(torch.device("cpu"), torch.bfloat16)
    assert str(info.value) == (
        f"PiD file missing: {checkpoint}; run `hf download nvidia/PiD --local-dir {root} "
        f"--include 'checkpoints/{_FLUX}/*'`")
    checkpoint.write_bytes(b"weights")
    (root / "checkpoints" / "ae.safetensors").unlink()
    with pytest.raises(DecoderUnavailable) as info:
        PidDecoder(PidParams()).load(torch.device("cpu"), torch.bfloat16)
    assert str(info.value) == (f"PiD file missing: {root}/checkpoints/ae.safetensors; run `hf download "
                               f"nvidia/PiD --local-dir {root} --include 'checkpoints/ae.safetensors'`")
    (root / "checkpoints" / "ae.safetensors").write_bytes(b"vae")
    with pytest.raises(ValueError, match=r"Unknown \(backbone, ckpt_type\)=\('sdxl', '2k'\)"):
        PidDecoder(PidParams(backbone="sdxl", variant="2k")).load(torch.device("cpu"), torch.bfloat16)


def test_gemma_must_be_cached_before_loading_offline(fake_pid, monkeypatch) -> None:
    """PiD downloads Gemma-2-2B at load time; offline, a miss is reported before PiD is called."""
    import shutil

    shutil.rmtree(fake_pid.cache / "models--Efficient-Large-Model--gemma-2-2b-it")
    began = time.perf_counter()
    with pytest.raises(DecoderUnavailable) as info:
        _loaded(root=str(fake_pid.root))
    assert time.perf_counter() - began < 1.0 and fake_pid.loads == []
    message = str(info.value)
    assert ("PiD's text encoder (Gemma-2-2B), which PiD loads from the Hugging Face Hub at load "
            "time") in message
    assert "hf download Efficient-Large-Model/gemma-2-2b-it" in message
    shutil.rmtree(fake_pid.cache / "models--facebook--dinov2-with-registers-base")
    _cache_repo(fake_pid.cache, "Efficient-Large-Model/gemma-2-2b-it")
    with pytest.raises(DecoderUnavailable, match=r"the dinov2 RAE encoder.*facebook/dinov2-with-registers"):
        _loaded(backbone="dinov2", root=str(fake_pid.root))


def test_pid_needs_cuda() -> None:
    with pytest.raises(DecoderUnavailable, match="PiD runs on CUDA only"):
        PidDecoder(PidParams()).load(torch.device("cpu"), torch.bfloat16)
