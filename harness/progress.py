"""What every phase reports its progress to: the `Reporter` protocol, and a silent one.

The command line's reporter (harness/cli/console.py `RichReporter`) draws bars on a terminal and
prints count lines when piped; library callers and tests pass `SilentReporter`, which keeps the
notes.
"""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def phase(self, name: str, total: int) -> None:
        """A phase begins: `total` steps (0: nothing to do)."""

    def advance(self, n: int = 1) -> None:
        """`n` more steps of the running phase are done."""

    def note(self, message: str) -> None:
        """Something the reader must see once (a skipped metric, a changed source)."""


class SilentReporter:
    """Reports nothing; keeps the notes."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def phase(self, name: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def note(self, message: str) -> None:
        self.notes.append(message)
