"""`decoderbench show RUN_DIR`: the decoder × metric table of a run (also printed by `run`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from harness.cli.console import console, fail, num, out

if TYPE_CHECKING:
    from reports.aggregate import TimeBudget
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
    for warning in view.warnings:
        console.print(f"[yellow]note:[/] {escape(warning)}", highlight=False)
    budget = time_budget(view)
    if budget is None:
        return
    count = len(budget.invocations)
    console.print(_time_line("time" if count < 2 else f"time, {count} invocations", budget), highlight=False)
    for number, part in enumerate(budget.invocations if count > 1 else (), start=1):
        killed = "" if part.complete else " (killed: wall up to its last record)"
        console.print(_time_line(f"  invocation {number}{killed}", part), highlight=False)


def _time_line(label: str, budget: TimeBudget) -> str:
    return (f"{label}: wall {budget.wall_s:.1f} s = decoder calls {budget.decoder_calls_s:.1f} s + worker "
            f"start-up {budget.worker_startup_s:.1f} s + metrics {budget.metrics_s:.1f} s + judge "
            f"{budget.judge_s:.1f} s + harness {budget.harness_s:.1f} s; overhead (wall − decoder calls "
            f"− metrics) {100 * budget.overhead_fraction:.0f}% of wall")
