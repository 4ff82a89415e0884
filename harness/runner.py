"""Run a suite: sources → cache → one worker per decoder → store → metrics.

The runner is the only module that knows decoders, sources, the store and
metrics at once. Phases are strictly ordered: all inputs are prepared before
any decoder runs; every decoder runs in its own spawned worker, one after
the other (never two measured at once); metrics run after all decoding, so
no metric model is resident while a decoder is measured; the pairwise judge
(suites with a [judge] table) runs last, over the stored outputs. Every
(decoder, case) unit ends as exactly one record — ok, or the failure that
happened — and a resumed run only does the units that have none.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from decoders.base import Consumes
from decoders.registry import DECODERS
from harness import __version__
from harness.env import fingerprint
from harness.evaluate import evaluate
from harness.images import write_png
from harness.judge.phase import run_judge
from harness.sources.cache import TensorCache
from harness.sources.prepare import InputPreparer, LoadableItem, PreparedCase, list_items, source_protocol
from harness.store import MANIFEST, RunData, RunStore, StoreError, now_iso, read_run, writable_dir
from harness.suite import DecoderEntry, Suite, validate_raw
from harness.workers.channel import CaseInput, DecodeTask, Loaded, LoadFailed, TaskDone, WorkerJob
from harness.workers.process import WorkerGone, WorkerProcess
from harness.workers.worker import worker_main

OK = "ok"
INPUT_ERROR = "input_error"  # the case's input could not be made (a bad image file); no decoder ran it


class Reporter(Protocol):
    def phase(self, name: str, total: int) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def note(self, message: str) -> None: ...


class SilentReporter:
    def __init__(self) -> None:
        self.notes: list[str] = []

    def phase(self, name: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def note(self, message: str) -> None:
        self.notes.append(message)


@dataclass
class RunOutcome:
    run_dir: Path
    status_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # decoder → status → n
    notes: list[str] = field(default_factory=list)

    @property
    def failed_units(self) -> int:
        return sum(n for counts in self.status_counts.values()
                   for status, n in counts.items() if status != OK)


def worker_job(suite: Suite, entry: DecoderEntry, run_dir: Path) -> WorkerJob:
    """What a decoder's worker process is told (the runner's and the memory-wall sweep's)."""
    timing = suite.model.timing
    return WorkerJob(
        decoder_id=entry.id, decoder_name=entry.name,
        params=suite.decoder_params[entry.id].model_dump(mode="json"),
        device=timing.device, dtype=timing.dtype, warmup=timing.warmup,
        repeats=timing.repeats, threads=timing.threads,
        compare_resampler=suite.model.compare.resampler,
        run_dir=str(run_dir), log_path=str(run_dir / "logs" / f"{entry.id}.log"),
    )


