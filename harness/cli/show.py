"""`decoderbench show RUN_DIR`: the results of a run (also printed by `run`).

Per comparison size: the summary (each decoder's win rate per summary group and overall) first,
then every criterion — cases, latency, batch, throughput, memory, first call, cold start and
each metric with its direction, ★ marks and 95 % intervals. The cells are the leaderboard's
(reports/leaderboard.py), so the terminal, the Markdown, CSV and JSON forms and the HTML report
show the same numbers and marks. Tables never truncate (harness/cli/tables.py).
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import re
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from harness.cli.console import console, fail, out
from harness.cli.tables import Cell, Column, Grid, markdown_grid, print_grid, print_note

if TYPE_CHECKING:
    from harness.view import RunView, TimeBudget
    from reports.leaderboard import Leaderboard

LEGEND = ("★ best, and every decoder not separated from it (exact paired sign-flip test over cases, "
          "or calls for costs; Holm over the column's decoder pairs at 5 %) · ↑ higher, ↓ lower, →1 closest "
          "to 1 is better · ± 95% interval of the mean over cases · [5/6] a mean over part of the cases · "
          "(unstable) timed calls spread > 10 % of their median: not ranked")
SUMMARY_LEGEND = ("win rate: the share of the other decoders beaten per criterion (no decision counts ½), "
                  "averaged over the group's criteria that decide something")
_PARTIAL = re.compile(r"^\d+/\d+$")


class Format(StrEnum):
    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"


def show(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    format_: Annotated[Format, typer.Option(
        "--format", help="table (terminal; a log layout when piped), markdown (pull requests), csv or "
        "json (one record per decoder and column, raw numbers and units).")] = Format.table,
    metrics: Annotated[str | None, typer.Option(
        help="Only these metrics, comma-separated (costs and the summary are always shown).")] = None,
    summary: Annotated[bool, typer.Option(
        "--summary", help="Only the summary: win rates per summary group and overall.")] = False,
    gpu_hour_price: Annotated[float | None, typer.Option(
        "--gpu-hour-price", help="Price the run at this price of a device hour (replaces the suite's "
        "[cost] gpu_hour; currency and kwh stay).")] = None,
) -> None:
    """Print a run's results: the summary, then every criterion.

    Tables fit the width (a long form when piped); --format markdown pastes into a pull request."""
    from harness.view import load_run
    from reports.price import with_gpu_hour

    try:
        view = load_run(run_dir)
        if gpu_hour_price is not None:
            view.cost = with_gpu_hour(view.cost, gpu_hour_price)
    except ValueError as exc:  # a bad price; the project's own errors reach reports_errors
        raise fail(str(exc)) from None
    chosen = _metrics(view, metrics)
    if format_ == Format.table:
        print_results(view, chosen, summary_only=summary)
        return
    for warning in view.warnings:  # stdout stays the document; what it cannot say goes to stderr
        print_note(console, warning)
    if format_ == Format.markdown:
        tables = grids(view, chosen, True) if summary else [one_grid(b) for b in _boards(view, chosen)]
        sys.stdout.write("\n".join(markdown_grid(g) for g in tables))
    else:
        records = result_records(view, chosen, summary)
        sys.stdout.write(_json(view, records) if format_ == Format.json else _csv(records))


def _metrics(view: RunView, requested: str | None) -> list[str]:
    if requested is None:
        return list(view.metric_names)
    names = [name.strip() for name in requested.split(",") if name.strip()]
    for name in names:
        if name not in view.metric_names:
            close = difflib.get_close_matches(name, view.metric_names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise fail(f"--metrics: {name!r} is not a metric of this run{hint}; its metrics: "
                       f"{', '.join(view.metric_names) or 'none'}")
    return names


def _boards(view: RunView, metrics: list[str]) -> list[Leaderboard]:
    """The leaderboards, their metric columns cut to `metrics` (decisions stay over every one)."""
    from reports.leaderboard import build_leaderboards

    boards = build_leaderboards(view)
    for board in boards:
        keep = [i for i, c in enumerate(board.columns)
                if not c.key.startswith("metric:") or c.key.split(":", 1)[1] in metrics]
        board.columns = [board.columns[i] for i in keep]
        board.rows = [(row, [cells[i] for i in keep]) for row, cells in board.rows]
    return boards


def _cell(cell: Any) -> Cell:
    """A leaderboard cell as a terminal cell: its mark, interval, coverage and failure colour."""
    partial = bool(cell.note and _PARTIAL.match(cell.note))
    n = cell.note if partial else ("" if cell.n is None else str(cell.n))
    style = {"failed": "red", "missing": "dim"}.get(cell.state, "green" if cell.best else "")
    return Cell(cell.text, interval=cell.ci or "", n=n, best=cell.best, style=style, partial=partial,
                note="" if partial else cell.note or "")


def _header(column: Any) -> str:
    arrow = f" {column.arrow}" if column.arrow else ""
    return f"{column.label}{arrow}" + (f" ({column.tag})" if column.tag else "")


def board_grids(board: Leaderboard, summary_only: bool = False) -> list[Grid]:
    title = f"{board.suite} · {board.size[0]}×{board.size[1]}"
    grids = []
    summary = [i for i, c in enumerate(board.columns) if c.key.startswith("summary:")]
    if summary:
        assert board.decisions is not None
        grid = Grid(f"{title} · summary: win rate per group", Column("decoder"),
                    [Column(board.columns[i].key.split(":", 1)[1], numeric=True) for i in summary],
                    legend=f"{SUMMARY_LEGEND}; {board.decisions.weighting()}", field_name="group")
        for row, cells in board.rows:
            grid.add(row.decoder, [_cell(cells[i]) for i in summary])
        grids.append(grid)
    if summary_only:
        return grids
    rest = [i for i in range(len(board.columns)) if i not in summary]
    grid = Grid(title, Column("decoder"), [Column(_header(board.columns[i]), numeric=True) for i in rest],
                legend=LEGEND, field_name="criterion")
    for row, cells in board.rows:
        grid.add(row.decoder, [_cell(cells[i]) for i in rest])
    return [*grids, grid]


def grids(view: RunView, metrics: list[str], summary_only: bool = False) -> list[Grid]:
    return [g for board in _boards(view, metrics) for g in board_grids(board, summary_only)]


def one_grid(board: Leaderboard) -> Grid:
    """A comparison size as one grid — the summary's win rates, then every criterion — for a
    pull-request comment (Markdown), with both legends under it."""
    parts = board_grids(board)
    summary, rest = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    columns = [Column(f"{c.name} win rate", numeric=True) for c in summary.columns] if summary else []
    legend = " · ".join([rest.legend, *([summary.legend] if summary else [])])
    grid = Grid(rest.title, Column("decoder"), columns + rest.columns, legend=legend, field_name="criterion")
    for index, (key, cells) in enumerate(rest.rows):
        grid.add(key, [*(summary.rows[index][1] if summary else []), *cells])
    return grid


def print_results(view: RunView, metrics: list[str] | None = None, summary_only: bool = False,
                  notes: bool = True) -> None:
    """The tables on stdout; what they cannot say (failures, uninformative criteria, the run's
    notes unless the caller printed them already, the time budget) on stderr."""
    from harness.view import time_budget

    unmeasured: dict[str, None] = {}
    for board in _boards(view, view.metric_names if metrics is None else metrics):
        for grid in board_grids(board, summary_only):
            print_grid(grid, out)
        for line in board.summary_notes:
            print_note(console, line, label="summary", style="cyan")
        if summary_only:
            continue
        for column in board.columns:
            if column.flag and not column.key.startswith("summary:"):
                print_note(console, f"{column.label}: {column.flag}")
        for row, _ in board.rows:
            for failure in row.failures:
                print_note(console, failure, label=row.decoder, style="red")
        unmeasured.update(dict.fromkeys(board.cost_gaps))
    for gap in unmeasured:
        print_note(console, gap, label="cost")
    if not summary_only:
        for grid in benchmark_grids(view):
            print_grid(grid, out)
    for warning in view.warnings if notes else []:
        print_note(console, warning)
    budget = time_budget(view)
    if budget is None or summary_only:
        return
    count = len(budget.invocations)
    print_note(console, time_line(budget), label="time" if count < 2 else f"time, {count} invocations",
               style="cyan")
    for number, part in enumerate(budget.invocations if count > 1 else (), start=1):
        killed = "" if part.complete else " (killed: wall up to its last record)"
        print_note(console, time_line(part), label=f"  invocation {number}{killed}", style="cyan")


def time_line(budget: TimeBudget) -> str:
    """wall = sources + worker start-up + decoding + writing + metrics + judge + harness."""
    shared = f" (over {budget.slots} concurrent workers)" if budget.slots > 1 else ""
    background = (f" (+{budget.writer_background_s:.1f} s while decoding)"
                  if budget.writer_background_s >= 0.05 else "")
    return (f"wall {budget.wall_s:.1f} s = sources {budget.sources_s:.1f} s + worker start-up "
            f"{budget.startup_wall_s:.1f} s + decoder calls {budget.decoding_s:.1f} s{shared} + writing "
            f"{budget.writing_s:.1f} s{background} + metrics {budget.metrics_s:.1f} s + judge "
            f"{budget.judge_s:.1f} s + harness {budget.harness_s:.1f} s; harness overhead (wall − sources − "
            f"decoder calls − metrics − judge) {100 * budget.overhead_fraction:.1f}% of wall")


def benchmark_grids(view: RunView) -> list[Grid]:
    """GenEval / DPG-Bench tables as their papers print them, and the published numbers rows name."""
    from reports.benchmarks import benchmark_tables, published_table

    found = [*benchmark_tables(view), *filter(None, [published_table(view)])]
    grids = []
    for table in found:
        key, *rest = table.columns
        columns = [Column(c, numeric=c not in ("what", "source"), text=c in ("what", "source")) for c in rest]
        grid = Grid(table.title, Column(key), columns)
        for first, *values in table.rows:
            grid.add(first, values)
        grids.append(grid)
    return grids


def print_summary(run_dir: Path, notes: bool = True) -> None:
    """What `run` prints at the end (notes=False: the run printed them as they came)."""
    from harness.view import load_run

    print_results(load_run(run_dir), notes=notes)


# --------------------------------------------------------------------------- records


SCHEMA_VERSION = 2  # 2: ci95_low/ci95_high bounds, status tokens, run metadata


def result_records(view: RunView, metrics: list[str], summary_only: bool = False) -> list[dict[str, Any]]:
    """One record per (size, decoder, column): the raw number in its unit with the bounds of its
    95 % interval, the status (`ok`, or why there is no number: `unavailable`, `oom`,
    `not_measured`, ...), the reason, and the text the table shows."""
    records = []
    for board in _boards(view, metrics):
        for index, column in enumerate(board.columns):
            if summary_only and not column.key.startswith("summary:"):
                continue
            for row, cells in board.rows:
                cell = cells[index]
                value, half = _finite(cell.raw), _finite(cell.ci_value)
                known = value is not None and half is not None
                bounds = (value - half, value + half) if known else (None, None)  # type: ignore[operator]
                records.append({
                    "suite": board.suite, "width": board.size[0], "height": board.size[1],
                    "decoder": row.decoder, "column": column.key, "label": column.label,
                    "better": column.direction.label if column.direction else None, "unit": column.unit,
                    "value": value, "ci95_low": bounds[0], "ci95_high": bounds[1], "n": cell.n,
                    "coverage": cell.note, "best": cell.best, "status": cell.status,
                    "reason": cell.title or None, "text": _cell(cell).value,
                })
    return records


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _json(view: RunView, records: list[dict[str, Any]]) -> str:
    from harness import __version__
    from reports.export import run_context

    run = {**run_context(view), "run_dir": str(view.run_dir), "status": view.manifest.get("status"),
           "decoderbench": view.manifest.get("decoderbench")}
    document = {"schema": "decoderbench show", "schema_version": SCHEMA_VERSION, "written_by": __version__,
                "run": run, "records": records}
    return json.dumps(document, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def _csv(records: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]) if records else ["suite"])
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()
