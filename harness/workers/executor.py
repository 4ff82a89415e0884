"""Where decoding runs: units of work on slots, one interface for the local pool and Ray.

A unit (decoder, comparison size, shard) is served by one worker process on a slot (the device,
one GPU of the node, a Ray actor); `SlotDriver` keeps what every executor shares: one decoder per
worker, failures recorded and workers replaced (docs/execution.md).
"""

from __future__ import annotations

import errno
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from harness.errors import DecoderbenchError
from harness.records import Size
from harness.store import ENVIRONMENT_ERRNOS, INFRASTRUCTURE_ERROR, errno_text
from harness.workers.channel import DecodeTask, Loaded, LoadFailed, TaskDone, WorkerJob
from harness.workers.process import WorkerGone

# A worker that died (or was lost with its node) is tried again where the executor allows it (Ray).
RETRIED = frozenset({"crashed", INFRASTRUCTURE_ERROR})

# A machine that cannot start a process now (EAGAIN: too many processes or threads; ENOMEM; no file
# descriptors left) is asked again after these pauses; still refused, the load is the environment's
# failure (infrastructure_error, which resume runs again), never the decoder's.
START_ERRNOS = ENVIRONMENT_ERRNOS | {errno.EAGAIN, errno.ENOMEM, errno.EMFILE, errno.ENFILE}
START_PAUSES_S = (0.5, 2.0)


class ExecutorError(DecoderbenchError, RuntimeError):
    """A usage problem: no such GPU, no GPUs to run on, an executor that cannot start."""


@dataclass(frozen=True)
class Unit:
    job: WorkerJob
    size: Size  # the comparison size
    shard: int  # 0-based
    shards: int
    tasks: tuple[DecodeTask, ...]

    @property
    def decoder_id(self) -> str:
        return self.job.decoder_id

    @property
    def key(self) -> str:
        return f"{self.decoder_id}@{self.size[0]}x{self.size[1]}#{self.shard + 1}/{self.shards}"

    @property
    def cases(self) -> int:
        return sum(len(task.cases) for task in self.tasks)


@dataclass(frozen=True)
class Slot:
    """One place where one worker runs at a time."""

    label: str  # "gpu3", "local", "ray2"
    gpu_index: int | None = None  # physical GPU the slot's workers are pinned to (see _gpu_slot)
    env: Mapping[str, str] = field(default_factory=dict)  # set in the worker (CUDA_VISIBLE_DEVICES)
    device: str | None = None  # the device workers are told to use (None: the suite's)
    remote: bool = False  # workers run where a cluster places them (Ray): host unknown until loaded


def shard_count(slots: int, groups: int, tasks: int) -> int:
    """Shards of one (decoder, size) group: enough units to give every slot work, never more
    shards than the group has tasks (a batch is never split); one when there is one slot."""
    if slots <= 1 or groups <= 0:
        return 1
    return max(1, min(tasks, math.ceil(slots / groups)))


