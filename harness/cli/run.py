"""`decoderbench run` (a suite, or resume a run) and `decoderbench validate`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from harness.cli.console import EXIT_FAILED, EXIT_USAGE, RichReporter, console, fail, out
from harness.cli.show import print_summary
from harness.suite import SuiteError, load_suite


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
    from harness.runner import Runner
    from harness.sources.cache import TensorCache, default_cache_dir
    from harness.sources.prepare import SourceError
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
        print_summary(outcome.run_dir)
        if report:
            from reports.html import render_report

            console.print(f"report: {render_report(outcome.run_dir)}", markup=False, highlight=False)
    except SuiteError as exc:
        raise fail(str(exc), prefix="invalid suite: ") from None
    except (StoreError, SourceError) as exc:
        raise fail(str(exc)) from None
    console.print(f"run directory: {outcome.run_dir}", markup=False, highlight=False)
    if outcome.failed_units:
        console.print(f"[red]{outcome.failed_units} decode unit(s) did not succeed[/]")
        raise typer.Exit(EXIT_FAILED)


def validate(
    suites: Annotated[list[str], typer.Argument(help="Suite files or built-in names.")],
) -> None:
    """Check suite files: schema, registries, sources. Prints what each would run."""
    from harness.sources.prepare import SourceError, list_items, source_protocol

    failed = False
    for spec in suites:
        try:
            loaded = load_suite(spec)
        except SuiteError as exc:
            failed = _invalid(str(exc))
            continue
        try:
            listed = list_items(loaded)
            items = [entry.item for entry in listed]
            cases = loaded.expand(items, source_protocol(loaded))
        except (SuiteError, SourceError) as exc:
            failed = _invalid(exc if isinstance(exc, SuiteError) else f"{loaded.path}: source: {exc}")
            continue
        bad = [entry.problem for entry in listed if entry.problem]
        for problem in bad:  # one line per item that a run would record as input_error
            failed = _invalid(f"{loaded.path}: source: {problem}")
        if bad:
            continue
        model = loaded.model
        out.print(
            f"[green]✓[/] {escape(str(loaded.path))}: suite {loaded.name!r}, {len(items)} item(s), "
            f"{len(cases)} case(s) × {len(model.decoder)} decoder(s), "
            f"{len(model.metrics)} metric(s); sha256 {loaded.sha256[:12]}",
            highlight=False,
        )
    if failed:
        raise typer.Exit(EXIT_USAGE)


def _invalid(message: object) -> bool:
    console.print(f"[red]✗[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    return True
