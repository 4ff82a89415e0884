"""`decoderbench report` (static HTML) and `decoderbench export` (the tidy table)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated

import typer

from harness.cli.console import console, fail, out
from harness.cli.tables import print_note
from harness.records import metrics


def report(
    run_dirs: Annotated[list[Path], typer.Argument(
        help="Run directories: runs of one or more suites (several runs of a suite give its history) "
        "and memory-wall sweep runs.")],
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Report folder (default: RUN_DIR/report for a single run).")] = None,
    metric: Annotated[str | None, typer.Option(
        help="Quality metric of the cost–quality plots and history (default: the suite's first).")] = None,
) -> None:
    """Render a static HTML report (works from file://, no network)."""
    from harness.store import read_run, writable_dir
    from reports.html import render_reports
    from reports.sweep import is_sweep

    if out_dir is None and len(run_dirs) > 1:
        raise fail("give --out DIR when reporting several run directories")
    target = out_dir or run_dirs[0] / "report"
    try:
        measured: set[str] = set()
        for run_dir in run_dirs:  # every run directory is readable before anything is written
            data = read_run(run_dir, results_required=not is_sweep(run_dir), expect="any")
            resolved = (data.manifest.get("suite") or {}).get("resolved") or {}
            measured.update(str(m.get("name")) for m in resolved.get("metrics", []) if isinstance(m, dict))
            measured.update(r["metric"] for r in metrics(data.records))
        if metric is not None and metric not in measured:
            close = difflib.get_close_matches(metric, sorted(measured), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            runs = "this run" if len(run_dirs) == 1 else "these runs"
            raise fail(f"--metric: {metric!r} is not a metric of {runs}{hint}; measured: "
                       f"{', '.join(sorted(measured)) or 'none'}")
        writable_dir(target, "report folder")
        index = render_reports(run_dirs, target, metric)
    except OSError as exc:
        raise fail(f"cannot write the report into {target}: {exc.strerror or exc}") from None
    out.print(str(index), markup=False, highlight=False)


def export(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    parquet: Annotated[bool, typer.Option("--parquet", help="Write Parquet (needs pyarrow).")] = False,
    csv: Annotated[bool, typer.Option("--csv", help="Write CSV.")] = False,
    out_file: Annotated[Path | None, typer.Option("--out", help="Default: RUN_DIR/results.<ext>.")] = None,
) -> None:
    """Export the tidy table: a row per decoder, case and variable.

    Every row carries the run's context (device, GPU, dtype, git sha, weights digest) and its
    value's unit, direction, scope and sample count."""
    from harness.store import read_run, writable_file
    from reports.export import tidy_rows, write_csv, write_parquet

    if parquet == csv:
        raise fail("choose exactly one of --parquet or --csv")
    target = out_file or run_dir / ("results.parquet" if parquet else "results.csv")
    try:
        data = read_run(run_dir)
        notes = [note for note in (data.missing_note, data.set_aside_note) if note]
        writable_file(target, "export file")
        rows = tidy_rows(run_dir)
        (write_parquet if parquet else write_csv)(rows, target)
    except RuntimeError as exc:  # pyarrow missing; the project's own errors reach reports_errors
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot write {target}: {exc.strerror or exc}") from None
    for note in notes:
        print_note(console, note)
    out.print(f"{len(rows)} rows → {target}", markup=False, highlight=False)
