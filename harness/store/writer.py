"""`RunStore`: the run directory as its one writer process sees it (lock, manifest, append-only records).

Records are appended to results.jsonl one line each, flushed and fsynced, stamped with the time
and the suite hash; a torn last line is set aside before appending resumes; records a resume
replaces move to results.jsonl.superseded first.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Any

from harness.records import (
    CASES,
    MANIFEST,
    RESULTS,
    RUN_FORMAT,
    SUITE_HASH_DIGITS,
    CaseLine,
    Manifest,
    Record,
)
from harness.store.files import (
    EnvironmentFailure,
    RunDirError,
    StoreError,
    atomic_write_text,
    errno_text,
    now_iso,
    writable_dir,
)
from harness.store.reader import checked_records, members, read_jsonl, read_manifest
from harness.store.schema import ManifestModel, check_against


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._results_handle: Any = None
        self._lock_handle: Any = None
        self._append_lock = threading.Lock()  # the runner's threads (slots, image writer) append
        self._suite_hash: str | None = None



    @classmethod
    def create(cls, root: Path, manifest: Manifest) -> RunStore:
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



    def manifest(self) -> Manifest:
        return json.loads((self.root / MANIFEST).read_text(encoding="utf-8"))

    def write_manifest(self, manifest: Manifest) -> None:
        self._write(self.root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))

    def _write(self, path: Path, text: str) -> None:
        try:
            atomic_write_text(path, text)
        except OSError as exc:
            raise EnvironmentFailure.writing("the run's", path, exc, resume=self.root) from None

    def update_manifest(self, **fields: Any) -> None:
        self.write_manifest({**self.manifest(), **fields})

    def write_cases(self, cases: list[CaseLine]) -> None:
        text = "".join(json.dumps(case, sort_keys=True) + "\n" for case in cases)
        self._write(self.root / CASES, text)

    def cases(self) -> list[CaseLine]:
        return read_jsonl(self.root / CASES)[0]



    def records(self) -> tuple[list[Record], str | None]:
        """The records that belong to this run (see `read_run`: a stray never counts as a finished
        unit, a metric value or a judged pair), and a torn-line warning."""
        numbered, torn = checked_records(self.root / RESULTS)
        try:
            manifest = self.manifest()
            check_against(ManifestModel, manifest, str(self.root / MANIFEST))
        except (OSError, ValueError, RunDirError):  # no full run manifest (yet): nothing to check against
            return [record for _, record in numbered], torn
        if manifest.get("kind", "run") == "run":
            numbered, _ = members(manifest, self.cases(), numbered, self.root / RESULTS)
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

    def append(self, record: Record) -> None:
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



    @staticmethod
    def image_relpath(decoder_id: str, case_id: str) -> str:
        return f"images/{decoder_id}/{case_id}.png"

    @staticmethod
    def reference_relpath(reference_key: str) -> str:
        return f"references/{reference_key[:20]}.png"
