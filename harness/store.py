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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RUN_FORMAT = 1
MANIFEST = "manifest.json"
RESULTS = "results.jsonl"
CASES = "cases.jsonl"


class StoreError(RuntimeError):
    pass


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


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
    """Parse a JSON-lines file; a torn last line is skipped and described in the second value."""
    if not path.exists():
        return [], None
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # bytes after the last newline: empty unless the last write was cut
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise StoreError(f"{path}:{number}: corrupt record ({exc})") from None
    warning = None
    if tail.strip():
        warning = (f"{path.name}: ignored a truncated last line ({len(tail)} bytes) "
                   f"left by an interrupted write")
    return records, warning


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
        root.mkdir(parents=True, exist_ok=True)
        store = cls(root)
        store.lock()
        store.write_manifest({"format": RUN_FORMAT, "created": now_iso(), **manifest})
        return store

    @classmethod
    def open(cls, root: Path) -> RunStore:
        if not (root / MANIFEST).exists():
            raise StoreError(f"{root} is not a decoderbench run directory (no {MANIFEST})")
        store = cls(root)
        fmt = store.manifest().get("format")
        if fmt != RUN_FORMAT:
            raise StoreError(f"{root}: run format {fmt} is not supported (expected {RUN_FORMAT})")
        return store

    def lock(self) -> None:
        """Hold an exclusive lock for as long as this process writes the run."""
        self._lock_handle = (self.root / ".lock").open("a+")
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
        return read_jsonl(self.root / RESULTS)

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
