"""Pairwise-judge results of a run (RUN_DIR/judge.json), shaped for the report.

judge.json holds, per criterion, pair counts with the win rate of `a` and its
Wilson 95% interval, Bradley–Terry strengths with 95% intervals, and the
order-consistency rate. The win-rate matrix reads row-over-column: the
(b, a) cell is the complement of the stored (a, b) rate and interval (ties
count the same on both sides).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JUDGE_FILE = "judge.json"


@dataclass(frozen=True)
class WinRate:
    rate: float
    low: float
    high: float
    wins: int
    losses: int
    ties: int
    inconsistent: int

    @property
    def n(self) -> int:
        return self.wins + self.losses + self.ties


@dataclass
class JudgeCriterion:
    name: str
    judge_model: str
    template_version: str
    consistency_rate: float | None
    ranking: list[dict[str, Any]]  # {"decoder", "strength", "ci95": [lo, hi]}, strongest first
    matrix: dict[tuple[str, str], WinRate] = field(default_factory=dict)

    @property
    def decoders(self) -> list[str]:
        ranked = [entry["decoder"] for entry in self.ranking]
        others = sorted({d for pair in self.matrix for d in pair} - set(ranked))
        return ranked + others


def load_judge(run_dir: Path) -> list[JudgeCriterion]:
    path = run_dir / JUDGE_FILE
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    criteria = []
    for name, entry in sorted(data.get("criteria", {}).items()):
        ranking = sorted(entry.get("bradley_terry", []), key=lambda e: -e["strength"])
        criterion = JudgeCriterion(
            name=name, judge_model=str(entry.get("judge_model", "")),
            template_version=str(entry.get("template_version", "")),
            consistency_rate=entry.get("consistency_rate"), ranking=ranking,
        )
        for pair in entry.get("pairs", []):
            low, high = pair.get("wilson95_a") or (None, None)
            rate = pair["win_rate_a"]
            inconsistent = pair.get("inconsistent", 0)
            criterion.matrix[(pair["a"], pair["b"])] = WinRate(
                rate, low if low is not None else rate, high if high is not None else rate,
                pair["wins_a"], pair["wins_b"], pair["ties"], inconsistent)
            criterion.matrix[(pair["b"], pair["a"])] = WinRate(
                1 - rate, 1 - (high if high is not None else rate), 1 - (low if low is not None else rate),
                pair["wins_b"], pair["wins_a"], pair["ties"], inconsistent)
        criteria.append(criterion)
    return criteria
