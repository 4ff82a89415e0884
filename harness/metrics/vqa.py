"""Built-in VQA backends of DPG-Bench: `blip-vqa` (Salesforce BLIP VQA) and `vlm` (any chat VLM).

DPG-Bench's reference VQA model, mPLUG-large (ModelScope
damo/mplug_visual-question-answering_coco_large_en), is not in transformers;
these are other VQA models, so their numbers compare only with numbers from
the same model (every record's protocol names it).

- `blip-vqa`: `BlipForQuestionAnswering` + its processor (384² bicubic,
  CLIP normalisation), greedy generation of the answer; the image is encoded
  once and its questions answered in one batch. BLIP answers in lower case
  ("yes", "no"), as mPLUG does, so ELLA's exact `answer == "yes"` applies.
- `vlm`: a checkpoint `AutoModelForImageTextToText` loads, with a chat
  template taking images (Qwen2.5-VL, Gemma 3, LLaVA, ...), through the
  loading code the judge's local backend uses (harness/vlm.py). Each
  question is asked alone with `instruction` appended; the reply's first word,
  lower-cased, is the answer when it is "yes" or "no", else the reply itself
  (lower-cased, stripped), which then scores 0.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from decoders.lazy import no_grad, torch
from decoders.plugins import Params
from harness.metrics.base import MetricUnavailable, MetricWeightsMissing

DEFAULT_BLIP = "Salesforce/blip-vqa-base"
FIRST_WORD = re.compile(r"\s*[\"'*(\[]*([A-Za-z]+)")


def parse_yes_no(reply: str) -> str:
    """A chat model's reply → "yes" / "no" when its first word says so, else the reply lower-cased."""
    match = FIRST_WORD.match(reply)
    word = match.group(1).lower() if match else ""
    return word if word in ("yes", "no") else reply.strip().lower()


class BlipParams(Params):
    model: str = Field(default=DEFAULT_BLIP, description="BLIP VQA: HF id or local folder")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    max_new_tokens: int = Field(default=10, ge=1)


class BlipVQABackend:
    """Salesforce BLIP fine-tuned for VQA (VQAv2): a small, fast default."""

    Params: ClassVar = BlipParams

    def __init__(self, params: BlipParams | None = None) -> None:
        self.params = params or BlipParams()
        self._weights: dict[str, str] = {}

    def describe(self) -> dict[str, Any]:
        return {"model": self.params.model, "dtype": self.params.dtype, "decoding": "greedy",
                "max_new_tokens": self.params.max_new_tokens}

    def load(self, device: torch.device) -> None:
        from harness.metrics.weights import WeightsMissing, hub_offline, pretrained

        try:
            from transformers import BlipForQuestionAnswering, BlipProcessor
        except ImportError:
            raise MetricUnavailable("the blip-vqa backend needs transformers: pip install "
                                    "'decoderbench[metrics]'") from None
        try:
            source, self._weights = pretrained(self.params.model, "dpg_bench", "DPG-Bench VQA model")
            with hub_offline():
                self.processor = BlipProcessor.from_pretrained(source, local_files_only=True)
                model = BlipForQuestionAnswering.from_pretrained(
                    source, local_files_only=True, dtype=getattr(torch, self.params.dtype))
        except WeightsMissing as exc:
            raise MetricWeightsMissing(str(exc)) from None
        except OSError as exc:
            raise MetricUnavailable(f"cannot load the VQA model {self.params.model!r} ({exc}); get it with "
                                    "`decoderbench weights fetch dpg_bench` or name a local folder") from None
        self.model, self.device = model.to(device).eval(), device

    def weights(self) -> dict[str, str]:
        return dict(self._weights)

    @no_grad
    def answer(self, image: np.ndarray, questions: list[str]) -> list[str]:
        """One vision pass, then the questions as one batch (what BlipForQuestionAnswering.generate
        does per question, without encoding the image again for each)."""
        model, dtype = self.model, self.model.dtype
        pixels = self.processor(images=image, return_tensors="pt")["pixel_values"].to(self.device, dtype)
        image_embeds = model.vision_model(pixel_values=pixels)[0]
        text = self.processor.tokenizer(questions, padding=True, return_tensors="pt").to(self.device)
        batch = len(questions)
        image_embeds = image_embeds.expand(batch, -1, -1)
        question_embeds = model.text_encoder(
            input_ids=text["input_ids"], attention_mask=text["attention_mask"],
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device),
            return_dict=False)[0]
        start = torch.full((batch, 1), model.decoder_start_token_id, device=self.device)
        question_mask = torch.ones(question_embeds.shape[:-1], dtype=torch.long, device=self.device)
        output = model.text_decoder.generate(
            input_ids=start, eos_token_id=model.config.text_config.sep_token_id,
            pad_token_id=model.config.text_config.pad_token_id, encoder_hidden_states=question_embeds,
            encoder_attention_mask=question_mask, max_new_tokens=self.params.max_new_tokens, do_sample=False)
        return [a.strip() for a in self.processor.batch_decode(output, skip_special_tokens=True)]


class VLMParams(Params):
    model: str = Field(description="chat VLM: HF id (in the HF cache) or local folder, e.g. "
                       "Qwen/Qwen2.5-VL-7B-Instruct")
    dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    instruction: str = "Answer with yes or no."
    max_new_tokens: int = Field(default=8, ge=1)


class VLMBackend:
    """Any chat VLM through AutoModelForImageTextToText, loaded as the judge loads its local model."""

    Params: ClassVar = VLMParams

    def __init__(self, params: VLMParams) -> None:
        self.params = params
        self._weights: dict[str, str] = {}

    def describe(self) -> dict[str, Any]:
        p = self.params
        return {"model": p.model, "dtype": p.dtype, "instruction": p.instruction, "decoding": "greedy",
                "max_new_tokens": p.max_new_tokens, "answer": "first word when yes/no, else the reply"}

    def load(self, device: torch.device) -> None:
        from harness.vlm import VLMUnavailable, load_vlm

        try:
            self.processor, self.model = load_vlm(
                self.params.model, str(device), self.params.dtype, "DPG-Bench VQA model",
                "metrics.dpg_bench.params.backend_options.model", "evaluation.device")
        except VLMUnavailable as exc:
            raise MetricUnavailable(str(exc)) from None
        self._weights = _folder_weights(self.params.model)

    def weights(self) -> dict[str, str]:
        return dict(self._weights)

    def answer(self, image: np.ndarray, questions: list[str]) -> list[str]:
        from PIL import Image

        from harness.vlm import generate

        picture = Image.fromarray(image)
        replies = []
        for question in questions:
            content = [{"type": "image", "image": picture},
                       {"type": "text", "text": f"{question} {self.params.instruction}".strip()}]
            replies.append(parse_yes_no(generate(self.processor, self.model, content,
                                                 self.params.max_new_tokens).text))
        return replies


def _folder_weights(model: str) -> dict[str, str]:
    """sha256 of the checkpoint's weight files (a local folder, or its HF cache snapshot)."""
    from pathlib import Path

    from decoders.weights import folder_sha256

    folder = Path(model).expanduser()
    if not folder.is_dir():
        from huggingface_hub import try_to_load_from_cache

        config = try_to_load_from_cache(model, "config.json")
        folder = Path(config).parent if isinstance(config, str) else folder
    return folder_sha256(folder, model) if folder.is_dir() else {model: "unknown"}
