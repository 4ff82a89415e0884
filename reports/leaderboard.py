"""Leaderboard tables: one per (suite, comparison size), cells that never lie.

Every cell is a number with its interval, or says why there is none: the
decode failure ("OOM", "error", ...) or the metric's own status
("unavailable", "not applicable") with the reasons for hover, or "not
measured" when the run holds nothing for it. A failure is never shown as a
blank or a zero. The summary comes first: each decoder's mean win rate per
summary group and overall (reports/decisions.py). The best mark of a column
goes to the best decoder and every decoder tied with it within noise (paired
bootstrap over cases); a column that separates no decoders, or that its
metric declares uninformative, says so in its header. Costs: latency per
image (calls of one batch size), throughput, every memory figure by its
name, the first call at the size and the worker's start-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.metrics.direction import HIGHER, LOWER, Direction
from reports.aggregate import MEMORY_KINDS, MetricSummary, Row, RunView, format_bytes
from reports.decisions import Decision, SizeDecisions, decide_size

INFINITY = "∞"
STATUS_LABELS = {
    "oom": "OOM", "error": "error", "timeout": "timeout", "crashed": "crashed",
    "invalid_output": "invalid output", "unavailable": "unavailable",
    "not_applicable": "not applicable", "input_error": "bad input", "ok": "ok",
    "infrastructure_error": "stopped (environment)",
}
MEMORY_METHODS = {
    "linux_vmhwm_reset": "kernel high-water mark (VmHWM) reset before the timed calls",
    "ru_maxrss_process_lifetime": "peak over the worker's lifetime (VmHWM could not be reset)",
    "cuda_max_memory_allocated": "torch.cuda peak statistics reset after warm-up",
}


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    direction: Direction | None  # None: no direction, no "best" mark
    description: str = ""
    criterion: str | None = None  # the decisions criterion whose marks this column shows
    flag: str | None = None  # e.g. "uninformative: …" (shown in the header)
    unit: str = ""  # what the column's raw numbers are in ("ms", "bytes", "dB", ...)

    @property
    def arrow(self) -> str:
        return self.direction.symbol if self.direction else ""

    @property
    def better(self) -> str:
        """The header's data-better: sort keys are "smaller is better", so best first = ascending."""
        return "lower" if self.direction else ""


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
    raw: float | None = None  # the number shown, unformatted, in the column's unit (exports, JSON)
    n: int | None = None  # values the number stands on (cases, timed calls)
    footnote: int | None = None  # the number of its reason under the table (readable without hover)
    shown: str | None = None  # text that replaces the formatted value ("∞": every case identical)


@dataclass
class Leaderboard:
    suite: str
    size: tuple[int, int]
    columns: list[Column]
    rows: list[tuple[Row, list[Cell]]] = field(default_factory=list)
    decisions: SizeDecisions | None = None
    reasons: list[str] = field(default_factory=list)  # footnotes: why a cell holds no number

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
        decided = decide_size(view, size)
        rows = view.rows_at(size)
        columns = _columns(view, rows, decided)
        board = Leaderboard(view.suite_name, size, columns, decisions=decided)
        for row in rows:
            board.rows.append((row, _cells(view, row, columns, decided)))
        _format_columns(board)
        _mark_best(board)
        _footnotes(board)
        boards.append(board)
    return boards


def _footnotes(board: Leaderboard) -> None:
    """Number the reasons of failed and missing cells (one note per distinct reason), so that a
    phone, which has no hover, shows them under the table."""
    numbers: dict[str, int] = {}
    for _, cells in board.rows:
        for cell in cells:
            if cell.state in ("failed", "missing") and cell.title:
                cell.footnote = numbers.setdefault(cell.title, len(numbers) + 1)
    board.reasons = list(numbers)


