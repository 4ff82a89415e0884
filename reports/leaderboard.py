"""Leaderboard tables: one per (suite, comparison size), cells that never lie.

Every cell is a number with its interval, or says why there is none; the summary comes first and
the best marks follow reports/decisions.py (docs/reports.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from harness.metrics.direction import HIGHER, LOWER, Direction
from harness.view import (
    ENERGY_KINDS,
    MEMORY_KINDS,
    EnergySummary,
    MetricSummary,
    Row,
    RunView,
    format_bytes,
)
from reports.decisions import OVERALL, Decision, SizeDecisions, decide_size
from reports.price import Price, device_time_price, electricity_price

INFINITY = "∞"
COST_GAP_COLUMNS = ("energy", "energy_above_idle", "power", "cpu_energy", "price_time", "price_energy")
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
    part: str = ""  # the report's column chooser: "summary", a metric's group, "diagnostic" or "cost"
    shown: bool = True  # shown before the reader chooses (the report hides the rest behind its chooser)

    @property
    def tag(self) -> str | None:
        """The flag's short form for a header ("too few cases", "unstable", ...)."""
        return self.flag.split(":", 1)[0] if self.flag else None

    @property
    def arrow(self) -> str:
        return self.direction.symbol if self.direction else ""

    @property
    def longest_word(self) -> int:
        """Characters of the header's longest word: the report lets a header be that wide, so that
        it wraps between words and never inside one."""
        return max(len(word) for word in f"{self.label} {self.tag or ''}".split())

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
    status: str = "ok"  # why there is no number, as a token: a decode or metric status, "not_measured",
    #                     "no_value" (a summary group without a value for this decoder)


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

    @property
    def parts(self) -> list[str]:
        """The column chooser's sections, in column order (summary, quality groups, costs)."""
        return list(dict.fromkeys(column.part for column in self.columns))

    @property
    def cost_gaps(self) -> list[str]:
        """Cost figures the run could not give, each named with why: '<column>: not measured — <why>'
        (which decoders, where not all)."""
        gaps = []
        for index, column in enumerate(self.columns):
            if column.key not in COST_GAP_COLUMNS:
                continue
            reasons: dict[tuple[str, str], list[str]] = {}
            for row, cells in self.rows:
                cell = cells[index]
                if cell.state == "missing":
                    reasons.setdefault((cell.text, cell.title), []).append(row.decoder)
            for (text, why), decoders in reasons.items():
                who = "" if len(decoders) == len(self.rows) else f" ({', '.join(decoders)})"
                gaps.append(f"{column.label}: {text}{who} — {why}")
        return gaps

    @property
    def summary_notes(self) -> list[str]:
        """What the summary table cannot say: groups that rank nothing and why, a missing overall,
        and whether the top decoder depends on any one group."""
        decided = self.decisions
        if decided is None:
            return []
        lines = [f"{name} ranks nothing: {g.reason}" for name, g in decided.groups.items() if g.reason]
        if decided.overall_reason:
            lines.append(f"no overall: {decided.overall_reason}")
        if decided.robustness:
            lines.append(decided.robustness)
        return lines


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


def summary_order(rows: list[Row], decided: SizeDecisions) -> list[Row]:
    """Rows as the summary ranks them: overall win rate, highest first (the suite's order among
    equal rates; rows without an overall last)."""
    overall = decided.win_rates.get(OVERALL, {})
    return sorted(rows, key=lambda row: -overall[row.decoder] if row.decoder in overall else 1.0)


def build_leaderboards(view: RunView) -> list[Leaderboard]:
    boards = []
    for size in view.sizes:
        decided = decide_size(view, size)
        rows = summary_order(view.rows_at(size), decided)
        columns = _columns(view, rows, decided)
        board = Leaderboard(view.suite_name, size, columns, decisions=decided)
        for row in rows:
            board.rows.append((row, _cells(view, row, columns, decided)))
        _hide_empty_metrics(board)
        _format_columns(board)
        _mark_best(board)
        _footnotes(board)
        boards.append(board)
    return boards


