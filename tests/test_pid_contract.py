"""Contract tests of the PiD adapter against PiD's public inference API (no weights, no GPU here).

Read in github.com/nv-tlabs/PiD at commit 2c8814c2b91cc41a2be7809962c891e0d0ccff5f:
- pid/_src/utils/model_loader.py: load_model_from_checkpoint(experiment_name, checkpoint_path,
  config_file, enable_fsdp, instantiate_ema, load_ema_to_reg, seed, experiment_opts, strict)
  → (model, config); configs and checkpoints are paths relative to the checkout.
- pid/_src/inference/checkpoint_registry.py: get_pid_checkpoint(backbone, ckpt_type) →
  PIDCheckpoint(experiment, checkpoint_path, pid_scale); KeyError for unknown pairs.
- pid/_src/inference/decoder.py, from_clean.py: the batch {model.config.input_caption_key:
  [caption], "LQ_latent": latent bf16 on cuda, "degrade_sigma": float32 tensor [B]} and
  model.generate_samples_from_batch(batch, cfg_scale, num_steps, seed, shift, image_size=(H, W)).
- pid/_src/models/pid_distill_model_infer.py (distilled) and pid_model.py (teacher):
  _validate_inference_data_batch (exactly those three keys, LQ_latent [B, C, H, W]),
  _encode_text_raw(captions) called inside, output x.clamp(-1, 1).unsqueeze(2) = [B, 3, 1, H, W].
- pid/_src/inference_internal/pid_inference.py and docs/inference.md: the teacher experiment
  pid_v1pt5_teacher_<family>_h1024_d4_fix_backbone_res_2048_to_3840 with config
  pid/_src/configs/pid_training/config.py; docs/checkpoints.md: checkpoint and VAE paths.
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

REGISTRY = {  # a subset of PID_CHECKPOINT_REGISTRY, as PiD declares it
    ("flux", "2k"): "PiD_res2k_sr4x_official_flux_distill_4step",
    ("flux2", "2k"): "PiD_res2k_sr4x_official_flux2_distill_4step",
    ("zimage-turbo", "2kto4k_v1pt5"): "PiD_v1pt5_res2kto4k_sr4x_official_flux_distill_4step",
}


@dataclass(frozen=True)
class PIDCheckpoint:
    experiment: str
    checkpoint_path: str
    pid_scale: int


def get_pid_checkpoint(backbone: str, ckpt_type: str = "2k") -> PIDCheckpoint:
    if (backbone, ckpt_type) not in REGISTRY:
        raise KeyError(f"Unknown (backbone, ckpt_type)=({backbone!r}, {ckpt_type!r}).")
    name = REGISTRY[(backbone, ckpt_type)]
    return PIDCheckpoint(name, f"checkpoints/{name}/model_ema_bf16.pth", 4)


class FakePidModel:
    def __init__(self) -> None:
        self.config = types.SimpleNamespace(input_caption_key="caption")
        self.calls: list[dict] = []
        self.text_batches: list[list[str]] = []
        self.compiled = False

    def eval(self) -> FakePidModel:
        return self

    def enable_compile(self) -> None:
        self.compiled = True

    def _encode_text_raw(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        time.sleep(0.02)  # stands for Gemma-2-2B
        self.text_batches.append(list(captions))
        return torch.zeros(len(captions), 4, 8), torch.ones(len(captions), 4)

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
        time.sleep(0.01)
        values = torch.linspace(-1.5, 1.5, height * width).reshape(1, 1, 1, height, width)
        return values.expand(latent.shape[0], 3, 1, height, width).clamp(-1, 1)


@pytest.fixture
def fake_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """A PiD checkout (checkpoints as empty files) and PiD's modules, faked in sys.modules."""
    root = tmp_path / "PiD"
    for name in REGISTRY.values():
        (root / "checkpoints" / name).mkdir(parents=True, exist_ok=True)
        (root / "checkpoints" / name / "model_ema_bf16.pth").write_bytes(b"weights " + name.encode())
    teacher = root / "checkpoints" / "PiD_v1pt5_res2kto4k_sr4x_official_flux_undistilled"
    teacher.mkdir(parents=True)
    (teacher / "model_ema_bf16.pth").write_bytes(b"teacher")
    for vae in ("ae.safetensors", "flux2_ae.safetensors"):
        (root / "checkpoints" / vae).write_bytes(b"vae")
    state = types.SimpleNamespace(root=root, loads=[], models=[])

    def load_model_from_checkpoint(experiment_name, checkpoint_path,
                                   config_file="pid/_src/configs/pid/config.py", enable_fsdp=False,
                                   instantiate_ema=True, load_ema_to_reg=False, seed=0,
                                   experiment_opts=(), strict=True):
        state.loads.append({
            "experiment_name": experiment_name, "checkpoint_path": checkpoint_path,
            "config_file": config_file, "enable_fsdp": enable_fsdp, "load_ema_to_reg": load_ema_to_reg,
            "experiment_opts": list(experiment_opts), "strict": strict, "cwd": os.getcwd()})
        torch.manual_seed(0)  # PiD sets process-wide state on load
        model = FakePidModel()
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
    decoder = _loaded(backbone="flux", variant="2k", steps=4, root=str(fake_pid.root))
    assert os.getcwd() == before
    assert fake_pid.loads == [{
        "experiment_name": "PiD_res2k_sr4x_official_flux_distill_4step",
        "checkpoint_path": "checkpoints/PiD_res2k_sr4x_official_flux_distill_4step/model_ema_bf16.pth",
        "config_file": "pid/_src/configs/pid/config.py", "enable_fsdp": False, "load_ema_to_reg": False,
        "experiment_opts": [], "strict": False, "cwd": str(fake_pid.root.resolve()),
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
    assert (facts["distilled"], facts["steps"], facts["experiment"]) == (
        True, 4, "PiD_res2k_sr4x_official_flux_distill_4step")
    assert set(decoder.weights()) == {
        "checkpoints/PiD_res2k_sr4x_official_flux_distill_4step/model_ema_bf16.pth",
        "checkpoints/ae.safetensors"}


def test_teacher_fifty_steps_and_flux2_latents(fake_pid) -> None:
    teacher = _loaded(backbone="flux", variant="undistilled_v1pt5", root=str(fake_pid.root))
    load = fake_pid.loads[-1]
    assert load["experiment_name"] == "pid_v1pt5_teacher_flux_h1024_d4_fix_backbone_res_2048_to_3840"
    assert load["config_file"] == "pid/_src/configs/pid_training/config.py"
    assert load["checkpoint_path"] == (
        "checkpoints/PiD_v1pt5_res2kto4k_sr4x_official_flux_undistilled/model_ema_bf16.pth")
    teacher.decode(_batch(torch.randn(1, 16, 4, 4), (16, 16), ["a cat"]))
    call = fake_pid.models[-1].calls[-1]
    assert (call["num_steps"], call["cfg_scale"]) == (50, 5.0)  # the teacher's declared defaults
    flux2 = _loaded(backbone="flux2", variant="2k", root=str(fake_pid.root))
    flux2.decode(_batch(torch.randn(1, 32, 8, 8), (64, 64), ["a cat"]))  # TAEF2's unpacked form
    assert fake_pid.models[-1].calls[-1]["batch"]["LQ_latent"].shape == (1, 128, 4, 4)
    assert PidDecoder.spec_for(PidParams(backbone="flux2")).latent_spaces == ("flux2", "flux2-unpacked")
    assert PidDecoder.spec_for(PidParams()).native_scale == 4.0
    assert PidDecoder.spec_for(PidParams(output="suite")).native_scale is None  # the suite's size


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
    assert PidParams(variant="undistilled_v1pt5", steps=25).cfg == 5.0


def test_unavailable_messages_say_what_to_install_and_where(fake_pid, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("DECODERBENCH_PID_ROOT", raising=False)
    with pytest.raises(DecoderUnavailable) as info:
        PidDecoder(PidParams()).load(torch.device("cpu"), torch.bfloat16)
    message = str(info.value)
    assert "neither params.root nor $DECODERBENCH_PID_ROOT is set" in message
    assert "git clone https://github.com/nv-tlabs/PiD" in message
    assert "hf download nvidia/PiD --local-dir DIR --include 'checkpoints/*'" in message
    monkeypatch.setenv("DECODERBENCH_PID_ROOT", str(fake_pid.root))
    root = fake_pid.root.resolve()
    checkpoint = root / "checkpoints" / "PiD_res2k_sr4x_official_flux_distill_4step" / "model_ema_bf16.pth"
    checkpoint.unlink()
    with pytest.raises(DecoderUnavailable) as info:
        PidDecoder(PidParams()).load(torch.device("cpu"), torch.bfloat16)
    assert str(info.value) == (
        f"PiD file missing: {checkpoint}; run `hf download nvidia/PiD --local-dir {root} "
        "--include 'checkpoints/PiD_res2k_sr4x_official_flux_distill_4step/*'`")
    checkpoint.write_bytes(b"weights")
    (root / "checkpoints" / "ae.safetensors").unlink()
    with pytest.raises(DecoderUnavailable) as info:
        PidDecoder(PidParams()).load(torch.device("cpu"), torch.bfloat16)
    assert str(info.value) == (f"PiD file missing: {root}/checkpoints/ae.safetensors; run `hf download "
                               f"nvidia/PiD --local-dir {root} --include 'checkpoints/ae.safetensors'`")
    with pytest.raises(ValueError, match=r"Unknown \(backbone, ckpt_type\)=\('sdxl', '2k'\)"):
        PidDecoder(PidParams(backbone="sdxl", variant="2k")).load(torch.device("cpu"), torch.bfloat16)


def test_pid_needs_cuda() -> None:
    with pytest.raises(DecoderUnavailable, match="PiD runs on CUDA only"):
        PidDecoder(PidParams()).load(torch.device("cpu"), torch.bfloat16)
