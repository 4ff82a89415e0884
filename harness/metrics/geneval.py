"""GenEval: compositional prompt following, scored from object detections.

The rules are GenEval's (djghosh13/geneval, evaluation/evaluate_images.py
and summary_scores.py); the detector and colour classifier are a pluggable
backend (the reference: Mask2Former Swin-S COCO through mmdet, colours by
CLIP ViT-L/14 zero-shot on masked crops).

Per image, given the case prompt's metadata entry
{"tag", "include": [{"class", "count", "color"?, "position"?: [relation, index]}],
 "exclude": [{"class", "count"}]}:

1. Keep detections above the confidence threshold (0.3; 0.9 for the
   `counting` task), most confident first, at most 16 per class, with
   optional greedy suppression of boxes overlapping a kept one by IoU ≥
   `max_overlap` (1.0 = off, the default).
2. Every include clause needs `count` objects of its class among them; with
   a colour, at least `count` of those first `count` objects classified as
   that colour; with a position, every one of them must stand in the
   relation to every object matched by the clause it points to (which must
   itself have matched). Relations use box centres: the offset beyond
   `position_margin` × (sum of the two box sizes) on each axis, normalised
   by the offset's length, above 0.5 in a direction ("left of", "right of",
   "above", "below").
3. An exclude clause fails when `count` or more objects of its class remain.

An image is correct when every clause holds (value 1, else 0). The set's
score is the mean over tasks of each task's fraction of correct images
(the prompt's task is its metadata "tag"), as in GenEval's summary.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
from pydantic import Field

from decoders.lazy import torch
from decoders.plugins import Params, Registry
from harness.images import quantize
from harness.metrics.base import (
    Family,
    ImageContext,
    Metric,
    MetricUnavailable,
    MetricValues,
    load_backend,
)

COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
RELATIONS = ("left of", "right of", "above", "below")


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels
    score: float
    mask: np.ndarray | None = None  # bool [H, W]


class GenEvalBackend(Protocol):
    """Detects COCO objects and classifies their colours. Registered under
    the `decoderbench.geneval_backends` entry-point group."""

    def load(self, device: torch.device) -> None: ...

    def detect(self, image: np.ndarray) -> dict[str, list[Detection]]:
        """uint8 [H, W, 3] RGB → COCO class name → detections (any order, any score)."""
        ...

    def colours(self, image: np.ndarray, objects: list[Detection], classname: str) -> list[str]:
        """One of COLORS per object."""
        ...

    def weights(self) -> dict[str, str]:
        """Weight files used → sha256, for the protocol."""
        ...


BACKENDS: Registry = Registry("GenEval backend", "decoderbench.geneval_backends", {})


@dataclass(frozen=True)
class Rules:
    threshold: float = 0.3
    counting_threshold: float = 0.9
    max_objects: int = 16
    max_overlap: float = 1.0
    position_margin: float = 0.1


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """IoU with GenEval's inclusive-pixel areas (+1)."""
    def area(box: tuple[float, ...]) -> float:
        return max(box[2] - box[0] + 1, 0) * max(box[3] - box[1] + 1, 0)

    inner = area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = area(a) + area(b) - inner
    return inner / union if union else 0.0


def select_objects(detections: dict[str, list[Detection]], tag: str,
                   rules: Rules) -> dict[str, list[Detection]]:
    threshold = rules.counting_threshold if tag == "counting" else rules.threshold
    kept: dict[str, list[Detection]] = {}
    for classname, found in detections.items():
        ordered = sorted((d for d in found if d.score > threshold), key=lambda d: -d.score)
        ordered = ordered[:rules.max_objects]
        chosen: list[Detection] = []
        while ordered:
            best = ordered.pop(0)
            chosen.append(best)
            if rules.max_overlap < 1:
                ordered = [d for d in ordered if box_iou(best.box, d.box) < rules.max_overlap]
        if chosen:
            kept[classname] = chosen
    return kept


