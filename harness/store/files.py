"""Files of run directories, baselines and caches: containment, regular files, atomic writes.

A run directory, a baseline, a cache or a manifest travels between machines (CI artefacts), so
every relative path read from one is data, not trust: `stored_path_problem` is the lexical rule (a
relative POSIX path without `..`, `~`, NUL or a drive), checked where a record is read; `inside`
resolves the path (symlinks included) and refuses it unless it stays under its root. A file named
on the command line may be a FIFO, a device, a directory or a symlink loop: `read_regular` says
which in one line before opening anything that could block (docs/run-integrity.md).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from harness.errors import DecoderbenchError


class StoreError(DecoderbenchError, RuntimeError):
    pass


# errno values of writes that cannot succeed until someone frees space or lifts a limit: a run
# that meets one stops at once (every later write would fail the same way).
STOPPING_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


# ... and of the other conditions a process meets that are the machine's, not the decoder's.
ENVIRONMENT_ERRNOS = STOPPING_ERRNOS | {errno.EIO, errno.EPIPE, errno.EBADF, errno.ENAMETOOLONG,
                                        errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR}


def errno_text(code: int | None, message: str | None = None) -> str:
    """'No space left on device (ENOSPC)'."""
    if code is None:
        return message or "an operating-system error"
    name = errno.errorcode.get(code, str(code))
    return f"{message or os.strerror(code)} ({name})"


class EnvironmentFailure(StoreError):
    """The machine stopped the run (a full disk or cache, a file-size limit, a read-only folder):
    nothing more can be written until the cause is gone. str() is one line: what, where, and how
    to go on (`decoderbench run --resume RUN_DIR` once the cause is gone)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code

    @classmethod
    def writing(cls, what: str, path: Path | str, exc: OSError,
                resume: Path | None = None) -> EnvironmentFailure:
        then = (f"; once that is fixed, `decoderbench run --resume {resume}` runs what is left"
                if resume is not None else "")
        return cls(f"cannot write {what} {path}: {errno_text(exc.errno, exc.strerror)}{then}", exc.errno)


# Containment. A run directory, a baseline, a cache or a manifest travels between machines (CI
# artefacts), so every relative path read from one is data, not trust: `stored_path_problem` is the
# lexical rule (a relative POSIX path without `..`, `~`, NUL or a drive), checked where a record is
# read; `inside` resolves the path (symlinks included) and refuses it unless it stays under its
# root, checked where a file is opened, linked or copied through it.
#
# Regular files. A suite, an include, a baseline or a manifest named on the command line may be a
# FIFO with no writer (open() would wait forever), a device such as /dev/zero (read() never ends),
# a directory, a dangling symlink or a symlink loop: `read_regular` says which in one line, before
# opening anything that could block, and reads at most `limit` bytes.


class PathProblem(StoreError):
    """A path that cannot be used; str() is one line without the file name (callers add it)."""


class RunDirError(StoreError):
    """A run directory that cannot be read; str() is `RUN_DIR/FILE[:LINE]: what is wrong`."""


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def kind_of(mode: int) -> str:
    """What a file of this st_mode is, in words ("a regular file", "a FIFO (named pipe)", …)."""
    return next((name for test, name in _KINDS if test(mode)), "a regular file" if stat.S_ISREG(mode)
                else "not a regular file")


def file_problem(path: Path) -> str | None:
    """Why `path` is not a regular file that can be read (one phrase), or None when it is one.
    Never opens the file: a FIFO is recognised without waiting for a writer."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"a dangling symbolic link (to {os.readlink(path)})"
        return "not found"
    except OSError as exc:
        return _os_problem(exc)
    if not stat.S_ISREG(mode):
        return f"not a regular file: it is {kind_of(mode)}"
    return None


def _os_problem(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop"
    if exc.errno == errno.ENAMETOOLONG:
        return "a file name too long for the file system"
    return exc.strerror or str(exc)


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; PathProblem otherwise."""
    problem = file_problem(path)
    if problem is not None:
        raise PathProblem(problem)
    try:  # O_NONBLOCK: should the file have become a FIFO since the check, open() does not wait
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise PathProblem(_os_problem(exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise PathProblem(f"not a regular file: it is {kind_of(mode)}")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise PathProblem(_os_problem(exc)) from None
    finally:
        os.close(fd)
    if size > limit:
        raise PathProblem(f"larger than {limit:,} bytes: not a file of this kind")
    return b"".join(chunks)


def stored_path_problem(relative: Any) -> str | None:
    """Why a path stored in a run directory, baseline or cache is not a plain relative path under
    its root (lexically: absolute, `..`, `~`, NUL, empty), or None."""
    if not isinstance(relative, str) or not relative:
        return "expected a relative path"
    if "\0" in relative or "\\" in relative:
        return f"{relative!r} is not a plain relative path"
    path = PurePosixPath(relative)
    if path.is_absolute() or relative.startswith("~") or ".." in path.parts or ":" in path.parts[0]:
        return f"{relative!r} leaves its folder (absolute, '~' or '..')"
    return None


def inside(root: Path, relative: str) -> Path:
    """`root / relative` when it stays inside `root` once symlinks are resolved; PathProblem when
    it does not (a crafted path, or a symlink in the folder pointing elsewhere)."""
    problem = stored_path_problem(relative)
    if problem is not None:
        raise PathProblem(problem)
    path = root / relative
    try:
        resolved_root = root.resolve()
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop (RuntimeError before Python 3.13)
        raise PathProblem(f"{relative!r}: {exc}") from None
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise PathProblem(f"{relative!r} resolves to {resolved}, outside {root}")
    return path


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk keeps the old file and no half-written copy
        raise


def writable_dir(path: Path, what: str) -> None:
    """Create `path` (and its parents) if needed and check that files can be written there;
    StoreError in one line otherwise (a file in the way, a read-only or virtual file system)."""
    try:
        if path.exists() and not path.is_dir():
            raise StoreError(f"{what} {path} is a file, not a directory")
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".decoderbench-write-check.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StoreError(f"{what} {path} is not writable: {exc.strerror or exc}") from None


def writable_file(path: Path, what: str) -> None:
    """Check, before any work, that `path` can be written (its folder created where missing)."""
    if path.is_dir():
        raise StoreError(f"{what} {path} is a directory")
    writable_dir(path.parent, f"the folder of {what}")


def link_or_copy(source: Path, target: Path) -> bool:
    """Hard-link `source` to `target` (a copy across file systems); False when `source` is missing."""
    if not source.is_file():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        if os.path.samefile(source, target):
            return True
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
    return True