def _hide_empty_metrics(board: Leaderboard) -> None:
    """A metric column without a single number starts hidden in the report (its reason is still
    numbered under the table, and the chooser shows it)."""
    for index, column in enumerate(board.columns):
        if column.key.startswith("metric:") and not any(cells[index].value is not None
                                                         for _, cells in board.rows):
            board.columns[index] = replace(column, shown=False)


def _footnotes(board: Leaderboard) -> None:
    """Number the reasons of failed and missing cells (one note per distinct reason), so that a
    phone, which has no hover, shows them under the table."""
    numbers: dict[str, int] = {}
    for _, cells in board.rows:
        for cell in cells:
            if cell.state in ("failed", "missing") and cell.title:
                cell.footnote = numbers.setdefault(cell.title, len(numbers) + 1)
    board.reasons = list(numbers)


# The order of the quality columns: the perceptual ones first (the mission), diagnostics last.
PART_ORDER = ("perceptual", "judge", "distribution", "fidelity", "no_reference", "text", "diagnostic")


def _columns(view: RunView, rows: list[Row], decided: SizeDecisions) -> list[Column]:
    """Summary (overall first), cases, the metrics in PART_ORDER, then the costs; `shown` marks what
    the report shows before the reader chooses: the groups and metrics that rank or are quality
    measures, latency and the headline memory figure."""
    groups = [OVERALL, *(g for g in decided.group_names if g != OVERALL)] if decided.group_names else []
    columns = [Column(f"summary:{group}", f"{group.replace('_', ' ')} win rate", HIGHER,
                      _group_description(decided, group), unit="share of decoders beaten (0–1)",
                      part="summary", shown=group == OVERALL or bool(decided.win_rates[group]))
               for group in groups]
    columns.append(Column("cases", "cases ok", None, "cases that decoded / cases run", unit="cases",
                          part="cost"))
    columns += sorted(_metric_columns(view, decided), key=lambda c: PART_ORDER.index(c.part))
    return columns + _cost_columns(view, rows, decided)


def _metric_columns(view: RunView, decided: SizeDecisions) -> list[Column]:
    columns = []
    for metric in view.metric_names:
        info = view.metric_info.get(metric, {})
        scope = "one value for the set" if info.get("scope") == "set" else "mean over cases ± 95% interval"
        unit = view.unit(metric)
        decision = decided.decisions.get(f"metric:{metric}")
        group = decision.criterion.group if decision is not None else None
        part = group if group in PART_ORDER else "diagnostic"
        columns.append(Column(f"metric:{metric}", metric, view.direction(metric),
                              " · ".join(x for x in (info.get("summary", ""), scope,
                                                     f"unit: {unit}" if unit else "") if x),
                              criterion=f"metric:{metric}", unit=unit, flag=_flag(decision), part=part,
                              shown=part != "diagnostic"))
    return columns


