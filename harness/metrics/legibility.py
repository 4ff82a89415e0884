"""Text legibility: character error rate of OCR on text charts, per font size.

Each annotated line is cropped from the output and read by rapidocr's recogniser; the reference's
own CER is the OCR floor, and a set whose references the OCR cannot read is declared uninformative
(docs/metrics.md, protocols and policies).
"""

from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from decoders.lazy import torch
from decoders.plugins import Params
from harness.env import package_version
from harness.images import pixels_sha256, quantize
from harness.metrics.base import Family, ImageContext, Metric, MetricUnavailable, MetricValues

REC_MODEL = "models/ch_PP-OCRv4_rec_infer.onnx"


def levenshtein(truth: str, read: str) -> int:
    previous = list(range(len(read) + 1))
    for i, a in enumerate(truth, start=1):
        current = [i]
        for j, b in enumerate(read, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        previous = current
    return previous[-1]


def crop_boxes(height: int, width: int, lines: list[dict[str, Any]],
               pad: float) -> list[tuple[slice, slice]]:
    """(rows, columns) of each annotated line (box in image pixels) with padding, inside the image."""
    boxes = []
    for line in lines:
        left, top, right, bottom = line["box"]
        margin = max(3.0, pad * (bottom - top))
        y0, y1 = max(0, int(np.floor(top - margin))), min(height, int(np.ceil(bottom + margin)))
        x0, x1 = max(0, int(np.floor(left - margin))), min(width, int(np.ceil(right + margin)))
        boxes.append((slice(y0, y1), slice(x0, x1)))
    return boxes


def line_crops(image: np.ndarray, lines: list[dict[str, Any]], pad: float) -> list[np.ndarray]:
    """Crop each annotated line with padding from an HxWx3 uint8 array."""
    return [np.ascontiguousarray(image[rows, columns])
            for rows, columns in crop_boxes(image.shape[0], image.shape[1], lines, pad)]


def bgr_line_crops(image: torch.Tensor, lines: list[dict[str, Any]], pad: float) -> list[np.ndarray]:
    """The crops `line_crops` cuts from the BGR uint8 array of a [3, H, W] image (floats in [0, 1]
    or uint8), converting only the crops: at 2048² the text lines are a small part of the image."""
    crops = []
    for rows, columns in crop_boxes(image.shape[-2], image.shape[-1], lines, pad):
        crop = image[:, rows, columns]
        crop = crop if crop.dtype == torch.uint8 else quantize(crop)  # elementwise: same bytes
        crops.append(np.ascontiguousarray(crop.permute(1, 2, 0).cpu().numpy()[..., ::-1]))  # RGB → BGR
    return crops


@lru_cache(maxsize=1)
def ocr_engine() -> Any:
    """One rapidocr engine per process: its ONNX sessions are costly to create and to warm up."""
    from rapidocr_onnxruntime import RapidOCR

    with contextlib.redirect_stdout(io.StringIO()):
        return RapidOCR()


def font_key(font_px: float) -> str:
    return f"{font_px:g}"


class LegibilityParams(Params):
    pad: float = Field(default=0.5, ge=0, le=2, description="crop padding around a line box, × its height")
    uninformative_above: float = Field(
        default=0.25, gt=0, le=1, description="reference CER above which the set is declared uninformative")


class Tally:
    """Edit distances and character counts per font size."""

    def __init__(self) -> None:
        self.edits: dict[str, int] = defaultdict(int)
        self.chars: dict[str, int] = defaultdict(int)

    def add(self, font_px: float, edits: int, chars: int) -> None:
        self.edits[font_key(font_px)] += edits
        self.chars[font_key(font_px)] += chars

    def merge(self, other: Tally) -> None:
        for key in other.chars:
            self.edits[key] += other.edits[key]
            self.chars[key] += other.chars[key]

    def cer(self) -> float:
        return sum(self.edits.values()) / max(1, sum(self.chars.values()))

    def by_font(self) -> dict[str, float]:
        order = sorted(self.chars, key=float)
        return {key: self.edits[key] / max(1, self.chars[key]) for key in order}


class LegibilityCER(Metric):
    name = "legibility_cer"
    unit = "character error rate (0–1)"
    requires = ("rapidocr_onnxruntime",)
    family = Family.FULL_REFERENCE
    summary_group = "text"
    higher_is_better = False
    aggregates = True
    summary = "OCR character error rate on rendered text lines (rapidocr); per font size in details"
    Params: ClassVar = LegibilityParams

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self._reference_memo: dict[str, Tally] = {}
        self.reset()

    def load(self, device: torch.device) -> None:
        super().load(device)
        try:
            import rapidocr_onnxruntime
        except ImportError:
            raise MetricUnavailable("legibility_cer needs rapidocr: pip install 'decoderbench[metrics]' "
                                    "(rapidocr-onnxruntime ships its OCR models)") from None
        from harness.metrics.weights import file_sha256

        self.engine = ocr_engine()
        model = Path(rapidocr_onnxruntime.__file__).parent / REC_MODEL
        self.weights_sha256 = {f"rapidocr-onnxruntime/{REC_MODEL}": file_sha256(model)}

    def protocol(self) -> dict[str, Any]:
        ocr = package_version("rapidocr-onnxruntime") or "not installed"
        return {**super().protocol(), "ocr": f"rapidocr-onnxruntime {ocr}, "
                "recognition only, on the annotated line boxes", "normalise": "whitespace removed",
                "cer": "Levenshtein distance / truth length; font sizes in comparison px"}

    def read(self, image: torch.Tensor, lines: list[dict[str, Any]]) -> Tally:
        """OCR every line of one [3, H, W] image (floats in [0, 1], or uint8), in BGR as rapidocr reads."""
        results, _ = self.engine.text_rec(bgr_line_crops(image, lines, self.params.pad))
        tally = Tally()
        for line, (text, _score) in zip(lines, results, strict=True):
            read = "".join(text.split())
            tally.add(line["font_px"], levenshtein(line["text"], read), len(line["text"]))
        return tally

    def update(self, keys: list[str], preds: torch.Tensor, targets: torch.Tensor | None,
               contexts: list[ImageContext] | None = None) -> None:
        assert contexts is not None and targets is not None
        for key, pred, target, context in zip(keys, preds, targets, contexts, strict=True):
            lines = context.annotations.get("text_lines")
            if not lines:
                self._values.not_applicable[key] = "the source image has no annotated text lines"
                continue
            tally = self.read(pred, lines)
            reference = quantize(target)
            reference_id = pixels_sha256(reference)
            if reference_id not in self._reference_memo:
                self._reference_memo[reference_id] = self.read(reference, lines)
            self._tally.merge(tally)
            self._reference.merge(self._reference_memo[reference_id])
            self._values.per_key[key] = tally.cer()
            self._values.details[key] = {"cer_by_font_px": tally.by_font(),
                                         "reference_cer": self._reference_memo[reference_id].cer()}

    def compute(self) -> MetricValues:
        values = self._values
        if values.per_key:
            values.aggregate = self._tally.cer()
            floor = self._reference.cer()
            values.aggregate_details = {
                "cer_by_font_px": self._tally.by_font(),
                "reference_cer_by_font_px": self._reference.by_font(),
                "characters_by_font_px": {k: self._tally.chars[k] for k in self._tally.by_font()},
                "reference_value": floor,
            }
            if floor > self.params.uninformative_above:
                values.aggregate_details["uninformative"] = (
                    f"the OCR misreads {floor:.0%} of the reference's own characters (above "
                    f"{self.params.uninformative_above:.0%}): at this size the CER measures the OCR, "
                    "not the decoder")
        return values

    def reset(self) -> None:
        self._values = MetricValues()
        self._tally, self._reference = Tally(), Tally()
