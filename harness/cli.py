"""The `decoderbench` command line.

Exit codes: 0 everything ran and every case decoded; 1 a case failed (OOM,
error, timeout, crash, invalid output, unavailable decoder); 2 a usage,
suite or run-directory error.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.console import EXIT_FAILED, EXIT_USAGE, console, fail, out
from harness.gate_cli import baseline_app, gate_app
from harness.suite import SuiteError, builtin_suites_dir, load_suite

app = typer.Typer(
    name="decoderbench",
    help="Benchmark latent-to-pixel image decoders on identical inputs: "
    "latency, memory and quality, stored per case, with reports and gates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _Verb(StrEnum):
    decoders = "decoders"
    metrics = "metrics"
    suites = "suites"


class RichReporter:
    """Progress bars on stderr; notes printed above them."""

    def __init__(self, quiet: bool = False) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, disable=quiet,
        )
        self._task: int | None = None

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def phase(self, name: str, total: int) -> None:
        self._task = self.progress.add_task(name, total=total)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self.progress.advance(self._task, n)

    def note(self, message: str) -> None:
        self.progress.console.print(f"[yellow]note:[/] {message}", highlight=False)


@app.command()
def run(
    suite: Annotated[str, typer.Argument(
        help="Suite file, or a built-in suite name (default: the offline demo 'smoke')."
    )] = "smoke",
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Run directory to create (default: runs/<suite>-<timestamp>).")] = None,
    resume: Annotated[Path | None, typer.Option(
        help="Resume this run directory: finished (decoder, case) units are skipped.")] = None,
    device: Annotated[str | None, typer.Option(help="Override timing.device (cpu, cuda, cuda:N).")] = None,
    dtype: Annotated[str | None, typer.Option(help="Override timing.dtype.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(
        help="Latent cache (default: $DECODERBENCH_CACHE_DIR or ~/.cache/decoderbench).")] = None,
    report: Annotated[bool, typer.Option(help="Write RUN_DIR/report/index.html at the end.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Run a suite (or resume a run) and print the summary table."""
    from harness.cache import TensorCache, default_cache_dir
    from harness.runner import Runner
    from harness.sources import SourceError
    from harness.store import StoreError

    cache = TensorCache(cache_dir or default_cache_dir())
    try:
        with RichReporter(quiet) as reporter:
            if resume is not None:
                runner = Runner.resume(resume, cache if cache_dir else None, reporter)
            else:
                loaded = load_suite(suite).with_overrides(device=device, dtype=dtype)
                stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
                run_dir = out_dir or Path("runs") / f"{loaded.name}-{stamp}"
                runner = Runner.new(loaded, run_dir, cache, reporter)
            outcome = runner.run()
    except SuiteError as exc:
        raise fail(f"invalid suite\n{exc}") from None
    except (StoreError, SourceError) as exc:
        raise fail(str(exc)) from None
    _print_summary(outcome.run_dir)
    if report:
        from reports.html import render_report

        console.print(f"report: {render_report(outcome.run_dir)}", highlight=False)
    console.print(f"run directory: {outcome.run_dir}", highlight=False)
    if outcome.failed_units:
        console.print(f"[red]{outcome.failed_units} decode unit(s) did not succeed[/]")
        raise typer.Exit(EXIT_FAILED)


@app.command()
def validate(
    suites: Annotated[list[str], typer.Argument(help="Suite files or built-in names.")],
) -> None:
    """Check suite files: schema, registries, sources. Prints what each would run."""
    from harness.cases import expand
    from harness.sources import SourceError, list_items, source_protocol

    failed = False
    for spec in suites:
        try:
            loaded = load_suite(spec)
            items = [entry.item for entry in list_items(loaded)]
            model = loaded.model
            cases = expand(items, model.resolution.pairs(), model.sigmas, model.seeds,
                           source_protocol(loaded))
        except (SuiteError, SourceError) as exc:
            console.print(f"[red]✗[/] {exc}", highlight=False, soft_wrap=True)
            failed = True
            continue
        out.print(
            f"[green]✓[/] {loaded.path}: suite {loaded.name!r}, {len(items)} item(s), "
            f"{len(cases)} case(s) × {len(model.decoder)} decoder(s), "
            f"{len(model.metrics)} metric(s); sha256 {loaded.sha256[:12]}",
            highlight=False,
        )
    if failed:
        raise typer.Exit(EXIT_USAGE)


@app.command("list")
def list_(what: Annotated[_Verb, typer.Argument(help="decoders, metrics or suites")]) -> None:
    """List registered decoders, metrics, or the built-in suites."""
    if what == _Verb.decoders:
        _list_decoders()
    elif what == _Verb.metrics:
        _list_metrics()
    else:
        _list_suites()


