"""`decoderbench benchmarks list|where|verify|fetch`: the pinned prompt sets of GenEval and DPG-Bench."""

from __future__ import annotations

from typing import Annotated

import typer

from harness.cli.console import EXIT_USAGE, fail, out
from harness.cli.console import console as err
from harness.cli.tables import Cell, Column, Grid, print_grid
from harness.sources import benchmarks

app = typer.Typer(help="Benchmark data (GenEval, DPG-Bench): lock table, location, verification, "
                  "explicit download.", no_args_is_help=True)

@app.callback()
def _data_folder() -> None:
    """Every verb reads the data folder: a DECODERBENCH_BENCHMARKS_DIR that cannot be one is said first."""
    try:
        benchmarks.benchmarks_dir()
    except benchmarks.BenchmarkDataMissing as exc:
        raise fail(str(exc)) from None


NamesArg = Annotated[list[str] | None, typer.Argument(
    help=f"Benchmark names (default: all of {', '.join(benchmarks.BENCHMARKS)}).")]


def _selected(names: list[str] | None) -> list[benchmarks.Benchmark]:
    unknown = sorted(set(names or ()) - set(benchmarks.BENCHMARKS))
    if unknown:
        err.print(f"[red]error:[/] unknown benchmark {', '.join(unknown)}; known: "
                  f"{', '.join(benchmarks.BENCHMARKS)}", highlight=False)
        raise typer.Exit(EXIT_USAGE)
    return [benchmarks.BENCHMARKS[n] for n in names] if names else list(benchmarks.BENCHMARKS.values())


def _size(entry: benchmarks.DataFile) -> str:
    return "—" if entry.size is None else f"{entry.size:,} {'files' if entry.folder else 'bytes'}"


@app.command("list")
def list_(names: NamesArg = None) -> None:
    """Every benchmark file: source repository, commit and path, content ids, licence, present or not."""
    grid = Grid("benchmark data (lock table)", Column("file"), [
        Column("present"), Column("size", numeric=True), Column("git object", text=True),
        Column("sha256", text=True), Column("licence", text=True), Column("source", text=True)])
    for benchmark in _selected(names):
        for entry in benchmark.files:
            present = benchmarks.verify(benchmark, entry).status != "missing"
            kind = "tree" if entry.folder else "blob"
            grid.add(f"{benchmark.name}/{entry.local}", [
                Cell("yes", style="green") if present else Cell("no", style="red"), _size(entry),
                f"{kind} {entry.git_object}", entry.sha256 or "not recorded (verify prints it)",
                benchmark.licence, benchmark.origin(entry)])
    print_grid(grid, out)


@app.command()
def where(names: NamesArg = None) -> None:
    """The data directory and the path of each file (found, or expected)."""
    out.print(f"benchmarks: {benchmarks.benchmarks_dir()}  (set DECODERBENCH_BENCHMARKS_DIR to move it)",
              highlight=False)
    for benchmark in _selected(names):
        for entry in benchmark.files:
            path = benchmarks.path_of(benchmark, entry)
            state = "found   " if path.exists() else "missing "
            out.print(f"{state} {benchmark.name}/{entry.local}: {path}", highlight=False)


@app.command()
def verify(
    names: NamesArg = None,
    strict: Annotated[bool, typer.Option(help="Also fail when a file is missing.")] = False,
) -> None:
    """Recompute the content ids of every present file and compare them with the lock table."""
    failed = False
    grid = Grid("benchmark data, hashed", Column("file"), [
        Column("status"), Column("git object (computed)", text=True), Column("sha256 (computed)", text=True),
        Column("path", text=True)])
    for benchmark in _selected(names):
        for entry in benchmark.files:
            result = benchmarks.verify(benchmark, entry)
            colour = {"ok": "green", "mismatch": "red", "missing": "red"}[result.status]
            grid.add(f"{benchmark.name}/{entry.local}", [
                Cell(result.status, style=colour), result.git_object or "—", result.sha256 or "—",
                str(result.path)])
            failed |= result.status == "mismatch" or (strict and result.status == "missing")
    print_grid(grid, out)
    if failed:
        raise typer.Exit(1)


@app.command()
def fetch(names: NamesArg = None) -> None:
    """Download each benchmark's files at its pinned commit (needs network), then verify them."""
    failed = False
    for benchmark in _selected(names):
        try:
            paths = benchmarks.fetch(benchmark.name)
        except Exception as exc:  # network errors, missing members, content mismatches
            err.print(f"[red]✗[/] {benchmark.name}: {type(exc).__name__}: {exc}", highlight=False)
            failed = True
            continue
        for local, path in paths.items():
            out.print(f"[green]✓[/] {benchmark.name}/{local}: {path}", highlight=False)
    if failed:
        raise typer.Exit(1)
