"""NVIDIA PiD (pixel-diffusion decoder) through its public inference API (docs/decoders/pid.md).

A distilled checkpoint or the v1.5 teacher from a PiD checkout; network keys that do not match are
refused (a decoder that ignores its latent); PiD's text encoding is timed apart from decoding."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from decoders.base import Consumes, DecodeBatch, Decoder, DecoderSpec, DecoderUnavailable
from decoders.compiled import CompileParams, CompileRecord
from decoders.lazy import torch
from decoders.spaces import as_space, get_space
from decoders.stages import StageClock
from decoders.weights import file_sha256, resolve_pretrained

ROOT_ENV = "DECODERBENCH_PID_ROOT"
REPOSITORY = "https://github.com/nv-tlabs/PiD"
HF_REPO = "nvidia/PiD"
DISTILLED_CONFIG = "pid/_src/configs/pid/config.py"
TEACHER_CONFIG = "pid/_src/configs/pid_training/config.py"
TEACHER = "undistilled_v1pt5"
TEXT_ENCODER = "Efficient-Large-Model/gemma-2-2b-it"  # pixeldit_model.py, text_encoder_name "gemma-2-2b-it"
# PiD's README "Quick Start" list, verbatim.
PIP_PACKAGES = ("hydra-core omegaconf pyyaml attrs einops loguru termcolor fvcore iopath wandb imageio "
                "opencv-python-headless pandas safetensors sentencepiece boto3 botocore")
INSTALL = (f"git clone {REPOSITORY} DIR; pip install {PIP_PACKAGES} (PiD's README); "
           f"hf download {HF_REPO} --local-dir DIR --include 'checkpoints/*'; "
           f"then set params.root = 'DIR' or ${ROOT_ENV}")
# Hydra override grammar, as PiD's CLIs pass extra options: key=value, +key=value, ++key=value, ~key.
EXPERIMENT_OPT = r"^(\+{0,2}[A-Za-z_][\w.\-/@]*=.*|~[A-Za-z_][\w.\-/@]*(=.*)?)$"


@dataclass(frozen=True)
class Backbone:
    space: str
    files: tuple[str, ...]  # what PiD's tokenizer config reads from the checkout (docs/checkpoints.md)
    hub_models: tuple[str, ...] = ()  # what PiD's tokenizer downloads at load (RAE encoders)
    teacher: str | None = None  # the undistilled v1.5 teacher of this VAE family
    scale: int = 4  # pid_scale of its checkpoints (sr4x / sr8x)


_FLUX1 = ("checkpoints/ae.safetensors",)
_FLUX2 = ("checkpoints/flux2_ae.safetensors",)
_QWEN = ("checkpoints/QwenImage_VAE_2d.pth",)
BACKBONES: dict[str, Backbone] = {
    "flux": Backbone("flux1", _FLUX1, teacher="flux"),
    "zimage": Backbone("flux1", _FLUX1, teacher="flux"),
    "zimage-turbo": Backbone("flux1", _FLUX1, teacher="flux"),
    "flux2": Backbone("flux2", _FLUX2, teacher="flux2"),
    "flux2-klein-4b": Backbone("flux2", _FLUX2, teacher="flux2"),
    "flux2-klein-9b": Backbone("flux2", _FLUX2, teacher="flux2"),
    "sd3": Backbone("sd3", ("checkpoints/sd3_vae/vae/diffusion_pytorch_model.safetensors",)),
    "sdxl": Backbone("sdxl", ("checkpoints/sdxl_vae.safetensors",)),
    "qwenimage": Backbone("qwenimage", _QWEN, teacher="qwenimage"),
    "qwenimage-2512": Backbone("qwenimage", _QWEN, teacher="qwenimage"),
    # tokenizers/dinov2_vae.py DINOv2RAEConfig and scale_rae_vae.py ScaleRAEConfig
    "dinov2": Backbone("dinov2", (
        "checkpoints/rae/decoders/dinov2/wReg_base/ViTXL_n08_i512/model.pt",
        "checkpoints/rae/stats/dinov2/wReg_base/imagenet1k_512/stat.pt"),
        hub_models=("facebook/dinov2-with-registers-base",)),
    "siglip": Backbone("siglip", (
        "checkpoints/scale_rae/decoder/siglip2_sop14_i224_web73M_ganw3_decXL.pt",
        "checkpoints/scale_rae/decoder/XL_decoder_config.json"),
        hub_models=("google/siglip2-so400m-patch14-224",), scale=8),
}
BackboneName = Literal["flux", "zimage", "zimage-turbo", "flux2", "flux2-klein-4b", "flux2-klein-9b", "sd3",
                       "sdxl", "qwenimage", "qwenimage-2512", "dinov2", "siglip"]
DISTILLED_STEPS = (1, 4)
TEACHER_STEPS, TEACHER_CFG = 50, 5.0  # config default steps; docs/inference.md's cfg (and 25 steps)


class PidParams(CompileParams):
    backbone: BackboneName = "flux"
    variant: Literal["2k", "2kto4k", "2kto4k_v1pt5", "undistilled_v1pt5"] = Field(
        default="2k", description="PiD --pid_ckpt_type, or the undistilled v1.5 teacher")
    steps: int = Field(default=4, ge=1, description="distilled: 1-4; teacher: 50 (config) or 25 (docs)")
    cfg: float = Field(default=1.0, ge=0, description="teacher only (docs: 5)")
    shift: float | None = Field(default=None, description="teacher only; default: PiD's config")
    root: str | None = Field(default=None, description=f"PiD checkout with checkpoints/; default ${ROOT_ENV}")
    output: Literal["native", "suite"] = Field(
        default="native", description="native: decode at the checkpoint's scale (4×, siglip 8×) as "
        "trained, then the suite's compare resampler; suite: ask PiD for the comparison size (image_size)")
    experiment: str | None = None  # override PiD's registry
    checkpoint: str | None = None  # override, relative to root or absolute
    experiment_opts: list[str] = Field(
        default_factory=list, description="Hydra overrides passed to PiD's config as its CLIs do, e.g. "
        "'model.config.dynamic_shift.base_shift=1.0'")
    accept_key_mismatch: list[str] = Field(
        default_factory=list, description="key prefixes a checkpoint of your own may miss or add "
        "(released checkpoints: none)")

    @field_validator("experiment_opts")
    @classmethod
    def _hydra_overrides(cls, value: list[str]) -> list[str]:
        import re

        bad = [opt for opt in value if not re.match(EXPERIMENT_OPT, opt)]
        if bad:
            raise ValueError(f"experiment_opts must be Hydra overrides (key=value, +key=value, ~key); "
                             f"not {bad}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _teacher_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("variant") == TEACHER:
            return {"steps": TEACHER_STEPS, "cfg": TEACHER_CFG, **data}
        return data

    @model_validator(mode="after")
    def _distilled_knobs(self) -> PidParams:
        if self.variant == TEACHER:
            if self.info.teacher is None:
                families = sorted(b for b, info in BACKBONES.items() if info.teacher)
                raise ValueError(f"the undistilled teacher exists for {families}, not {self.backbone!r}")
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
    def info(self) -> Backbone:
        return BACKBONES[self.backbone]

    @property
    def space(self) -> str:
        return self.info.space


def _require_cuda(device: torch.device) -> None:
    if device.type != "cuda":
        raise DecoderUnavailable("PiD runs on CUDA only (its inference code places tensors on 'cuda' "
                                 "itself); run the suite with --device cuda")


@contextlib.contextmanager
def recording_state_dict_loads() -> Iterator[list[tuple[Any, list[str], list[str]]]]:
    """Record (module, missing, unexpected) of every `nn.Module.load_state_dict` in the block."""
    calls: list[tuple[Any, list[str], list[str]]] = []
    original = torch.nn.Module.load_state_dict

    def recording(module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        result = original(module, *args, **kwargs)
        if hasattr(result, "missing_keys"):
            calls.append((module, list(result.missing_keys), list(result.unexpected_keys)))
        return result

    torch.nn.Module.load_state_dict = recording  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        torch.nn.Module.load_state_dict = original  # type: ignore[method-assign]


def key_report(model: Any, calls: list[tuple[Any, list[str], list[str]]], checkpoint: str,
               accepted: list[str]) -> dict[str, Any]:
    """What the checkpoint's load into `model.net` missed or added; refuse unless accepted."""
    net = getattr(model, "net", None)
    own = [(missing, unexpected) for module, missing, unexpected in calls if module is net]
    others = [{"module": type(module).__name__, "missing": missing, "unexpected": unexpected}
              for module, missing, unexpected in calls if module is not net and (missing or unexpected)]
    if not own:
        if checkpoint.endswith(".pth"):
            raise ValueError(f"PiD loaded {checkpoint} without loading its network's state dict; "
                             "cannot check its keys")
        return {"checked": False, "reason": "distributed checkpoint (PiD loads it with "
                "allow_partial_load): keys not observable", "other_loads": others}
    missing = sorted({k for m, _ in own for k in m})
    unexpected = sorted({k for _, u in own for k in u})
    refused = [k for k in (*missing, *unexpected) if not any(k.startswith(p) for p in accepted)]
    if refused:
        raise ValueError(f"PiD checkpoint {checkpoint} does not match its network: missing keys "
                         f"{missing}, unexpected keys {unexpected} (PiD loads with strict=False; a "
                         "released decoder matches exactly). Accept prefixes with "
                         "params.accept_key_mismatch only for a checkpoint of your own")
    return {"checked": True, "missing": missing, "unexpected": unexpected,
            "accepted_prefixes": list(accepted), "other_loads": others}


