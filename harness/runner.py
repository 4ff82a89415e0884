"""Run a suite: sources → cache → one worker per decoder unit → store → metrics.

The runner is the only module that knows decoders, sources, the store and
metrics at once. Phases are strictly ordered: all inputs are prepared before
any decoder runs; decoders run in worker processes through an executor
(harness.workers.executor: by default one after the other on the suite's
device; with `gpus` one worker per GPU at once, stated in the manifest; or
on Ray), and the runner alone writes the run directory; metrics run after
all decoding, once every worker has exited, so no metric model is resident
while a decoder is measured; the pairwise judge (suites with a [judge]
table) runs last, over the stored outputs. Every (decoder, case) unit ends
as exactly one record — ok, or the failure that happened — and a resumed
run only does the units that have none.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from decoders.base import Consumes
from decoders.registry import DECODERS
from harness import __version__
from harness.env import fingerprint
from harness.evaluate import evaluate
from harness.images import write_png
from harness.judge.phase import run_judge
from harness.progress import Reporter, SilentReporter
from harness.records import Size
from harness.sources.cache import TensorCache
from harness.sources.prepare import InputPreparer, LoadableItem, PreparedCase, list_items, source_protocol
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
from harness.suite import DecoderEntry, Suite, validate_raw
from harness.workers.channel import CaseInput, DecodeTask, WorkerJob
from harness.workers.energy import IDLE_SECONDS, gpu_run_facts
from harness.workers.executor import (
    Executor,
    ExecutorError,
    LocalExecutor,
    Policy,
    Slot,
    local_slots,
    plan_units,
)
from harness.workers.process import start_forkserver, start_method_problem, visible_devices
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


def worker_job(suite: Suite, entry: DecoderEntry, run_dir: Path) -> WorkerJob:
    """What a decoder's worker process is told (the runner's and the memory-wall sweep's)."""
    timing = suite.model.timing
    return WorkerJob(
        decoder_id=entry.id, decoder_name=entry.name,
        params=suite.decoder_params[entry.id].model_dump(mode="json"),
        device=timing.device, dtype=timing.dtype, warmup=timing.warmup,
        repeats=timing.repeats, repeat_budget_s=timing.repeat_budget_s, threads=timing.threads,
        compare_resampler=suite.model.compare.resampler,
        run_dir=str(run_dir), log_path=str(run_dir / "logs" / f"{entry.id}.log"),
        energy=timing.energy, energy_min_block_s=timing.energy_min_block_s,
    )


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
        _check_source_paths(suite, run_dir / MANIFEST)
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
        Each of these units is then decoded again and still ends with exactly one record."""
        stray_lines = {int(entry.split(":", 2)[1]) for entry in data.set_aside}
        missing = set(data.missing_images)
        decodes = [r for r in data.records if r["kind"] == "decode"]
        why = {
            "output image(s) were missing (e.g. {example})": {
                (r["decoder"], r["case"]) for r in decodes if r.get("image") in missing},
            "unit(s) were stopped by the environment (infrastructure_error)": {
                (r["decoder"], r["case"]) for r in decodes if r["status"] == INFRASTRUCTURE_ERROR},
            "unit(s) their decoder failed (--retry-failed)": {
                (r["decoder"], r["case"]) for r in decodes
                if retry_failed and r["status"] not in (OK, INFRASTRUCTURE_ERROR)},
        }
        units = set().union(*why.values())
        sets = {(r["decoder"], tuple(r.get("output_size") or ())) for r in decodes
                if (r["decoder"], r["case"]) in units}
        again = {decoder for decoder, _ in units}

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
            if record.get("case") is not None:
                return unit in units
            size = tuple(record.get("size") or ())
            return (record.get("decoder"), size) in sets or (
                not size and any(d == record.get("decoder") for d, _ in sets))

        if not units and not stray_lines and not any(
                r["kind"] == "load" and r["status"] == INFRASTRUCTURE_ERROR for r in data.records):
            return
        moved = self.store.set_aside(drop)
        example = sorted(missing)[0] if missing else ""
        reasons = [f"{len(found)} {what.format(example=example)}" for what, found in why.items() if found]
        if stray_lines:
            reasons.append(f"{len(stray_lines)} record(s) did not belong to this run")
        self._note(f"{'; '.join(reasons) or 'failed worker loads'}: {moved} record(s) moved to "
                   f"results.jsonl.superseded; decoding them again ({len(units)} unit(s))")

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
        done = {(r["decoder"], r["case"]) for r in records if r["kind"] == "decode"}
        groups, pending = [], {}
        for entry in self.suite.model.decoder:
            todo = [p for case_id, p in prepared.items() if (entry.id, case_id) not in done]
            for item in [p for p in todo if p.problem]:
                self.store.append({"kind": "decode", "decoder": entry.id, "case": item.case.id,
                                   "status": INPUT_ERROR, "message": item.problem, "latency": None,
                                   "memory": None, "output_size": list(item.case.output_size)})
            todo = [p for p in todo if not p.problem]
            pending[entry.id] = len(todo)
            by_size: dict[Size, list[DecodeTask]] = {}
            for task in self._tasks(entry, todo):
                by_size.setdefault(task.compare_size, []).append(task)
            groups.extend((self._job(entry), size, tasks) for size, tasks in by_size.items())
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
        gpu_states = self._gpu_energy_facts(slots)
        try:
            self.executor.run(units, sink, policy)
            writer.drain()
        except BaseException:
            writer.close()
            with contextlib.suppress(StoreError):  # a full disk: the failure in flight is the one to say
                self._record_execution(sink, background, writer)
                self._record_gpu_end(gpu_states)
            raise
        writer.close()
        self._record_execution(sink, background, writer)
        self._record_gpu_end(gpu_states)
        return {"writing_s": writer.wait_s, "writer_busy_s": writer.busy_s, "slots": len(slots),
                "server_s": server_s}

    def _gpu_energy_facts(self, slots: list[Slot]) -> Any:
        """Before the first decoder: the state (power limit, clocks, temperature) of the GPUs this
        invocation decodes on and, once per GPU of the run, their idle power (NVML, no CUDA context).
        Returns what reads their state again at the end; None where there is nothing to read."""
        timing = self.suite.model.timing
        if not timing.device.startswith("cuda") or not timing.energy:
            return None
        recorded = dict(self.store.manifest().get("energy") or {})
        if any(slot.remote for slot in slots):
            recorded.setdefault("idle_reason", "workers run where Ray places them: idle power and GPU "
                                "state are read by the local executor only")
            self.store.update_manifest(energy=recorded)
            return None
        entries = run_gpu_entries(slots, timing.device)
        first = not recorded.get("idle")  # once per run, before its first decoder (not on resume)
        if first:
            self.reporter.note(f"measuring idle GPU power ({IDLE_SECONDS:g} s) before the first decoder")
        facts, states = gpu_run_facts(entries, measure_idle=first)
        if facts.get("idle"):
            recorded["idle"] = facts["idle"]
        if facts.get("reason"):
            recorded["reason"] = facts["reason"]
        invocation = {"gpus": entries, "state_start": facts.get("state_start", {})}
        recorded["invocations"] = [*recorded.get("invocations", []), invocation]
        self.store.update_manifest(energy=recorded)
        return states

    def _record_gpu_end(self, states: Any) -> None:
        if states is None:
            return
        recorded = dict(self.store.manifest().get("energy") or {})
        invocations = list(recorded.get("invocations") or [{}])
        invocations[-1] = {**invocations[-1], "state_end": states()}
        self.store.update_manifest(energy={**recorded, "invocations": invocations})

    def _record_execution(self, sink: RunSink, background: bool, writer: ImageWriter) -> None:
        units = list(sink.units.values())
        entry = {**self.executor.describe(), "units": units, "concurrent": ran_concurrently(units),
                 "overlap_io": background, "writer_threads": writer.threads}
        for note in concurrency_notes(units, self.suite.model.timing.device):
            self._note(note)
        executions = self.store.manifest().get("executions", [])
        self.store.update_manifest(executions=[*executions, entry])

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


# =========================================================================== execution


def make_executor(suite: Suite, executor: str = "local", address: str | None = None) -> Executor:
    """The local executor (the suite's device, or one slot per GPU of `timing.gpus`) or Ray."""
    timing = suite.model.timing
    check_execution(executor, address, timing.gpus)
    if executor == "ray":
        from harness.workers.ray_executor import RayExecutor

        return RayExecutor(address, timing.device, timing.threads)
    slots = local_slots(timing.gpus, timing.device)
    start_forkserver(preload_modules(suite))  # local workers fork from it: imports start now
    return LocalExecutor(slots)


def check_execution(executor: str, address: str | None, gpus: Any) -> None:
    """Options of where a run executes that contradict each other (ExecutorError, one line)."""
    problem = start_method_problem()
    if problem is not None:
        raise ExecutorError(problem)
    if executor not in ("local", "ray"):
        raise ExecutorError(f"unknown executor {executor!r}; known: local, ray")
    if executor == "ray" and gpus is not None:
        raise ExecutorError("--gpus is for the local executor: Ray places units on the cluster's GPUs")
    if executor == "local" and address is not None:
        raise ExecutorError("--address is for --executor ray")


def preload_modules(suite: Suite) -> list[str]:
    """What the forkserver imports ahead: the suite's decoder modules and the libraries they name."""
    modules: list[str] = []
    for entry in suite.model.decoder:
        with contextlib.suppress(Exception):  # an unknown plug-in fails later, with its message
            cls = DECODERS.get(entry.name)
            modules.extend([cls.__module__, *cls.preload])
    return modules


def evaluation_device(suite: Suite, slots: list[Slot]) -> torch.device:
    """Metrics run on `evaluation.device`, else the timing device; with GPU slots, on the first
    slot's GPU (every decoder worker has exited by then)."""
    model = suite.model
    device = torch.device(model.evaluation.device or model.timing.device)
    gpu = slots[0].gpu_index if slots else None
    if device.type != "cuda" or device.index is not None or gpu is None:
        return device
    visible = visible_devices() or []
    return torch.device("cuda", visible.index(str(gpu)) if str(gpu) in visible else gpu)


def run_gpu_entries(slots: list[Slot], device: str) -> list[str]:
    """The GPUs the slots decode on, as CUDA_VISIBLE_DEVICES names them (physical index or UUID)."""
    entries = []
    for slot in slots:
        pinned = slot.env.get("CUDA_VISIBLE_DEVICES")
        if pinned is None:
            index = int(device.split(":")[1]) if ":" in device else 0
            visible = visible_devices()
            pinned = visible[index] if visible is not None and index < len(visible) else str(index)
        entries.append(pinned)
    return list(dict.fromkeys(entries))


def ran_concurrently(units: list[dict[str, Any]]) -> bool:
    spans = sorted((u["started_s"], u.get("finished_s", u["started_s"])) for u in units)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def concurrency_notes(units: list[dict[str, Any]], device: str) -> list[str]:
    """Say when latencies were measured side by side, or on different GPUs (never hidden)."""
    notes = []
    if ran_concurrently(units):
        slots = sorted({u["slot"] for u in units})
        shared = ("other workers ran at the same time and may have shared its CPU cores: latencies are "
                  "not those of a run alone" if not device.startswith("cuda")
                  else "other units ran on the node's other GPUs")
        notes.append(f"decode units ran concurrently on {len(slots)} slots ({', '.join(slots)}): "
                     f"while a decoder was timed, {shared}")
    where: dict[str, set[str]] = {}
    for unit in units:
        if unit.get("gpu_index") is not None:
            host = f"{unit['host']}:" if unit.get("host") else ""
            label = f"{host}GPU {unit['gpu_index']} ({unit['gpu_name']})"
            where.setdefault(unit["decoder"], set()).add(label)
    if len({frozenset(v) for v in where.values()}) > 1:
        placed = "; ".join(f"{decoder} on {', '.join(sorted(gpus))}" for decoder, gpus in where.items())
        notes.append(f"decoders were measured on different GPUs: {placed}")
    return notes


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
