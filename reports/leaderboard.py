"""Leaderboard tables: one per (suite, comparison size), cells that never lie.

Every cell is a number with its interval, or says why there is none: the
decode failure ("OOM", "error", ...) or the metric's own status
("unavailable", "not applicable") with the reasons for hover, or "not
measured" when the run holds nothing for it. A failure is never shown as a
blank or a zero. The best value per column is marked using the column's
direction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reports.aggregate import MetricSummary, Row, RunView, format_bytes

STATUS_LABELS = {
    "oom": "OOM", "error": "error", "timeout": "timeout", "crashed": "crashed",
    "invalid_output": "invalid output", "unavailable": "unavailable",
    "not_applicable": "not applicable", "ok": "ok",
}
MEMORY_METHODS = {
    "linux_vmhwm_reset": "peak resident set size of the worker (CPU)",
    "ru_maxrss_process_lifetime": "peak resident set size over the worker's lifetime (CPU)",
    "cuda_max_memory_allocated": "torch.cuda.max_memory_allocated after warm-up",
}


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    higher_is_better: bool | None  # None: no direction, no "best" mark
    description: str = ""
    target: float | None = None  # closest to this value is best (e.g. an energy ratio to the reference)

    @property
    def arrow(self) -> str:
        if self.target is not None:
            return f"→{self.target:g}"
        return {True: "↑", False: "↓", None: ""}[self.higher_is_better]


@dataclass
class Cell:
    text: str
    sort: float | None = None  # None sorts last in either direction
    title: str = ""
    state: str = "value"  # value | failed | missing
    ci: str | None = None
    note: str | None = None  # e.g. "12/13 cases"
    best: bool = False
    value: float | None = None  # a number still to be formatted with its column's precision
    ci_value: float | None = None


@dataclass
class Leaderboard:
    suite: str
    size: tuple[int, int]
    columns: list[Column]
    rows: list[tuple[Row, list[Cell]]] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return f"lb-{self.suite}-{self.size[0]}x{self.size[1]}"


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status.replace("_", " "))


def decimals_for(magnitude: float) -> int:
    """Digits after the point that give about four significant digits."""
    if magnitude >= 1000:
        return 0
    if magnitude >= 100:
        return 1
    if magnitude >= 10:
        return 2
    return 3 if magnitude >= 1 else 4


def format_number(value: float, decimals: int | None = None) -> str:
    decimals = decimals_for(abs(value)) if decimals is None else decimals
    return f"{value:,.{decimals}f}"


def build_leaderboards(view: RunView) -> list[Leaderboard]:
    boards = []
    for size in view.sizes:
        columns = _columns(view)
        board = Leaderboard(view.suite_name, size, columns)
        for row in view.rows_at(size):
            board.rows.append((row, _cells(view, row)))
        _format_columns(board)
        _mark_best(board)
        boards.append(board)
    return boards


def _columns(view: RunView) -> list[Column]:
    columns = [
        Column("cases", "cases ok", None, "cases that decoded / cases run"),
        Column("latency_median", "latency median (ms)", False,
               "median over every timed repeat of every decode call"),
        Column("latency_p90", "latency p90 (ms)", False, "90th percentile of the same samples"),
        Column("peak_memory", "peak memory", False, "largest peak over the decoder's calls"),
        Column("cold_start", "cold start (ms)", False, "process spawn + imports + load + first call"),
    ]
    for metric in view.metric_names:
        info = view.metric_info.get(metric, {})
        summary = info.get("summary", "")
        columns.append(Column(f"metric:{metric}", metric, view.higher_is_better(metric),
                              f"{summary} · mean over cases ± 95% interval".strip(" ·"),
                              target=info.get("target")))
    return columns


def _cells(view: RunView, row: Row) -> list[Cell]:
    ok = row.statuses.get("ok", 0)
    cases = Cell(f"{ok}/{row.units}", sort=ok / row.units if row.units else None)
    if row.failure_status:
        cases.state, cases.title = "failed", _failure_title(row)
    cells = [
        cases,
        _measured(row, row.latency(0.5), "latency"),
        _measured(row, row.latency(0.9), "latency"),
        _measured(row, row.peak_memory_bytes, "memory"),
        _measured(row, row.cold_start_ms, "cold start"),
    ]
    if cells[3].value is not None:
        cells[3].text, cells[3].value = format_bytes(int(cells[3].value)), None
    cells[3].title = cells[3].title or MEMORY_METHODS.get(row.memory_method or "", row.memory_method or "")
    for metric in view.metric_names:
        cells.append(_metric_cell(row, metric, row.metrics.get(metric)))
    return cells


def _measured(row: Row, value: float | None, what: str) -> Cell:
    if value is not None:
        return Cell("", sort=float(value), value=float(value))
    if row.failure_status and not row.statuses.get("ok"):
        return Cell(status_label(row.failure_status), state="failed", title=_failure_title(row))
    return Cell("not measured", state="missing", title=f"this run holds no {what} for {row.decoder}")


def _metric_cell(row: Row, metric: str, summary: MetricSummary | None) -> Cell:
    if summary is None:
        if row.failure_status and not row.statuses.get("ok"):
            return Cell(status_label(row.failure_status), state="failed",
                        title=f"no decoded output to score — {_failure_title(row)}")
        return Cell("not measured", state="missing", title=f"this run holds no {metric} values")
    if summary.mean is None:
        failed = {s: n for s, n in summary.statuses.items() if s != "ok"}
        status = max(failed, key=lambda s: failed[s]) if failed else "not measured"
        title = "\n".join(summary.messages) or f"{metric}: {status_label(status)}"
        return Cell(status_label(status), state="failed" if status == "error" else "missing", title=title)
    if summary.aggregate is not None:  # the metric's own value for the set (FID, GenEval, ...)
        return Cell("", sort=summary.aggregate, value=summary.aggregate,
                    title=f"{metric} over the whole set (one value)")
    cell = Cell("", sort=summary.mean, value=summary.mean, ci_value=summary.ci95)
    if not summary.per_case:
        cell.title = f"{metric} over the whole set (one value)"
    elif summary.n < row.units:
        cell.note = f"{summary.n}/{row.units}"
        missing = {s: n for s, n in summary.statuses.items() if s != "ok"}
        if row.failure_status:
            missing[row.failure_status] = row.units - row.statuses.get("ok", 0)
        reasons = ", ".join(f"{n} {status_label(s)}" for s, n in missing.items())
        cell.title = "\n".join([f"mean over {summary.n} of {row.units} cases ({reasons})",
                                *summary.messages, *row.failures])
    return cell


def _failure_title(row: Row) -> str:
    counts = ", ".join(f"{n} {status_label(s)}" for s, n in row.statuses.items() if s != "ok")
    return "\n".join([counts, *row.failures])


def _format_columns(board: Leaderboard) -> None:
    """One precision per column (from its largest value), intervals with their value's precision."""
    for index in range(len(board.columns)):
        cells = [cells[index] for _, cells in board.rows if cells[index].value is not None]
        if not cells:
            continue
        decimals = decimals_for(max(abs(c.value) for c in cells))  # type: ignore[arg-type]
        for cell in cells:
            cell.text = format_number(cell.value, decimals)  # type: ignore[arg-type]
            if cell.ci_value is not None:
                cell.ci = f"± {format_number(cell.ci_value, decimals)}"


def _mark_best(board: Leaderboard) -> None:
    for index, column in enumerate(board.columns):
        if column.higher_is_better is None and column.target is None:
            continue
        cells = [cells[index] for _, cells in board.rows if cells[index].sort is not None]
        if len(cells) < 2:
            continue
        if column.target is not None:
            target = column.target
            best = min(cells, key=lambda c: abs(c.sort - target)).text  # type: ignore[operator]
        else:
            pick = max if column.higher_is_better else min
            best = pick(cells, key=lambda c: c.sort).text  # type: ignore[arg-type, return-value]
        for cell in cells:
            cell.best = cell.text == best
