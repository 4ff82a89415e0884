"""The exit codes and the one base of decoderbench's exceptions.

Every exception the harness raises derives from `DecoderbenchError` and carries the exit code the
command line ends with when it reaches it: the CLI catches this one type (harness/cli/console.py
`reports_errors`) and prints `error: <message>`, one line per line of the message. Each class keeps
its builtin base too (a SourceError is still a ValueError), so `except ValueError` code is
unchanged. decoders/ never imports the harness: its DecoderUnavailable and UnknownName are turned
into these where the harness meets them.
"""

from __future__ import annotations

from typing import ClassVar

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNDECIDED = 0, 1, 2, 3


class DecoderbenchError(Exception):
    """A problem reported in one line (or one line per problem); the command line exits with
    `exit_code`: 2 (usage, suite, run directory, environment) unless a class says otherwise."""

    exit_code: ClassVar[int] = EXIT_USAGE
