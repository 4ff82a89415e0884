"""NVIDIA PiD (pixel-diffusion decoder) through its public inference API.

Written against github.com/nv-tlabs/PiD (commit 2c8814c2b91c): a checkout of
the repository with its `checkpoints/` folder (HF `nvidia/PiD`) is the
installation. Distilled checkpoints come from PiD's own registry
(`pid._src.inference.checkpoint_registry.get_pid_checkpoint(backbone,
ckpt_type)`, config `pid/_src/configs/pid/config.py`); the undistilled v1.5
teacher ("50 steps") is the training experiment
`pid_v1pt5_teacher_<family>_h1024_d4_fix_backbone_res_2048_to_3840` with
config `pid/_src/configs/pid_training/config.py`. Both load through
`pid._src.utils.model_loader.load_model_from_checkpoint` and decode through
`model.generate_samples_from_batch(batch, cfg_scale, num_steps, seed, shift,
image_size)`, where the batch holds exactly the caption list, `LQ_latent`
([B, C, h, w] normalized latents, bf16, on CUDA) and `degrade_sigma`
(float32 [B]); the output is [B, 3, 1, H, W] in [-1, 1].

PiD encodes the caption (Gemma-2-2B) inside that call; the adapter times
`model._encode_text_raw` so text encoding is reported apart from decoding.
Loading PiD sets process-wide torch state (seed 0, cudnn.benchmark, TF32):
the harness gives every decoder its own process for that reason.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from decoders.base import Consumes, DecodeBatch, Decoder, DecoderSpec, DecoderUnavailable
from decoders.lazy import torch
from decoders.plugins import Params
from decoders.spaces import as_space, get_space
from decoders.stages import StageClock
from decoders.weights import file_sha256

ROOT_ENV = "DECODERBENCH_PID_ROOT"
REPOSITORY = "https://github.com/nv-tlabs/PiD"
HF_REPO = "nvidia/PiD"
DISTILLED_CONFIG = "pid/_src/configs/pid/config.py"
TEACHER_CONFIG = "pid/_src/configs/pid_training/config.py"
TEACHER = "undistilled_v1pt5"
INSTALL = (f"git clone {REPOSITORY} DIR; pip install hydra-core omegaconf pyyaml attrs einops loguru "
           "termcolor fvcore iopath wandb imageio opencv-python-headless pandas sentencepiece boto3 "
           f"botocore (PiD's README); hf download {HF_REPO} --local-dir DIR --include 'checkpoints/*'; "
           f"then set params.root = 'DIR' or ${ROOT_ENV}")

# PiD backbone tag → our latent space, and the VAE file PiD's config reads (docs/checkpoints.md).
BACKBONE_SPACE = {"flux": "flux1", "zimage": "flux1", "zimage-turbo": "flux1", "flux2": "flux2",
                  "sd3": "sd3", "sdxl": "sdxl"}
VAE_FILES = {"flux1": "checkpoints/ae.safetensors", "flux2": "checkpoints/flux2_ae.safetensors",
             "sd3": "checkpoints/sd3_vae/vae/diffusion_pytorch_model.safetensors",
             "sdxl": "checkpoints/sdxl_vae.safetensors"}
TEACHER_FAMILY = {"flux": "flux", "zimage": "flux", "zimage-turbo": "flux", "flux2": "flux2"}
DISTILLED_STEPS = (1, 4)


class PidParams(Params):
    backbone: Literal["flux", "zimage", "zimage-turbo", "flux2", "sd3", "sdxl"] = "flux"
    variant: Literal["2k", "2kto4k", "2kto4k_v1pt5", "undistilled_v1pt5"] = Field(
        default="2k", description="PiD --pid_ckpt_type, or the undistilled v1.5 teacher")
    steps: int = Field(default=4, ge=1, description="distilled: 1-4; teacher: e.g. 25 or 50")
    cfg: float = Field(default=1.0, ge=0, description="teacher only (docs: 5)")
    shift: float | None = Field(default=None, description="teacher only; default: PiD's config")
    root: str | None = Field(default=None, description=f"PiD checkout with checkpoints/; default ${ROOT_ENV}")
    output: Literal["4x", "suite"] = Field(
        default="4x", description="4x: decode at 4× the input (as trained), then the suite's compare "
        "resampler; suite: ask PiD for the comparison size directly (image_size)")
    experiment: str | None = None  # override PiD's registry
    checkpoint: str | None = None  # override, relative to root or absolute
    compile: bool = False

    @model_validator(mode="before")
    @classmethod
    def _teacher_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("variant") == TEACHER:
            return {"steps": 50, "cfg": 5.0, **data}
        return data

    @model_validator(mode="after")
    def _distilled_knobs(self) -> PidParams:
        if self.variant == TEACHER:
            if self.backbone not in TEACHER_FAMILY:
                raise ValueError(f"the undistilled teacher exists for {sorted(set(TEACHER_FAMILY))}, "
                                 f"not {self.backbone!r}")
            return self
        low, high = DISTILLED_STEPS
        if not low <= self.steps <= high:
            raise ValueError(f"released PiD checkpoints are 4-step distilled: steps must be "
                             f"{low}-{high} (use variant = '{TEACHER}' for more steps)")
        if self.cfg != 1.0 or self.shift is not None:
            raise ValueError("cfg and shift have no effect on distilled PiD checkpoints "
                             f"(their sampler uses a fixed schedule); use variant = '{TEACHER}'")
        return self

    @property
    def space(self) -> str:
        return BACKBONE_SPACE[self.backbone]


def _require_cuda(device: torch.device) -> None:
    if device.type != "cuda":
        raise DecoderUnavailable("PiD runs on CUDA only (its inference code places tensors on 'cuda' "
                                 "itself); run the suite with --device cuda")


class PidDecoder(Decoder):
    Params = PidParams
    spec = DecoderSpec(
        name="pid", consumes=Consumes.LATENT,
        latent_spaces=("flux1", "flux2", "flux2-unpacked", "sd3", "sdxl"), stochastic=True,
        needs_prompt=True, native_scale=4.0, size_multiple=16, requires_cuda=True,
        summary="NVIDIA PiD: 4× pixel-diffusion decoder (distilled 1-4 steps, or the teacher)")

    @classmethod
    def spec_for(cls, params: PidParams) -> DecoderSpec:  # type: ignore[override]
        return replace(cls.spec, latent_spaces=get_space(params.space).forms,
                       native_scale=4.0 if params.output == "4x" else None)

    # ------------------------------------------------------------------ loading

    def _root(self) -> Path:
        root = self.params.root or os.environ.get(ROOT_ENV)
        if not root or not Path(root).expanduser().is_dir():
            where = f"{root} does not exist" if root else f"neither params.root nor ${ROOT_ENV} is set"
            raise DecoderUnavailable(f"PiD checkout not found ({where}); {INSTALL}")
        return Path(root).expanduser().resolve()

    def _import(self, root: Path) -> tuple[Any, Any]:
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        try:
            from pid._src.inference.checkpoint_registry import get_pid_checkpoint
            from pid._src.utils.model_loader import load_model_from_checkpoint
        except ImportError as exc:
            raise DecoderUnavailable(f"cannot import PiD from {root} ({exc}); {INSTALL}") from None
        return get_pid_checkpoint, load_model_from_checkpoint

    def _checkpoint(self, get_pid_checkpoint: Any) -> tuple[str, str, str]:
        """(experiment, checkpoint path relative to the root, config file)."""
        p = self.params
        if p.variant == TEACHER:
            family = TEACHER_FAMILY[p.backbone]
            experiment = f"pid_v1pt5_teacher_{family}_h1024_d4_fix_backbone_res_2048_to_3840"
            checkpoint = (f"checkpoints/PiD_v1pt5_res2kto4k_sr4x_official_{family}_undistilled/"
                          "model_ema_bf16.pth")
            config = TEACHER_CONFIG
        else:
            try:
                entry = get_pid_checkpoint(p.backbone, p.variant)
            except KeyError as exc:
                raise ValueError(str(exc).strip("'\"")) from None
            if entry.pid_scale != 4:
                raise ValueError(f"{entry.experiment} upsamples {entry.pid_scale}×; only 4× is supported")
            experiment, checkpoint, config = entry.experiment, entry.checkpoint_path, DISTILLED_CONFIG
        return p.experiment or experiment, p.checkpoint or checkpoint, config

    def _check_files(self, root: Path, checkpoint: str) -> None:
        needed = {checkpoint: f"{Path(checkpoint).parent.as_posix()}/*"}
        vae = VAE_FILES[self.params.space]
        needed[vae] = vae
        for relative, include in needed.items():
            if not (root / relative).is_file():
                raise DecoderUnavailable(f"PiD file missing: {root / relative}; run `hf download "
                                         f"{HF_REPO} --local-dir {root} --include '{include}'`")

    def check(self) -> None:
        """The checkout and its VAE file (the checkpoint's name needs PiD's registry: load checks it)."""
        root = self._root()
        if not (root / "pid" / "__init__.py").is_file() and not (root / "pid").is_dir():
            raise DecoderUnavailable(f"{root} is not a PiD checkout (no pid/ package); {INSTALL}")
        vae = VAE_FILES[self.params.space]
        if not (root / vae).is_file():
            raise DecoderUnavailable(f"PiD file missing: {root / vae}; run `hf download {HF_REPO} "
                                     f"--local-dir {root} --include '{vae}'`")

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        _require_cuda(device)
        root = self._root()
        get_pid_checkpoint, load_model_from_checkpoint = self._import(root)
        experiment, checkpoint, config = self._checkpoint(get_pid_checkpoint)
        self._check_files(root, checkpoint)
        with contextlib.chdir(root):  # PiD's configs name their files relative to the checkout
            try:
                model, _ = load_model_from_checkpoint(
                    experiment_name=experiment, checkpoint_path=checkpoint, config_file=config,
                    enable_fsdp=False, experiment_opts=[], strict=False, load_ema_to_reg=False)
            except (OSError, ImportError) as exc:
                raise DecoderUnavailable(f"PiD could not load something it needs: {exc}") from None
        model.eval()
        if self.params.compile:
            model.enable_compile()
        self.model, self.device, self.root = model, device, root
        self.space = get_space(self.params.space)
        self.loaded = {"experiment": experiment, "checkpoint": checkpoint, "config_file": config}
        self.clock = StageClock(device)
        self._time_text_encoder()

    def _time_text_encoder(self) -> None:
        """PiD encodes captions inside generate_samples_from_batch: time that call apart."""
        encode = self.model._encode_text_raw
        clock = self.clock

        def timed(captions: list[str]) -> Any:
            with clock.stage("text_encode"):
                return encode(captions)

        self.model._encode_text_raw = timed

    # ------------------------------------------------------------------ decoding

    def decode(self, batch: DecodeBatch) -> torch.Tensor:
        assert batch.latents is not None
        captions = list(batch.prompts)
        if len(captions) != batch.size or any(not c for c in captions):
            raise ValueError("PiD needs a caption for every case: give the source's items a prompt "
                             "(images: a sidecar .txt or a manifest \"prompt\"; prompts: the prompt)")
        if len(set(batch.seeds)) != 1:
            raise ValueError("PiD draws one noise tensor per call from one seed; a batch must share "
                             f"its seed (got {sorted(set(batch.seeds))}): use timing.batch_size = 1")
        width, height = batch.output_size
        data_batch = {
            self.model.config.input_caption_key: captions,
            "LQ_latent": as_space(batch.latents, self.space).to(device=self.device, dtype=torch.bfloat16),
            "degrade_sigma": torch.tensor(batch.sigmas, dtype=torch.float32, device=self.device),
        }
        p = self.params
        self.clock.start()
        begin = self.clock.now_ms()
        samples = self.model.generate_samples_from_batch(
            data_batch, cfg_scale=p.cfg, num_steps=p.steps, seed=batch.seeds[0], shift=p.shift,
            image_size=(height, width))
        self.clock.finish(self.clock.now_ms() - begin, rest="decode")
        if samples.ndim == 5:
            samples = samples[:, :, 0]
        return samples.float().clamp(-1, 1).add_(1).div_(2)

    def stage_times_ms(self) -> dict[str, float]:
        return dict(self.clock.last)

    def weights(self) -> dict[str, str]:
        if not hasattr(self, "loaded"):
            return {}
        files = (self.loaded["checkpoint"], VAE_FILES[self.params.space])
        return {relative: file_sha256(self.root / relative) for relative in files}

    def facts(self) -> dict[str, Any]:
        if not hasattr(self, "loaded"):
            return {}
        p = self.params
        return {
            "backbone": p.backbone, "variant": p.variant, "distilled": p.variant != TEACHER,
            "steps": p.steps, "cfg": p.cfg, "shift": p.shift, "space": p.space, "root": str(self.root),
            "pid_commit": _git_commit(self.root), **self.loaded,
        }


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