class PidDecoder(Decoder):
    Params = PidParams
    spec = DecoderSpec(
        name="pid", consumes=Consumes.LATENT,
        latent_spaces=("flux1", "flux2", "flux2-unpacked", "sd3", "sdxl", "qwenimage", "dinov2", "siglip"),
        stochastic=True, needs_prompt=True, native_scale=4.0, size_multiple=16,
        requires_cuda=True,
        summary="NVIDIA PiD: pixel-diffusion decoder, 4× (siglip 8×), distilled 1-4 steps or the teacher")

    @classmethod
    def spec_for(cls, params: PidParams) -> DecoderSpec:  # type: ignore[override]
        return replace(cls.spec, latent_spaces=get_space(params.space).forms,
                       native_scale=float(params.info.scale) if params.output == "native" else None)

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
            family = p.info.teacher
            experiment = f"pid_v1pt5_teacher_{family}_h1024_d4_fix_backbone_res_2048_to_3840"
            checkpoint = (f"checkpoints/PiD_v1pt5_res2kto4k_sr4x_official_{family}_undistilled/"
                          "model_ema_bf16.pth")
            config = TEACHER_CONFIG
        else:
            try:
                entry = get_pid_checkpoint(p.backbone, p.variant)
            except KeyError as exc:
                raise ValueError(str(exc).strip("'\"")) from None
            if entry.pid_scale != p.info.scale:
                raise ValueError(f"{entry.experiment} upsamples {entry.pid_scale}×, the {p.backbone} "
                                 f"backbone is declared {p.info.scale}× here")
            experiment, checkpoint, config = entry.experiment, entry.checkpoint_path, DISTILLED_CONFIG
        return p.experiment or experiment, p.checkpoint or checkpoint, config

    def _check_files(self, root: Path, checkpoint: str | None) -> None:
        """The backbone's files, and the checkpoint's where its name is known (PiD's registry)."""
        needed = {checkpoint: f"{Path(checkpoint).parent.as_posix()}/*"} if checkpoint else {}
        needed.update({relative: relative for relative in self.params.info.files})
        for relative, include in needed.items():
            if not (root / relative).is_file():
                raise DecoderUnavailable(f"PiD file missing: {root / relative}; run `hf download "
                                         f"{HF_REPO} --local-dir {root} --include '{include}'`")

    def _check_hub_models(self) -> None:
        """What PiD downloads at load must be in the HF cache when offline (checked before loading)."""
        what = {TEXT_ENCODER: "PiD's text encoder (Gemma-2-2B), which PiD loads from the Hugging Face "
                "Hub at load time"}
        what.update({repo: f"the {self.params.backbone} RAE encoder, which PiD loads from the Hugging "
                     "Face Hub at load time" for repo in self.params.info.hub_models})
        for repo, description in what.items():
            resolve_pretrained(repo, None, description)

    def check(self) -> None:
        """The checkout, the files of the declared backbone that need no registry lookup, and what
        PiD downloads at load (the checkpoint's own name needs PiD's registry: load checks it)."""
        root = self._root()
        if not (root / "pid").is_dir():
            raise DecoderUnavailable(f"{root} is not a PiD checkout (no pid/ package); {INSTALL}")
        self._check_files(root, None)
        self._check_hub_models()

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        _require_cuda(device)
        root = self._root()
        get_pid_checkpoint, load_model_from_checkpoint = self._import(root)
        experiment, checkpoint, config = self._checkpoint(get_pid_checkpoint)
        self._check_files(root, checkpoint)
        self._check_hub_models()
        with contextlib.chdir(root), recording_state_dict_loads() as calls:  # PiD's paths are relative
            try:
                model, _ = load_model_from_checkpoint(
                    experiment_name=experiment, checkpoint_path=checkpoint, config_file=config,
                    enable_fsdp=False, experiment_opts=list(self.params.experiment_opts), strict=False,
                    load_ema_to_reg=False)
            except (OSError, ImportError) as exc:
                raise DecoderUnavailable(f"PiD could not load something it needs: {exc}") from None
        self.keys = key_report(model, calls, checkpoint, self.params.accept_key_mismatch)
        model.eval()
        self.model, self.device, self.root = model, device, root
        self.space = get_space(self.params.space)
        self.loaded = {"experiment": experiment, "checkpoint": checkpoint, "config_file": config}
        self.clock = StageClock(device)
        self.compiled = self._compile() if self.params.compile else None
        self._time_text_encoder()

    def _compile(self) -> CompileRecord:
        self.model.enable_compile()
        record = CompileRecord(self.params.compile_setting())
        record.stage_target("text_encode", "text encoder (PixelDiTModel.enable_compile: inductor, default)")
        if self.params.variant == TEACHER:
            record.stage_target("decode", "", "PidModel.generate_samples_from_batch runs self.net eagerly "
                                "upstream: the teacher's network is not compiled")
        else:
            record.stage_target("decode", "network, per output size (PidInferenceModel._maybe_compile_net)")
        return record

    def _time_text_encoder(self) -> None:
        """PiD encodes captions inside generate_samples_from_batch: time that call apart."""
        encode = self.model._encode_text_raw
        clock, compiled = self.clock, self.compiled

        def timed(captions: list[str]) -> Any:
            with clock.stage("text_encode"), (compiled.stage("text_encode") if compiled is not None
                                              else contextlib.nullcontext()):
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
        if self.compiled is None:
            return self._generate(data_batch, batch.seeds[0], (height, width))
        self._own_compile_mode((height, width))
        with self.compiled.call(stage="decode"):
            return self._generate(data_batch, batch.seeds[0], (height, width))

    def _own_compile_mode(self, size: tuple[int, int]) -> None:
        """A compile_mode/backend other than upstream's: fill PiD's per-size cache with our net."""
        p = self.params
        cache = getattr(self.model, "_compiled_nets", None)
        if p.variant == TEACHER or cache is None or p.compile_setting() == {"mode": "default",
                                                                             "backend": "inductor"}:
            return
        if size not in cache:
            cache[size] = torch.compile(self.model.net, dynamic=False, **p.compile_kwargs())

    def _generate(self, data_batch: dict[str, Any], seed: int, size: tuple[int, int]) -> torch.Tensor:
        p = self.params
        self.clock.start()
        begin = self.clock.now_ms()
        samples = self.model.generate_samples_from_batch(
            data_batch, cfg_scale=p.cfg, num_steps=p.steps, seed=seed, shift=p.shift, image_size=size)
        self.clock.finish(self.clock.now_ms() - begin, rest="decode")
        if samples.ndim == 5:
            samples = samples[:, :, 0]
        return samples.float().clamp(-1, 1).add_(1).div_(2)

    def stage_times_ms(self) -> dict[str, float]:
        return dict(self.clock.last)

    def weights(self) -> dict[str, str]:
        if not hasattr(self, "loaded"):
            return {}
        files = (self.loaded["checkpoint"], *self.params.info.files)
        return {relative: file_sha256(self.root / relative) for relative in files}

    def facts(self) -> dict[str, Any]:
        if not hasattr(self, "loaded"):
            return {}
        p = self.params
        facts = {
            "backbone": p.backbone, "variant": p.variant, "distilled": p.variant != TEACHER,
            "steps": p.steps, "cfg": p.cfg, "shift": p.shift, "space": p.space, "scale": p.info.scale,
            "root": str(self.root), "pid_commit": _git_commit(self.root), **self.loaded,
            "experiment_opts": list(p.experiment_opts), "text_encoder": TEXT_ENCODER,
            "hub_models": [TEXT_ENCODER, *p.info.hub_models], "checkpoint_keys": self.keys,
        }
        if self.compiled is not None:
            nets = getattr(self.model, "_compiled_nets", {}) or {}
            facts["compile"] = {**self.compiled.as_fact(),
                                "net_cache_sizes": [list(size) for size in nets]}
        return facts


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
