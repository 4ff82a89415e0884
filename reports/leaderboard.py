"""Leaderboard tables: one per (suite, comparison size), cells that never lie.

Every cell is a number with its interval, or says why there is none; the summary comes first and
the best marks follow reports/decisions.py (docs/reports.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from harness.metrics.direction import HIGHER, LOWER, Direction
from harness.view import (
    ENERGY_KINDS,
    MEMORY_KINDS,
    Row,
    RunView,
    format_bytes,
)
from reports.cells import (
    MEMORY_METHODS,
    Cell,
    cost_cell,
    decimals_for,
    energy_cell,
    format_number,
    measured_cell,
    metric_cell,
    price_cell,
    price_of,
)
from reports.decisions import Decision
from reports.summary import OVERALL, SizeDecisions, decide_size

COST_GAP_COLUMNS = ("energy", "energy_above_idle", "power", "cpu_energy", "price_time", "price_energy")


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


def _cells(view: RunView, row: Row, columns: list[Column], decided: SizeDecisions) -> list[Cell]:
    cells = []
    for column in columns:
        kind, _, name = column.key.partition(":")
        if kind == "summary":
            cells.append(_summary_cell(decided, name, row.decoder))
        elif kind == "metric":
            cells.append(metric_cell(row, name, row.metrics.get(name), column.direction))
        elif column.key.startswith(("energy", "power", "cpu_energy")):
            summary = row.energy.get("cpu") if column.key == "cpu_energy" else row.device_energy
            value = None if summary is None else {
                "energy": summary.per_image_j, "cpu_energy": summary.per_image_j,
                "power": summary.mean_power_w, "energy_above_idle": summary.above_idle_per_image_j,
            }[column.key]
            cells.append(energy_cell(row, summary, value, "energy"))
        elif column.key.startswith("price"):
            cells.append(price_cell(row, price_of(view, row, column.key)))
        elif kind == "memory":
            value = row.memory.get(name)
            cell = measured_cell(row, value, MEMORY_KINDS[name][0])
            if value is not None:
                cell.text, cell.value = format_bytes(int(value)), None
                cell.n = len(row.per_call_memory()) or None
                cell.title = MEMORY_METHODS.get(row.memory_method or "", row.memory_method or "")
            cells.append(cell)
        else:
            cells.append(cost_cell(row, column.key))
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
