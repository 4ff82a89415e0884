"""`decoderbench show RUN_DIR`: the decoder × metric table of a run (also printed by `run`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from harness.cli.console import console, fail, num, out

if TYPE_CHECKING:
    from reports.aggregate import RunView


def show(run_dir: Annotated[Path, typer.Argument(help="A run directory.")]) -> None:
    """Print the decoder × metric table of a run, with latency and memory."""
    from harness.store import StoreError

    try:
        print_summary(run_dir)
    except StoreError as exc:
        raise fail(str(exc)) from None


def print_benchmark_tables(view: RunView) -> None:
    """GenEval / DPG-Bench tables as their papers print them, and the published numbers rows name."""
    from reports.benchmarks import benchmark_tables, published_table

    tables = benchmark_tables(view)
    published = published_table(view)
    for found in [*tables, *([published] if published else [])]:
        table = Table(title=found.title)
        for index, column in enumerate(found.columns):
            left = index == 0 or column in ("what", "source")
            table.add_column(column, justify="left" if left else "right")
        for cells in found.rows:
            table.add_row(*cells)
        out.print(table)


def print_summary(run_dir: Path) -> None:
    from reports.aggregate import direction, format_bytes, load_run, time_budget

    view = load_run(run_dir)
    for size in view.sizes:
        table = Table(title=f"{view.manifest['suite']['name']} · {size[0]}×{size[1]}")
        for column in ("decoder", "ok", "median ms", "p90 ms", "peak memory", "cold start ms"):
            table.add_column(column, justify="left" if column == "decoder" else "right")
        for metric in view.metric_names:
            info = view.metric_info.get(metric, {})
            table.add_column(f"{metric} {direction(info)}",
                             justify="right")
        for row in view.rows_at(size):
            cells = [row.decoder, f"{row.statuses.get('ok', 0)}/{row.units}",
                     num(row.latency(0.5), ".2f"), num(row.latency(0.9), ".2f"),
                     format_bytes(row.peak_memory_bytes), num(row.cold_start_ms, ".1f")]
            for metric in view.metric_names:
                summary = row.metrics.get(metric)
                if summary is None:
                    cells.append("not measured")
                elif summary.headline is None:
                    cells.append(", ".join(summary.statuses))
                else:
                    cells.append(num(summary.headline, ".4f"))
            table.add_row(*cells)
        out.print(table)
        for row in view.rows_at(size):
            for failure in row.failures:
                console.print(f"[red]{row.decoder}:[/] {failure}", highlight=False)
    print_benchmark_tables(view)
    for warning in view.warnings:
        console.print(f"[yellow]note:[/] {warning}", highlight=False)
    budget = time_budget(view)
    if budget is not None:
        console.print(
            f"time: wall {budget.wall_s:.1f} s = decoder calls {budget.decoder_calls_s:.1f} s + worker "
            f"start-up {budget.worker_startup_s:.1f} s + metrics {budget.metrics_s:.1f} s + judge "
            f"{budget.judge_s:.1f} s + harness {budget.harness_s:.1f} s; overhead (wall − decoder calls "
            f"− metrics) {100 * budget.overhead_fraction:.0f}% of wall", highlight=False)
