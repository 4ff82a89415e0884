"""Where the executor's results land: records in results.jsonl, images under images/.

The runner process is the single writer of a run directory. `RunSink`
receives what every executor reports (loads, decoded tasks, failures) from
its threads and turns it into records; `ImageWriter` encodes and stores the
decoded images. An image is written (PNG, fsynced with its folder) *before*
its record is appended, so a record never points at a missing image; a run
killed in between leaves an image without a record, which resume decodes
again. With `background` (the timing device is a GPU) the encoding runs in
writer threads while the workers decode on: a bounded amount of pixels
waits, and a full queue makes the executor wait (back-pressure). Without it
(CPU timing: the encoder would share the cores with a timed decode) each
task's images are written before its worker gets the next task.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness import images
from harness.progress import Reporter
from harness.records import DecodeRecord, LoadRecord
from harness.store import INFRASTRUCTURE_ERROR, EnvironmentFailure, RunStore
from harness.workers.channel import DecodeTask, Loaded, TaskDone
from harness.workers.executor import Slot, Unit

WRITER_THREADS = max(1, min(4, os.cpu_count() or 1))
MAX_PENDING_BYTES = 1 << 30  # pixels waiting for the writer (at least one task always fits)


class ImageWriter:
    """Stores (records, images) of a task: images first, then the records, in any thread."""

    def __init__(self, store: RunStore, background: bool, threads: int = WRITER_THREADS,
                 max_pending_bytes: int = MAX_PENDING_BYTES) -> None:
        self.store, self.background, self.max_pending_bytes = store, background, max_pending_bytes
        self.busy_s = 0.0  # encoding, writing and fsyncing, summed over threads
        self.wait_s = 0.0  # time the decode phase waited for the writer: the critical-path share
        self._queue: queue.Queue[Any] = queue.Queue()
        self._room = threading.Condition()
        self._stats = threading.Lock()
        self._pending_bytes = 0
        self._errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._serve, name=f"image-writer-{i}", daemon=True)
                         for i in range(threads if background else 0)]
        for thread in self._threads:
            thread.start()

    @property
    def threads(self) -> int:
        return len(self._threads)

    def submit(self, records: list[dict[str, Any]], pixels: tuple[Any, ...]) -> None:
        size = sum(p.nbytes for p in pixels if p is not None)
        begin = time.perf_counter()
        if not self.background:
            self._store(records, pixels)
            self._add_wait(time.perf_counter() - begin)
            return
        with self._room:
            while self._pending_bytes and self._pending_bytes + size > self.max_pending_bytes:
                self._room.wait()
            self._pending_bytes += size
        self._add_wait(time.perf_counter() - begin)
        self._raise_errors()
        self._queue.put((records, pixels, size))

    def drain(self) -> None:
        """Wait until every submitted task is stored; raise what a writer thread raised."""
        begin = time.perf_counter()
        self._queue.join()
        self._add_wait(time.perf_counter() - begin)
        self._raise_errors()

    def _add_wait(self, seconds: float) -> None:
        with self._stats:
            self.wait_s += seconds

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _raise_errors(self) -> None:
        if self._errors:
            raise self._errors[0]

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                records, pixels, size = item
                try:
                    self._store(records, pixels)
                except BaseException as exc:  # a bug or a broken store: stop the run, loudly
                    self._errors.append(exc)
                with self._room:
                    self._pending_bytes -= size
                    self._room.notify_all()
            finally:
                self._queue.task_done()

    def _store(self, records: list[dict[str, Any]], pixels: tuple[Any, ...]) -> None:
        begin = time.perf_counter()
        folders, failure = set(), None
        for record, image in zip(records, pixels, strict=True):
            if image is None:
                continue
            failure = failure or self._write_image(record, image)
            if record["status"] == "ok":
                folders.add(str((self.store.root / record["image"]).parent))
        for folder in folders:  # the renames are durable before any record names them
            images.fsync_folder(Path(folder))
        for record in records:
            self.store.append(record)
        with self._stats:
            self.busy_s += time.perf_counter() - begin
        if failure is not None:
            raise failure  # the disk is full (or read-only): every later unit would fail the same way

    def _write_image(self, record: dict[str, Any], image: np.ndarray) -> EnvironmentFailure | None:
        """Store one output; a write the machine refuses (a full disk, a file-size limit, a read-only
        folder) is the environment's failure, not the decoder's: the unit is recorded as
        infrastructure_error, which resume runs again, and the run stops."""
        path = self.store.root / record["image"]
        try:
            images.write_png(image, path, fsync=True)
        except OSError as exc:
            failure = EnvironmentFailure.writing("the output image", path, exc, resume=self.store.root)
            record.update(status=INFRASTRUCTURE_ERROR, message=str(failure), image=None, latency=None,
                          memory=None)
            return failure
        record["image_sha256"] = images.pixels_sha256(image)
        return None


class RunSink:
    """The runner's `Sink`: load and decode records, manifest entries, progress, notes."""

    def __init__(self, store: RunStore, writer: ImageWriter, reporter: Reporter, concurrent: bool,
                 pending: dict[str, int], note: Any) -> None:
        self.store, self.writer, self.reporter, self.concurrent = store, writer, reporter, concurrent
        self.pending, self._note = pending, note  # decoder → cases to decode; the runner's note()
        self.units: dict[str, dict[str, Any]] = {}  # unit key → where and when it ran
        self._placements: dict[str, dict[str, Any]] = {}  # slot label → its worker's placement
        self._phase: str | None = None
        self._lock = threading.RLock()
        self._began = time.perf_counter()
        if concurrent:
            reporter.phase(f"decode ({len(pending)} decoders)", sum(pending.values()))

    # ------------------------------------------------------------------ units

    def unit_started(self, unit: Unit, slot: Slot) -> None:
        with self._lock:
            if not self.concurrent and self._phase != unit.decoder_id:
                self._phase = unit.decoder_id
                self.reporter.phase(f"decode {unit.decoder_id}", self.pending.get(unit.decoder_id, 0))
            self.units[unit.key] = {
                "unit": unit.key, "decoder": unit.decoder_id, "size": list(unit.size),
                "shard": [unit.shard + 1, unit.shards], "cases": unit.cases, "slot": slot.label,
                "started_s": round(time.perf_counter() - self._began, 3),
            }

    def unit_finished(self, unit: Unit, slot: Slot) -> None:
        with self._lock:
            entry = self.units[unit.key]
            entry["finished_s"] = round(time.perf_counter() - self._began, 3)
            where = self._placements.get(slot.label) or {}
            entry.update(host=where.get("host"), gpu_index=where.get("gpu_index"),
                         gpu_name=where.get("gpu_name"))

    # ------------------------------------------------------------------ loads

    def loaded(self, unit: Unit, slot: Slot, reply: Loaded, startup_ms: float) -> None:
        with self._lock:
            self._placements[slot.label] = reply.placement
            job = unit.job
            self.store.append(LoadRecord(
                kind="load", decoder=job.decoder_id, status="ok", pid=reply.pid,
                spawn_to_ready_ms=startup_ms, import_ms=reply.import_ms,
                load_ms=reply.load_ms, weights=reply.weights, facts=reply.facts,
                device=reply.device, torch_state=reply.torch_state,
                placement=reply.placement, unit=unit.key, slot=slot.label,
            ))
            decoders = self.store.manifest().get("decoders", {})
            decoders[job.decoder_id] = {
                "name": job.decoder_name, "params": job.params, "weights": reply.weights,
                "facts": reply.facts, "device": reply.device,
            }
            self.store.update_manifest(decoders=decoders)

    def load_failed(self, unit: Unit, slot: Slot, status: str, message: str, trace: str) -> None:
        with self._lock:
            self._placements.pop(slot.label, None)  # the slot's next worker may run elsewhere (Ray)
            self.store.append(LoadRecord(kind="load", decoder=unit.decoder_id, status=status,
                                         message=message, traceback=trace or None, unit=unit.key,
                                         slot=slot.label, placement=self._slot_placement(slot)))

    # ------------------------------------------------------------------ tasks

    def decoded(self, unit: Unit, slot: Slot, task: DecodeTask, reply: TaskDone,
                retried_after: str | None) -> None:
        records = [dict(record, unit=unit.key, slot=slot.label) for record in reply.records]
        if retried_after is not None:
            for record in records:
                record["retried_after"] = retried_after
        pixels = reply.images or (None,) * len(records)
        self.writer.submit(records, pixels)  # may wait for room: back-pressure on this slot
        with self._lock:
            self.reporter.advance(len(task.cases))

    def failed(self, unit: Unit, slot: Slot, task: DecodeTask, status: str, message: str) -> None:
        with self._lock:
            where = self._slot_placement(slot)
            for case in task.cases:
                self.store.append(DecodeRecord(
                    kind="decode", decoder=unit.decoder_id, case=case.case_id, status=status,
                    message=message, latency=None, memory=None,
                    batch_size=len(task.cases), request_size=list(task.request_size),
                    output_size=list(task.compare_size), placement=where, unit=unit.key,
                    slot=slot.label,
                ))
            self.reporter.advance(len(task.cases))

    def note(self, message: str) -> None:
        with self._lock:
            self._note(message)

    def _slot_placement(self, slot: Slot) -> dict[str, Any]:
        known = self._placements.get(slot.label)
        if known is not None:
            return known
        return {"host": None if slot.remote else socket.gethostname(),
                "gpu_index": slot.gpu_index, "gpu_name": None,
                "cuda_visible_devices": slot.env.get("CUDA_VISIBLE_DEVICES")}

