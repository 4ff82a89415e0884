"""DPG-Bench: dense prompt following, scored by visual question answering.

The questions come from DPG-Bench's `dpg_bench.csv` (TencentQQGYLab/ELLA,
columns item_id, text, keywords, proposition_id, dependency, category_broad,
category_detailed, tuple, question_natural_language); the VQA model is a
pluggable backend (the reference: mPLUG-large). A case is matched to its
questions by its prompt (the CSV's `text`).

Per image: every question of the prompt is asked; an answer scores 1 only
if it is "yes" (case and surrounding whitespace ignored). A question scores
0 when any of its parents (the `dependency` ids; 0 = none) scores 0 —
transitively, parents first, whatever the CSV's row order. The image's score
is the mean over its questions. A prompt's score is the mean over its images
(the suite's seeds: DPG-Bench uses 4); the set's score is the mean over
prompts × 100.

Category scores (L2: the tuple's text before "(", e.g. "entity - whole";
L1: its part before " - ") pool the question scores *after* dependency
zeroing over *every* image — not, as ELLA's script does (issue 60), the raw
answers of the last crop only. ELLA's script also skips the CSV's first
question; this reads every row.
"""

from __future__ import annotations

import csv
from collections import defaultdict
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

COLUMNS = ("item_id", "text", "keywords", "proposition_id", "dependency", "category_broad",
           "category_detailed", "tuple", "question_natural_language")


@dataclass(frozen=True)
class Question:
    id: int
    parents: tuple[int, ...]
    category: str  # L2, e.g. "entity - whole"
    text: str


@dataclass(frozen=True)
class Prompt:
    item_id: str
    text: str
    questions: tuple[Question, ...]


class VQABackend(Protocol):
    """Answers yes/no questions about an image. Registered under the
    `decoderbench.vqa_backends` entry-point group."""

    def load(self, device: torch.device) -> None: ...

    def answer(self, image: np.ndarray, questions: list[str]) -> list[str]:
        """uint8 [H, W, 3] RGB, questions → one answer string per question."""
        ...

    def weights(self) -> dict[str, str]: ...


BACKENDS: Registry = Registry("VQA backend", "decoderbench.vqa_backends", {})


