"""`decoderbench session FOLDER`: close a bench session's folder — one report over its runs and
sweeps, one export of its runs, the summary, and the verdict as the exit code (0 green, 1 red).

`nox -s bench-h100|bench-gb200` calls it last; call it again after resuming one of the session's
runs (`decoderbench run --resume FOLDER/SUITE`). The verdict is harness/hardware/session.py's:
it reads the run directories, never the exit codes of the commands that wrote them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from harness.cli.console import EXIT_FAILED, console, fail, out
from harness.cli.tables import Column, Grid, print_grid, print_note
from harness.errors import DecoderbenchError


def session(
    folder: Annotated[Path, typer.Argument(help="A bench session folder (runs/<session>-<date>-<time>).")],
    allow_missing: Annotated[bool, typer.Option(
        "--allow-missing", help="Rows, metrics and judge requests that could not run here are listed, "
        "not failed (also when the session was started with it).")] = False,
    report: Annotated[bool, typer.Option(help="Render FOLDER/report and FOLDER/results.csv.")] = True,
) -> None:
    """A bench session's summary, report and verdict.

    Per suite the rows measured, unavailable (why) and out of memory; the machine; one report and
    one export of every run; exit 0 only when the session is green."""
    from harness.hardware import session as bench

    try:
        plan = bench.read_plan(folder)
    except bench.SessionError as exc:
        raise fail(str(exc)) from None
    parts = bench.read_parts(folder, plan)
    verdict = bench.decide(parts, allow_missing or bool(plan.get("allow_missing")))
    products = _products(folder, parts, verdict.problems) if report else []
    summary = bench.summary_json(plan, parts, verdict, bench.read_preflight(folder))
    _print(folder, plan, parts, verdict, summary)
    for label, text in products:
        print_note(console, text, label=label, style="cyan")
    try:
        (folder / bench.SUMMARY_JSON).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        verdict.problems.append(f"{folder / bench.SUMMARY_JSON}: cannot write: {exc.strerror or exc}")
    green = verdict.green
    count = len(verdict.problems) + (0 if verdict.allow_missing else len(verdict.missing))
    line = Text("verdict: ", style="bold")
    line.append("green" if green else "red", style="bold green" if green else "bold red")
    line.append("" if green else f" — {count} problem(s) above")
    out.print(line, soft_wrap=True)
    if not green:
        raise typer.Exit(EXIT_FAILED)


def _products(folder: Path, parts: list[Any], problems: list[str]) -> list[tuple[str, str]]:
    """One report over every readable run and sweep, one CSV of every readable run's tidy rows; a
    product that cannot be made is a problem of the session."""
    from reports.export import tidy_rows, write_csv
    from reports.html import render_reports

    runs = [part.path for part in parts if part.kind == "run" and part.rows and part.decoded]
    readable = runs + [part.path for part in parts if part.kind == "sweep" and part.sizes]
    made = []
    if readable:
        try:
            made.append(("report", str(render_reports(readable, folder / "report"))))
        except (DecoderbenchError, OSError, ValueError) as exc:
            problems.append(f"report: cannot render {folder / 'report'}: {exc}")
    if runs:
        target = folder / "results.csv"
        try:
            rows = [row for run in runs for row in tidy_rows(run)]
            write_csv(rows, target)
            made.append(("export", f"{target} ({len(rows)} rows, {len(runs)} run(s))"))
        except (DecoderbenchError, OSError, ValueError, RuntimeError) as exc:
            problems.append(f"export: cannot write {target}: {exc}")
    return made


def _print(folder: Path, plan: dict[str, Any], parts: list[Any], verdict: Any,
           summary: dict[str, Any]) -> None:
    from harness.hardware.session import decide

    out.print(Text(f"session {plan.get('session') or folder.name} · {folder}", style="bold"), soft_wrap=True)
    out.print(f"machine: {_machine_text(summary['machine'])}", markup=False, highlight=False, soft_wrap=True)
    wall = summary.get("wall_s")
    out.print(f"wall time: {_duration(wall)} (session start to the last suite or sweep finished)"
              if wall is not None else "wall time: unknown (no suite or sweep finished)", markup=False,
              highlight=False, soft_wrap=True)
    grid = Grid("suites (rows = decoders; cases = what each row decodes)", Column("suite"), [
        Column("rows measured", numeric=True), Column("unavailable", numeric=True),
        Column("OOM cases", numeric=True), Column("failed cases", numeric=True), Column("result")],
        field_name="count", legend="OOM is a result in memory-wall suites (marked wall) and sweeps; "
        "unavailable rows pass only with --allow-missing; a suite that decoded nothing fails")
    for part in parts:
        alone = decide([part], verdict.allow_missing)
        result = "✓" if alone.green else "✗" if alone.problems else "✗ missing"
        if alone.green and alone.missing:
            result = "✓ missing allowed"
        if part.kind == "sweep":
            largest, oom = part.largest_ok, part.smallest_oom
            failed = sum(status not in ("ok", "oom") for status in part.sizes.values())
            grid.add(part.name, [f"largest {largest} px" if largest else "none",
                                 "—", f"{sum(s == 'oom' for s in part.sizes.values())}"
                                 + (f" (from {oom} px)" if oom else ""), str(failed), result])
            continue
        rows = f"{part.measured_rows}/{len(part.rows)}" if part.rows else "—"
        unavailable = sum(bool(row.counts["unavailable"]) for row in part.rows)
        oom = sum(row.counts["oom"] for row in part.rows)
        failed = sum(row.failed(part.wall) for row in part.rows)
        grid.add(part.name + (" (wall)" if part.wall else ""),
                 [rows, str(unavailable), str(oom), str(failed), result])
    print_grid(grid, out)
    _list("problems", verdict.problems, "red")
    if verdict.missing:
        label = "missing, allowed by --allow-missing" if verdict.allow_missing else \
            "missing (red; `--allow-missing`, in a session `-- --allow-missing`, accepts them)"
        _list(label, verdict.missing, "yellow")


def _list(label: str, lines: list[str], style: str) -> None:
    if not lines:
        return
    out.print(Text(f"{label}:", style=f"bold {style}"), soft_wrap=True)
    for line in lines:
        out.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)


def _machine_text(machine: dict[str, Any]) -> str:
    gpus = machine.get("gpus") or []
    names: dict[str, int] = {}
    for gpu in gpus:
        memory, capability = gpu.get("memory_bytes"), gpu.get("capability")
        label = str(gpu.get("name"))
        if memory and capability:
            label += f" (compute capability {capability}, {memory / 2**30:.0f} GiB)"
        names[label] = names.get(label, 0) + 1
    gpu_text = ", ".join(f"{n} × {label}" for label, n in names.items()) or "no GPU recorded"
    return (f"{gpu_text} · driver {machine.get('driver') or 'unknown'} · torch {machine.get('torch') or '?'} "
            f"(CUDA {machine.get('torch_cuda') or 'none'}) · {machine.get('machine') or '?'} · Python "
            f"{machine.get('python') or '?'}")


def _duration(seconds: float) -> str:
    minutes, second = divmod(round(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours} h {minute:02d} min" if hours else f"{minute} min {second:02d} s"