class Runner:
    def __init__(self, suite: Suite, store: RunStore, cache: TensorCache,
                 reporter: Reporter | None = None, items: list[LoadableItem] | None = None) -> None:
        self.suite, self.store, self.cache = suite, store, cache
        self.reporter = reporter or SilentReporter()
        self.notes: list[str] = []
        self.items = items  # listed (and checked) before the run directory was made

    # ------------------------------------------------------------------ entry points

    @classmethod
    def new(cls, suite: Suite, run_dir: Path, cache: TensorCache,
            reporter: Reporter | None = None) -> Runner:
        """Everything that can be checked is checked before the run directory exists: the source's
        items (SourceError), the cases (SuiteError), the cache and the run directory (StoreError)."""
        items = list_items(suite)
        suite.expand([entry.item for entry in items], source_protocol(suite))
        writable_dir(cache.root, "cache directory")
        manifest = {
            "decoderbench": __version__,
            "status": "running",
            "suite": {
                # absolute: a resume from another working directory finds the suite's relative paths
                "name": suite.name, "sha256": suite.sha256, "path": str(suite.path.resolve()),
                "texts": suite.texts, "resolved": suite.model.model_dump(mode="json"),
            },
            "environment": fingerprint(),
            "cache_dir": str(cache.root.resolve()),
        }
        return cls(suite, RunStore.create(run_dir, manifest), cache, reporter, items)

    @classmethod
    def resume(cls, run_dir: Path, cache: TensorCache | None = None,
               reporter: Reporter | None = None) -> Runner:
        data = read_run(run_dir, results_required=False)  # RunDirError: FILE:LINE: what is wrong
        store = RunStore(run_dir)
        store.lock()
        manifest = data.manifest
        info = manifest["suite"]
        suite = validate_raw(info["resolved"], Path(info["path"]), info.get("texts"))
        if suite.sha256 != info["sha256"]:
            raise StoreError(
                f"{run_dir}: the stored suite no longer validates to the same hash "
                "(decoderbench or a plug-in changed its defaults); start a new run"
            )
        _check_source_paths(suite, run_dir / MANIFEST)
        cache_dir = manifest.get("cache_dir")
        if cache is None and cache_dir is None:
            raise StoreError(f"{run_dir / MANIFEST}: cache_dir: missing; give --cache-dir")
        runner = cls(suite, store, cache or TensorCache(Path(str(cache_dir))), reporter)
        writable_dir(runner.cache.root, "cache directory")
        store.remove_temp_files()
        repaired = store.repair()
        if repaired:
            runner._note(repaired)
        runner._decode_missing_outputs_again(data)
        store.update_manifest(status="running", resumed=[*manifest.get("resumed", []), now_iso()])
        return runner

    def _decode_missing_outputs_again(self, data: RunData) -> None:
        """Units whose output image is gone lose their decode and metric records (moved to
        results.jsonl.superseded, with the set values they entered) and are decoded again."""
        if not data.missing_images:
            return
        missing = set(data.missing_images)
        units = {(r["decoder"], r["case"]) for r in data.records
                 if r["kind"] == "decode" and r.get("image") in missing}
        sets = {(r["decoder"], tuple(r.get("output_size") or ())) for r in data.records
                if r["kind"] == "decode" and (r["decoder"], r["case"]) in units}

        def drop(record: dict[str, Any]) -> bool:
            unit = (record.get("decoder"), record.get("case"))
            if record.get("kind") == "decode":
                return unit in units
            if record.get("kind") != "metric":
                return False
            if record.get("case") is not None:
                return unit in units
            size = tuple(record.get("size") or ())
            return (record.get("decoder"), size) in sets or (
                not size and any(d == record.get("decoder") for d, _ in sets))

        moved = self.store.set_aside(drop)
        self._note(f"{len(units)} output image(s) were missing (e.g. {sorted(missing)[0]}): {moved} "
                   "record(s) moved to results.jsonl.superseded; decoding them again")

    def run(self) -> RunOutcome:
        """One invocation: its entry in the manifest's `phases` is written when it starts and after
        each phase, so that a killed invocation still says when it began and what it finished."""
        started = time.perf_counter()
        phases: dict[str, Any] = {"started": now_iso()}
        index = len(self.store.manifest().get("phases") or [])
        self._save_phases(index, phases)
        try:
            begin = time.perf_counter()
            prepared = self._prepare_inputs()
            self._phase_done(index, phases, "sources_s", begin)
            begin = time.perf_counter()
            for entry in self.suite.model.decoder:
                self._run_decoder(entry, prepared)
            self._phase_done(index, phases, "decode_s", begin)
            begin = time.perf_counter()
            notes = evaluate(self.suite, self.store, prepared, self.reporter)
            for note in notes:
                self._note(note)
            self._phase_done(index, phases, "evaluate_s", begin)
            if self.suite.model.judge is not None:
                begin = time.perf_counter()
                for note in run_judge(self.suite, self.store, self.cache.root, self.reporter).notes:
                    self._note(note)
                self._phase_done(index, phases, "judge_s", begin)
            status = "finished"
        except BaseException:
            status = "interrupted"
            raise
        finally:
            phases["wall_s"] = time.perf_counter() - started
            self._save_phases(index, phases, status=status, finished=now_iso(),
                              notes=sorted(set(self.notes)))
            self.store.close()
        return self._outcome()

    def _phase_done(self, index: int, phases: dict[str, Any], name: str, begin: float) -> None:
        phases[name] = time.perf_counter() - begin
        self._save_phases(index, phases)

    def _save_phases(self, index: int, phases: dict[str, Any], **fields: Any) -> None:
        """Write this invocation's entry (the index-th) of the manifest's `phases`."""
        recorded = list(self.store.manifest().get("phases") or [])
        recorded[index:index + 1] = [dict(phases)]
        self.store.update_manifest(phases=recorded, **fields)

    # ------------------------------------------------------------------ phase 1: inputs

    def _prepare_inputs(self) -> dict[str, PreparedCase]:
        model = self.suite.model
        items = self.items if self.items is not None else list_items(self.suite)
        preparer = InputPreparer(self.suite, self.cache, self.store.root / "logs")
        cases = self.suite.expand([entry.item for entry in items], preparer.protocol)
        self._check_against_stored(cases)
        self.reporter.phase("inputs", len(cases))
        prepared: dict[str, PreparedCase] = {}
        try:
            for item in preparer.prepare(cases, items):
                prepared[item.case.id] = item
                if item.reference_key is not None:
                    reference = self.store.root / RunStore.reference_relpath(item.reference_key)
                    if not reference.exists():
                        self._write_reference(item, reference)
                for note in item.notes:
                    self._note(f"{item.case.item_id}: {note}")
                if item.problem:
                    self._note(f"{item.problem}: the cases of item {item.case.item_id!r} are recorded as "
                               f"{INPUT_ERROR}; the other items run")
                self.reporter.advance()
            source_model = preparer.describe()
        finally:
            preparer.close()  # a spawned encoder or pipeline is gone before any decoder runs
        self.store.write_cases([
            {**p.as_dict(), "reference": RunStore.reference_relpath(p.reference_key)
             if p.reference_key else None}
            for p in prepared.values()
        ])
        facts: dict[str, Any] = {"items": [entry.item.__dict__ for entry in items],
                                 "source_protocol": preparer.protocol, "source_model": source_model}
        if model.source.kind == "images":
            facts["encoder"] = {"name": model.source.encoder.name, "weights": source_model["weights"]}
        self.store.update_manifest(**facts)
        return prepared

    def _write_reference(self, item: PreparedCase, target: Path) -> None:
        tensors = self.cache.get(item.reference_key)
        assert tensors is not None
        write_png(tensors["image"], target)

    def _check_against_stored(self, cases: list[Any]) -> None:
        stored = {c["id"] for c in self.store.cases()}
        if not stored:
            return
        current = {c.id for c in cases}
        if stored != current:
            self._note(
                f"the source changed since this run started: {len(current - stored)} new "
                f"case(s), {len(stored - current)} case(s) no longer produced"
            )

    # ------------------------------------------------------------------ phase 2: decoders

    def _run_decoder(self, entry: DecoderEntry, prepared: dict[str, PreparedCase]) -> None:
        records, _ = self.store.records()
        done = {r["case"] for r in records if r["kind"] == "decode" and r["decoder"] == entry.id}
        pending = [p for case_id, p in prepared.items() if case_id not in done]
        self.reporter.phase(f"decode {entry.id}", len(pending))
        for item in [p for p in pending if p.problem]:
            self.store.append({"kind": "decode", "decoder": entry.id, "case": item.case.id,
                               "status": INPUT_ERROR, "message": item.problem, "latency": None,
                               "memory": None, "output_size": list(item.case.output_size)})
            self.reporter.advance()
        pending = [p for p in pending if not p.problem]
        if not pending:
            return
        job = self._job(entry)
        tasks = deque(self._tasks(entry, pending))
        worker: WorkerProcess | None = None
        try:
            while tasks:
                if worker is None:
                    worker = self._start_worker(job, tasks)
                    if worker is None:
                        return
                task = tasks.popleft()
                reply = self._send(worker, task)
                if isinstance(reply, TaskDone):
                    for record in reply.records:
                        self.store.append(record)
                    self.reporter.advance(len(task.cases))
                    if any(record.get("status") == "oom" for record in reply.records):
                        worker.close()  # a fresh worker: no later case inherits the allocator's state
                        worker = None
                    continue
                self._fail_units(entry.id, task, reply.status, reply.reason)
                worker = None
        finally:
            if worker is not None:
                worker.close()

    def _send(self, worker: WorkerProcess, task: DecodeTask) -> TaskDone | WorkerGone:
        try:
            worker.send(task)
        except (BrokenPipeError, OSError):
            return WorkerGone("crashed", "worker process was gone before the task was sent")
        reply = worker.receive(self.suite.model.timing.timeout_s)
        if isinstance(reply, TaskDone | WorkerGone):
            return reply
        worker.kill()
        return WorkerGone("error", f"protocol error: unexpected {type(reply).__name__} from worker")

    def _start_worker(self, job: WorkerJob, tasks: deque[DecodeTask]) -> WorkerProcess | None:
        """Spawn and load; on failure, every remaining unit gets the failure as its record."""
        worker = WorkerProcess(job, worker_main)
        reply = worker.receive(self.suite.model.timing.load_timeout_s)
        spawn_to_ready_ms = (time.perf_counter() - worker.started) * 1e3
        if isinstance(reply, Loaded):
            self.store.append({
                "kind": "load", "decoder": job.decoder_id, "status": OK, "pid": reply.pid,
                "spawn_to_ready_ms": spawn_to_ready_ms, "import_ms": reply.import_ms,
                "load_ms": reply.load_ms, "weights": reply.weights, "facts": reply.facts,
                "device": reply.device, "torch_state": reply.torch_state,
            })
            decoders = self.store.manifest().get("decoders", {})
            decoders[job.decoder_id] = {
                "name": job.decoder_name, "params": job.params, "weights": reply.weights,
                "facts": reply.facts, "device": reply.device,
            }
            self.store.update_manifest(decoders=decoders)
            return worker
        if isinstance(reply, LoadFailed):
            status, message, excerpt = reply.status, reply.message, reply.traceback
        elif isinstance(reply, WorkerGone):
            status, message, excerpt = reply.status, reply.reason, ""
        else:
            status, message, excerpt = "error", f"protocol error: got {type(reply).__name__}", ""
        worker.close()
        self.store.append({"kind": "load", "decoder": job.decoder_id, "status": status,
                           "message": message, "traceback": excerpt or None})
        while tasks:
            self._fail_units(job.decoder_id, tasks.popleft(), status, f"load failed: {message}")
        return None

    def _fail_units(self, decoder_id: str, task: DecodeTask, status: str, message: str) -> None:
        for case in task.cases:
            self.store.append({
                "kind": "decode", "decoder": decoder_id, "case": case.case_id, "status": status,
                "message": message, "latency": None, "memory": None,
                "batch_size": len(task.cases), "request_size": list(task.request_size),
                "output_size": list(task.compare_size),
            })
        self.reporter.advance(len(task.cases))

    def _job(self, entry: DecoderEntry) -> WorkerJob:
        return worker_job(self.suite, entry, self.store.root)

    def _tasks(self, entry: DecoderEntry, pending: list[PreparedCase]) -> Iterator[DecodeTask]:
        spec = DECODERS.get(entry.name).spec_for(self.suite.decoder_params[entry.id])
        batch_size = self.suite.model.timing.batch_size
        groups: dict[tuple[Any, ...], list[PreparedCase]] = {}
        for item in pending:
            groups.setdefault((item.case.input_size, item.case.output_size), []).append(item)
        for (input_size, output_size), members in groups.items():
            if spec.native_scale is None:
                request = output_size
            else:
                request = (round(input_size[0] * spec.native_scale),
                           round(input_size[1] * spec.native_scale))
            for start in range(0, len(members), batch_size):
                chunk = members[start:start + batch_size]
                yield DecodeTask(
                    cases=tuple(self._case_input(entry, spec.consumes, p) for p in chunk),
                    input_size=input_size, request_size=request, compare_size=output_size,
                )

    def _case_input(self, entry: DecoderEntry, consumes: Consumes, p: PreparedCase) -> CaseInput:
        latent = consumes == Consumes.LATENT and p.input_path is not None
        return CaseInput(
            case_id=p.case.id,
            input_path=str(p.input_path) if latent else None,
            input_sha256=p.input_sha256 if latent else None,
            seed=p.case.generation_seed if consumes == Consumes.PROMPT else p.case.seed,
            sigma=p.input_sigma, prompt=p.case.prompt,
            image_path=RunStore.image_relpath(entry.id, p.case.id),
        )

    # ------------------------------------------------------------------ outcome

    def _note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)
            self.reporter.note(message)

    def _outcome(self) -> RunOutcome:
        records, _ = RunStore(self.store.root).records()
        counts: dict[str, dict[str, int]] = {}
        for record in records:
            if record["kind"] == "decode":
                per = counts.setdefault(record["decoder"], {})
                per[record["status"]] = per.get(record["status"], 0) + 1
        return RunOutcome(self.store.root, counts, list(self.notes))


def _check_source_paths(suite: Suite, manifest: Path) -> None:
    """The files a resumed run reads again (its source) must still be where the suite says."""
    source = suite.model.source
    named = {key: getattr(source, key, None) for key in ("folder", "manifest", "file")}
    for key, value in named.items():
        if value is None:
            continue
        path = suite.resolve_path(value)
        if not path.exists():
            relative = "" if suite.path.is_absolute() else (
                f"; this run stored its suite path {str(suite.path)!r} relative to the directory it "
                "was started from: resume it from there")
            raise StoreError(f"{manifest}: suite.path: source.{key} {value!r} resolves to {path}, "
                             f"which does not exist{relative}")
