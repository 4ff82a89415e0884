"""`decoderbench weights list|where|verify|fetch`: the lock table of metric weight files."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from harness.cli.console import EXIT_USAGE, out
from harness.cli.console import console as err
from harness.metrics import weights

app = typer.Typer(help="Weight files of the built-in metrics: lock table, cache locations, "
                  "verification, explicit download.", no_args_is_help=True)

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
        return f"{entry.sha256_prefix}… (prefix from the file name)"
    return "unknown (run verify)"


@app.command("list")
def list_(metrics: MetricsArg = None) -> None:
    """Every weight file: used by, source, sha256, size, licence, present or not."""
    table = Table("file", "used by", "source", "sha256", "size", "licence", "present")
    for entry in _entries(metrics):
        present = weights.locate(entry) is not None
        table.add_row(entry.key, ", ".join(entry.used_by), entry.url, _hash_label(entry),
                      "—" if entry.size is None else str(entry.size), entry.licence,
                      "[green]yes[/]" if present else "[red]no[/]")
    out.print(table)


@app.command()
def where(metrics: MetricsArg = None) -> None:
    """The cache directories used, and the path of each file (found, or expected)."""
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
    """Hash every present file and compare it with the lock table (exit 1 on a mismatch)."""
    failed = False
    table = Table("file", "status", "sha256 (computed)", "size", "path")
    for entry in _entries(metrics):
        result = weights.verify(entry)
        colour = {"ok": "green", "unverified": "yellow", "mismatch": "red", "missing": "red"}[result.status]
        table.add_row(entry.key, f"[{colour}]{result.status}[/]", result.sha256 or "—",
                      "—" if result.size is None else str(result.size),
                      escape(str(result.path or weights.expected_path(entry))))
        failed |= result.problem or (strict and result.status == "missing")
    out.print(table)
    if failed:
        raise typer.Exit(1)


@app.command()
def fetch(metrics: MetricsArg = None) -> None:
    """Download missing files into their cache locations (needs network), then verify them."""
    failed = False
    for entry in _entries(metrics):
        try:
            path = weights.fetch(entry)
        except Exception as exc:  # network errors, hub errors, hash mismatches
            err.print(f"[red]✗[/] {entry.key}: {escape(f'{type(exc).__name__}: {exc}')}", highlight=False)
            failed = True
            continue
        out.print(f"[green]✓[/] {entry.key}: {escape(str(path))}", highlight=False)
    if failed:
        raise typer.Exit(1)