def _columns(view: RunView, rows: list[Row], decided: SizeDecisions) -> list[Column]:
    columns = [Column(f"summary:{group}", f"{group} win rate", HIGHER,
                      _group_description(decided, group), unit="share of decoders beaten (0–1)")
               for group in decided.group_names]
    columns += [
        Column("cases", "cases ok", None, "cases that decoded / cases run", unit="cases"),
        Column("latency", "latency / image (ms)", LOWER,
               "median per image: a call's latency ÷ its batch size, over calls of one batch size; "
               "p90 below", criterion="cost:latency", unit="ms"),
        Column("batch", "batch", None, "images per decode call (calls of another size are not pooled)",
               unit="images"),
        Column("throughput", "images / s", HIGHER, "batch size ÷ median call latency; megapixels per "
               "second (at the decoder's own output size) below", unit="images/s"),
    ]
    kinds = [k for k in MEMORY_KINDS if any(k in row.memory for row in rows)]
    for kind in kinds:
        label, what = MEMORY_KINDS[kind]
        headline = any(row.memory_headline_kind == kind for row in rows)
        columns.append(Column(f"memory:{kind}", label, LOWER, what,
                              criterion="cost:memory" if headline else None, unit="bytes"))
    columns += [
        Column("first_call", "first call (ms)", LOWER, "the first (warm-up) call at this size; the "
               "worker's start-up (spawn, imports, load) below", unit="ms"),
        Column("cold_start", "cold start (ms)", LOWER, "worker start-up + its first call, for the size "
               "the worker served first (a later size is served by a warm worker)", unit="ms"),
    ]
    for metric in view.metric_names:
        info = view.metric_info.get(metric, {})
        decision = decided.decisions.get(f"metric:{metric}")
        flag = None
        if decision is not None and decision.uninformative:
            flag = f"uninformative: {decision.uninformative}"
            if decision.reference_value is not None:
                flag += f" (reference itself: {decision.reference_value:.4g})"
        scope = "one value for the set" if info.get("scope") == "set" else "mean over cases ± 95% interval"
        unit = view.unit(metric)
        columns.append(Column(f"metric:{metric}", metric, view.direction(metric),
                              " · ".join(x for x in (info.get("summary", ""), scope,
                                                     f"unit: {unit}" if unit else "") if x),
                              criterion=f"metric:{metric}", flag=flag, unit=unit))
    return columns


def _group_description(decided: SizeDecisions, group: str) -> str:
    if group == "overall":
        return f"mean of the group win rates ({', '.join(decided.groups)})"
    members = ", ".join(c.label + (f" ×{c.weight:g}" if c.weight != 1 else "") for c in decided.groups[group])
    return (f"share of the other decoders beaten (ties count ½), averaged over {members}; "
            "uninformative criteria left out")


def _cells(view: RunView, row: Row, columns: list[Column], decided: SizeDecisions) -> list[Cell]:
    cells = []
    for column in columns:
        kind, _, name = column.key.partition(":")
        if kind == "summary":
            rate = decided.win_rates[name].get(row.decoder)
            cells.append(Cell("—", title="no criterion of this group has a value") if rate is None
                         else Cell(f"{100 * rate:.0f}%", sort=-rate, raw=rate))
        elif kind == "metric":
            cells.append(_metric_cell(row, name, row.metrics.get(name), column.direction))
        elif kind == "memory":
            value = row.memory.get(name)
            cell = _measured(row, value, MEMORY_KINDS[name][0])
            if value is not None:
                cell.text, cell.value = format_bytes(int(value)), None
                cell.n = len(row.case_memory) or None
                cell.title = MEMORY_METHODS.get(row.memory_method or "", row.memory_method or "")
            cells.append(cell)
        else:
            cells.append(_cost_cell(row, column.key))
    return cells


def _cost_cell(row: Row, key: str) -> Cell:
    if key == "cases":
        cell = Cell(f"{row.ok}/{row.units}", sort=-(row.ok / row.units) if row.units else None,
                    raw=row.ok)
        if row.failure_status:
            cell.state, cell.title = "failed", _failure_title(row)
        return cell
    if key == "batch":
        if row.batch_size is None:
            return _measured(row, None, "latency")
        cell = Cell(str(row.batch_size), sort=row.batch_size, raw=row.batch_size)
        if row.other_batches:
            cell.note = "+" + ", ".join(f"{n} samples of batch {b}" for b, n in row.other_batches.items())
            cell.title = "calls of another batch size are reported apart, never pooled"
        return cell
    if key == "latency":
        cell = _measured(row, row.image_latency(0.5), "latency")
        cell.n = len(row.calls_ms.get(row.batch_size, [])) or None  # type: ignore[arg-type]
        p90 = row.image_latency(0.9)
        if p90 is not None:
            cell.ci = f"p90 {p90:,.4g}"
        return cell
    if key == "throughput":
        rate = row.images_per_s
        cell = _measured(row, rate, "latency")
        if rate is not None:
            cell.sort = -rate
            cell.ci = f"{row.megapixels_per_s:,.3g} MP/s"
        return cell
    if key == "first_call":
        cell = _measured(row, row.first_call_ms, "first call")
        if row.worker_startup_ms is not None:
            cell.ci = f"start-up {row.worker_startup_ms:,.0f}"
        return cell
    return _measured(row, row.cold_start_ms, "cold start")


