"""`decoderbench show RUN_DIR`: the decoder × metric table of a run (also printed by `run`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from harness.cli.console import console, fail, num, out

if TYPE_CHECKING:
    from reports.aggregate import RunView, TimeBudget
    from reports.decisions import Decision


def _rate(rate: float | None) -> str:
    return "—" if rate is None else f"{100 * rate:.0f}%"


def _marked(text: str, decision: Decision | None, decoder: str) -> str:
    """A ★ on the best value and on every value tied with it within noise."""
    if decision is None or decision.uninformative or len(decision.values) < 2:
        return text
    return f"★ {text}" if decoder in decision.marked else text


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
    from reports.aggregate import MEMORY_KINDS, format_bytes, load_run, time_budget
    from reports.decisions import decide_size

    view = load_run(run_dir)
    for size in view.sizes:
        decided = decide_size(view, size)
        rows = view.rows_at(size)
        title = f"{view.manifest['suite']['name']} · {size[0]}×{size[1]}"
        if decided.group_names:
            summary = Table(title=f"{title} · summary: win rate per group (ties count ½)")
            summary.add_column("decoder")
            for group in decided.group_names:
                summary.add_column(group, justify="right")
            for row in rows:
                summary.add_row(row.decoder, *(_rate(decided.win_rates[g].get(row.decoder)) for g in
                                               decided.group_names))
            out.print(summary)
        table = Table(title=f"{title} · ★ best, and tied with it within noise")
        memory_kind = next((row.memory_headline_kind for row in rows if row.memory_headline_kind), None)
        memory_label = MEMORY_KINDS[memory_kind][0] if memory_kind else "peak memory"
        for column in ("decoder", "ok", "ms / image", "p90", "batch", memory_label, "first call ms"):
            table.add_column(column, justify="left" if column == "decoder" else "right")
        metric_decisions = {m: decided.decisions.get(f"metric:{m}") for m in view.metric_names}
        for metric in view.metric_names:
            direction = view.direction(metric)
            flag = " (uninformative)" if (metric_decisions[metric] and
                                         metric_decisions[metric].uninformative) else ""
            table.add_column(f"{metric} {direction.symbol if direction else ''}{flag}", justify="right")
        latency, memory = decided.decisions["cost:latency"], decided.decisions["cost:memory"]
        for row in rows:
            cells = [row.decoder, f"{row.ok}/{row.units}",
                     _marked(num(row.image_latency(0.5), ".3g"), latency, row.decoder),
                     num(row.image_latency(0.9), ".3g"), num(row.batch_size, "d"),
                     _marked(format_bytes(row.peak_memory_bytes), memory, row.decoder),
                     num(row.first_call_ms, ".1f")]
            for metric in view.metric_names:
                summary = row.metrics.get(metric)
                if summary is None:
                    cells.append("not measured")
                elif summary.headline is None:
                    cells.append(", ".join(summary.statuses))
                else:
                    cells.append(_marked(num(summary.headline, ".4f"), metric_decisions[metric], row.decoder))
            table.add_row(*cells)
        out.print(table)
        for metric, decision in metric_decisions.items():
            if decision is not None and decision.uninformative:
                reference = (f"; the reference itself scores {decision.reference_value:.4g}"
                             if decision.reference_value is not None else "")
                console.print(f"[yellow]note:[/] {escape(metric)} is uninformative here: "
                              f"{escape(decision.uninformative)}{reference}", highlight=False)
        for row in rows:
            for failure in row.failures:
                console.print(f"[red]{escape(row.decoder)}:[/] {escape(failure)}", highlight=False)
    print_benchmark_tables(view)
    for warning in view.warnings:
        console.print(f"[yellow]note:[/] {escape(warning)}", highlight=False)
    budget = time_budget(view)
    if budget is not None:
        console.print(time_line(budget), highlight=False)


def time_line(budget: TimeBudget) -> str:
    """wall = sources + worker start-up + decoding + writing + metrics + judge + harness."""
    shared = f" (over {budget.slots} concurrent workers)" if budget.slots > 1 else ""
    background = (f" (+{budget.writer_background_s:.1f} s while decoding)"
                  if budget.writer_background_s >= 0.05 else "")
    return (f"time: wall {budget.wall_s:.1f} s = sources {budget.sources_s:.1f} s + worker start-up "
            f"{budget.startup_wall_s:.1f} s + decoder calls {budget.decoding_s:.1f} s{shared} + writing "
            f"{budget.writing_s:.1f} s{background} + metrics {budget.metrics_s:.1f} s + judge "
            f"{budget.judge_s:.1f} s + harness {budget.harness_s:.1f} s; harness overhead (wall − sources − "
            f"decoder calls − metrics − judge) {100 * budget.overhead_fraction:.1f}% of wall")
