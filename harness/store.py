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

import fcntl
import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

RUN_FORMAT = 1
MANIFEST = "manifest.json"
RESULTS = "results.jsonl"
CASES = "cases.jsonl"


class StoreError(RuntimeError):
    pass


class RunDirError(StoreError):
    """A run directory that cannot be read; str() is `RUN_DIR/FILE[:LINE]: what is wrong`."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def writable_dir(path: Path, what: str) -> None:
    """Create `path` (and its parents) if needed and check that files can be written there;
    StoreError in one line otherwise (a file in the way, a read-only or virtual file system)."""
    if path.exists() and not path.is_dir():
        raise StoreError(f"{what} {path} is a file, not a directory")
    try:
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
            record = json.loads(line.decode("utf-8"))
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
    numbered_records, torn = _checked_records(root / RESULTS)
    known = {case["id"] for case in cases}
    for number, record in numbered_records:
        if record["kind"] == "decode" and not record.get("output_size") and record["case"] not in known:
            raise RunDirError(f"{root / RESULTS}:{number}: decode record of case {record['case']!r}, "
                              f"which {CASES} does not list (and the record names no output_size)")
    records = [record for _, record in numbered_records]
    if results_required and not records:
        state = "is empty" if (root / RESULTS).exists() else "does not exist"
        raise RunDirError(f"{root / RESULTS}: {state}: no decoder has finished a case in this run yet; "
                          f"resume it with `decoderbench run --resume {root}`")
    missing = [r["image"] for r in records if r["kind"] == "decode" and r["status"] == "ok"
               and r.get("image") and not (root / r["image"]).is_file()]
    return RunData(root, manifest, cases, records, torn, missing)


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._results_handle: Any = None
        self._lock_handle: Any = None
        self._append_lock = threading.Lock()  # the runner's threads (slots, image writer) append

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def create(cls, root: Path, manifest: dict[str, Any]) -> RunStore:
        if (root / RESULTS).exists() or (root / MANIFEST).exists():
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
        atomic_write_text(self.root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))

    def update_manifest(self, **fields: Any) -> None:
        self.write_manifest({**self.manifest(), **fields})

    def write_cases(self, cases: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(case, sort_keys=True) + "\n" for case in cases)
        atomic_write_text(self.root / CASES, text)

    def cases(self) -> list[dict[str, Any]]:
        return read_jsonl(self.root / CASES)[0]

    # ------------------------------------------------------------------ results

    def records(self) -> tuple[list[dict[str, Any]], str | None]:
        return read_records(self.root)

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
        """Move the records for which `drop(record)` holds to results.jsonl.superseded (resume does
        this for units whose output image is gone, so that they are decoded again and still end
        with exactly one record). Returns how many were moved."""
        path = self.root / RESULTS
        kept, dropped = [], []
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
            if line.strip():
                (dropped if drop(json.loads(line)) else kept).append(line)
        if dropped:
            with (self.root / f"{RESULTS}.superseded").open("a", encoding="utf-8") as handle:
                handle.writelines(dropped)  # first: a kill in between leaves a copy, never a loss
            atomic_write_text(path, "".join(kept))
        return len(dropped)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps({**record, "time": now_iso()}, sort_keys=True, allow_nan=False)
        with self._append_lock:
            if self._results_handle is None:
                self._results_handle = (self.root / RESULTS).open("a", encoding="utf-8")
            self._results_handle.write(line + "\n")
            self._results_handle.flush()
            os.fsync(self._results_handle.fileno())

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
