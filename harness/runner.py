"""Run a suite: sources → cache → one worker per decoder unit → store → metrics → judge.

The only module that knows decoders, sources, the store and metrics at once. Phases are strictly
ordered (every input before any decoder; metrics after every worker has exited, so no metric model
is resident while a decoder is measured; the judge last), the runner alone writes the run
directory, and every (decoder, case) unit ends as exactly one record: a resumed run does only the
units that have none (docs/execution.md, docs/run-format.md).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import __version__
from harness.env import fingerprint
from harness.evaluate import evaluate, weights_arrived
from harness.images import write_png
from harness.judge.phase import run_judge
from harness.progress import Reporter, SilentReporter
from harness.records import DecodeRecord, Size, decodes, loads
from harness.sources.cache import TensorCache
from harness.sources.listing import check_source_paths, list_items
from harness.sources.prepare import InputPreparer, LoadableItem, PreparedCase, source_protocol
from harness.store import (
    INFRASTRUCTURE_ERROR,
    MANIFEST,
    EnvironmentFailure,
    RunData,
    RunStore,
    StoreError,
    now_iso,
    read_run,
    writable_dir,
)
from harness.suite import Suite, validate_raw
from harness.workers.channel import DecodeTask
from harness.workers.execution import (
    concurrency_notes,
    evaluation_device,
    gpu_energy_end,
    gpu_energy_start,
    make_executor,
    ran_concurrently,
)
from harness.workers.executor import (
    Executor,
    Policy,
    plan_units,
)
from harness.workers.jobs import decode_tasks, worker_job
from harness.workers.sink import ImageWriter, RunSink

OK = "ok"
INPUT_ERROR = "input_error"  # the case's input could not be made (a bad image file); no decoder ran it


@dataclass
class RunOutcome:
    run_dir: Path
    status_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # decoder → status → n
    notes: list[str] = field(default_factory=list)
    nothing_to_do: bool = False  # a resume that found every record already there

    @property
    def failed_units(self) -> int:
        return sum(n for counts in self.status_counts.values()
                   for status, n in counts.items() if status != OK)

    @property
    def environment_units(self) -> int:
        """Units the environment stopped (infrastructure_error): not their decoders' failures."""
        return sum(counts.get(INFRASTRUCTURE_ERROR, 0) for counts in self.status_counts.values())


