"""What a gate check ends as: pass, fail, skip or undecided, with what was measured and why.

The three signals a statistic raises — `Unavailable` (cannot be evaluated: fails, or skips when
optional), `Regression` (the run lost what the baseline had), `Undecided` (the data cannot say) —
and the `Check`s and `GateReport` that `decoderbench gate` prints and exits on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import EXIT_FAILED, EXIT_UNDECIDED, DecoderbenchError

PASS, FAIL, SKIP, UNDECIDED = "pass", "fail", "skip", "undecided"


class Unavailable(DecoderbenchError):
    """The gate cannot be evaluated (fails, or skips when optional)."""

    exit_code = EXIT_FAILED


class Regression(DecoderbenchError):
    """The run lost something the baseline had (always fails)."""

    exit_code = EXIT_FAILED


class Undecided(DecoderbenchError):
    """The data cannot decide the gate either way (too few cases, unstable timings)."""

    exit_code = EXIT_UNDECIDED


@dataclass
class Measurement:
    value: float  # the number compared with the limit
    observed: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Check:
    gate: str
    decoder: str
    status: str  # pass | fail | skip | undecided
    observed: str = ""
    limit: str = ""
    message: str = ""
    size: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.decoder} @ {self.size}" if self.size else self.decoder


@dataclass(frozen=True)
class Mismatch:
    fact: str
    baseline: Any
    run: Any

    def __str__(self) -> str:
        def shown(value: Any) -> str:
            return "absent" if value is None else str(value)

        return f"{self.fact}: {shown(self.baseline)} → {shown(self.run)}"


@dataclass
class GateReport:
    run_dir: Path
    baseline: str
    checks: list[Check]
    mismatches: list[Mismatch]
    notes: list[str]

    @property
    def passed(self) -> bool:
        return all(check.status not in (FAIL, UNDECIDED) for check in self.checks)

    @property
    def failed(self) -> bool:
        return any(check.status == FAIL for check in self.checks)


def statuses_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"