def plan_units(groups: Sequence[tuple[WorkerJob, Size, Sequence[DecodeTask]]], slots: int) -> list[Unit]:
    """(job, size, tasks) per (decoder, comparison size), in suite order → units, decoder-major.

    Shards are contiguous runs of tasks, as equal in size as they can be."""
    nonempty = [g for g in groups if g[2]]
    units: list[Unit] = []
    for job, size, tasks in nonempty:
        shards = shard_count(slots, len(nonempty), len(tasks))
        bounds = [i * len(tasks) // shards for i in range(shards + 1)]
        units.extend(Unit(job, size, i, shards, tuple(tasks[bounds[i]:bounds[i + 1]])) for i in range(shards))
    return units


class Sink(Protocol):
    """What executors report to. Called from the executor's threads, one call at a time."""

    def unit_started(self, unit: Unit, slot: Slot) -> None: ...
    def loaded(self, unit: Unit, slot: Slot, reply: Loaded, startup_ms: float) -> None: ...
    def load_failed(self, unit: Unit, slot: Slot, status: str, message: str, trace: str) -> None: ...
    def decoded(self, unit: Unit, slot: Slot, task: DecodeTask, reply: TaskDone,
                retried_after: str | None) -> None: ...
    def failed(self, unit: Unit, slot: Slot, task: DecodeTask, status: str, message: str) -> None: ...
    def unit_finished(self, unit: Unit, slot: Slot) -> None: ...
    def note(self, message: str) -> None: ...


class WorkerHandle(Protocol):
    """One worker (a local process, a Ray actor) that has been asked to load a job."""

    started: float  # time.perf_counter() when it was asked to start

    def loaded(self, timeout_s: float) -> Any: ...  # Loaded | LoadFailed | WorkerGone
    def send(self, task: DecodeTask) -> None: ...
    def receive(self, timeout_s: float) -> Any: ...  # TaskDone | WorkerGone
    def close(self) -> None: ...
    def kill(self) -> None: ...


WorkerFactory = Callable[[WorkerJob, Slot], WorkerHandle]


@dataclass(frozen=True)
class Policy:
    timeout_s: float  # per task
    load_timeout_s: float
    pipeline: bool  # queue the next task while one runs (GPU timing only)
    crash_retries: int = 0  # times a unit is retried after its worker died (Ray: 1)


class Executor(Protocol):
    name: str
    slots: list[Slot]
    crash_retries: int  # times a unit is retried after its worker died

    def warm_up(self) -> float: ...  # start what workers come from; seconds spent
    def run(self, units: Sequence[Unit], sink: Sink, policy: Policy) -> None: ...
    def describe(self) -> dict[str, Any]: ...


class Scheduler:
    """Hands units to slots: a slot keeps its decoder while that decoder has units left."""

    def __init__(self, units: Sequence[Unit]) -> None:
        self._pending = list(units)
        self._failed: dict[str, tuple[str, str]] = {}  # decoder → (status, load failure message)
        self._lock = threading.Lock()

    def next(self, current: str | None) -> tuple[Unit, tuple[str, str] | None] | None:
        with self._lock:
            if not self._pending:
                return None
            index = next((i for i, u in enumerate(self._pending) if u.decoder_id == current), 0)
            unit = self._pending.pop(index)
            return unit, self._failed.get(unit.decoder_id)

    def decoder_failed(self, decoder_id: str, status: str, message: str) -> None:
        with self._lock:
            self._failed.setdefault(decoder_id, (status, message))


class SlotDriver:
    """Runs units on one slot, one worker at a time; the same logic for every executor."""

    def __init__(self, slot: Slot, scheduler: Scheduler, factory: WorkerFactory, sink: Sink,
                 policy: Policy, abort: threading.Event) -> None:
        self.slot, self.scheduler, self.factory = slot, scheduler, factory
        self.sink, self.policy, self.abort = sink, policy, abort
        self.worker: WorkerHandle | None = None
        self._decoder: str | None = None  # the decoder self.worker loaded

    def run(self) -> None:
        try:
            while not self.abort.is_set():
                picked = self.scheduler.next(self._decoder)
                if picked is None:
                    return
                unit, failure = picked
                if self.worker is not None and self._decoder != unit.decoder_id:
                    self._drop_worker(close=True)
                self.sink.unit_started(unit, self.slot)
                if failure is not None:
                    for task in unit.tasks:
                        self.sink.failed(unit, self.slot, task, failure[0], f"load failed: {failure[1]}")
                else:
                    self._run_unit(unit)
                if not self.abort.is_set():
                    self.sink.unit_finished(unit, self.slot)
        finally:
            self._drop_worker(close=not self.abort.is_set())

    def _drop_worker(self, close: bool) -> None:
        worker, self.worker, self._decoder = self.worker, None, None
        if worker is not None:
            worker.close() if close else worker.kill()

    def _start(self, unit: Unit) -> WorkerGone | LoadFailed | None:
        """Start a worker for the unit's job; None when it loaded, else why not."""
        job = replace(unit.job, device=self.slot.device) if self.slot.device else unit.job
        worker = self._spawn(unit, job)
        if isinstance(worker, WorkerGone):
            return worker
        self.worker, self._decoder = worker, unit.decoder_id
        reply = worker.loaded(self.policy.load_timeout_s)
        if isinstance(reply, Loaded):
            self.sink.loaded(unit, self.slot, reply, (time.perf_counter() - worker.started) * 1e3)
            return None
        self._drop_worker(close=True)
        if isinstance(reply, LoadFailed | WorkerGone):
            return reply
        return LoadFailed(0, "error", f"protocol error: got {type(reply).__name__}")

    def _spawn(self, unit: Unit, job: WorkerJob) -> WorkerHandle | WorkerGone:
        """A worker process for the job, asked again after a pause while the machine refuses one."""
        pauses = list(START_PAUSES_S)
        while True:
            try:
                return self.factory(job, self.slot)
            except OSError as exc:
                if exc.errno not in START_ERRNOS:
                    raise
                why = errno_text(exc.errno, exc.strerror)
                if not pauses or self.abort.is_set():
                    return WorkerGone(INFRASTRUCTURE_ERROR, f"could not start a worker process: {why}")
                pause = pauses.pop(0)
                self.sink.note(f"{unit.key}: could not start a worker process ({why}); "
                               f"trying again in {pause:g} s")
                time.sleep(pause)

    def _run_unit(self, unit: Unit) -> None:
        tasks: deque[DecodeTask] = deque(unit.tasks)
        in_flight: deque[DecodeTask] = deque()
        retries, retried = self.policy.crash_retries, {}
        depth = 2 if self.policy.pipeline else 1
        while (tasks or in_flight) and not self.abort.is_set():
            if self.worker is None:
                failure = self._start(unit)
                if isinstance(failure, WorkerGone) and failure.status in RETRIED and retries:
                    retries -= 1
                    self.sink.note(f"{unit.key}: worker died while loading ({failure.reason}); retried once")
                    continue
                if failure is not None:
                    self._load_failed(unit, failure, [*in_flight, *tasks])
                    return
            assert self.worker is not None
            while tasks and len(in_flight) < depth:
                task = tasks.popleft()
                in_flight.append(task)
                try:
                    self.worker.send(task)
                except (BrokenPipeError, OSError):
                    break  # receive() reports the death
            reply = self.worker.receive(self.policy.timeout_s)
            if self.abort.is_set():
                return
            task = in_flight.popleft()
            if isinstance(reply, TaskDone):
                self.sink.decoded(unit, self.slot, task, reply, retried.get(id(task)))
                if any(record.get("status") == "oom" for record in reply.records):
                    # A fresh worker: no later case inherits the allocator's state after an OOM. A task
                    # already sent behind it is not started again there: it goes back to the queue.
                    self._drop_worker(close=not in_flight)
                    tasks.extendleft(reversed(in_flight))
                    in_flight.clear()
                continue
            if not isinstance(reply, WorkerGone):
                reply = WorkerGone("error", f"protocol error: unexpected {type(reply).__name__} from worker")
            self._drop_worker(close=False)
            tasks.extendleft(reversed(in_flight))  # queued behind the lost task: not started yet
            in_flight.clear()
            if reply.status in RETRIED and retries:
                retries -= 1
                retried[id(task)] = reply.reason
                tasks.appendleft(task)
                self.sink.note(f"{unit.key}: worker died ({reply.reason.splitlines()[0]}); unit retried once")
                continue
            self.sink.failed(unit, self.slot, task, reply.status, reply.reason)

    def _load_failed(self, unit: Unit, failure: WorkerGone | LoadFailed, tasks: list[DecodeTask]) -> None:
        if isinstance(failure, LoadFailed):
            status, message, trace = failure.status, failure.message, failure.traceback
        else:
            status, message, trace = failure.status, failure.reason, ""
        self.sink.load_failed(unit, self.slot, status, message, trace)
        self.scheduler.decoder_failed(unit.decoder_id, status, message)
        for task in tasks:
            self.sink.failed(unit, self.slot, task, status, f"load failed: {message}")


def run_slots(slots: Sequence[Slot], units: Sequence[Unit], factory: WorkerFactory, sink: Sink,
              policy: Policy) -> None:
    """Drive every slot in its own thread until the units are done; an exception in one (or
    Ctrl-C here) stops them all, kills their workers and is raised here."""
    scheduler, abort = Scheduler(units), threading.Event()
    drivers = [SlotDriver(slot, scheduler, factory, sink, policy, abort) for slot in slots]
    errors: list[BaseException] = []

    def drive(driver: SlotDriver) -> None:
        try:
            driver.run()
        except BaseException as exc:
            errors.append(exc)
            abort.set()

    if len(drivers) == 1:
        drivers[0].run()  # no thread: the plain sequential case stays plain
        return
    threads = [threading.Thread(target=drive, args=(d,), name=f"slot-{d.slot.label}", daemon=True)
               for d in drivers]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    except BaseException:
        abort.set()
        for driver in drivers:
            if driver.worker is not None:
                driver.worker.kill()
        raise
    if errors:
        raise errors[0]
