"""The `decoderbench` command line: one module per verb group, assembled here.

    run, validate        harness/cli/run.py
    list                 harness/cli/listing.py
    show                 harness/cli/show.py
    report, export       harness/cli/report.py
    judge                harness/cli/judge.py
    sweep                harness/cli/sweep.py
    gate, baseline       harness/cli/gate.py
    weights              harness/cli/weights.py
    benchmarks           harness/cli/benchmarks.py
    doctor               harness/cli/doctor.py (`--device cuda`: the preflight of a GPU run)
    session              harness/cli/session.py: a bench session's summary, report and verdict
    (shared)             harness/cli/console.py: consoles, exit codes, fail(), the progress reporter;
                         harness/cli/tables.py: tables that fit any width, notes, Markdown

Help is plain text; importing this package imports no tensor library; exit codes are
harness/errors.py's (docs/command-line.md).
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import os
import sys
from typing import Annotated

import typer

from harness.cli import (
    benchmarks,
    doctor,
    gate,
    judge,
    listing,
    report,
    run,
    session,
    show,
    sweep,
    weights,
)
from harness.cli.console import EXIT_USAGE, console, out, reports_errors

app = typer.Typer(
    name="decoderbench",
    help="Benchmark latent-to-pixel image decoders on identical inputs: "
    "latency, memory and quality, stored per case, with reports and gates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from harness import __version__

        out.print(f"decoderbench {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True,
                                          callback=_version)] = False,
) -> None:
    """Benchmark latent-to-pixel image decoders on identical inputs: latency, memory and quality,
    stored per case, with reports and gates."""

app.command()(run.run)
app.command()(run.validate)
app.command("list")(listing.list_)
app.command()(show.show)
app.command("report")(report.report)
app.command()(report.export)
app.command()(judge.judge)
app.command()(sweep.sweep)
app.command()(doctor.doctor)
app.command()(session.session)
app.add_typer(gate.gate_app, name="gate", short_help="Check a run against a baseline, or calibrate gates.")
app.add_typer(gate.baseline_app, name="baseline", short_help="Save a run as a baseline for gates.")
app.add_typer(weights.app, name="weights", short_help="Metric weight files: list, where, verify, fetch.")
app.add_typer(benchmarks.app, name="benchmarks", short_help="Benchmark data: list, where, verify, fetch.")
for _info in [*app.registered_commands, *(info for group in app.registered_groups
                                         for info in group.typer_instance.registered_commands)]:
    _info.callback = reports_errors(_info.callback)


# File-system conditions no verb can fix (a full disk, a path that vanished, permissions changed
# mid-run, a name too long): one line naming the file instead of a traceback. Every other OSError
# is a bug to report.
FILE_SYSTEM_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                      errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG,
                      errno.ELOOP, errno.EIO}
# What a terminal that cannot show Unicode (LC_ALL=C, PYTHONIOENCODING=ascii) gets for the glyphs
# tables and notes use; anything else unencodable becomes '?'.
ASCII_GLYPHS = {"×": "x", "★": "*", "↑": "^", "↓": "v", "→": "->", "—": "-", "–": "-", "±": "+/-",
                "∞": "inf", "…": "...", "✓": "ok", "✗": "x", "·": "|", "≥": ">=", "≤": "<=", "½": "1/2",
                "²": "^2", "µ": "u", "−": "-"}


def _ascii_glyphs(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object[error.start:error.end]
    return "".join(ASCII_GLYPHS.get(char, "?") for char in text), error.end


codecs.register_error("decoderbench-glyphs", _ascii_glyphs)


def standard_streams() -> None:
    """Make the three standard streams usable whatever the caller left: a closed descriptor
    (`2>&-`) is reopened on /dev/null — so that no file this process or its workers open later
    takes number 0, 1 or 2 — and a stream that cannot encode Unicode gets ASCII stand-ins."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if stream is not None and not encoding.startswith("utf"):
            with contextlib.suppress(AttributeError, ValueError, OSError):
                stream.reconfigure(errors="decoderbench-glyphs")  # type: ignore[union-attr]


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    standard_streams()
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted; resume with `decoderbench run --resume RUN_DIR`")
        sys.exit(130)
    except OSError as exc:
        if exc.errno not in FILE_SYSTEM_ERRORS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        console.print(f"error: {where}{exc.strerror} (a run stopped by this can be resumed with "
                      "`decoderbench run --resume RUN_DIR`)", markup=False, highlight=False, soft_wrap=True)
        sys.exit(EXIT_USAGE)
