"""What every command-line module shares: the two consoles, exit codes, usage failures and the
progress reporters the runner, the judge and calibration report to.

`NO_COLOR` (set and not empty, https://no-color.org) turns every style off — colour, bold and
dim alike. Progress is a live bar on a terminal; piped (a CI log) it is plain lines with counts
and the elapsed time: one when a phase ends, and one every `LOG_EVERY_S` while it runs.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column

from harness.errors import EXIT_FAILED, EXIT_OK, EXIT_UNDECIDED, EXIT_USAGE, DecoderbenchError

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_UNDECIDED", "EXIT_USAGE"]  # re-exported for the verbs
LOG_EVERY_S = 10.0

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


def make_console(stderr: bool = False) -> Console:
    """A console that honours NO_COLOR for every style, not only colours, and survives a reader that
    goes away."""
    return _Console(stderr=stderr, color_system=None if os.environ.get("NO_COLOR") else "auto")


console = make_console(stderr=True)  # progress, notes, errors
out = make_console()  # tables and results


def fail(message: str, prefix: str = "") -> typer.Exit:
    """Print a usage/suite/run-directory error (markup-safe; one `error:` line per line of the
    message, each after `prefix`) and return the exit to raise."""
    for line in message.splitlines() or [""]:
        console.print(f"[bold red]error:[/] {escape(prefix + line)}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_USAGE)


def reports_errors(verb: Callable[..., Any]) -> Callable[..., Any]:
    """The one place the command line catches decoderbench's errors: `error: <message>` (one line
    per line of it) and the error's exit code, never a traceback. Verbs catch only where they add
    context (`invalid suite: ...`)."""

    @functools.wraps(verb)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return verb(*args, **kwargs)
        except DecoderbenchError as exc:
            fail(str(exc))
            raise typer.Exit(exc.exit_code) from None

    return guarded


def num(value: float | None, fmt: str) -> str:
    """A number for a table cell; an em dash where there is none."""
    return "—" if value is None else format(value, fmt)


def format_seconds(seconds: float) -> str:
    """0.4 s, 12 s, 3 min 05 s, 1 h 02 min."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


@dataclass
class _Phase:
    name: str
    total: int
    done: int = 0
    began: float = 0.0
    printed: float = 0.0  # when its last line was printed


class RichReporter:
    """Progress on stderr — live bars on a terminal, count lines when piped — and notes, printed
    once (above the bars)."""

    def __init__(self, quiet: bool = False, target: Console | None = None) -> None:
        self.console = target or console
        self.quiet = quiet
        self.live = self.console.is_terminal
        self.progress = Progress(
            TextColumn("{task.description}", table_column=Column(min_width=12, overflow="fold")),
            BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=self.console,
            disable=quiet or not self.live,
        )
        self._task: int | None = None
        self._lock = threading.Lock()
        self._phase: _Phase | None = None  # the running phase (piped output)
        self._started = time.perf_counter()

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
        self._log_line(final=True)

    def phase(self, name: str, total: int) -> None:
        self._task = self.progress.add_task(escape(name), total=total)
        with self._lock:
            self._log_line(final=True)
            now = time.perf_counter()
            self._phase = _Phase(name, total, began=now, printed=now)
            if total == 0:
                self._log_line(final=True)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self.progress.advance(self._task, n)
        with self._lock:
            phase = self._phase
            if phase is not None:
                phase.done += n
                if phase.done < phase.total and time.perf_counter() - phase.printed >= LOG_EVERY_S:
                    self._log_line(final=False)

    def _log_line(self, final: bool) -> None:
        """Piped: `decode lanczos: 7/13 · 12 s` (running) or `... 13/13 in 14 s` (ended)."""
        phase = self._phase
        if final:
            self._phase = None
        if phase is None or self.live or self.quiet:
            return
        now = time.perf_counter()
        counted = f"{phase.name}: {phase.done}/{phase.total}"
        if final and phase.total == 0:
            text = f"{phase.name}: nothing to do"
        else:
            text = f"{counted} {'in' if final else '·'} {format_seconds(now - phase.began)}"
        from harness.cli.tables import print_wrapped

        print_wrapped(self.console, f"{text} (elapsed {format_seconds(now - self._started)})")
        phase.printed = now

    def note(self, message: str) -> None:
        """Printed once, above the bars; long words (URLs, paths) on a line of their own, unbroken."""
        from harness.cli.tables import print_note

        print_note(self.progress.console, message)
