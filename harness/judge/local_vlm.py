"""A local open-weights vision-language model as the judge, through transformers.

The model is any checkpoint that AutoModelForImageTextToText loads and whose
processor has a chat template taking images (Qwen2.5-VL, Gemma 3, LLaVA,
Idefics, …), named by HF id (from the Hugging Face cache) or local folder;
loading and generation are harness/vlm.py's, shared with DPG-Bench's VQA.
It runs in this process after all decoding, one request at a time, greedy
unless a temperature is set. Local models have no constrained decoding here:
the reply is validated like any other and retried once with a correction.
"""

from __future__ import annotations

from typing import Any

from harness.judge.config import JudgeConfig
from harness.judge.media import JudgeImage
from harness.judge.prompts import Prompt
from harness.judge.protocol import BackendUnavailable, Reply, RequestFailed
from harness.vlm import VLMUnavailable, generate, load_vlm


class LocalVLMBackend:
    priced = False
    max_concurrency = 1
    secrets: tuple[str, ...] = ()

    def __init__(self, processor: Any, model: Any, config: JudgeConfig) -> None:
        self.processor, self.model, self.config = processor, model, config
        self.judge_model = config.model

    @classmethod
    def load(cls, config: JudgeConfig) -> LocalVLMBackend:
        try:
            processor, model = load_vlm(config.model, config.device, config.dtype, "judge model",
                                        "judge.model", "judge.device")
        except VLMUnavailable as exc:
            raise BackendUnavailable(str(exc)) from None
        return cls(processor, model, config)

    def ask(self, prompt: Prompt) -> Reply:
        import torch

        content = [{"type": "image", "image": p.pil()} if isinstance(p, JudgeImage)
                   else {"type": "text", "text": p} for p in prompt.parts]
        limit = self.config.max_output_tokens
        try:
            reply = generate(self.processor, self.model, content, limit, self.config.temperature or 0.0)
        except torch.OutOfMemoryError as exc:
            raise RequestFailed(f"out of memory: {str(exc).splitlines()[0]}", "oom") from None
        finish = "length" if reply.output_tokens >= limit else "stop"
        return Reply(reply.text, reply.prompt_tokens, reply.output_tokens, finish)