def relative_position(a: Detection, b: Detection, margin: float) -> set[str]:
    """Relations of A to B from box centres, ignoring offsets within margin × (size A + size B)."""
    boxes = np.array([a.box, b.box], dtype=np.float64).reshape(2, 2, 2)
    centre_a, centre_b = boxes.mean(axis=1)
    size_a, size_b = np.abs(boxes[:, 1] - boxes[:, 0])
    offset = centre_a - centre_b
    revised = np.maximum(np.abs(offset) - margin * (size_a + size_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    relations = set()
    if dx < -0.5:
        relations.add("left of")
    if dx > 0.5:
        relations.add("right of")
    if dy < -0.5:
        relations.add("above")
    if dy > 0.5:
        relations.add("below")
    return relations


ColourFn = Callable[[list[Detection], str], list[str]]


def evaluate_image(metadata: dict[str, Any], objects: dict[str, list[Detection]], colours: ColourFn,
                   margin: float = 0.1) -> tuple[bool, list[str]]:
    """(correct, reasons) for one image's selected objects."""
    correct, reasons = True, []
    matched_groups: list[list[Detection] | None] = []
    for clause in metadata.get("include", []):
        classname, count = clause["class"], clause["count"]
        found = objects.get(classname, [])[:count]
        matched = len(found) >= count
        if not matched:
            reasons.append(f"expected {classname}>={count}, found {len(found)}")
        else:
            if "color" in clause:
                seen = colours(found, classname)
                if seen.count(clause["color"]) < count:
                    matched = False
                    reasons.append(f"expected {clause['color']} {classname}>={count}, found "
                                   f"{seen.count(clause['color'])} {clause['color']}")
            if "position" in clause and matched:
                relation, target = clause["position"]
                targets = matched_groups[target]
                if targets is None:
                    matched = False
                    reasons.append(f"no target for {classname} to be {relation}")
                elif not all(relation in relative_position(obj, other, margin)
                             for obj in found for other in targets):
                    matched = False
                    reasons.append(f"expected {classname} {relation} target")
        correct &= matched
        matched_groups.append(found if matched else None)
    for clause in metadata.get("exclude", []):
        present = len(objects.get(clause["class"], []))
        if present >= clause["count"]:
            correct = False
            reasons.append(f"expected {clause['class']}<{clause['count']}, found {present}")
    return correct, reasons


def summarise(results: Iterable[tuple[str, bool]]) -> tuple[float, dict[str, float]]:
    """(overall score, per-task scores): mean over tasks of the fraction of correct images."""
    by_task: dict[str, list[bool]] = {}
    for tag, correct in results:
        by_task.setdefault(tag, []).append(correct)
    tasks = {tag: sum(v) / len(v) for tag, v in by_task.items()}
    return (sum(tasks.values()) / len(tasks) if tasks else float("nan")), tasks


def read_metadata(path: Path) -> dict[str, dict[str, Any]]:
    """GenEval's evaluation_metadata.jsonl → prompt → entry."""
    entries = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            entry = json.loads(line)
            if entry["prompt"] in entries:
                raise ValueError(f"{path}:{number}: prompt {entry['prompt']!r} occurs twice")
            entries[entry["prompt"]] = entry
    return entries


class GenEvalParams(Params):
    metadata: str = Field(description="path of GenEval's evaluation_metadata.jsonl (553 prompts)")
    backend: str = Field(description="detector + colour classifier plug-in (entry-point group "
                                     "decoderbench.geneval_backends)")
    threshold: float = 0.3
    counting_threshold: float = 0.9
    max_objects: int = 16
    max_overlap: float = 1.0
    position_margin: float = 0.1


class GenEval(Metric):
    name = "geneval"
    unit = "0–1"
    family = Family.TEXT_ALIGNMENT
    higher_is_better = True
    aggregates = True
    summary = "GenEval: image correct (1/0) per prompt's object/count/colour/position rules; set = task mean"
    Params: ClassVar = GenEvalParams

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self.backend: GenEvalBackend | None = None
        self.reset()

    @property
    def rules(self) -> Rules:
        p = self.params
        return Rules(p.threshold, p.counting_threshold, p.max_objects, p.max_overlap, p.position_margin)

    def check(self) -> None:
        path = Path(self.params.metadata).expanduser()
        if not path.is_file():
            raise MetricUnavailable(
                f"GenEval metadata not found: {path} (evaluation_metadata.jsonl from djghosh13/geneval, "
                "prompts/)")
        if self.params.backend not in BACKENDS.names():
            names = BACKENDS.names()
            raise MetricUnavailable(BACKENDS.unknown_message(self.params.backend, names))

    def load(self, device: torch.device) -> None:
        super().load(device)
        path = Path(self.params.metadata).expanduser()
        if not path.is_file():
            raise MetricUnavailable(f"GenEval metadata not found: {path} (evaluation_metadata.jsonl from "
                                    "djghosh13/geneval, prompts/)")
        self.metadata = read_metadata(path)
        self.backend = load_backend(BACKENDS, self.params.backend, device)
        self.weights_sha256 = self.backend.weights()

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "rules": "djghosh13/geneval evaluate_images.py",
                "score": "mean over tasks of the fraction of correct images"}

    def update(self, keys: list[str], preds: torch.Tensor, targets: torch.Tensor | None,
               contexts: list[ImageContext] | None = None) -> None:
        assert contexts is not None and self.backend is not None
        backend = self.backend
        for key, image, context in zip(keys, preds, contexts, strict=True):
            entry = self.metadata.get((context.prompt or "").strip())
            if entry is None:
                self._values.not_applicable[key] = "the case's prompt is not in the GenEval metadata"
                continue
            array = quantize(image).permute(1, 2, 0).cpu().numpy()
            objects = select_objects(backend.detect(array), entry["tag"], self.rules)
            correct, reasons = evaluate_image(
                entry, objects, lambda found, name, a=array: backend.colours(a, found, name),
                self.params.position_margin)
            self._values.per_key[key] = float(correct)
            self._values.details[key] = {"tag": entry["tag"], "reasons": reasons,
                                         "objects": {k: len(v) for k, v in objects.items()}}
            self._results.append((entry["tag"], correct))

    def compute(self) -> MetricValues:
        if self._results:
            overall, tasks = summarise(self._results)
            self._values.aggregate = overall
            self._values.aggregate_details = {"tasks": tasks, "images": len(self._results)}
            every = {e["tag"] for e in self.metadata.values()}
            missing = sorted(every - set(tasks))
            if missing:
                self._values.warnings.append(f"GenEval score over {len(tasks)} of {len(every)} tasks; no "
                                             f"image of {', '.join(missing)} (not comparable with full runs)")
        return self._values

    def reset(self) -> None:
        self._values = MetricValues()
        self._results: list[tuple[str, bool]] = []