class Runner:
    def __init__(self, suite: Suite, store: RunStore, cache: TensorCache,
                 reporter: Reporter | None = None, items: list[LoadableItem] | None = None, *,
                 executor: Executor) -> None:
        self.suite, self.store, self.cache = suite, store, cache
        self.reporter = reporter or SilentReporter()
        self.notes: list[str] = []
        self.items = items  # listed (and checked) before the run directory was made
        self.executor = executor

    # ------------------------------------------------------------------ entry points

    @classmethod
    def new(cls, suite: Suite, run_dir: Path, cache: TensorCache,
            reporter: Reporter | None = None, **execution: Any) -> Runner:
        """Everything that can be checked is checked before the run directory exists: the source's
        items (SourceError), the cases (SuiteError), the cache and the run directory (StoreError),
        the executor (ExecutorError). `execution`: `executor` ("local" | "ray") and `address` (Ray),
        as make_executor takes them."""
        executor = make_executor(suite, **execution)
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
        return cls(suite, RunStore.create(run_dir, manifest), cache, reporter, items, executor=executor)

    @classmethod
    def resume(cls, run_dir: Path, cache: TensorCache | None = None,
               reporter: Reporter | None = None, gpus: str | list[int] | None = None,
               check: Callable[[Suite], None] | None = None, retry_failed: bool = False,
               **execution: Any) -> Runner:
        """`gpus` chooses where the rest runs (not part of the stored suite's identity). `check`
        sees the stored suite before anything is written (the command line refuses a suite or a
        device that cannot be honoured). Units an environment failure stopped run again; with
        `retry_failed`, so do the units the decoders failed themselves."""
        data = read_run(run_dir, results_required=False)  # RunDirError: FILE:LINE: what is wrong
        manifest = data.manifest
        info = manifest["suite"]
        suite = validate_raw(info["resolved"], Path(info["path"]), info.get("texts"))
        if suite.sha256 != info["sha256"]:
            raise StoreError(
                f"{run_dir}: the stored suite no longer validates to the same hash "
                "(decoderbench or a plug-in changed its defaults); start a new run"
            )
        check_source_paths(suite, run_dir / MANIFEST)
        cache_dir = manifest.get("cache_dir")
        if cache is None and cache_dir is None:
            raise StoreError(f"{run_dir / MANIFEST}: cache_dir: missing; give --cache-dir")
        if check is not None:
            check(suite)
        store = RunStore(run_dir)
        store.lock()
        suite = suite.with_overrides(gpus=gpus)
        runner = cls(suite, store, cache or TensorCache(Path(str(cache_dir))), reporter,
                     executor=make_executor(suite, **execution))
        writable_dir(runner.cache.root, "cache directory")
        store.remove_temp_files()
        repaired = store.repair()
        if repaired:
            runner._note(repaired)
        runner._run_again(data, retry_failed)
        store.update_manifest(status="running", resumed=[*manifest.get("resumed", []), now_iso()])
        return runner

    def _run_again(self, data: RunData, retry_failed: bool) -> None:
        """Move to results.jsonl.superseded what this resume replaces: records that do not belong to
        the run; the units whose output image is gone, that an environment failure stopped
        (infrastructure_error) or, with --retry-failed, that their decoder failed — each with its
        metric values and the set values it entered — and the failed worker loads of those decoders.
        Each of these units is then decoded again and still ends with exactly one record. Metrics
        recorded unavailable for want of weight files that are here now are scored again."""
        stray_lines = {int(entry.split(":", 2)[1]) for entry in data.set_aside}
        missing = set(data.missing_images)
        decoded = decodes(data.records)
        why = {
            "output image(s) were missing (e.g. {example})": {
                (r["decoder"], r["case"]) for r in decoded if r.get("image") in missing},
            "unit(s) were stopped by the environment (infrastructure_error)": {
                (r["decoder"], r["case"]) for r in decoded if r["status"] == INFRASTRUCTURE_ERROR},
            "unit(s) their decoder failed (--retry-failed)": {
                (r["decoder"], r["case"]) for r in decoded
                if retry_failed and r["status"] not in (OK, INFRASTRUCTURE_ERROR)},
        }
        units = set().union(*why.values())
        sets = {(r["decoder"], tuple(r.get("output_size") or ())) for r in decoded
                if (r["decoder"], r["case"]) in units}
        again = {decoder for decoder, _ in units}
        arrived = weights_arrived(data.records)

        def drop(record: dict[str, Any], number: int) -> bool:
            if number in stray_lines:
                return True
            unit = (record.get("decoder"), record.get("case"))
            if record.get("kind") == "decode":
                return unit in units
            if record.get("kind") == "load":
                return record.get("status") != OK and (
                    record.get("status") == INFRASTRUCTURE_ERROR or record.get("decoder") in again)
            if record.get("kind") != "metric":
                return False
            if record.get("metric") in arrived and record.get("status") == "unavailable":
                return True
            if record.get("case") is not None:
                return unit in units
            size = tuple(record.get("size") or ())
            return (record.get("decoder"), size) in sets or (
                not size and any(d == record.get("decoder") for d, _ in sets))

        if not units and not stray_lines and not arrived and not any(
                r["status"] == INFRASTRUCTURE_ERROR for r in loads(data.records)):
            return
        moved = self.store.set_aside(drop)
        example = sorted(missing)[0] if missing else ""
        reasons = [f"{len(found)} {what.format(example=example)}" for what, found in why.items() if found]
        if stray_lines:
            reasons.append(f"{len(stray_lines)} record(s) did not belong to this run")
        if arrived:
            reasons.append(f"the weight files of {', '.join(sorted(arrived))} are here now")
        then = f"decoding them again ({len(units)} unit(s))" if units or not arrived else "scoring them again"
        self._note(f"{'; '.join(reasons) or 'failed worker loads'}: {moved} record(s) moved to "
                   f"results.jsonl.superseded; {then}")

    def run(self) -> RunOutcome:
        """One invocation: its entry in the manifest's `phases` is written when it starts and after
        each phase, so that a killed invocation still says when it began and what it finished."""
        started = time.perf_counter()
        phases: dict[str, Any] = {"started": now_iso()}
        manifest = self.store.manifest()
        index = len(manifest.get("phases") or [])
        records_before = len(self.store.records()[0])
        self._save_phases(index, phases)
        try:
            with self._phase(index, phases, "sources_s"):
                prepared = self._prepare_inputs()
            with self._phase(index, phases, "decode_s"):
                phases.update(self._decode(prepared))  # every worker has exited when this returns
            with self._phase(index, phases, "evaluate_s"):
                for note in evaluate(self.suite, self.store, prepared, self.reporter,
                                     evaluation_device(self.suite, self.executor.slots)):
                    self._note(note)
            if self.suite.model.judge is not None:
                with self._phase(index, phases, "judge_s"):
                    for note in run_judge(self.suite, self.store, self.cache.root, self.reporter).notes:
                        self._note(note)
            status = "finished"
        except BaseException:
            status = "interrupted"
            raise
        finally:
            phases["wall_s"] = time.perf_counter() - started
            idle = status == "finished" and index > 0 and len(self.store.records()[0]) == records_before
            try:
                if idle:  # a resume that wrote nothing: no invocation of its own (no time line, no entry)
                    self.store.update_manifest(phases=manifest.get("phases"), status="finished",
                                               resumed=(manifest.get("resumed") or [])[:-1])
                else:
                    self._save_phases(index, phases, status=status, finished=now_iso(),
                                      notes=sorted(set(self.notes)))
            except StoreError:
                if status == "finished":
                    raise
                # the disk that stopped the run cannot take the manifest either: the failure that
                # stopped it is the one to report; resume starts from the records
            finally:
                self.store.close()
        outcome = self._outcome()
        outcome.nothing_to_do = idle
        return outcome

    @contextlib.contextmanager
    def _phase(self, index: int, phases: dict[str, Any], name: str) -> Iterator[None]:
        """Time the block as phase `name` of this invocation; written to the manifest once it ends
        (a phase an exception stops gets no time: the invocation's wall time covers it)."""
        begin = time.perf_counter()
        yield
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
        try:
            write_png(tensors["image"], target)
        except OSError as exc:
            raise EnvironmentFailure.writing("the reference image", target, exc,
                                             resume=self.store.root) from None

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

    def _decode(self, prepared: dict[str, PreparedCase]) -> dict[str, float]:
        """Every pending (decoder, case) unit through the executor; the phase's writer figures."""
        records, _ = self.store.records()
        done = {(r["decoder"], r["case"]) for r in decodes(records)}
        groups, pending = [], {}
        for entry in self.suite.model.decoder:
            todo = [p for case_id, p in prepared.items() if (entry.id, case_id) not in done]
            for item in [p for p in todo if p.problem]:
                self.store.append(DecodeRecord(kind="decode", decoder=entry.id, case=item.case.id,
                                               status=INPUT_ERROR, message=item.problem, latency=None,
                                               memory=None, output_size=list(item.case.output_size)))
            todo = [p for p in todo if not p.problem]
            pending[entry.id] = len(todo)
            by_size: dict[Size, list[DecodeTask]] = {}
            for task in decode_tasks(self.suite, entry, todo):
                by_size.setdefault(task.compare_size, []).append(task)
            groups.extend((worker_job(self.suite, entry, self.store.root), size, tasks)
                          for size, tasks in by_size.items())
        for decoder_id in (d for d, n in pending.items() if n == 0):
            self.reporter.phase(f"decode {decoder_id}", 0)
        slots = self.executor.slots
        units = plan_units(groups, len(slots))
        if not units:
            return {}
        timing = self.suite.model.timing
        background = timing.overlap_io if timing.overlap_io is not None else timing.device.startswith("cuda")
        policy = Policy(timing.timeout_s, timing.load_timeout_s, pipeline=background,
                        crash_retries=self.executor.crash_retries)
        server_s = self.executor.warm_up()  # before any decoder's start-up clock runs
        writer = ImageWriter(self.store, background)
        sink = RunSink(self.store, writer, self.reporter, len(slots) > 1,
                       {d: n for d, n in pending.items() if n}, self._note)
        gpu_states = gpu_energy_start(self.store, self.suite.model.timing, slots, self.reporter)
        try:
            self.executor.run(units, sink, policy)
            writer.drain()
        except BaseException:
            writer.close()
            with contextlib.suppress(StoreError):  # a full disk: the failure in flight is the one to say
                self._record_execution(sink, background, writer)
                gpu_energy_end(self.store, gpu_states)
            raise
        writer.close()
        self._record_execution(sink, background, writer)
        gpu_energy_end(self.store, gpu_states)
        return {"writing_s": writer.wait_s, "writer_busy_s": writer.busy_s, "slots": len(slots),
                "server_s": server_s}

    def _record_execution(self, sink: RunSink, background: bool, writer: ImageWriter) -> None:
        units = list(sink.units.values())
        entry = {**self.executor.describe(), "units": units, "concurrent": ran_concurrently(units),
                 "overlap_io": background, "writer_threads": writer.threads}
        for note in concurrency_notes(units, self.suite.model.timing.device):
            self._note(note)
        executions = self.store.manifest().get("executions", [])
        self.store.update_manifest(executions=[*executions, entry])

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
