"""DPG-Bench: dense prompt following, scored by visual question answering.

Every question of a prompt asked about every image through a pluggable VQA backend, scored by one
of two named protocols: `ella` (ELLA's script as published) or `corrected` (its slips removed);
the protocol and the backend are part of the metric's protocol hash (docs/benchmarks.md).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
from pydantic import Field, model_validator

from decoders.lazy import torch
from decoders.plugins import Params, Registry
from decoders.weights import file_sha256
from harness.errors import DecoderbenchError
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

COLUMNS = ("item_id", "text", "keywords", "proposition_id", "dependency", "category_broad",
           "category_detailed", "tuple", "question_natural_language")
PROTOCOLS = ("ella", "corrected")
# The L1 categories in the order of the DPG-Bench results table (ELLA paper).
CATEGORIES = ("global", "entity", "attribute", "relation", "other")


@dataclass(frozen=True)
class Question:
    id: int
    parents: tuple[int, ...]  # in CSV order, 0 (= none) dropped
    category: str  # L2, e.g. "entity - whole"
    text: str


@dataclass(frozen=True)
class Prompt:
    item_id: str
    text: str
    questions: tuple[Question, ...]
    repeated: tuple[str, ...] = ()  # `corrected`: rows that repeat a proposition id (counted once)


class VQABackend(Protocol):
    """Answers yes/no questions about an image. Registered under the
    `decoderbench.vqa_backends` entry-point group."""

    def load(self, device: torch.device) -> None: ...

    def answer(self, image: np.ndarray, questions: list[str]) -> list[str]:
        """uint8 [H, W, 3] RGB, questions → one answer string per question."""
        ...

    def weights(self) -> dict[str, str]: ...


BACKENDS: Registry = Registry("VQA backend", "decoderbench.vqa_backends", {
    "blip-vqa": "harness.metrics.vqa:BlipVQABackend",
    "vlm": "harness.metrics.vqa:VLMBackend",
})


# --------------------------------------------------------------------------- reading the CSV


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        return list(reader)


def _question(row: dict[str, str], where: str) -> Question:
    try:
        parents = tuple(int(d.strip()) for d in row["dependency"].split(","))
        return Question(int(row["proposition_id"]), tuple(p for p in parents if p != 0),
                        row["tuple"].split("(")[0].strip(), row["question_natural_language"])
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def read_questions(path: Path) -> dict[str, Prompt]:
    """`corrected`: every row; item id → Prompt (questions in file order, rows grouped by item). A
    proposition id is one question: a row repeating one of its item is counted once (its first row),
    in the image score and in the categories alike, and named in `repeated`."""
    grouped: dict[str, list[tuple[int, dict[str, str]]]] = defaultdict(list)
    for number, row in enumerate(_rows(path), start=2):
        grouped[row["item_id"]].append((number, row))
    prompts = {}
    for item, rows in grouped.items():
        questions: dict[int, tuple[int, Question]] = {}
        repeated = []
        for number, row in rows:
            question = _question(row, f"{path}:{number}")
            if question.id in questions:
                repeated.append(f"{path.name}:{number} repeats proposition {question.id} of item {item} "
                                f"(line {questions[question.id][0]}): counted once")
                continue
            questions[question.id] = (number, question)
        prompts[item] = Prompt(item, rows[0][1]["text"].strip(), tuple(q for _, q in questions.values()),
                               tuple(repeated))
    return prompts


def read_questions_ella(path: Path) -> dict[str, Prompt]:
    """`ella`: item id → Prompt as prepare_dpg_data builds it (first data row skipped; a run of rows of
    one item replaces an earlier run; a repeated proposition id keeps its first place, last row)."""
    items: dict[str, dict[int, Question]] = {}
    texts: dict[str, str] = {}
    previous = ""
    for number, row in enumerate(_rows(path)[1:], start=3):
        current, question = row["item_id"], _question(row, f"{path}:{number}")
        if current != previous:
            items[current], texts[current] = {}, row["text"].strip()
        items[current][question.id] = question
        previous = current
    return {item: Prompt(item, texts[item], tuple(questions.values())) for item, questions in items.items()}


# --------------------------------------------------------------------------- scoring one image


class ScriptFailure(DecoderbenchError, ValueError):
    """ELLA's script raises on this image (and so leaves its prompt out)."""


def is_yes(answer: str) -> bool:
    return answer.strip().lower() == "yes"


def question_scores(questions: tuple[Question, ...], answers: dict[int, str]) -> dict[int, float]:
    """`corrected`: scores after transitive zeroing (a question counts only if all its ancestors do)."""
    by_id = {q.id: q for q in questions}
    scores: dict[int, float] = {}

    def score(qid: int, path: tuple[int, ...] = ()) -> float:
        if qid in scores:
            return scores[qid]
        if qid in path:
            raise ValueError(f"dependency cycle through question {qid}")
        value = float(is_yes(answers[qid]))
        if value and any(score(p, (*path, qid)) == 0 for p in by_id[qid].parents if p in by_id):
            value = 0.0
        scores[qid] = value
        return value

    for question in questions:
        score(question.id)
    return scores