def _list_decoders() -> None:
    from decoders.registry import DECODERS

    table = Table("name", "consumes", "latent spaces", "stochastic", "prompt", "native scale",
                  "from", "summary")
    for name, entry in DECODERS.entries().items():
        try:
            spec = DECODERS.get(name).spec
        except Exception as exc:
            table.add_row(name, "?", "", "", "", "", entry.origin, f"cannot import: {exc}")
            continue
        scale = "any" if spec.native_scale is None else f"{spec.native_scale:g}×"
        table.add_row(name, str(spec.consumes), ", ".join(spec.latent_spaces),
                      "yes" if spec.stochastic else "no", "yes" if spec.needs_prompt else "no",
                      scale, entry.origin, spec.summary)
    out.print(table)


def _list_metrics() -> None:
    from harness.metrics import METRICS

    table = Table("name", "family", "better", "from", "summary")
    for name, entry in METRICS.entries().items():
        try:
            cls = METRICS.get(name)
        except Exception as exc:
            table.add_row(name, "?", "", entry.origin, f"cannot import: {exc}")
            continue
        better = f"closest to {cls.target:g}" if cls.target is not None else (
            "higher" if cls.higher_is_better else "lower")
        table.add_row(name, str(cls.family), better,
                      entry.origin, cls.summary)
    out.print(table)


def _list_suites() -> None:
    table = Table("name", "path", "description")
    for path in sorted(builtin_suites_dir().glob("*.toml")):
        try:
            description = load_suite(path).model.description
        except SuiteError as exc:
            description = f"invalid: {exc}"
        table.add_row(path.stem, str(path), description)
    out.print(table)


@app.command()
def show(run_dir: Annotated[Path, typer.Argument(help="A run directory.")]) -> None:
    """Print the decoder × metric table of a run, with latency and memory."""
    from harness.store import StoreError

    try:
        _print_summary(run_dir)
    except StoreError as exc:
        raise fail(str(exc)) from None


def _print_summary(run_dir: Path) -> None:
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
                     _num(row.latency(0.5), ".2f"), _num(row.latency(0.9), ".2f"),
                     format_bytes(row.peak_memory_bytes), _num(row.cold_start_ms, ".1f")]
            for metric in view.metric_names:
                summary = row.metrics.get(metric)
                if summary is None:
                    cells.append("not measured")
                elif summary.headline is None:
                    cells.append(", ".join(summary.statuses))
                else:
                    cells.append(_num(summary.headline, ".4f"))
            table.add_row(*cells)
        out.print(table)
        for row in view.rows_at(size):
            for failure in row.failures:
                console.print(f"[red]{row.decoder}:[/] {failure}", highlight=False)
    for warning in view.warnings:
        console.print(f"[yellow]note:[/] {warning}", highlight=False)
    budget = time_budget(view)
    if budget is not None:
        console.print(
            f"time: wall {budget.wall_s:.1f} s = decoder calls {budget.decoder_calls_s:.1f} s + worker "
            f"start-up {budget.worker_startup_s:.1f} s + metrics {budget.metrics_s:.1f} s + judge "
            f"{budget.judge_s:.1f} s + harness {budget.harness_s:.1f} s; overhead (wall − decoder calls "
            f"− metrics) {100 * budget.overhead_fraction:.0f}% of wall", highlight=False)


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


@app.command("report")
def report_(
    run_dirs: Annotated[list[Path], typer.Argument(
        help="Run directories: runs of one or more suites (several runs of a suite give its history) "
        "and memory-wall sweep runs.")],
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Report folder (default: RUN_DIR/report for a single run).")] = None,
    metric: Annotated[str | None, typer.Option(
        help="Quality metric of the cost–quality plots and history (default: the suite's first).")] = None,
) -> None:
    """Render a static HTML report (works from file://, no network)."""
    from harness.store import StoreError
    from reports.html import ReportError, render_reports

    if out_dir is None and len(run_dirs) > 1:
        raise fail("give --out DIR when reporting several run directories")
    try:
        out.print(str(render_reports(run_dirs, out_dir or run_dirs[0] / "report", metric)))
    except (StoreError, ReportError) as exc:
        raise fail(str(exc)) from None


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    parquet: Annotated[bool, typer.Option("--parquet", help="Write Parquet (needs pyarrow).")] = False,
    csv: Annotated[bool, typer.Option("--csv", help="Write CSV.")] = False,
    out_file: Annotated[Path | None, typer.Option("--out", help="Default: RUN_DIR/results.<ext>.")] = None,
) -> None:
    """Export the tidy results table: one row per (decoder, case, variable)."""
    from harness.export import tidy_rows, write_csv, write_parquet
    from harness.store import StoreError

    if parquet == csv:
        raise fail("choose exactly one of --parquet or --csv")
    try:
        rows = tidy_rows(run_dir)
    except StoreError as exc:
        raise fail(str(exc)) from None
    target = out_file or run_dir / ("results.parquet" if parquet else "results.csv")
    try:
        (write_parquet if parquet else write_csv)(rows, target)
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    out.print(f"{len(rows)} rows → {target}")


