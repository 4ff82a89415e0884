"""CLIPScore: agreement of an output with its case's prompt, through CLIP (transformers).

Score = 100 · max(cos(image embedding, text embedding), 0), the scale of
torchmetrics' CLIPScore (and of the MLPerf SDXL CLIP gate). Images go
through the model's own CLIPProcessor (resize shortest side to 224 with
bicubic, centre crop, CLIP normalisation) exactly as torchmetrics feeds it
8-bit tensors. Cases without a prompt are not applicable.

Long captions: CLIP's text encoder reads at most 77 tokens (75 plus the
start and end tokens). The declared `long_captions` policy decides, and
every affected caption is counted in the record and in a run warning:

- `truncate` (default): keep the first 75 content tokens and the end token.
  (Truncating the token ids after tokenisation, as torchmetrics does, drops
  the end token on whose position CLIP pools the text — we keep it.)
- `chunk`: split the content tokens into windows of 75, encode each window
  with its own start and end tokens, average the unit-normalised window
  embeddings and normalise again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from decoders.lazy import no_grad, torch
from decoders.plugins import Params
from harness.images import quantize
from harness.metrics.base import (
    Family,
    ImageContext,
    Metric,
    MetricUnavailable,
    MetricValues,
    require_weights,
)

DEFAULT_CLIP = "openai/clip-vit-large-patch14"


class CLIPScoreParams(Params):
    model: str = Field(default=DEFAULT_CLIP, description="HF id (in the HF cache) or a local directory")
    long_captions: Literal["truncate", "chunk"] = "truncate"


def load_clip(model: str, metric: Metric) -> tuple[Any, Any]:
    """(CLIPModel, CLIPProcessor) from local files only; records the weights' sha256 on `metric`."""
    from harness.metrics.weights import file_sha256, hub_offline

    local = Path(model).expanduser()
    if model == DEFAULT_CLIP:
        require_weights(metric)
        source = model
    elif local.is_dir():
        files = sorted(p for p in local.iterdir() if p.suffix in (".safetensors", ".bin"))
        metric.weights_sha256 = {str(p): file_sha256(p) for p in files}
        source = str(local)
    else:
        source = model
    from transformers import CLIPModel, CLIPProcessor

    try:
        with hub_offline():
            return (CLIPModel.from_pretrained(source, local_files_only=True).eval(),
                    CLIPProcessor.from_pretrained(source, local_files_only=True))
    except OSError as exc:
        raise MetricUnavailable(
            f"CLIP model {model!r} is not available locally ({exc}); download it with "
            f"`hf download {model}` on a machine with network access, or give a local directory"
        ) from None


class CLIPScore(Metric):
    name = "clipscore"
    unit = "0–100"
    requires = ("transformers",)
    family = Family.TEXT_ALIGNMENT
    higher_is_better = True
    summary = "100·max(cos(CLIP image, CLIP prompt), 0); declared long-caption policy"
    Params: ClassVar = CLIPScoreParams

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self.reset()

    def check(self) -> None:
        model = self.params.model
        if model == DEFAULT_CLIP or Path(model).expanduser().is_dir():
            super().check()  # the lock table's files (a local directory needs nothing more)
            return
        from huggingface_hub import try_to_load_from_cache

        super().check()
        if not isinstance(try_to_load_from_cache(model, "config.json"), str):
            raise MetricUnavailable(f"CLIP model {model!r} is not in the Hugging Face cache; download it "
                                    f"with `hf download {model}`, or give a local directory")

    def load(self, device: torch.device) -> None:
        super().load(device)
        model, self.processor = load_clip(self.params.model, self)
        self.model = model.to(device)
        self.tokenizer = self.processor.tokenizer
        self.max_tokens = self.model.config.text_config.max_position_embeddings

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "score": "100 * max(cosine, 0)",
                "image_preprocessing": "the model's CLIPProcessor on 8-bit images",
                "long_captions": f"{self.params.long_captions}: windows of max_position_embeddings − 2 "
                                 "content tokens, each with start and end tokens"}

    def token_windows(self, prompt: str) -> tuple[list[list[int]], int]:
        """Token id windows to encode for `prompt` under the policy, and its full token count."""
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        content = self.max_tokens - 2
        bos, eos = self.tokenizer.bos_token_id, self.tokenizer.eos_token_id
        windows = [ids[start:start + content] for start in range(0, max(len(ids), 1), content)]
        if self.params.long_captions == "truncate":
            windows = windows[:1]
        return [[bos, *window, eos] for window in windows], len(ids) + 2

    @no_grad
    def text_embedding(self, prompt: str) -> tuple[torch.Tensor, int, int]:
        windows, tokens = self.token_windows(prompt)
        width = max(len(w) for w in windows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else windows[0][-1]
        ids = torch.tensor([w + [pad] * (width - len(w)) for w in windows], device=self.device)
        mask = torch.tensor([[1] * len(w) + [0] * (width - len(w)) for w in windows], device=self.device)
        embeddings = _tensor(self.model.get_text_features(input_ids=ids, attention_mask=mask))
        embeddings = embeddings / embeddings.norm(dim=-1, keepdim=True)
        return embeddings.mean(dim=0), tokens, len(windows)

    @no_grad
    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        pixels = self.processor(images=[image.cpu() for image in quantize(images)], return_tensors="pt")
        return _tensor(self.model.get_image_features(pixel_values=pixels["pixel_values"].to(self.device)))

    def update(self, keys: list[str], preds: torch.Tensor, targets: torch.Tensor | None,
               contexts: list[ImageContext] | None = None) -> None:
        assert contexts is not None
        prompted = [i for i, c in enumerate(contexts) if c.prompt]
        for i, key in enumerate(keys):
            if not contexts[i].prompt:
                self._values.not_applicable[key] = "the case has no prompt"
        if not prompted:
            return
        images = self.image_embeddings(preds[prompted])
        images = images / images.norm(dim=-1, keepdim=True)
        for row, index in enumerate(prompted):
            text, tokens, windows = self.text_embedding(str(contexts[index].prompt))
            text = text / text.norm()
            cosine = float((images[row].double() * text.double()).sum())
            self._values.per_key[keys[index]] = 100 * max(cosine, 0.0)
            self._values.details[keys[index]] = {"prompt_tokens": tokens, "text_windows": windows}
            self._long += int(tokens > self.max_tokens)

    def compute(self) -> MetricValues:
        if self._long:
            what = "truncated to their first" if self.params.long_captions == "truncate" else "chunked into"
            self._values.warnings.append(
                f"{self._long} of {len(self._values.per_key)} prompts exceed {self.max_tokens} CLIP tokens "
                f"and were {what} {self.max_tokens - 2}-token windows (long_captions = "
                f"{self.params.long_captions!r})")
        return self._values

    def reset(self) -> None:
        self._values = MetricValues()
        self._long = 0


def _tensor(output: Any) -> torch.Tensor:
    """transformers ≥ 5 may return a model output instead of a tensor from get_*_features."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output
