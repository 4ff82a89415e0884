"""History: several runs of one suite, oldest first, per decoder checkpoint.

A decoder row is identified by its id and the digest of the weights it
loaded, so a new checkpoint of the same decoder starts a new line instead of
silently continuing the old one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.records import Size
from harness.view import RunView


@dataclass
class HistoryPoint:
    mean: float | None
    ci95: float | None
    latency_median_ms: float | None
    status: str  # "ok", a decode or metric status, "not measured", or "absent" (not in that run)


@dataclass
class HistoryLine:
    decoder: str
    checkpoint: str
    points: list[HistoryPoint] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.decoder} @ {self.checkpoint}"


@dataclass
class History:
    suite: str
    size: Size
    metric: str
    runs: list[RunView]
    lines: list[HistoryLine]

    @property
    def run_labels(self) -> list[str]:
        labels = []
        for view in self.runs:
            created = str(view.manifest.get("created", ""))[:16].replace("T", " ")
            git = (view.manifest.get("environment", {}).get("git") or {}).get("sha", "")
            labels.append(f"{created} {git[:7]}".strip())
        return labels


def build_history(runs: list[RunView], metric: str) -> list[History]:
    """One history per comparison size of the suite; `runs` are of one suite, any order."""
    runs = sorted(runs, key=lambda v: str(v.manifest.get("created", "")))
    sizes = sorted({size for view in runs for size in view.sizes})
    histories = []
    for size in sizes:
        lines: dict[tuple[str, str], HistoryLine] = {}
        for view in runs:
            for row in view.rows_at(size):
                key = (row.decoder, view.checkpoint(row.decoder))
                lines.setdefault(key, HistoryLine(*key))
        for line in lines.values():
            line.points = [_point(view, size, line, metric) for view in runs]
        histories.append(History(runs[0].suite_name, size, metric, runs, list(lines.values())))
    return histories


def _point(view: RunView, size: Size, line: HistoryLine, metric: str) -> HistoryPoint:
    row = next((r for r in view.rows_at(size) if r.decoder == line.decoder), None)
    if row is None or view.checkpoint(line.decoder) != line.checkpoint:
        return HistoryPoint(None, None, None, "absent")
    summary = row.metrics.get(metric)
    if summary is None or summary.mean is None:
        statuses = {s: n for s, n in (summary.statuses if summary else {}).items() if s != "ok"}
        status = max(statuses, key=lambda s: statuses[s]) if statuses else "not measured"
        if row.failure_status and not row.statuses.get("ok"):
            status = row.failure_status
        return HistoryPoint(None, None, row.image_latency(0.5), status)
    return HistoryPoint(summary.mean, summary.ci95, row.image_latency(0.5), row.failure_status or "ok")
