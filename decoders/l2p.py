"""Tencent L2P: text-to-pixel generation without a VAE (Z-Image backbone), at 1K and 4K.

Written against the public inference API of
- 1K: github.com/TencentYoutuResearch/T2I-L2P (README at commit a9c429210a0d;
  the earlier NJU-PCALab/L2P README at 522cce6cd1f8 shows the same call),
- 4K: L2P-ZImage-HR in github.com/HaojunChen663/PixVerve-95K (commit
  91e352266128, diffsynth/pipelines/z_image_L2P.py),

both of which install a `diffsynth` package:

    pipe = ZImagePipeline.from_pretrained(torch_dtype=..., device=...,
        model_configs=[ModelConfig(path=[main_model]), ModelConfig(path=text_encoder_files)],
        tokenizer_config=ModelConfig(path=tokenizer_folder))
    image = pipe(prompt=..., negative_prompt=..., cfg_scale=..., height=..., width=...,
                 seed=..., rand_device=..., num_inference_steps=..., progress_bar_cmd=...)

which returns one PIL image per call (batch 1); sides are multiples of the
DiT patch (64 for 1K and 4K). The text encoder (Qwen3 of Z-Image) runs inside
the call; forward hooks on `pipe.text_encoder` time it apart from generation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from decoders.base import Consumes, DecodeBatch, Decoder, DecoderSpec, DecoderUnavailable
from decoders.lazy import torch
from decoders.plugins import Params
from decoders.stages import StageClock
from decoders.weights import file_sha256, is_local, resolve_file, resolve_pretrained

INSTALL = {
    "1k": "git clone https://github.com/TencentYoutuResearch/T2I-L2P && pip install -e T2I-L2P",
    "4k": "git clone https://github.com/HaojunChen663/PixVerve-95K && pip install -e "
          "PixVerve-95K/L2P-ZImage-HR",
}
# Defaults as the projects' READMEs name them; override with params when a layout differs.
DEFAULTS: dict[str, dict[str, Any]] = {
    "1k": {"checkpoint": "hf://zhen-nan/L2P/model-1k-merge.safetensors",
           "text_encoder": "Tongyi-MAI/Z-Image-Turbo", "steps": 30, "cfg": 2.0},
    "4k": {"checkpoint": "hf://HaojunChen/PixVerve-L2P/l2p_4k_sft.safetensors",
           "text_encoder": "Tongyi-MAI/Z-Image", "steps": 50, "cfg": 4.0},
}
PATCH = 64
NOT_A_DECODING = ("text-to-pixel generation from the prompt: the output is not a decoding of "
                  "the case's image, so pixel-wise comparison with it means nothing")


class L2pParams(Params):
    variant: Literal["1k", "4k"] = "1k"
    checkpoint: str | None = Field(default=None, description="main model: path or hf://…")
    text_encoder: str | None = Field(
        default=None, description="Z-Image folder or HF id holding text_encoder/ and tokenizer/")
    steps: int | None = Field(default=None, ge=1)
    cfg: float | None = Field(default=None, ge=0)
    negative_prompt: str = ""

    def setting(self, name: str) -> Any:
        value = getattr(self, name)
        return DEFAULTS[self.variant][name] if value is None else value


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


class L2pDecoder(Decoder):
    Params = L2pParams
    spec = DecoderSpec(
        name="l2p", consumes=Consumes.PROMPT, stochastic=True, needs_prompt=True, native_scale=None,
        size_multiple=PATCH, summary="Tencent L2P text-to-pixel generation (Z-Image, no VAE), 1K or 4K")

    def check(self) -> None:
        import importlib.util

        if importlib.util.find_spec("diffsynth") is None:
            raise DecoderUnavailable(f"L2P {self.params.variant} is not installed (no diffsynth package); "
                                     f"run `{INSTALL[self.params.variant]}`")
        resolve_file(self.params.setting("checkpoint"), f"L2P {self.params.variant} model")
        _text_encoder_files(self.params.setting("text_encoder"))

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        try:
            from diffsynth.pipelines.z_image_L2P import ModelConfig, ZImagePipeline
        except ImportError as exc:
            raise DecoderUnavailable(f"L2P {self.params.variant} is not installed ({exc}); run "
                                     f"`{INSTALL[self.params.variant]}`") from None
        checkpoint = resolve_file(self.params.setting("checkpoint"), f"L2P {self.params.variant} model")
        shards, tokenizer = _text_encoder_files(self.params.setting("text_encoder"))
        self.pipe = ZImagePipeline.from_pretrained(
            torch_dtype=dtype, device=str(device),
            model_configs=[ModelConfig(path=[str(checkpoint)]), ModelConfig(path=shards)],
            tokenizer_config=ModelConfig(path=tokenizer),
        )
        self.device, self.files = device, [str(checkpoint), *shards]
        self.clock = StageClock(device)
        self._time_text_encoder()

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
        width, height = batch.output_size
        if width % PATCH or height % PATCH:
            raise ValueError(f"L2P generates sides that are multiples of {PATCH}, not {width}x{height}")
        if any(not prompt for prompt in batch.prompts):
            raise ValueError("L2P generates from the prompt: every case needs one")
        self.clock.start()
        begin = self.clock.now_ms()
        images = []
        for prompt, seed in zip(batch.prompts, batch.seeds, strict=True):
            image = self.pipe(
                prompt=prompt, negative_prompt=self.params.negative_prompt,
                cfg_scale=self.params.setting("cfg"), height=height, width=width, seed=seed,
                rand_device=self.device.type, num_inference_steps=self.params.setting("steps"),
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
        return {"variant": p.variant, "steps": p.setting("steps"), "cfg": p.setting("cfg"),
                "checkpoint": p.setting("checkpoint"), "text_encoder": p.setting("text_encoder"),
                "negative_prompt": p.negative_prompt, "batch": "one image per pipeline call",
                "full_reference_not_applicable": NOT_A_DECODING}
