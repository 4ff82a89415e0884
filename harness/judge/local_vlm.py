"""A local open-weights vision-language model as the judge, through transformers.

The model is any checkpoint that AutoModelForImageTextToText loads and whose
processor has a chat template taking images (Qwen2.5-VL, Gemma 3, LLaVA,
Idefics, …), named by HF id (from the Hugging Face cache) or local folder.
It runs in this process after all decoding, one request at a time, greedy
unless a temperature is set. Local models have no constrained decoding here:
the reply is validated like any other and retried once with a correction.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.judge.config import JudgeConfig
from harness.judge.media import JudgeImage
from harness.judge.prompts import Prompt
from harness.judge.protocol import BackendUnavailable, Reply, RequestFailed


class LocalVLMBackend:
    priced = False
    max_concurrency = 1
    secrets: tuple[str, ...] = ()

    def __init__(self, processor: Any, model: Any, config: JudgeConfig) -> None:
        self.processor, self.model, self.config = processor, model, config
        self.judge_model = config.model

    @classmethod
    def load(cls, config: JudgeConfig) -> LocalVLMBackend:
        _check_weights(config.model)
        try:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError:
            raise BackendUnavailable("the local judge needs transformers: pip install transformers") from None
        if config.device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(f"judge.device is {config.device!r} but no CUDA device is available "
                                     "(set judge.device = \"cpu\" to judge on the CPU)")
        try:
            processor = AutoProcessor.from_pretrained(config.model)
            model = AutoModelForImageTextToText.from_pretrained(
                config.model, dtype=getattr(torch, config.dtype))
        except Exception as exc:  # a missing file, an unknown architecture, a missing dependency
            raise BackendUnavailable(f"cannot load judge model {config.model!r}: {type(exc).__name__}: {exc}"
                                     ) from None
        return cls(processor, model.to(config.device).eval(), config)

    def ask(self, prompt: Prompt) -> Reply:
        import torch

        content = [{"type": "image", "image": p.pil()} if isinstance(p, JudgeImage)
                   else {"type": "text", "text": p} for p in prompt.parts]
        sampling: dict[str, Any] = {"do_sample": False}
        if self.config.temperature:
            sampling = {"do_sample": True, "temperature": self.config.temperature}
        try:
            inputs = self.processor.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=True,
                return_dict=True, return_tensors="pt",
            ).to(self.model.device, dtype=self.model.dtype)
            with torch.inference_mode():
                output = self.model.generate(**inputs, max_new_tokens=self.config.max_output_tokens,
                                             **sampling)
        except torch.OutOfMemoryError as exc:
            raise RequestFailed(f"out of memory: {str(exc).splitlines()[0]}", "oom") from None
        prompt_length = inputs["input_ids"].shape[1]
        generated = output[:, prompt_length:]
        text = self.processor.batch_decode(generated, skip_special_tokens=True)[0]
        finish = "length" if generated.shape[1] >= self.config.max_output_tokens else "stop"
        return Reply(text, int(prompt_length), int(generated.shape[1]), finish)


def _check_weights(model: str) -> None:
    """Fail in well under a second, naming the missing file, instead of a long hub timeout."""
    path = Path(model).expanduser()
    if path.exists() or model.startswith((".", "/", "~")):
        if not (path / "config.json").is_file():
            raise BackendUnavailable(f"judge model folder {path} has no config.json; save a checkpoint "
                                     "there with save_pretrained() or name a Hugging Face model id")
        return
    from huggingface_hub import try_to_load_from_cache

    offline = any(os.environ.get(name, "").lower() in ("1", "true", "yes", "on")
                  for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    if isinstance(try_to_load_from_cache(model, "config.json"), str) or not offline:
        return
    raise BackendUnavailable(
        f"judge model {model!r}: config.json is not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
        f"download it with `hf download {model}` or set judge.model to a local folder"
    )