def question_scores_ella(questions: tuple[Question, ...], answers: dict[int, str]) -> dict[int, float]:
    """`ella`: exact "yes", then one zeroing pass in question order over the scores as they stand."""
    scores = {q.id: float(answers[q.id] == "yes") for q in questions}
    for question in questions:
        for parent in question.parents:
            if parent not in scores:
                raise ScriptFailure(f"question {question.id} depends on question {parent}, which ELLA's "
                                    "script does not have for this item (it skips the CSV's first row)")
            if scores[parent] == 0:
                scores[question.id] = 0.0
                break
    return scores


# --------------------------------------------------------------------------- the set


@dataclass(frozen=True)
class ImageResult:
    seed: int  # the image's order: input seed, then decoder seed (ELLA's "last image" is the highest)
    scores: dict[int, float] | None  # after zeroing; None: ELLA's script fails on this image
    raw: dict[int, float]  # before zeroing


@dataclass
class DPGSummary:
    score: float
    l1: dict[str, float]
    l2: dict[str, float]
    prompts: int
    left_out: list[str] = field(default_factory=list)  # item ids the protocol leaves out


@dataclass
class DPGTally:
    """Every scored image, by prompt; the protocol decides how they add up."""

    prompts: dict[str, Prompt] = field(default_factory=dict)
    images: dict[str, list[ImageResult]] = field(default_factory=lambda: defaultdict(list))

    def add(self, prompt: Prompt, result: ImageResult) -> None:
        self.prompts[prompt.item_id] = prompt
        self.images[prompt.item_id].append(result)

    def summary(self, protocol: str) -> DPGSummary:
        left_out = sorted(i for i, images in self.images.items() if any(r.scores is None for r in images))
        kept = {i: images for i, images in self.images.items() if i not in left_out}
        prompt_scores = [np.mean([_mean(r.scores) for r in images]) for images in kept.values()]
        pooled: dict[str, list[float]] = defaultdict(list)
        for item, images in kept.items():
            chosen = [max(images, key=lambda r: r.seed)] if protocol == "ella" else images
            for result in chosen:
                values = result.raw if protocol == "ella" else result.scores
                for question in self.prompts[item].questions:
                    pooled[question.category].append(values[question.id])  # type: ignore[index]
        level1: dict[str, list[float]] = defaultdict(list)
        for category, values in pooled.items():
            level1[category.split("-")[0].strip()].extend(values)
        return DPGSummary(100 * float(np.mean(prompt_scores)) if prompt_scores else float("nan"),
                          {k: 100 * float(np.mean(v)) for k, v in sorted(level1.items())},
                          {k: 100 * float(np.mean(v)) for k, v in sorted(pooled.items())},
                          len(kept), left_out)


def _mean(scores: dict[int, float] | None) -> float:
    assert scores is not None
    return sum(scores.values()) / len(scores)


# --------------------------------------------------------------------------- the metric


class DPGParams(Params):
    questions: str | None = Field(default=None, description="DPG-Bench's dpg_bench.csv (default: the "
                                  "fetched benchmark data, `decoderbench benchmarks fetch dpg-bench`)")
    protocol: Literal["ella", "corrected"] = Field(
        default="ella", description="ella: compute_dpg_bench.py as published (papers' numbers); corrected: "
        "its slips removed")
    backend: str = Field(default="blip-vqa", description="VQA plug-in (built in: blip-vqa, vlm; others "
                         "through entry-point group decoderbench.vqa_backends)")
    backend_options: dict[str, Any] = Field(default_factory=dict, description="the backend's own "
                                            "parameters, validated by its Params model")

    @model_validator(mode="after")
    def _options_fit_the_backend(self) -> DPGParams:
        return check_backend_options(self, BACKENDS)