def _measured(row: Row, value: float | None, what: str) -> Cell:
    if value is not None:
        return Cell("", sort=float(value), value=float(value), raw=float(value))
    if row.failure_status and not row.ok:
        return Cell(status_label(row.failure_status), state="failed", title=_failure_title(row))
    return Cell("not measured", state="missing", title=f"this run holds no {what} for {row.decoder}")


def _metric_cell(row: Row, metric: str, summary: MetricSummary | None, direction: Direction | None) -> Cell:
    if summary is None:
        if row.failure_status and not row.ok:
            return Cell(status_label(row.failure_status), state="failed",
                        title=f"no decoded output to score — {_failure_title(row)}")
        return Cell("not measured", state="missing", title=f"this run holds no {metric} values")
    if summary.mean is None:
        failed = {s: n for s, n in summary.statuses.items() if s != "ok"}
        status = max(failed, key=lambda s: failed[s]) if failed else "not measured"
        title = "\n".join(summary.messages) or f"{metric}: {status_label(status)}"
        return Cell(status_label(status), state="failed" if status == "error" else "missing", title=title)
    value = summary.headline
    sort = None if direction is None else direction.badness(value)  # type: ignore[arg-type]
    if summary.aggregate is not None:  # the metric's own value for the set (FID, GenEval, ...)
        cell = Cell("", sort=sort, value=summary.aggregate, title=f"{metric} over the whole set (one value)",
                    raw=summary.aggregate)
        covered = summary.aggregate_n if summary.aggregate_n is not None else summary.n or None
        cell.n = covered
        if covered is not None and covered < row.units:
            cell.note = f"{covered}/{row.units}"
            cell.title += f"; computed from {covered} of {row.units} cases ({_failure_title(row)})"
        return cell
    cell = Cell("", sort=sort, value=summary.mean, ci_value=summary.ci95, raw=summary.mean, n=summary.n)
    if summary.infinite:
        _infinite(cell, summary, metric)
    if summary.n < row.units:
        cell.note = f"{summary.n}/{row.units}"
        missing = {s: n for s, n in summary.statuses.items() if s != "ok"}
        if row.failure_status:
            missing[row.failure_status] = row.units - row.ok
        reasons = ", ".join(f"{n} {status_label(s)}" for s, n in missing.items())
        cell.title = "\n".join([f"mean over {summary.n} of {row.units} cases ({reasons})",
                                *summary.messages, *row.failures])
    return cell


def _infinite(cell: Cell, summary: MetricSummary, metric: str) -> None:
    """Outputs identical to their references score +∞: every case → the cell says ∞; some → the
    mean counts them at the metric's ceiling, and the cell's title says so."""
    count = len(summary.infinite)
    identical = f"{count} of {summary.n} case(s) identical to the reference ({metric} = ∞)"
    if count == summary.n:
        cell.shown, cell.raw = INFINITY, math.inf
        cell.title = f"{identical}: every output reproduces its reference exactly"
    else:
        ceiling = min(summary.per_case[case] for case in summary.infinite)
        cell.title = (f"{identical}; the mean counts ∞ as {ceiling:.1f}, the {metric} of the smallest "
                      "possible difference between two 8-bit images of this size")


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
            cell.text = cell.shown or format_number(cell.value, decimals)  # type: ignore[arg-type]
            if cell.ci_value is not None and cell.shown is None:
                cell.ci = f"± {format_number(cell.ci_value, decimals)}"


def _mark_best(board: Leaderboard) -> None:
    """Marks from the paired decisions; summary columns mark their highest win rate."""
    assert board.decisions is not None
    for index, column in enumerate(board.columns):
        decision = board.decisions.decisions.get(column.criterion or "")
        if decision is not None:
            _mark_decision(board, index, decision)
        elif column.key.startswith("summary:"):
            rates = board.decisions.win_rates[column.key.split(":", 1)[1]]
            top = max(rates.values(), default=None)
            for row, cells in board.rows:
                cells[index].best = top is not None and len(rates) > 1 and rates.get(row.decoder) == top


def _mark_decision(board: Leaderboard, index: int, decision: Decision) -> None:
    informative = decision.uninformative is None and len(decision.values) > 1
    for row, cells in board.rows:
        cell = cells[index]
        note = decision.note(row.decoder)
        if note:
            cell.title = "\n".join(t for t in (cell.title, note) if t)
        cell.best = informative and row.decoder in decision.marked
