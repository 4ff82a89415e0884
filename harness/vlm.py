"""Local vision-language models through transformers, shared by the judge and DPG-Bench's VQA.

A model is any checkpoint that `AutoModelForImageTextToText` loads and whose
processor has a chat template taking images (Qwen2.5-VL, Gemma 3, LLaVA,
Idefics, ...), named by Hugging Face id (read from the HF cache) or local
folder. Missing weights fail in well under a second with the file and the
command that gets it, instead of a long hub timeout. Messages name the
settings the user edits (`model_setting`, `device_setting`: "judge.model", ...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DecoderbenchError


class VLMUnavailable(DecoderbenchError, RuntimeError):
    """The model cannot be loaded; the message says what is missing and how to get it."""


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    output_tokens: int


def check_weights(model: str, what: str, model_setting: str) -> None:
    """Fail fast, naming the missing file, when the checkpoint is not on this machine."""
    path = Path(model).expanduser()
    if path.exists() or model.startswith((".", "/", "~")):
        if not (path / "config.json").is_file():
            raise VLMUnavailable(f"{what} folder {path} has no config.json; save a checkpoint there with "
                                 "save_pretrained() or name a Hugging Face model id")
        return
    from huggingface_hub import try_to_load_from_cache

    offline = any(os.environ.get(name, "").lower() in ("1", "true", "yes", "on")
                  for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    if isinstance(try_to_load_from_cache(model, "config.json"), str) or not offline:
        return
    raise VLMUnavailable(
        f"{what} {model!r}: config.json is not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
        f"download it with `hf download {model}` or set {model_setting} to a local folder")


def load_vlm(model: str, device: str, dtype: str, what: str, model_setting: str,
             device_setting: str) -> tuple[Any, Any]:
    """(processor, model in eval mode on `device`) for a chat VLM checkpoint."""
    check_weights(model, what, model_setting)
    try:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor
    except ImportError:
        raise VLMUnavailable(f"the {what} needs transformers: pip install transformers") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VLMUnavailable(f"{device_setting} is {device!r} but no CUDA device is available "
                             f"(set {device_setting} = \"cpu\" to run on the CPU)")
    try:
        processor = AutoProcessor.from_pretrained(model)
        network = AutoModelForImageTextToText.from_pretrained(model, dtype=getattr(torch, dtype))
    except Exception as exc:  # a missing file, an unknown architecture, a missing dependency
        raise VLMUnavailable(f"cannot load {what} {model!r}: {type(exc).__name__}: {exc}") from None
    return processor, network.to(device).eval()


def generate(processor: Any, model: Any, content: list[dict[str, Any]], max_new_tokens: int,
             temperature: float = 0.0) -> Generation:
    """One user turn (chat-template parts: {"type": "image", "image": PIL} / {"type": "text", ...})
    → the model's reply, greedy unless a temperature is given. OutOfMemoryError propagates."""
    import torch

    sampling: dict[str, Any] = {"do_sample": True, "temperature": temperature} if temperature \
        else {"do_sample": False}
    inputs = processor.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=True,
        return_dict=True, return_tensors="pt",
    ).to(model.device, dtype=model.dtype)
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, **sampling)
    prompt_length = inputs["input_ids"].shape[1]
    generated = output[:, prompt_length:]
    text = processor.batch_decode(generated, skip_special_tokens=True)[0]
    return Generation(text, int(prompt_length), int(generated.shape[1]))
