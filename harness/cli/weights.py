"""`decoderbench weights list|where|verify|fetch`: the lock table of metric weight files."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from harness.cli.console import EXIT_USAGE, LOG_EVERY_S, format_seconds, out
from harness.cli.console import console as err
from harness.cli.tables import Cell, Column, Grid, print_grid, print_note, print_wrapped
from harness.metrics import weights

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                  help="Weight files of the built-in metrics: lock table, cache locations, "
                  "verification, explicit download.")

MetricsArg = Annotated[list[str] | None, typer.Argument(
    help="Metric names (default: every metric in the lock table).")]


def _entries(metrics: list[str] | None) -> list[weights.WeightFile]:
    if not metrics:
        return list(weights.LOCK)
    unknown = sorted(set(metrics) - set(weights.users()))
    if unknown:
        err.print(f"[red]error:[/] no weight files listed for {escape(', '.join(unknown))}; metrics with "
                  f"weights: {', '.join(weights.users())}", highlight=False)
        raise typer.Exit(EXIT_USAGE)
    return [entry for entry in weights.LOCK if set(entry.used_by) & set(metrics)]


def _hash_label(entry: weights.WeightFile) -> str:
    if entry.sha256:
        return entry.sha256
    if entry.sha256_prefix:
        return f"{entry.sha256_prefix} (a prefix, from the file name)"
    return "unknown (run verify)"


@app.command("list")
def list_(metrics: MetricsArg = None) -> None:
    """The lock table: every weight file, and whether it is here.

    Used by, source, sha256, size, licence."""
    grid = Grid("metric weight files (lock table)", Column("file"), [
        Column("present"), Column("used by", text=True), Column("size", numeric=True),
        Column("sha256", text=True), Column("licence", text=True), Column("source", text=True)])
    for entry in _entries(metrics):
        present = weights.locate(entry) is not None
        grid.add(entry.key, [Cell("yes", style="green") if present else Cell("no", style="red"),
                             ", ".join(entry.used_by), "—" if entry.size is None else f"{entry.size:,}",
                             _hash_label(entry), entry.licence, entry.url])
    print_grid(grid, out)


@app.command()
def where(metrics: MetricsArg = None) -> None:
    """Cache directories, and where each file is or would be."""
    plain = {"markup": False, "highlight": False}  # paths come from the environment
    out.print(f"torch hub   : {weights.torch_hub_dir()}  (set TORCH_HOME to move it)", **plain)
    out.print(f"pyiqa       : {weights.torch_hub_dir() / 'pyiqa'}", **plain)
    out.print(f"clip        : {weights.torch_hub_dir() / 'clip'}", **plain)
    out.print(f"huggingface : {weights.hf_cache_dir()}  (set HF_HOME or HF_HUB_CACHE)", **plain)
    for entry in _entries(metrics):
        found = weights.locate(entry)
        state = "found   " if found else "missing "
        out.print(f"{state} {entry.key}: {found or weights.expected_path(entry)}", **plain)


@app.command()
def verify(
    metrics: MetricsArg = None,
    strict: Annotated[bool, typer.Option(help="Also fail when a file is missing.")] = False,
) -> None:
    """Hash present files against the lock table.

    Exit 1 on a mismatch."""
    failed = False
    grid = Grid("metric weight files, hashed", Column("file"), [
        Column("status"), Column("size", numeric=True), Column("sha256 (computed)", text=True),
        Column("path", text=True)])
    for entry in _entries(metrics):
        result = weights.verify(entry)
        colour = {"ok": "green", "unverified": "yellow", "mismatch": "red", "missing": "red"}[result.status]
        grid.add(entry.key, [Cell(result.status, style=colour),
                             "—" if result.size is None else f"{result.size:,}", result.sha256 or "—",
                             str(result.path or weights.expected_path(entry))])
        failed |= result.problem or (strict and result.status == "missing")
    print_grid(grid, out)
    if failed:
        raise typer.Exit(1)


@app.command()
def fetch(metrics: MetricsArg = None) -> None:
    """Download missing files (needs network), then verify.

    Files go to their cache locations; each is checked against the lock table's sha256."""
    if fetch_files(_entries(metrics)):
        raise typer.Exit(1)


def fetch_files(entries: list[weights.WeightFile]) -> list[str]:
    """Download the entries that are not here, each with a progress bar on a terminal (lines with
    the bytes so far and the elapsed time when piped), and check each against the lock table.
    Prints one ✓ or ✗ line per file; returns the ✗ lines."""
    failures = []
    for entry in dict.fromkeys(entries):
        if weights.locate(entry) is not None:
            continue
        try:
            with _Download(entry) as download:
                path = weights.fetch(entry, download.update)
        except Exception as exc:  # network errors, hub errors, hash mismatches
            line = f"{entry.key}: {type(exc).__name__}: {exc}"
            print_wrapped(err, line, prefix="✗ ", prefix_style="red")
            failures.append(line)
            continue
        check = weights.verify(entry).status
        checked = "sha256 checked" if check == "ok" else "no published sha256 to check it against"
        print_wrapped(err, f"{entry.key}: {path} ({checked})", prefix="✓ ", prefix_style="green")
    return failures


class _Download:
    """One file's download progress: a bar on a terminal; piped, a line every LOG_EVERY_S."""

    def __init__(self, entry: weights.WeightFile) -> None:
        self.entry = entry
        self.began = self.last = time.perf_counter()
        self.done, self.total = 0, entry.size
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeElapsedColumn(), console=err,
                                 disable=not err.is_terminal)
        self.task = self.progress.add_task(f"fetching {entry.filename}", total=entry.size)

    def __enter__(self) -> _Download:
        if not err.is_terminal:
            print_note(err, f"{self.entry.filename} from {weights.host_of(self.entry)}", label="fetching",
                       style="cyan")
        self.progress.start()
        return self

    def update(self, done: int, total: int | None) -> None:
        self.done, self.total = done, total or self.total
        self.progress.update(self.task, completed=done, total=self.total)
        now = time.perf_counter()
        if not err.is_terminal and now - self.last >= LOG_EVERY_S:
            self.last = now
            print_note(err, self._line(now), label="fetching", style="cyan")

    def _line(self, now: float) -> str:
        from harness.view import format_bytes

        size = format_bytes(self.done) + (f" of {format_bytes(self.total)}" if self.total else "")
        return f"{self.entry.filename}: {size} · {format_seconds(now - self.began)}"

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
        if not err.is_terminal and self.done:
            print_note(err, self._line(time.perf_counter()), label="fetched", style="cyan")
