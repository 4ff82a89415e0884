"""What every command-line module shares: the two consoles, exit codes and usage failures."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

console = Console(stderr=True)  # progress, notes, errors
out = Console()  # tables and results


def fail(message: str) -> typer.Exit:
    """Print a usage/suite/run-directory error (markup-safe) and return the exit to raise."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_USAGE)
