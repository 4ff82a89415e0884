"""GenEval: compositional prompt following, scored from object detections.

GenEval's rules (djghosh13/geneval @ af4902f) over a pluggable detector and colour classifier; an
image is correct (1) when every clause of its metadata holds, and the set's score is the mean of
the task means (docs/benchmarks.md, GenEval).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
from pydantic import Field, model_validator

from decoders.lazy import torch
from decoders.plugins import Params, Registry
from decoders.weights import file_sha256
from harness.images import quantize
from harness.metrics.base import (
    Family,
    ImageContext,
    Metric,
    MetricUnavailable,
    MetricValues,
    check_backend_options,
    check_gaps,
    load_backend,
)

COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
RELATIONS = ("left of", "right of", "above", "below")
# GenEval's tasks (metadata "tag") in the order and with the names of the paper's results table.
TASKS = {"single_object": "Single object", "two_object": "Two object", "counting": "Counting",
         "colors": "Colors", "position": "Position", "color_attr": "Color attribution"}


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


BACKENDS: Registry = Registry("GenEval backend", "decoderbench.geneval_backends", {
    "transformers": "harness.metrics.geneval_detector:TransformersGenEvalBackend",
})


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
        # As evaluate_images.py sees them: mmdet's scores are float32, thresholded in float32 (a
        # score of float32 0.3 is not above 0.3) and ordered by np.argsort reversed (equal scores:
        # the later-listed first).
        scores = np.array([d.score for d in found], dtype=np.float32)
        order = np.argsort(scores)[::-1]
        order = order[scores[order] > np.float32(threshold)][:rules.max_objects]
        ordered = [found[i] for i in order.tolist()]
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
                seen, colour = colours(found, classname), clause["color"]
                if seen.count(colour) < count:
                    matched = False
                    tally = ", ".join(f"{seen.count(c)} {c}" for c in COLORS if c in seen)
                    reasons.append(f"expected {colour} {classname}>={count}, found {seen.count(colour)} "
                                   f"{colour}; and {tally}")
            if "position" in clause and matched:
                problem = _position_problem(clause, classname, found, matched_groups, margin)
                if problem:
                    matched = False
                    reasons.append(problem)
        correct &= matched
        matched_groups.append(found if matched else None)
    for clause in metadata.get("exclude", []):
        present = len(objects.get(clause["class"], []))
        if present >= clause["count"]:
            correct = False
            reasons.append(f"expected {clause['class']}<{clause['count']}, found {present}")
    return correct, reasons


def _position_problem(clause: dict[str, Any], classname: str, found: list[Detection],
                      matched_groups: list[list[Detection] | None], margin: float) -> str | None:
    """GenEval's position check: every object against every object of the target clause; the
    first pair that is not in the relation is the reason."""
    relation, target = clause["position"]
    targets = matched_groups[target]
    if targets is None:
        return f"no target for {classname} to be {relation}"
    for obj in found:
        for other in targets:
            relations = relative_position(obj, other, margin)
            if relation not in relations:
                return f"expected {classname} {relation} target, found {' and '.join(relations)} target"
    return None


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
    metadata: str | None = Field(
        default=None, description="GenEval's evaluation_metadata.jsonl, to match cases by prompt; cases of "
        "a `benchmark = \"geneval\"` source carry their entry (default: the fetched benchmark data)")
    backend: str = Field(default="transformers", description="detector + colour classifier plug-in "
                         "(built in: transformers; others through entry-point group "
                         "decoderbench.geneval_backends)")
    backend_options: dict[str, Any] = Field(default_factory=dict, description="the backend's own "
                                            "parameters, validated by its Params model")
    threshold: float = 0.3
    counting_threshold: float = 0.9
    max_objects: int = 16
    max_overlap: float = 1.0
    position_margin: float = 0.1

    @model_validator(mode="after")
    def _options_fit_the_backend(self) -> GenEvalParams:
        return check_backend_options(self, BACKENDS)


class GenEval(Metric):
    name = "geneval"
    unit = "0–1"
    family = Family.TEXT_ALIGNMENT
    higher_is_better = True
    aggregates = True
    version = "2"
    summary = ("GenEval: image correct (1/0) per prompt's object/count/colour/position rules; set = mean "
               "of the 6 task means; comparable only with the same backend (detector, CLIP)")
    Params: ClassVar = GenEvalParams

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self.backend: GenEvalBackend | None = None
        self.metadata: dict[str, dict[str, Any]] = {}
        self.metadata_sha256: str | None = None
        self.reset()

    @property
    def rules(self) -> Rules:
        p = self.params
        return Rules(p.threshold, p.counting_threshold, p.max_objects, p.max_overlap, p.position_margin)

    def check(self) -> None:
        """The prompt metadata, the backend's name and, for the built-in backend at its default
        models, the lock table's weight files (Mask2Former, CLIP), without loading anything."""
        problems = []
        if self.params.metadata is None:
            from harness.sources import benchmarks

            try:
                benchmarks.require("geneval")
            except benchmarks.BenchmarkDataMissing as exc:
                problems.append(str(exc))
        else:
            self._metadata_path()
        if self.params.backend not in BACKENDS.names():
            raise MetricUnavailable(BACKENDS.unknown_message(self.params.backend, BACKENDS.names()))
        check_gaps(self, problems, self.params.backend == "transformers" and not self.params.backend_options)

    def load(self, device: torch.device) -> None:
        super().load(device)
        path = self._metadata_path()
        if path is not None:
            self.metadata, self.metadata_sha256 = read_metadata(path), file_sha256(path)
        self.backend = load_backend(BACKENDS, self.params.backend, device, self.params.backend_options)
        if hasattr(self.backend, "min_score"):  # detections at or below every threshold cannot count
            self.backend.min_score = min(self.params.threshold, self.params.counting_threshold)
        self.weights_sha256 = self.backend.weights()

    def _metadata_path(self) -> Path | None:
        if self.params.metadata is None:
            from harness.sources import benchmarks

            try:
                return benchmarks.require("geneval")["evaluation_metadata.jsonl"]
            except benchmarks.BenchmarkDataMissing:
                return None  # cases of the benchmark source carry their entries
        path = Path(self.params.metadata).expanduser()
        if not path.is_file():
            raise MetricUnavailable(f"GenEval metadata not found: {path} (prompts/evaluation_metadata.jsonl "
                                    "of djghosh13/geneval; `decoderbench benchmarks fetch geneval`)")
        return path

    def protocol(self) -> dict[str, Any]:
        describe = getattr(self.backend, "describe", None)
        return {**super().protocol(), "rules": "djghosh13/geneval@af4902f evaluation/evaluate_images.py",
                "score": "mean over tasks of the fraction of correct images (summary_scores.py)",
                "backend": {"name": self.params.backend, **(describe() if describe else {})},
                "metadata_sha256": self.metadata_sha256}

    def entry_for(self, context: ImageContext) -> dict[str, Any] | None:
        """The case's GenEval entry: carried by a benchmark case, else found by its prompt."""
        benchmark = context.annotations.get("benchmark") or {}
        if benchmark.get("name") == "geneval":
            return benchmark["metadata"]
        return self.metadata.get((context.prompt or "").strip())

    def update(self, keys: list[str], preds: torch.Tensor, targets: torch.Tensor | None,
               contexts: list[ImageContext] | None = None) -> None:
        assert contexts is not None and self.backend is not None
        backend = self.backend
        for key, image, context in zip(keys, preds, contexts, strict=True):
            entry = self.entry_for(context)
            if entry is None:
                self._values.not_applicable[key] = ("the case is not a GenEval prompt (use a source with "
                                                    "benchmark = \"geneval\", or params.metadata)")
                continue
            array = quantize(image).permute(1, 2, 0).cpu().numpy()
            objects = select_objects(backend.detect(array), entry["tag"], self.rules)
            correct, reasons = evaluate_image(
                entry, objects, lambda found, name, a=array: backend.colours(a, found, name),
                self.params.position_margin)
            self._values.per_key[key] = float(correct)
            self._values.details[key] = {
                "tag": entry["tag"], "reasons": reasons,
                "objects": {k: [[round(v, 1) for v in d.box] + [round(d.score, 4)] for d in found]
                            for k, found in objects.items()}}
            self._results.append((entry["tag"], correct))

    def compute(self) -> MetricValues:
        if self._results:
            overall, tasks = summarise(self._results)
            counts = {tag: [sum(c for t, c in self._results if t == tag),
                            sum(1 for t, _ in self._results if t == tag)] for tag in tasks}
            self._values.aggregate = overall
            self._values.aggregate_details = {
                "tasks": {tag: tasks[tag] for tag in [*TASKS, *sorted(set(tasks) - set(TASKS))]
                          if tag in tasks},
                "correct_of": counts, "images": len(self._results), "backend": self.params.backend}
            missing = [TASKS[tag] for tag in TASKS if tag not in tasks]
            if missing:
                self._values.warnings.append(f"GenEval score over {len(tasks)} of {len(TASKS)} tasks; no "
                                             f"image of {', '.join(missing)} (not comparable with full runs)")
        return self._values

    def reset(self) -> None:
        self._values = MetricValues()
        self._results: list[tuple[str, bool]] = []