@app.command()
def judge(
    run_dir: Annotated[Path, typer.Argument(help="A run directory that has decoded.")],
    suite_override: Annotated[Path | None, typer.Option(
        help="TOML file whose \\[judge] table is merged over the run's (a suite file works).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(
        help="Cache holding judge verdicts (default: the run's cache directory).")] = None,
    max_requests: Annotated[int | None, typer.Option(help="Override judge.max_requests.")] = None,
    cost_cap_usd: Annotated[float | None, typer.Option(help="Override judge.cost_cap_usd.")] = None,
    dry_run: Annotated[bool, typer.Option(
        help="Only count what would be asked and its worst-case cost.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Judge (or resume judging) a run pairwise with a multimodal model; writes RUN_DIR/judge.json."""
    from harness.judge.command import JudgeUsageError, judge_run, print_outcome
    from harness.store import StoreError

    caps = {"max_requests": max_requests, "cost_cap_usd": cost_cap_usd}
    try:
        with RichReporter(quiet) as reporter:
            outcome = judge_run(run_dir, suite_override, cache_dir, caps, reporter, dry_run)
    except SuiteError as exc:
        raise fail(f"invalid judge settings\n{exc}") from None
    except (StoreError, JudgeUsageError) as exc:
        raise fail(str(exc)) from None
    print_outcome(outcome, out)
    if outcome.counts["failed"]:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def sweep(
    suite: Annotated[str, typer.Argument(help="Suite file or built-in name holding the decoder.")],
    decoder: Annotated[str, typer.Option("--decoder", help="Decoder id (label) in the suite.")],
    start: Annotated[int, typer.Option("--from", help="Smallest output side (px).")] = 512,
    stop: Annotated[int, typer.Option("--to", help="Largest output side (px).")] = 4096,
    step: Annotated[int | None, typer.Option(
        help="Coarser search: sizes are multiples of this too (default: what the decoder accepts).")] = None,
    device: Annotated[str | None, typer.Option(help="Override timing.device.")] = None,
    dtype: Annotated[str | None, typer.Option(help="Override timing.dtype.")] = None,
    memory_budget: Annotated[str | None, typer.Option(
        "--memory-budget", help="Sizes whose peak memory exceeds this count as out of memory "
        "(bytes, or 24GiB, 512MB, ...).")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Run directory (default: runs/sweep-<suite>-<decoder>-<timestamp>).")] = None,
) -> None:
    """Memory wall: bisect on output size for the largest one that decodes; plot memory vs size."""
    from harness.sources import SourceError
    from harness.store import StoreError
    from harness.sweep import Sweep, SweepError, default_run_dir, parse_bytes

    try:
        loaded = load_suite(suite).with_overrides(device=device, dtype=dtype)
        budget = parse_bytes(memory_budget) if memory_budget else None
        run_dir = out_dir or default_run_dir(loaded, decoder)
        outcome = Sweep(loaded, decoder, run_dir, budget, RichReporter(quiet=True)).run(start, stop, step)
    except (SuiteError, SweepError, SourceError, StoreError, ValueError) as exc:
        raise fail(str(exc)) from None
    table = Table("output", "status", "median ms", "peak memory", "note", title=f"memory wall: {decoder}")
    from harness.sweep import peak_bytes
    from reports.aggregate import format_bytes

    for record in sorted(outcome.records, key=lambda r: r["size"][0]):
        latency = (record.get("latency") or {}).get("median_ms")
        table.add_row(f"{record['size'][0]}×{record['size'][1]}", record["status"], _num(latency, ".1f"),
                      format_bytes(peak_bytes(record.get("memory"))), (record.get("message") or "")[:70])
    out.print(table)
    largest = outcome.largest_ok
    console.print(f"largest size that decodes: {f'{largest}×{largest}' if largest else 'none'}"
                  + (f"; smallest that failed: {outcome.smallest_failed}" if outcome.smallest_failed else ""),
                  highlight=False)
    console.print(f"plot: {outcome.plot}\nrun directory: {outcome.run_dir}", highlight=False)
    if largest is None:
        raise typer.Exit(EXIT_FAILED)


app.add_typer(gate_app, name="gate")
app.add_typer(baseline_app, name="baseline")


def _weights_app() -> typer.Typer:
    from harness.weights_cli import app as weights_app

    return weights_app


app.add_typer(_weights_app(), name="weights")


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted; resume with `decoderbench run --resume RUN_DIR`")
        sys.exit(130)
