"""Tencent L2P: text-to-pixel generation without a VAE (Z-Image backbone), at 1K and 4K/8K/10K.

An adapter of the `diffsynth` ZImagePipeline of L2P's two public releases (1K, and the HR
L2P-ZImage-HR); sizes the pipeline would silently round are refused, and the text encoder is timed
apart from generation. The upstream API it is written against: docs/decoders/l2p.md.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from decoders.base import Consumes, DecodeBatch, Decoder, DecoderSpec, DecoderUnavailable
from decoders.lazy import torch
from decoders.plugins import Params
from decoders.stages import StageClock
from decoders.weights import file_sha256, is_local, resolve_file, resolve_pretrained

PIPELINE_MODULE = "diffsynth.pipelines.z_image_L2P"
# Only the HR pipeline sets its size factor after loading, from the DiT's patch
# (`pipe.height_division_factor = patch_size`); both pipelines' model_fn read `dit.all_patch_size`.
HR_MARKER = re.compile(r"\.height_division_factor\s*=(?!=)")
TOKEN_MULTIPLE = 32  # the 1K DiT: (H/16)·(W/16) must be a multiple of this


@dataclass(frozen=True)
class L2pVariant:
    package: Literal["1k", "hr"]
    patch: int
    checkpoint: str
    text_encoder: str
    steps: int
    cfg: float


_HR = "hf://HaojunChen/PixVerve-L2P/l2p_{}_sft.safetensors"
VARIANTS = {
    "1k": L2pVariant("1k", 16, "hf://zhen-nan/L2P/model-1k-merge.safetensors", "Tongyi-MAI/Z-Image-Turbo",
                     30, 2.0),
    "4k": L2pVariant("hr", 64, _HR.format("4k"), "Tongyi-MAI/Z-Image", 50, 4.0),
    "8k": L2pVariant("hr", 128, _HR.format("8k"), "Tongyi-MAI/Z-Image", 50, 4.0),
    "10k": L2pVariant("hr", 160, _HR.format("10k"), "Tongyi-MAI/Z-Image", 50, 4.0),
}
INSTALL = {
    "1k": "git clone https://github.com/TencentYoutuResearch/T2I-L2P && pip install -e T2I-L2P",
    "hr": "git clone https://github.com/HaojunChen663/PixVerve-95K && pip install -e "
          "PixVerve-95K/L2P-ZImage-HR",
}
PACKAGE_NAME = {"1k": "TencentYoutuResearch/T2I-L2P (1K)", "hr": "PixVerve-95K's L2P-ZImage-HR (4K/8K/10K)"}
NOT_A_DECODING = ("text-to-pixel generation from the prompt: the output is not a decoding of "
                  "the case's image, so pixel-wise comparison with it means nothing")


class L2pParams(Params):
    variant: Literal["1k", "4k", "8k", "10k"] = "1k"
    checkpoint: str | None = Field(default=None, description="main model: path or hf://…")
    text_encoder: str | None = Field(
        default=None, description="Z-Image folder or HF id holding text_encoder/ and tokenizer/")
    steps: int | None = Field(default=None, ge=1)
    cfg: float | None = Field(default=None, ge=0)
    negative_prompt: str = ""
    vram_limit: float | None = Field(default=None, gt=0, description="GiB; diffsynth's VRAM "
                                     "management offloads beyond it (from_pretrained(vram_limit=...))")

    @property
    def info(self) -> L2pVariant:
        return VARIANTS[self.variant]

    def setting(self, name: str) -> Any:
        value = getattr(self, name)
        return getattr(self.info, name) if value is None else value


def size_problem(params: L2pParams, size: tuple[int, int]) -> str | None:
    """Why L2P cannot generate `size` = (width, height) as declared, or None."""
    width, height = size
    patch = params.info.patch
    if width % patch or height % patch:
        return (f"L2P {params.variant} generates sides that are multiples of its DiT patch {patch}, "
                f"not {width}x{height} (its pipeline would round them up)")
    if params.variant == "1k" and (width // 16) * (height // 16) % TOKEN_MULTIPLE:
        tokens = (width // 16) * (height // 16)
        return (f"L2P 1K fails at {width}x{height}: (H/16)·(W/16) = {tokens} is not a multiple of "
                f"{TOKEN_MULTIPLE} (a known failure of the 1K DiT)")
    return None


def _text_encoder_files(reference: str) -> tuple[list[str], str]:
    """(text-encoder shard files, tokenizer folder) of a Z-Image folder or HF id."""
    folder, _ = resolve_pretrained(reference, "text_encoder", "Z-Image text encoder") \
        if not is_local(reference) else (reference, None)
    root = Path(folder).expanduser()
    shards = sorted(str(p) for p in (root / "text_encoder").glob("*.safetensors"))
    tokenizer = root / "tokenizer"
    if not shards or not tokenizer.is_dir():
        raise DecoderUnavailable(
            f"Z-Image text encoder: {root} needs text_encoder/*.safetensors and tokenizer/; run "
            f"`hf download {reference if not is_local(reference) else 'Tongyi-MAI/Z-Image-Turbo'} "
            "--include 'text_encoder/*' 'tokenizer/*'`")
    return shards, str(tokenizer)


def installed_package(module: Any) -> tuple[str | None, str | None]:
    """("1k" | "hr" | None when unknown, source file) of the imported L2P pipeline module."""
    source = getattr(module, "__file__", None)
    if not source or not Path(source).is_file():
        return None, source
    text = Path(source).read_text(encoding="utf-8", errors="replace")
    return ("hr" if HR_MARKER.search(text) else "1k"), source


def _noise_device(device: torch.device) -> str:
    """The full device string, as upstream's batch script passes it (`cuda:N`)."""
    if device.type == "cuda" and device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