def _cost_columns(view: RunView, rows: list[Row], decided: SizeDecisions) -> list[Column]:
    columns = [
        Column("latency", "latency / image (ms)", LOWER,
               "median per image: a call's latency ÷ its batch size, over calls of one batch size; "
               "p90 and the spread of the timed calls (IQR / median; above 10 %: unstable, not ranked) "
               "below", criterion="cost:latency", unit="ms",
               flag=_flag(decided.decisions.get("cost:latency")), part="cost"),
    ]
    kinds = [k for k in MEMORY_KINDS if any(k in row.memory for row in rows)]
    headline = [k for k in kinds if any(row.memory_headline_kind == k for row in rows)]
    for kind in sorted(kinds, key=lambda k: k not in headline):
        label, what = MEMORY_KINDS[kind]
        columns.append(Column(f"memory:{kind}", label, LOWER, what,
                              criterion="cost:memory" if kind in headline else None, unit="bytes",
                              flag=_flag(decided.decisions.get("cost:memory")) if kind in headline else None,
                              part="cost", shown=kind in headline))
    columns += _energy_columns(view, rows, decided)
    return [
        *columns,
        Column("throughput", "images / s", HIGHER, "batch size ÷ median call latency; megapixels per "
               "second (at the decoder's own output size) below", unit="images/s", part="cost", shown=False),
        Column("batch", "batch", None, "images per decode call (calls of another size are not pooled)",
               unit="images", part="cost", shown=False),
        Column("first_call", "first call (ms)", LOWER, "the first (warm-up) call at this size; the "
               "worker's start-up (spawn, imports, load) below", unit="ms", part="cost", shown=False),
        Column("cold_start", "cold start (ms)", LOWER, "worker start-up + its first call, for the size "
               "the worker served first (a later size is served by a warm worker)", unit="ms", part="cost",
               shown=False),
    ]


def _flag(decision: Decision | None) -> str | None:
    """"tag: reason" for a criterion that ranks nothing (shown in its header), else None."""
    if decision is None or decision.informative or not decision.values:
        return None
    flag = f"{decision.tag}: {decision.reason}"
    if decision.reference_value is not None:
        flag += f" (reference itself: {decision.reference_value:.4g})"
    return flag


def _group_description(decided: SizeDecisions, group: str) -> str:
    if group == OVERALL:
        return decided.weighting() + (f" — {decided.overall_reason}" if decided.overall_reason else "")
    summary = decided.groups[group]
    members = ", ".join(c.label + (f" ×{c.weight:g}" if c.weight != 1 else "") for c in summary.criteria
                        if decided.decisions[c.key].values)  # a cost not measured (energy) is no member
    weight = (f"weight {summary.weight:g} in overall" if summary.weight > 0 else "not in overall")
    text = (f"share of the other decoders beaten (no decision counts ½), averaged over {members}; "
            f"criteria without a decision left out; {weight}")
    return text + (f" — ranks nothing: {summary.reason}" if summary.reason else "")


def _energy_columns(view: RunView, rows: list[Row], decided: SizeDecisions) -> list[Column]:
    """Energy where the run's records hold any (measured or not), and the prices. Shown before the
    reader chooses where some decoder has the figure; what no decoder has is named under the table
    (Leaderboard.cost_gaps) instead of filling a column with "not measured"."""
    columns = []
    kinds = {row.energy_kind for row in rows} - {None}
    measured = any(row.device_energy and row.device_energy.measured for row in rows)
    if kinds:
        whose = " / ".join(ENERGY_KINDS[k] for k in ENERGY_KINDS if k in kinds)
        columns.append(Column("energy", "energy / image (J)", LOWER,
                              f"what {whose} drew per image over the timed calls of one batch size, "
                              "idle draw included (counter read around the block)", criterion="cost:energy",
                              unit="J", flag=_flag(decided.decisions.get("cost:energy")), part="cost",
                              shown=measured))
        if any(row.device_energy and row.device_energy.above_idle_per_image_j is not None for row in rows):
            columns.append(Column("energy_above_idle", "above idle / image (J)", LOWER,
                                  "energy per image minus the GPU's idle power (measured before the first "
                                  "decoder) times the calls' duration", unit="J", part="cost", shown=False))
        if measured:
            columns.append(Column("power", "mean power (W)", None,
                                  "energy ÷ duration of the timed calls", unit="W", part="cost", shown=False))
        if "gpu" in kinds and any(row.energy.get("cpu") and row.energy["cpu"].measured for row in rows):
            columns.append(Column("cpu_energy", "CPU energy / image (J)", LOWER,
                                  f"what {ENERGY_KINDS['cpu']} drew per image meanwhile", unit="J",
                                  part="cost", shown=False))
    currency = (view.cost or {}).get("currency", "USD")
    columns.append(Column("price_time", f"price / 1k images ({currency})", LOWER,
                          "device time: the hourly price × median latency per image × 1,000 (the "
                          "decoder's time only: no idle, loading, storage or host)",
                          unit=f"{currency} per 1,000 images", part="cost",
                          shown=(view.cost or {}).get("gpu_hour") is not None))
    if (view.cost or {}).get("kwh") is not None:
        columns.append(Column("price_energy", f"electricity / 1k images ({currency})", LOWER,
                              "the kWh price × energy per image × 1,000 (the counter's device only, "
                              "idle draw included)", unit=f"{currency} per 1,000 images", part="cost",
                              shown=measured))
    return columns


