"""What every command-line module shares: the two consoles, exit codes, usage failures and the
progress reporter the runner, the judge and calibration report to."""

from __future__ import annotations

import os
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNDECIDED = 0, 1, 2, 3

for _name in ("COLUMNS", "LINES"):  # COLUMNS=0 would make every table fail: take the terminal's
    if os.environ.get(_name, "").strip() in ("0", "00"):
        del os.environ[_name]


class _Guarded:
    """A stream whose reader may go away mid-run (`| head`, a closed terminal): a failed write is
    dropped, once and for all, instead of ending a run that has nothing to do with it."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if not _BROKEN:
            try:
                return self._stream.write(text)
            except (OSError, ValueError):  # EPIPE, EBADF, a closed file
                _BROKEN.add(True)
        return len(text)

    def flush(self) -> None:
        if not _BROKEN:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                _BROKEN.add(True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


_BROKEN: set[bool] = set()


class _Console(Console):
    @property
    def file(self) -> Any:
        stream = Console.file.fget(self)  # type: ignore[attr-defined]
        return _Guarded(stream)

    @file.setter
    def file(self, new_file: Any) -> None:
        Console.file.fset(self, new_file)  # type: ignore[attr-defined]


console = _Console(stderr=True)  # progress, notes, errors
out = _Console()  # tables and results


def fail(message: str, prefix: str = "") -> typer.Exit:
    """Print a usage/suite/run-directory error (markup-safe; one `error:` line per line of the
    message, each after `prefix`) and return the exit to raise."""
    for line in message.splitlines() or [""]:
        console.print(f"[bold red]error:[/] {escape(prefix + line)}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_USAGE)


def num(value: float | None, fmt: str) -> str:
    """A number for a table cell; an em dash where there is none."""
    return "—" if value is None else format(value, fmt)


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
        self._task = self.progress.add_task(escape(name), total=total)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self.progress.advance(self._task, n)

    def note(self, message: str) -> None:
        """Printed once, above the bars; long words (URLs, paths) on a line of their own, unbroken."""
        from harness.cli.tables import print_note

        print_note(self.progress.console, message)
