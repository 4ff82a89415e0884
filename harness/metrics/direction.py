"""Which way a number is better — one definition for every consumer.

A metric (or a cost such as latency) is better when higher, when lower, or
when closest to a target value (an energy ratio to the reference is best at
1: above it the decoder adds ringing or noise, below it it blurs). Every
consumer — leaderboard sorting and best marks, the case viewer, Pareto
fronts, gates, calibration, the terminal table and the export — asks a
`Direction` instead of reading a boolean, so a target-valued metric can never
be ranked as "higher is better" by accident.

`badness(x)` maps a value onto one axis where smaller is better (−x, x or
|x − target|); comparisons, sorting and worsening (the growth of badness) are
defined on it. This module imports nothing heavy (no torch): the command
line and the reports use it without loading a tensor library.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Better = Literal["higher", "lower", "target"]


@dataclass(frozen=True)
class Direction:
    better: Better
    target: float | None = None

    def __post_init__(self) -> None:
        if (self.better == "target") != (self.target is not None):
            raise ValueError("a target direction needs a target value, and only it has one")

    # ------------------------------------------------------------------ construction

    @classmethod
    def of(cls, higher_is_better: bool | None, target: float | None = None) -> Direction | None:
        """From the two attributes a metric class declares (None when neither says anything)."""
        if target is not None:
            return cls("target", float(target))
        if higher_is_better is None:
            return None
        return cls("higher" if higher_is_better else "lower")

    @classmethod
    def from_info(cls, info: Mapping[str, Any] | None) -> Direction | None:
        """From a recorded metric entry (manifest, baseline): `direction`, else the legacy fields."""
        if not info:
            return None
        recorded = info.get("direction")
        if isinstance(recorded, Mapping) and recorded.get("better") in ("higher", "lower", "target"):
            return cls(recorded["better"], recorded.get("target"))
        return cls.of(info.get("higher_is_better"), info.get("target"))

    def as_dict(self) -> dict[str, Any]:
        return {"better": self.better, "target": self.target}

    # ------------------------------------------------------------------ comparisons

    def badness(self, value: float) -> float:
        """The value on an axis where smaller is better (0 is perfect for a target)."""
        if self.better == "higher":
            return -value
        if self.better == "lower":
            return value
        return abs(value - self.target)  # type: ignore[operator]

    def worsening(self, new: float, old: float) -> float:
        """How much worse `new` is than `old` (negative: better), in the metric's units."""
        return self.badness(new) - self.badness(old)

    def is_better(self, a: float, b: float) -> bool:
        return self.badness(a) < self.badness(b)

    def best(self, values: Mapping[str, float]) -> str | None:
        """The key of the best finite value (the first one on a tie), None when there is none."""
        finite = {k: v for k, v in values.items() if v is not None and math.isfinite(v)}
        if not finite:
            return None
        return min(finite, key=lambda k: self.badness(finite[k]))

    # ------------------------------------------------------------------ words

    @property
    def symbol(self) -> str:
        """↑ higher is better, ↓ lower is better, →t closest to t is best."""
        if self.better == "target":
            return f"→{self.target:g}"
        return "↑" if self.better == "higher" else "↓"

    @property
    def label(self) -> str:
        """What the export's `better` column and the tables say."""
        if self.better == "target":
            return f"closest to {self.target:g}"
        return self.better


LOWER = Direction("lower")
HIGHER = Direction("higher")