class DPGBench(Metric):
    name = "dpg_bench"
    unit = "0–100"
    family = Family.TEXT_ALIGNMENT
    higher_is_better = True
    aggregates = True
    version = "2"
    summary = ("DPG-Bench: VQA yes-rate with dependency zeroing, ×100; set = mean over prompts; named "
               "protocol (ella | corrected); comparable only with the same VQA model")
    Params: ClassVar = DPGParams

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self.backend: VQABackend | None = None
        self.reset()

    def check(self) -> None:
        """The questions file, the backend's name and, for the built-in VQA backend at its default
        model, the lock table's weight files (BLIP VQA), without loading anything."""
        problems = []
        try:
            self._questions_path()
        except MetricUnavailable as exc:
            problems.append(str(exc))
        if self.params.backend not in BACKENDS.names():
            raise MetricUnavailable(BACKENDS.unknown_message(self.params.backend, BACKENDS.names()))
        check_gaps(self, problems, self.params.backend == "blip-vqa" and not self.params.backend_options)

    def load(self, device: torch.device) -> None:
        super().load(device)
        path = self._questions_path()
        reader = read_questions_ella if self.params.protocol == "ella" else read_questions
        try:
            self.prompts = reader(path)
        except (OSError, ValueError, KeyError) as exc:
            raise MetricUnavailable(f"cannot read DPG-Bench questions: {exc}") from None
        self.by_text = {p.text: p for p in self.prompts.values()}
        self.questions_sha256 = file_sha256(path)
        self.backend = load_backend(BACKENDS, self.params.backend, device, self.params.backend_options)
        self.weights_sha256 = self.backend.weights()

    def _questions_path(self) -> Path:
        if self.params.questions is None:
            from harness.sources import benchmarks

            try:
                return benchmarks.require("dpg-bench")["dpg_bench.csv"]
            except benchmarks.BenchmarkDataMissing as exc:
                raise MetricUnavailable(str(exc)) from None
        path = Path(self.params.questions).expanduser()
        if not path.is_file():
            raise MetricUnavailable(f"DPG-Bench questions not found: {path} (dpg_bench/dpg_bench.csv of "
                                    "TencentQQGYLab/ELLA; `decoderbench benchmarks fetch dpg-bench`)")
        return path

    def protocol(self) -> dict[str, Any]:
        describe = getattr(self.backend, "describe", None)
        rules = {"ella": "TencentQQGYLab/ELLA@3c228f1 dpg_bench/compute_dpg_bench.py as published: first "
                         "CSV row skipped, answer == 'yes', one zeroing pass in CSV order, categories from "
                         "the last image's raw answers",
                 "corrected": "every row (a repeated proposition id once), strip().lower() == 'yes', "
                              "transitive zeroing, categories after zeroing over all images"}
        return {**super().protocol(), "scoring": rules[self.params.protocol],
                "backend": {"name": self.params.backend, **(describe() if describe else {})},
                "questions_sha256": getattr(self, "questions_sha256", None)}

    def prompt_for(self, context: ImageContext) -> Prompt | None:
        benchmark = context.annotations.get("benchmark") or {}
        if benchmark.get("name") == "dpg-bench":
            return self.prompts.get(benchmark["item_id"])
        return self.by_text.get((context.prompt or "").strip())

    def update(self, keys: list[str], preds: torch.Tensor, targets: torch.Tensor | None,
               contexts: list[ImageContext] | None = None) -> None:
        assert contexts is not None and self.backend is not None
        for key, image, context in zip(keys, preds, contexts, strict=True):
            prompt = self.prompt_for(context)
            if prompt is None:
                self._values.not_applicable[key] = "the case's prompt has no DPG-Bench questions"
                continue
            array = quantize(image).permute(1, 2, 0).cpu().numpy()
            answers = dict(zip([q.id for q in prompt.questions],
                               self.backend.answer(array, [q.text for q in prompt.questions]), strict=True))
            self._score(key, (context.input_seed << 32) + context.seed, prompt, answers)

    def _score(self, key: str, seed: int, prompt: Prompt, answers: dict[int, str]) -> None:
        ella = self.params.protocol == "ella"
        raw = {qid: float(a == "yes" if ella else is_yes(a)) for qid, a in answers.items()}
        details: dict[str, Any] = {"item_id": prompt.item_id,
                                   "answers": {str(k): v for k, v in answers.items()}}
        try:
            scores: dict[int, float] | None = (question_scores_ella if ella else question_scores)(
                prompt.questions, answers)
        except ScriptFailure as exc:
            scores = None
            self._values.not_applicable[key] = f"{exc}; the published script leaves this prompt out"
        else:
            self._values.per_key[key] = 100 * _mean(scores)
            details["question_scores"] = {str(k): v for k, v in scores.items()}
        self._values.details[key] = details
        self._tally.add(prompt, ImageResult(seed, scores, raw))

    def compute(self) -> MetricValues:
        if not self._tally.images:
            return self._values
        summary = self._tally.summary(self.params.protocol)
        counts = sorted({len(v) for v in self._tally.images.values()})
        if summary.prompts:
            self._values.aggregate = summary.score
        self._values.aggregate_details = {
            "protocol": self.params.protocol, "backend": self.params.backend,
            "l1_categories": summary.l1, "l2_categories": summary.l2, "prompts": summary.prompts,
            "images_per_prompt": counts, "left_out": summary.left_out}
        if summary.left_out:
            self._values.warnings.append(
                f"{len(summary.left_out)} prompt(s) left out as ELLA's script leaves them out (a question "
                f"depends on one it never read): {', '.join(summary.left_out[:5])}")
        if counts != [4]:
            self._values.warnings.append(f"DPG-Bench uses 4 images per prompt; this set has {counts}")
        repeated = [line for prompt in self._tally.prompts.values() for line in prompt.repeated]
        if repeated:
            self._values.warnings.append(f"{len(repeated)} question row(s) repeat a proposition id of their "
                                         f"item and count once: {'; '.join(repeated[:3])}")
        return self._values

    def reset(self) -> None:
        self._values = MetricValues()
        self._tally = DPGTally()