def _energy_cell(row: Row, summary: EnergySummary | None, value: float | None, what: str) -> Cell:
    """An energy figure, or why there is none: the decode failed, or the counter's reason."""
    if value is not None and summary is not None:
        cell = Cell("", sort=value, value=value, raw=value, n=summary.blocks)
        if summary.low_resolution:
            cell.note = "low resolution"
            cell.title = (f"{summary.low_resolution} of {summary.blocks} blocks of calls were too short for "
                          f"the counter: {summary.reason}")
        elif summary.worst_resolution is not None:
            cell.title = (f"counter updates every {summary.update_interval_s * 1e3:.3g} ms: within about "
                          f"{100 * summary.worst_resolution:.1f} % over the shortest block")
        return cell
    if row.failure_status and not row.ok:
        return Cell(status_label(row.failure_status), state="failed", title=_failure_title(row))
    if summary is not None and summary.measured:
        why = "the GPU's idle power was not measured in this run (see the run's facts)"
    elif summary is not None and summary.reason:
        why = f"{summary.kind.upper()} energy: {summary.reason}"
    else:
        why = f"this run holds no {what} for {row.decoder}"
    return Cell("not measured", state="missing", title=why)


def _price(view: RunView, row: Row, key: str) -> Price:
    """The row's price per 1,000 images: of device time ("price_time") or electricity."""
    if key == "price_time":
        device = str((view.manifest["suite"]["resolved"].get("timing") or {}).get("device") or "device")
        return device_time_price(view.cost, row.image_latency(0.5), device)
    summary = row.device_energy
    what = ENERGY_KINDS.get(row.energy_kind or "", "the device")
    why = summary.reason if summary is not None and summary.reason else "no energy was recorded"
    return electricity_price(view.cost, row.energy_per_image_j, what, why)


def _price_cell(row: Row, price: Price) -> Cell:
    """A price with three significant digits: a fast decoder's price per 1,000 images is a
    fraction of a cent, which the column's fixed decimals would round to one digit."""
    if price.value is not None:
        text = f"{price.value:,.2f}" if price.value >= 10 else f"{price.value:#.3g}"
        return Cell(text, sort=price.value, raw=price.value, title=price.includes)
    if row.failure_status and not row.ok:
        return Cell(status_label(row.failure_status), state="failed", title=_failure_title(row))
    return Cell("not priced", state="missing", title=price.reason or "")


def _cells(view: RunView, row: Row, columns: list[Column], decided: SizeDecisions) -> list[Cell]:
    cells = []
    for column in columns:
        kind, _, name = column.key.partition(":")
        if kind == "summary":
            cells.append(_summary_cell(decided, name, row.decoder))
        elif kind == "metric":
            cells.append(_metric_cell(row, name, row.metrics.get(name), column.direction))
        elif column.key.startswith(("energy", "power", "cpu_energy")):
            summary = row.energy.get("cpu") if column.key == "cpu_energy" else row.device_energy
            value = None if summary is None else {
                "energy": summary.per_image_j, "cpu_energy": summary.per_image_j,
                "power": summary.mean_power_w, "energy_above_idle": summary.above_idle_per_image_j,
            }[column.key]
            cells.append(_energy_cell(row, summary, value, "energy"))
        elif column.key.startswith("price"):
            cells.append(_price_cell(row, _price(view, row, column.key)))
        elif kind == "memory":
            value = row.memory.get(name)
            cell = _measured(row, value, MEMORY_KINDS[name][0])
            if value is not None:
                cell.text, cell.value = format_bytes(int(value)), None
                cell.n = len(row.per_call_memory()) or None
                cell.title = MEMORY_METHODS.get(row.memory_method or "", row.memory_method or "")
            cells.append(cell)
        else:
            cells.append(_cost_cell(row, column.key))
    return cells