class L2pDecoder(Decoder):
    Params = L2pParams
    spec = DecoderSpec(
        name="l2p", consumes=Consumes.PROMPT, stochastic=True, needs_prompt=True, native_scale=None,
        size_multiple=16, summary="Tencent L2P text-to-pixel generation (Z-Image, no VAE), 1K/4K/8K/10K")

    @classmethod
    def spec_for(cls, params: L2pParams) -> DecoderSpec:  # type: ignore[override]
        return replace(cls.spec, size_multiple=params.info.patch)

    @classmethod
    def size_problem(cls, params: L2pParams, size: tuple[int, int]) -> str | None:  # type: ignore[override]
        return size_problem(params, size)

    def check(self) -> None:
        import importlib.util

        if importlib.util.find_spec("diffsynth") is None:
            raise DecoderUnavailable(f"L2P {self.params.variant} is not installed (no diffsynth package); "
                                     f"run `{INSTALL[self.params.info.package]}`")
        resolve_file(self.params.setting("checkpoint"), f"L2P {self.params.variant} model")
        _text_encoder_files(self.params.setting("text_encoder"))

    def _import(self) -> tuple[Any, Any]:
        wanted = self.params.info.package
        try:
            from diffsynth.pipelines.z_image_L2P import ModelConfig, ZImagePipeline
        except ImportError as exc:
            raise DecoderUnavailable(f"L2P {self.params.variant} is not installed ({exc}); run "
                                     f"`{INSTALL[wanted]}`") from None
        found, source = installed_package(sys.modules[PIPELINE_MODULE])
        if found is not None and found != wanted:
            raise DecoderUnavailable(
                f"L2P {self.params.variant} needs {PACKAGE_NAME[wanted]}, but the installed `diffsynth` "
                f"({source}) is {PACKAGE_NAME[found]}: both install a package named diffsynth; use "
                f"an environment with `{INSTALL[wanted]}`")
        self.package = {"expected": wanted, "detected": found, "source": source}
        return ModelConfig, ZImagePipeline

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        model_config, pipeline = self._import()
        p = self.params
        checkpoint = resolve_file(p.setting("checkpoint"), f"L2P {p.variant} model")
        shards, tokenizer = _text_encoder_files(p.setting("text_encoder"))
        extra = {"vram_limit": p.vram_limit} if p.vram_limit is not None else {}
        self.pipe = pipeline.from_pretrained(
            torch_dtype=dtype, device=str(device),
            model_configs=[model_config(path=[str(checkpoint)]), model_config(path=shards)],
            tokenizer_config=model_config(path=tokenizer), **extra,
        )
        self._check_patch(checkpoint)
        self.device, self.files = device, [str(checkpoint), *shards]
        self.rand_device = _noise_device(device)
        self.clock = StageClock(device)
        self._time_text_encoder()

    def _check_patch(self, checkpoint: Path) -> None:
        """The loaded pipeline's size factor must be the variant's patch (wrong checkpoint or package)."""
        factor = getattr(self.pipe, "height_division_factor", None)
        if factor is not None and factor != self.params.info.patch:
            raise ValueError(f"{checkpoint} loads as a patch-{factor} L2P model, but variant "
                             f"{self.params.variant!r} is patch {self.params.info.patch}")

    def _time_text_encoder(self) -> None:
        """Forward hooks bracket every text-encoder call (twice per image with cfg > 1)."""
        clock = self.clock
        begun: list[float] = []

        def before(*_: Any) -> None:
            begun.append(clock.now_ms())

        def after(*_: Any) -> None:
            clock.add("text_encode", clock.now_ms() - begun.pop())

        self.pipe.text_encoder.register_forward_pre_hook(before)
        self.pipe.text_encoder.register_forward_hook(after)

    def decode(self, batch: DecodeBatch) -> torch.Tensor:
        problem = size_problem(self.params, batch.output_size)
        if problem is not None:
            raise ValueError(problem)
        if any(not prompt for prompt in batch.prompts):
            raise ValueError("L2P generates from the prompt: every case needs one")
        width, height = batch.output_size
        self.clock.start()
        begin = self.clock.now_ms()
        images = []
        for prompt, seed in zip(batch.prompts, batch.seeds, strict=True):
            image = self.pipe(
                prompt=prompt, negative_prompt=self.params.negative_prompt,
                cfg_scale=self.params.setting("cfg"), height=height, width=width, seed=seed,
                rand_device=self.rand_device, num_inference_steps=self.params.setting("steps"),
                progress_bar_cmd=lambda steps: steps,
            )
            array = np.asarray(image.convert("RGB"), dtype=np.uint8)
            images.append(torch.from_numpy(array.copy()).permute(2, 0, 1))
        self.clock.finish(self.clock.now_ms() - begin, rest="generate")
        return torch.stack(images).to(self.device).float().div_(255)

    def stage_times_ms(self) -> dict[str, float]:
        return dict(self.clock.last)

    def weights(self) -> dict[str, str]:
        return {path: file_sha256(Path(path)) for path in getattr(self, "files", [])}

    def facts(self) -> dict[str, Any]:
        p = self.params
        facts = {"variant": p.variant, "patch": p.info.patch, "steps": p.setting("steps"),
                 "cfg": p.setting("cfg"), "checkpoint": p.setting("checkpoint"),
                 "text_encoder": p.setting("text_encoder"), "negative_prompt": p.negative_prompt,
                 "vram_limit": p.vram_limit, "batch": "one image per pipeline call",
                 "full_reference_not_applicable": NOT_A_DECODING}
        if hasattr(self, "pipe"):
            facts.update(rand_device=self.rand_device, package=self.package)
        return facts