def read_questions(path: Path) -> dict[str, Prompt]:
    """dpg_bench.csv → prompt text → Prompt (questions in file order)."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        rows: dict[str, list[dict[str, str]]] = defaultdict(list)
        for row in reader:
            rows[row["item_id"]].append(row)
    prompts = {}
    for item_id, item_rows in rows.items():
        questions = tuple(
            Question(int(r["proposition_id"]),
                     tuple(int(d) for d in r["dependency"].split(",") if d.strip() and int(d) != 0),
                     r["tuple"].split("(")[0].strip(), r["question_natural_language"])
            for r in item_rows)
        text = item_rows[0]["text"].strip()
        prompts[text] = Prompt(item_id, text, questions)
    return prompts


def is_yes(answer: str) -> bool:
    return answer.strip().lower() == "yes"


def question_scores(questions: tuple[Question, ...], answers: dict[int, str]) -> dict[int, float]:
    """Answers → scores after dependency zeroing (a question counts only if all its ancestors do)."""
    by_id = {q.id: q for q in questions}
    scores: dict[int, float] = {}

    def score(qid: int, path: tuple[int, ...] = ()) -> float:
        if qid in scores:
            return scores[qid]
        if qid in path:
            raise ValueError(f"dependency cycle through question {qid}")
        question = by_id[qid]
        value = float(is_yes(answers[qid]))
        if value and any(score(p, (*path, qid)) == 0 for p in question.parents if p in by_id):
            value = 0.0
        scores[qid] = value
        return value

    for question in questions:
        score(question.id)
    return scores


@dataclass
class DPGTally:
    """Image scores per prompt and question scores per category, over a whole set."""

    image_scores: dict[str, list[float]]
    category_scores: dict[str, list[float]]

    @classmethod
    def empty(cls) -> DPGTally:
        return cls(defaultdict(list), defaultdict(list))

    def add(self, prompt: Prompt, scores: dict[int, float]) -> float:
        image_score = sum(scores.values()) / len(scores)
        self.image_scores[prompt.item_id].append(image_score)
        for question in prompt.questions:
            self.category_scores[question.category].append(scores[question.id])
        return image_score

    def overall(self) -> float:
        """Mean over prompts of the mean over their images, × 100."""
        return 100 * float(np.mean([np.mean(v) for v in self.image_scores.values()]))

    def categories(self) -> tuple[dict[str, float], dict[str, float]]:
        """(L1, L2) category scores × 100."""
        level1: dict[str, list[float]] = defaultdict(list)
        for category, values in self.category_scores.items():
            level1[category.split("-")[0].strip()].extend(values)
        return ({k: 100 * float(np.mean(v)) for k, v in sorted(level1.items())},
                {k: 100 * float(np.mean(v)) for k, v in sorted(self.category_scores.items())})


class DPGParams(Params):
    questions: str = Field(description="path of DPG-Bench's dpg_bench.csv")
    backend: str = Field(description="VQA plug-in (entry-point group decoderbench.vqa_backends)")


class DPGBench(Metric):
    name = "dpg_bench"
    unit = "0–100"
    family = Family.TEXT_ALIGNMENT
    higher_is_better = True
    aggregates = True
    summary = "DPG-Bench: VQA yes-rate with dependency zeroing, ×100; set = mean over prompts"
    Params: ClassVar = DPGParams

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self.backend: VQABackend | None = None
        self.reset()

    def check(self) -> None:
        path = Path(self.params.questions).expanduser()
        if not path.is_file():
            raise MetricUnavailable(
                f"DPG-Bench questions not found: {path} (dpg_bench.csv from TencentQQGYLab/ELLA, dpg_bench/)")
        if self.params.backend not in BACKENDS.names():
            names = BACKENDS.names()
            raise MetricUnavailable(BACKENDS.unknown_message(self.params.backend, names))

    def load(self, device: torch.device) -> None:
        super().load(device)
        path = Path(self.params.questions).expanduser()
        if not path.is_file():
            raise MetricUnavailable(f"DPG-Bench questions not found: {path} (dpg_bench.csv from "
                                    "TencentQQGYLab/ELLA, dpg_bench/)")
        self.prompts = read_questions(path)
        self.backend = load_backend(BACKENDS, self.params.backend, device)
        self.weights_sha256 = self.backend.weights()

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "answer": "1 iff answer.strip().lower() == 'yes'",
                "dependencies": "transitive zeroing", "categories": "after zeroing, over all images"}

    def update(self, keys: list[str], preds: torch.Tensor, targets: torch.Tensor | None,
               contexts: list[ImageContext] | None = None) -> None:
        assert contexts is not None and self.backend is not None
        for key, image, context in zip(keys, preds, contexts, strict=True):
            prompt = self.prompts.get((context.prompt or "").strip())
            if prompt is None:
                self._values.not_applicable[key] = "the case's prompt is not in the DPG-Bench questions"
                continue
            array = quantize(image).permute(1, 2, 0).cpu().numpy()
            answers = self.backend.answer(array, [q.text for q in prompt.questions])
            scores = question_scores(prompt.questions, dict(zip([q.id for q in prompt.questions], answers,
                                                                strict=True)))
            self._values.per_key[key] = 100 * self._tally.add(prompt, scores)
            self._values.details[key] = {"item_id": prompt.item_id,
                                         "question_scores": {str(k): v for k, v in scores.items()}}

    def compute(self) -> MetricValues:
        if self._tally.image_scores:
            level1, level2 = self._tally.categories()
            self._values.aggregate = self._tally.overall()
            self._values.aggregate_details = {
                "l1_categories": level1, "l2_categories": level2,
                "prompts": len(self._tally.image_scores),
                "images_per_prompt": sorted({len(v) for v in self._tally.image_scores.values()}),
            }
        return self._values

    def reset(self) -> None:
        self._values = MetricValues()
        self._tally = DPGTally.empty()