def _summary_cell(decided: SizeDecisions, group: str, decoder: str) -> Cell:
    rate = decided.win_rates[group].get(decoder)
    if rate is not None:
        cell = Cell(f"{100 * rate:.0f}%", sort=-rate, raw=rate)
        used = decided.overall_groups.get(decoder, []) if group == OVERALL else []
        ranked = [n for n, g in decided.groups.items() if g.weight > 0 and g.rates]
        if used and len(used) < len(ranked):
            cell.note = f"{len(used)}/{len(ranked)} groups"
            cell.title = f"from {', '.join(used)} only: no value in the other groups"
        return cell
    if group == OVERALL:
        why = decided.overall_reason or "no value in any quality group"
    else:
        why = decided.groups[group].reason or f"{decoder} has no value in this group"
    return Cell("—", state="missing", title=why, status="no_value")


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
        cell.n = len(row.headline_calls()) or None
        p90, spread = row.image_latency(0.9), row.latency_spread
        if p90 is not None:
            cell.ci = f"p90 {p90:,.4g}" + ("" if spread is None else f", spread {spread:.0%}")
        if row.latency_unstable:
            cell.note = "unstable"
            cell.title = (f"unstable: the timed calls spread by {spread:.0%} of their median (IQR / median, "
                          "above 10 %); not ranked — rerun on a quieter machine or with "
                          'timing.repeats = "auto"')
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
        return Cell(status_label(row.failure_status), state="failed", title=_failure_title(row),
                    status=row.failure_status)
    return Cell("not measured", state="missing", title=f"this run holds no {what} for {row.decoder}",
                status="not_measured")


def _metric_cell(row: Row, metric: str, summary: MetricSummary | None, direction: Direction | None) -> Cell:
    if summary is None:
        if row.failure_status and not row.ok:
            return Cell(status_label(row.failure_status), state="failed", status=row.failure_status,
                        title=f"no decoded output to score — {_failure_title(row)}")
        return Cell("not measured", state="missing", title=f"this run holds no {metric} values",
                    status="not_measured")
    if summary.mean is None:
        failed = {s: n for s, n in summary.statuses.items() if s != "ok"}
        status = max(failed, key=lambda s: failed[s]) if failed else "not measured"
        title = "\n".join(summary.messages) or f"{metric}: {status_label(status)}"
        return Cell(status_label(status), state="failed" if status == "error" else "missing", title=title,
                    status=status.replace(" ", "_"))
    value = summary.headline
    sort = None if direction is None else direction.badness(value)  # type: ignore[arg-type]
    if summary.aggregate is not None:  # the metric's own value for the set (FID, GenEval, ...)
        cell = Cell("", sort=sort, value=summary.aggregate, title=f"{metric} over the whole set (one value)",
                    raw=summary.aggregate)
        covered = summary.aggregate_n if summary.aggregate_n is not None else summary.n or None
        cell.n = covered
        if covered is not None and covered < row.units:
            cell.note = f"{covered}/{row.units}"
            failures = _failure_title(row)
            cell.title += f"; computed from {covered} of {row.units} cases"
            cell.title += f" ({failures})" if failures else ""
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
    for row, cells in board.rows:
        cell = cells[index]
        note = decision.note(row.decoder)
        if note:
            cell.title = "\n".join(t for t in (cell.title, note) if t)
        cell.best = decision.informative and row.decoder in decision.marked
