"""The run directory: everything a run produced, enough to reproduce every number.

    RUN_DIR/
      manifest.json      suite text and hash, resolved config, environment,
                         decoder weights and facts, run status (atomic rewrites)
      cases.jsonl        every case with its input hash and reference
      results.jsonl      append-only records, one JSON object per line,
                         flushed and fsynced one by one
      images/<decoder>/<case>.png   decoded outputs (8-bit, lossless)
      references/<key>.png          comparison references
      logs/<decoder>.log            worker stdout/stderr

Records have a `kind`: "load" (a worker loaded its decoder), "decode" (one
decoder × case unit) and "metric" (one decoder × case × metric value, or one
decoder × metric aggregate when `case` is null). A unit is finished when its
record is in results.jsonl; resume skips finished units and never writes a
second record for one. A last line cut short by a kill is reported, set
aside in results.jsonl.partial and dropped before appending resumes.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import stat
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import DecoderbenchError

RUN_FORMAT = 1
MANIFEST = "manifest.json"
RESULTS = "results.jsonl"
CASES = "cases.jsonl"
SUITE_HASH_DIGITS = 16  # records name their suite by this many hex digits of its sha256


class StoreError(DecoderbenchError, RuntimeError):
    pass


# --------------------------------------------------------------------------- environment failures
# A failure of the environment is not a decoder's result: a unit it stops is recorded with this
# status and the cause, `run --resume` runs it again, and readers never count it against the
# decoder. (A decoder's own failures — error, crashed, timeout, oom, invalid_output — stay recorded;
# `run --resume --retry-failed` runs them again on request.)
INFRASTRUCTURE_ERROR = "infrastructure_error"
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


# --------------------------------------------------------------------------- paths and files
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


# --------------------------------------------------------------------------- containment


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


class RunDirError(StoreError):
    """A run directory that cannot be read; str() is `RUN_DIR/FILE[:LINE]: what is wrong`."""


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


class NonFinite(DecoderbenchError, ValueError):
    """A JSON number that is not finite (1e999, Infinity, NaN)."""


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise NonFinite(text)
    return value


def _no_constant(text: str) -> float:
    raise NonFinite(text)


# Every stored number is finite (records are written with allow_nan=False): 1e999 or NaN in a
# line is damage, refused with its line rather than carried into means and tables.
_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_no_constant)


def loads_finite(text: str) -> Any:
    """json.loads, refusing numbers that are not finite (NonFinite)."""
    return _DECODER.decode(text)


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """Parse a JSON-lines file of objects; a torn last line is skipped and described in the second
    value. Anything else that is not a JSON object raises RunDirError naming the line."""
    numbered, warning = _numbered_jsonl(path)
    return [record for _, record in numbered], warning


def _numbered_jsonl(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], str | None]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], None
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read: {exc.strerror or exc}") from None
    lines = data.split(b"\n")
    tail = lines.pop()  # bytes after the last newline: empty unless the last write was cut
    records: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = _DECODER.decode(line.decode("utf-8"))
        except NonFinite as exc:
            raise RunDirError(f"{path}:{number}: a number that is not finite ({exc}): decoderbench never "
                              "writes one (JSON has no infinity); move the line out of the file, or restore "
                              "the file") from None
        except UnicodeDecodeError:
            raise RunDirError(f"{path}:{number}: not UTF-8 text ({len(line)} bytes of binary data); "
                              "move the line out of the file, or restore the file") from None
        except json.JSONDecodeError as exc:
            raise RunDirError(f"{path}:{number}: corrupt record ({exc}); move the line out of the "
                              "file, or restore the file") from None
        if not isinstance(record, dict):
            raise RunDirError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        records.append((number, record))
    warning = None
    if tail.strip():
        warning = (f"{path.name}: ignored a truncated last line ({len(tail)} bytes) "
                   f"left by an interrupted write")
    return records, warning


# --------------------------------------------------------------------------- the validated loader
# Every reader of a run directory (show, report, export, gate, baseline, judge, resume) goes through
# `read_run`: what it needs is checked here once, and a problem is one line naming the file, the
# line and the key, never a KeyError three modules later.


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class _DecoderRow(_Loose):
    name: str
    label: str | None = None


class _Resolved(_Loose):
    decoder: list[_DecoderRow] = Field(min_length=1)
    metrics: list[dict[str, Any]] = Field(default_factory=list)
    timing: dict[str, Any] = Field(default_factory=dict)
    evaluation: dict[str, Any] = Field(default_factory=dict)
    gate: list[dict[str, Any]] = Field(default_factory=list)


class _SuiteName(_Loose):
    name: str


class _SuiteInfo(_SuiteName):
    sha256: str
    path: str
    resolved: _Resolved
    texts: dict[str, str] = Field(default_factory=dict)


class _SweepManifest(_Loose):
    format: Literal[1]
    kind: Literal["sweep"]
    status: str
    suite: _SuiteName


class _Manifest(_Loose):
    format: Literal[1]
    kind: Literal["run"] = "run"
    status: str
    suite: _SuiteInfo
    cache_dir: str | None = None
    notes: list[str] = Field(default_factory=list)
    phases: list[dict[str, Any]] = Field(default_factory=list)
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict)
    decoders: dict[str, dict[str, Any]] = Field(default_factory=dict)
    environment: dict[str, Any] = Field(default_factory=dict)
    resumed: list[str] = Field(default_factory=list)


Size = tuple[int, int]


class _Case(_Loose):
    id: str
    item_id: str
    seed: int
    sigma: float
    input_size: Size
    output_size: Size
    reference: str | None = None


class _Record(_Loose):
    decoder: str
    status: str
    message: str | None = None


class _Decode(_Record):
    case: str
    output_size: Size | None = None
    batch_size: int | None = None
    image: str | None = None
    latency: dict[str, Any] | None = None
    memory: dict[str, Any] | None = None
    warmup: dict[str, Any] | None = None
    facts: dict[str, Any] | None = None


class _Metric(_Record):
    case: str | None
    metric: str
    value: float | None = None
    size: Size | None = None


class _Judge(_Loose):
    case: str
    a: str
    b: str
    criterion: str
    status: str


class _Sweep(_Record):
    size: Size


RECORD_KINDS: dict[str, type[BaseModel]] = {
    "load": _Record, "decode": _Decode, "metric": _Metric, "judge": _Judge, "sweep": _Sweep}


def _problem(error: Any) -> str:
    loc = ".".join(str(part) for part in error["loc"])
    if error["type"] == "missing":
        message = "required key is missing"
    elif error["type"] in ("dict_type", "model_type", "model_attributes_type"):
        message = "expected a JSON object"
    else:
        message = error["msg"].replace("Input should be", "expected")
    shown = "" if error["type"] == "missing" else f", got {error['input']!r}"[:120]
    return f"{loc}: {message}{shown}" if loc else f"{message}{shown}"


def _checked(model: type[BaseModel], data: Any, where: str) -> None:
    try:
        model.model_validate(data)
    except ValidationError as exc:
        raise RunDirError(f"{where}: {_problem(exc.errors()[0])}") from None


def read_manifest(root: Path) -> dict[str, Any]:
    """manifest.json of a run (or sweep) directory, checked."""
    path = root / MANIFEST
    if not root.is_dir():
        what = "it does not exist" if not root.exists() else "it is a file"
        raise RunDirError(f"{root} is not a decoderbench run directory ({what})")
    if not path.is_file():
        raise RunDirError(f"{root} is not a decoderbench run directory (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise RunDirError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not isinstance(manifest, dict):
        raise RunDirError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != RUN_FORMAT:
        raise RunDirError(f"{path}: format: run format {manifest.get('format')!r} is not supported "
                          f"(expected {RUN_FORMAT})")
    _checked(_SweepManifest if manifest.get("kind") == "sweep" else _Manifest, manifest, str(path))
    return manifest


@dataclass
class RunData:
    """What a run directory holds, checked: the manifest, its cases and its records."""

    root: Path
    manifest: dict[str, Any]
    cases: list[dict[str, Any]]
    records: list[dict[str, Any]]
    torn: str | None = None  # a truncated last line that was skipped
    missing_images: list[str] = field(default_factory=list)  # ok decodes whose output file is gone
    set_aside: list[str] = field(default_factory=list)  # "results.jsonl:N: why" of records left out

    @property
    def set_aside_note(self) -> str | None:
        """What readers say about records that do not belong to this run (left out of every number)."""
        if not self.set_aside:
            return None
        shown = "; ".join(self.set_aside[:3]) + ("; …" if len(self.set_aside) > 3 else "")
        return (f"{len(self.set_aside)} record(s) in {RESULTS} do not belong to this run and are left out "
                f"of every number: {shown}. `decoderbench run --resume {self.root}` moves them to "
                f"{RESULTS}.superseded")

    @property
    def missing_note(self) -> str | None:
        if not self.missing_images:
            return None
        return (f"{len(self.missing_images)} output image(s) of ok decodes are missing (e.g. "
                f"{self.missing_images[0]}): values stay as recorded; `decoderbench run --resume "
                f"{self.root}` decodes them again")


def read_records(root: Path) -> tuple[list[dict[str, Any]], str | None]:
    """results.jsonl, every record checked against what readers rely on for its kind."""
    numbered, torn = _checked_records(root / RESULTS)
    return [record for _, record in numbered], torn


def _checked_records(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], str | None]:
    numbered, torn = _numbered_jsonl(path)
    for number, record in numbered:
        kind = record.get("kind")
        if kind not in RECORD_KINDS:
            what = "has no \"kind\"" if kind is None else f"has an unknown kind {kind!r}"
            raise RunDirError(f"{path}:{number}: record {what} (expected one of {', '.join(RECORD_KINDS)})")
        _checked(RECORD_KINDS[kind], record, f"{path}:{number}")
    return numbered, torn


def read_run(root: Path, results_required: bool = True,
             expect: Literal["run", "sweep", "any"] = "run") -> RunData:
    """The one loader of run directories. `results_required`: an empty results.jsonl is an error
    (every reader but resume, which is how such a run gets its first records). `expect`: a reader
    of runs is told clearly that it was given a memory-wall sweep (and the other way round)."""
    manifest = read_manifest(root)
    kind = manifest.get("kind", "run")
    if expect != "any" and kind != expect:
        what = {"sweep": "a memory-wall sweep (`decoderbench report` shows it)", "run": "a suite run"}[kind]
        raise RunDirError(f"{root / MANIFEST}: kind: this directory holds {what}, not a {expect}")
    numbered, _ = _numbered_jsonl(root / CASES)
    for number, case in numbered:
        _checked(_Case, case, f"{root / CASES}:{number}")
    cases = [case for _, case in numbered]
    for number, case in numbered:
        _check_stored_path(case, "reference", f"{root / CASES}:{number}")
    numbered_records, torn = _checked_records(root / RESULTS)
    for number, record in numbered_records:
        for key in ("image", "artifact"):
            _check_stored_path(record, key, f"{root / RESULTS}:{number}")
    kept, set_aside = _members(manifest, cases, numbered_records, root / RESULTS) if kind == "run" \
        else (numbered_records, [])
    records = [record for _, record in kept]
    if results_required and not records:
        state = "is empty" if (root / RESULTS).exists() else "does not exist"
        raise RunDirError(f"{root / RESULTS}: {state}: no decoder has finished a case in this run yet; "
                          f"resume it with `decoderbench run --resume {root}`")
    missing = [r["image"] for r in records if r["kind"] == "decode" and r["status"] == "ok"
               and r.get("image") and not (root / r["image"]).is_file()]
    return RunData(root, manifest, cases, records, torn, missing, set_aside)


def _check_stored_path(entry: dict[str, Any], key: str, where: str) -> None:
    value = entry.get(key)
    if value is None:
        return
    problem = stored_path_problem(value)
    if problem is not None:
        raise RunDirError(f"{where}: {key}: {problem}: a run directory names only files inside itself; "
                          "restore the file, or move the line out of it")


def _members(manifest: dict[str, Any], cases: list[dict[str, Any]],
             numbered: list[tuple[int, dict[str, Any]]], path: Path
             ) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """The records that belong to this run, and `FILE:LINE: why` for those that do not: a record of
    another suite's run (its suite hash), of a decoder the suite does not have, of a case cases.jsonl
    does not list (a source changed under a resumed run leaves such records), or a second record of
    a unit, metric value or set value (the first stays)."""
    suite = manifest["suite"]
    own_hash = str(suite["sha256"])[:SUITE_HASH_DIGITS]
    decoders = {row.get("label") or row["name"] for row in suite["resolved"]["decoder"]}
    known = {case["id"] for case in cases}
    seen: dict[tuple[Any, ...], int] = {}
    kept, set_aside = [], []
    for number, record in numbered:
        why = _foreign(record, own_hash, decoders, known)
        key = _unit_key(record)
        if why is None and key is not None:
            if key in seen:
                why = f"a second record of {_shown_unit(key)} (the first is line {seen[key]})"
            else:
                seen[key] = number
        if why is None:
            kept.append((number, record))
        else:
            set_aside.append(f"{path.name}:{number}: {why}")
    return kept, set_aside


def _foreign(record: dict[str, Any], own_hash: str, decoders: set[str], known: set[str]) -> str | None:
    stamp = record.get("suite_hash")
    if stamp is not None and stamp != own_hash:
        return f"a record of another suite's run (suite hash {stamp}, this run's {own_hash})"
    kind = record["kind"]
    named = [record["a"], record["b"]] if kind == "judge" else [record["decoder"]]
    stranger = next((d for d in named if d not in decoders), None)
    if stranger is not None:
        return f"decoder {stranger!r} is not in this run's suite"
    case = record.get("case")
    if kind != "load" and case is not None and case not in known:
        return f"case {case!r} is not in {CASES}"
    return None


def _unit_key(record: dict[str, Any]) -> tuple[Any, ...] | None:
    """What a record is the one record of (None: kinds that may repeat, such as worker loads)."""
    kind = record["kind"]
    if kind == "decode":
        return ("decode", record["decoder"], record["case"])
    if kind == "metric" and record["case"] is not None:
        return ("metric", record["decoder"], record["case"], record["metric"])
    if kind == "metric":
        return ("set", record["decoder"], record["metric"], tuple(record.get("size") or ()))
    return None


def _shown_unit(key: tuple[Any, ...]) -> str:
    if key[0] == "decode":
        return f"the decode of ({key[1]}, {key[2]})"
    if key[0] == "metric":
        return f"{key[3]} of ({key[1]}, {key[2]})"
    size = "x".join(map(str, key[3])) or "every size"
    return f"the set value of {key[2]} for {key[1]} at {size}"


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._results_handle: Any = None
        self._lock_handle: Any = None
        self._append_lock = threading.Lock()  # the runner's threads (slots, image writer) append
        self._suite_hash: str | None = None

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def create(cls, root: Path, manifest: dict[str, Any]) -> RunStore:
        try:  # a name too long for the file system raises here
            held = (root / RESULTS).exists() or (root / MANIFEST).exists()
        except OSError as exc:
            raise StoreError(f"run directory {root}: {errno_text(exc.errno, exc.strerror)}") from None
        if held:
            raise StoreError(f"{root} already holds a run; use `decoderbench run --resume {root}`")
        writable_dir(root, "run directory")
        store = cls(root)
        store.lock()
        store.write_manifest({"format": RUN_FORMAT, "created": now_iso(), **manifest})
        return store

    @classmethod
    def open(cls, root: Path) -> RunStore:
        read_manifest(root)  # a clear RunDirError for anything that is not a readable run
        return cls(root)

    def lock(self) -> None:
        """Hold an exclusive lock for as long as this process writes the run."""
        try:
            self._lock_handle = (self.root / ".lock").open("a+")
        except OSError as exc:
            raise StoreError(f"run directory {self.root} is not writable: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"{self.root} is being written by another decoderbench process") from None

    def close(self) -> None:
        if self._results_handle is not None:
            self._results_handle.close()
            self._results_handle = None
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    # ------------------------------------------------------------------ manifest and cases

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.root / MANIFEST).read_text(encoding="utf-8"))

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self._write(self.root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))

    def _write(self, path: Path, text: str) -> None:
        try:
            atomic_write_text(path, text)
        except OSError as exc:
            raise EnvironmentFailure.writing("the run's", path, exc, resume=self.root) from None

    def update_manifest(self, **fields: Any) -> None:
        self.write_manifest({**self.manifest(), **fields})

    def write_cases(self, cases: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(case, sort_keys=True) + "\n" for case in cases)
        self._write(self.root / CASES, text)

    def cases(self) -> list[dict[str, Any]]:
        return read_jsonl(self.root / CASES)[0]

    # ------------------------------------------------------------------ results

    def records(self) -> tuple[list[dict[str, Any]], str | None]:
        """The records that belong to this run (see `read_run`: a stray never counts as a finished
        unit, a metric value or a judged pair), and a torn-line warning."""
        numbered, torn = _checked_records(self.root / RESULTS)
        try:
            manifest = self.manifest()
            _checked(_Manifest, manifest, str(self.root / MANIFEST))
        except (OSError, ValueError, RunDirError):  # no full run manifest (yet): nothing to check against
            return [record for _, record in numbered], torn
        if manifest.get("kind", "run") == "run":
            numbered, _ = _members(manifest, self.cases(), numbered, self.root / RESULTS)
        return [record for _, record in numbered], torn

    def repair(self) -> str | None:
        """Set aside a torn last line so that appending starts on a clean line."""
        path = self.root / RESULTS
        if not path.exists():
            return None
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut == len(data):
            return None
        with (self.root / f"{RESULTS}.partial").open("ab") as handle:
            handle.write(data[cut:] + b"\n")
        with path.open("r+b") as handle:
            handle.truncate(cut)
            handle.flush()
            os.fsync(handle.fileno())
        return (f"{RESULTS}: set aside a truncated last line ({len(data) - cut} bytes) "
                f"in {RESULTS}.partial")

    def set_aside(self, drop: Any) -> int:
        """Move the records for which `drop(record, line_number)` holds to results.jsonl.superseded
        (resume does this for units it runs again — an output image gone, an environment failure,
        --retry-failed — so that each still ends with exactly one record, and for records that do
        not belong to the run). Returns how many were moved."""
        path = self.root / RESULTS
        kept, dropped = [], []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(keepends=True), start=1):
            if line.strip():
                (dropped if drop(json.loads(line), number) else kept).append(line)
        if dropped:
            with (self.root / f"{RESULTS}.superseded").open("a", encoding="utf-8") as handle:
                handle.writelines(dropped)  # first: a kill in between leaves a copy, never a loss
            atomic_write_text(path, "".join(kept))
        return len(dropped)

    def append(self, record: dict[str, Any]) -> None:
        stamp = {"suite_hash": self.suite_hash} if self.suite_hash else {}
        line = json.dumps({**record, "time": now_iso(), **stamp}, sort_keys=True, allow_nan=False)
        with self._append_lock:
            try:
                if self._results_handle is None:
                    self._results_handle = (self.root / RESULTS).open("a", encoding="utf-8")
                self._results_handle.write(line + "\n")
                self._results_handle.flush()
                os.fsync(self._results_handle.fileno())
            except OSError as exc:  # a line cut short is set aside by the next resume
                raise EnvironmentFailure.writing("a record into", self.root / RESULTS, exc,
                                                 resume=self.root) from None

    @property
    def suite_hash(self) -> str | None:
        """What every record carries to say which run it belongs to: the first 16 hex digits of the
        suite's sha256 (a record pasted from another suite's run is told apart by it)."""
        if self._suite_hash is None:
            try:
                sha = (self.manifest().get("suite") or {}).get("sha256")
            except (OSError, ValueError):
                sha = None
            self._suite_hash = sha[:SUITE_HASH_DIGITS] if isinstance(sha, str) else ""
        return self._suite_hash or None

    def remove_temp_files(self) -> None:
        """Drop half-written files (images, manifest) that a killed process left behind."""
        for tmp in self.root.rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)

    # ------------------------------------------------------------------ paths

    @staticmethod
    def image_relpath(decoder_id: str, case_id: str) -> str:
        return f"images/{decoder_id}/{case_id}.png"

    @staticmethod
    def reference_relpath(reference_key: str) -> str:
        return f"references/{reference_key[:20]}.png"
