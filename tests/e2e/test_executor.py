"""The executor layer: units, slots and the slot driver, first with scripted workers (no process),
then with real worker processes on CPU "GPU slots" (CUDA_VISIBLE_DEVICES pinning, concurrency,
shards), the forkserver, the image writer and where the time went."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from collections import Counter
from multiprocessing import forkserver
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from helpers import decoder_tables, invoke, suite_text

from harness.runner import Runner
from harness.sources.cache import TensorCache
from harness.store import INFRASTRUCTURE_ERROR, EnvironmentFailure, RunStore
from harness.suite import load_suite
from harness.workers import executor as executor_module
from harness.workers.channel import CaseInput, DecodeTask, Loaded, LoadFailed, TaskDone, WorkerJob
from harness.workers.execution import concurrency_notes, evaluation_device, ran_concurrently
from harness.workers.executor import ExecutorError, Policy, Slot, plan_units, run_slots, shard_count
from harness.workers.forkserver import start_method
from harness.workers.local import local_slots, parse_gpus
from harness.workers.process import WorkerGone
from harness.workers.sink import ImageWriter

# =========================================================================== units and slots


def _job(decoder: str) -> WorkerJob:
    return WorkerJob(decoder_id=decoder, decoder_name="fault", params={}, device="cpu", dtype="float32",
                     warmup=0, repeats=1, threads=None, compare_resampler="lanczos", run_dir="/nowhere",
                     log_path="/nowhere/log")


def _task(case_id: str, size: tuple[int, int] = (32, 32)) -> DecodeTask:
    case = CaseInput(case_id=case_id, input_path=None, input_sha256=None, seed=0, sigma=0.0, prompt=None,
                     image_path=f"images/x/{case_id}.png")
    return DecodeTask(cases=(case,), input_size=(16, 16), request_size=size, compare_size=size)


def test_one_slot_gives_one_unit_per_decoder_and_size_in_suite_order() -> None:
    groups = [(_job("a"), (32, 32), [_task("1"), _task("2")]), (_job("a"), (64, 64), [_task("3", (64, 64))]),
              (_job("b"), (32, 32), [_task("1")]), (_job("c"), (32, 32), [])]
    units = plan_units(groups, slots=1)
    assert [u.key for u in units] == ["a@32x32#1/1", "a@64x64#1/1", "b@32x32#1/1"]
    assert units[0].cases == 2


def test_shards_split_tasks_contiguously_to_give_every_slot_work() -> None:
    assert shard_count(slots=1, groups=1, tasks=100) == 1
    assert shard_count(slots=8, groups=2, tasks=100) == 4
    assert shard_count(slots=8, groups=3, tasks=100) == 3
    assert shard_count(slots=8, groups=16, tasks=100) == 1
    assert shard_count(slots=8, groups=1, tasks=3) == 3  # a batch is never split
    tasks = [_task(str(i)) for i in range(10)]
    units = plan_units([(_job("a"), (32, 32), tasks)], slots=4)
    assert [len(u.tasks) for u in units] == [2, 3, 2, 3]
    assert [t for u in units for t in u.tasks] == tasks  # every task once, in order
    assert units[0].key == "a@32x32#1/4"


def test_gpu_lists_are_parsed_and_pinned() -> None:
    assert parse_gpus("0,3,1,3") == [0, 1, 3] and parse_gpus("all") == "all" and parse_gpus(None) is None
    for bad in ("0,x", "-1", ""):
        with pytest.raises(ExecutorError, match="--gpus"):
            parse_gpus(bad)
    slots = local_slots([1, 3], "cuda")
    assert [(s.label, s.gpu_index, dict(s.env), s.device) for s in slots] == [
        ("gpu1", 1, {"CUDA_VISIBLE_DEVICES": "1"}, "cuda"),
        ("gpu3", 3, {"CUDA_VISIBLE_DEVICES": "3"}, "cuda")]
    assert local_slots(None, "cuda:1") == [Slot("local")]
    assert local_slots([0], "cpu")[0].device is None  # CPU slots pin, but decode where the suite says
    with pytest.raises(ExecutorError, match="use device 'cuda'"):
        local_slots([0], "cuda:1")


def test_all_gpus_without_a_gpu_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr("harness.workers.local.visible_gpu_count", lambda: 0)
    with pytest.raises(ExecutorError, match="no GPU is visible"):
        local_slots("all", "cuda")
    monkeypatch.setattr("harness.workers.local.visible_gpu_count", lambda: 2)
    assert [s.gpu_index for s in local_slots("all", "cuda")] == [0, 1]


def test_all_gpus_under_an_existing_mask_are_the_masks_gpus(monkeypatch) -> None:
    """With CUDA_VISIBLE_DEVICES=2,3 already set, --gpus all means GPUs 2 and 3 (not 0 and 1)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.setattr("harness.workers.local.visible_gpu_count", lambda: 2)
    assert [(s.label, s.gpu_index, dict(s.env)) for s in local_slots("all", "cuda")] == [
        ("gpu2", 2, {"CUDA_VISIBLE_DEVICES": "2"}), ("gpu3", 3, {"CUDA_VISIBLE_DEVICES": "3"})]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa,GPU-bbbb")  # UUIDs: pinned as given
    assert [(s.gpu_index, dict(s.env)) for s in local_slots("all", "cuda")] == [
        (0, {"CUDA_VISIBLE_DEVICES": "GPU-aaaa"}), (1, {"CUDA_VISIBLE_DEVICES": "GPU-bbbb"})]


def test_evaluation_runs_on_the_first_slots_gpu(monkeypatch, write_suite, image_folder) -> None:
    suite = load_suite(write_suite(suite_text(image_folder, decoder_tables('name = "nearest"'))))
    cuda = suite.with_overrides(device="cuda")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert str(evaluation_device(cuda, local_slots([2, 3], "cuda"))) == "cuda:2"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,2")
    assert str(evaluation_device(cuda, local_slots([2, 3], "cuda"))) == "cuda:1"  # the runner's own view
    assert str(evaluation_device(cuda, [Slot("local")])) == "cuda"
    assert str(evaluation_device(suite, local_slots([2], "cpu"))) == "cpu"


# =========================================================================== the slot driver, scripted


class Recorder:
    """A Sink that remembers what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()

    def _add(self, *event: Any) -> None:
        with self.lock:
            self.events.append(event)

    def unit_started(self, unit, slot):
        self._add("start", unit.key, slot.label)

    def loaded(self, unit, slot, reply, startup_ms):
        self._add("loaded", unit.key, reply.pid)

    def load_failed(self, unit, slot, status, message, trace):
        self._add("load_failed", unit.key, status)

    def decoded(self, unit, slot, task, reply, retried_after):
        self._add("decoded", task.cases[0].case_id, reply.records[0]["pid"], retried_after)

    def failed(self, unit, slot, task, status, message):
        self._add("failed", task.cases[0].case_id, status)

    def unit_finished(self, unit, slot):
        self._add("finished", unit.key)

    def note(self, message):
        self._add("note", message)

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [e[1:] for e in self.events if e[0] == kind]


class ScriptedWorker:
    """Case ids say what happens: 'crash…' kills the worker, 'hang…' times out; a job whose
    decoder id starts with 'broken' fails to load; 'dies' dies while loading."""

    pids = iter(range(100, 10_000))
    sent: ClassVar[list[tuple[int, str]]] = []

    def __init__(self, job: WorkerJob, slot: Slot, crash_once: set[str] | None = None) -> None:
        self.job, self.slot, self.pid, self.started = job, slot, next(self.pids), time.perf_counter()
        self.queue: list[DecodeTask] = []
        self.crash_once = crash_once
        self.alive = True

    def loaded(self, timeout_s):
        if self.job.decoder_id.startswith("broken"):
            return LoadFailed(self.pid, "unavailable", "weights missing")
        if self.job.decoder_id.startswith("dies"):
            return WorkerGone("crashed", "died loading")
        return Loaded(self.pid, 0.0, 0.0, {}, {}, {}, {}, {"host": "h"})

    def send(self, task):
        ScriptedWorker.sent.append((self.pid, task.cases[0].case_id))
        self.queue.append(task)

    def receive(self, timeout_s):
        task = self.queue.pop(0)
        case = task.cases[0].case_id
        if case.startswith("crash") and (self.crash_once is None or case not in self.crash_once):
            if self.crash_once is not None:
                self.crash_once.add(case)
            return WorkerGone("crashed", "worker process died with SIGSEGV")
        if case.startswith("hang"):
            return WorkerGone("timeout", "no answer within 1 s; worker killed")
        return TaskDone(({"case": case, "pid": self.pid},), (None,))

    def close(self):
        self.alive = False

    def kill(self):
        self.alive = False


def _drive(groups, slots=1, pipeline=False, retries=0, factory=ScriptedWorker) -> Recorder:
    sink = Recorder()
    units = plan_units(groups, slots)
    run_slots([Slot(f"s{i}") for i in range(slots)], units, factory, sink,
              Policy(timeout_s=1, load_timeout_s=1, pipeline=pipeline, crash_retries=retries))
    return sink


def test_a_slot_keeps_its_worker_for_the_same_decoder_and_replaces_it_for_another() -> None:
    sink = _drive([(_job("a"), (32, 32), [_task("1")]), (_job("a"), (64, 64), [_task("2", (64, 64))]),
                   (_job("b"), (32, 32), [_task("3")])])
    pids = {case: pid for case, pid, _ in sink.of("decoded")}
    assert pids["1"] == pids["2"] != pids["3"]  # one worker per decoder, across its sizes
    assert len(sink.of("loaded")) == 2


def test_a_crash_costs_its_task_and_the_worker_is_replaced_for_the_rest() -> None:
    sink = _drive([(_job("a"), (32, 32), [_task("1"), _task("crash-2"), _task("3")])])
    assert sink.of("failed") == [("crash-2", "crashed")]
    pids = {case: pid for case, pid, _ in sink.of("decoded")}
    assert set(pids) == {"1", "3"} and pids["1"] != pids["3"]


def test_pipelined_tasks_queued_behind_a_crash_go_to_the_new_worker() -> None:
    ScriptedWorker.sent.clear()
    sink = _drive([(_job("a"), (32, 32), [_task("1"), _task("crash-2"), _task("3"), _task("4")])],
                  pipeline=True)
    assert sink.of("failed") == [("crash-2", "crashed")]
    assert sorted(case for case, _, _ in sink.of("decoded")) == ["1", "3", "4"]
    first = ScriptedWorker.sent[0][0]
    # "3" was queued on the first worker while "crash-2" ran, then resent to the second one.
    assert [case for pid, case in ScriptedWorker.sent if pid == first] == ["1", "crash-2", "3"]
    assert [case for pid, case in ScriptedWorker.sent if pid != first] == ["3", "4"]


def test_a_timeout_is_not_retried_a_crash_is_retried_once_where_the_executor_says_so() -> None:
    crashed_once: set[str] = set()
    sink = _drive([(_job("a"), (32, 32), [_task("crash-1"), _task("hang-2"), _task("3")])], retries=1,
                  factory=lambda job, slot: ScriptedWorker(job, slot, crashed_once))
    assert sink.of("failed") == [("hang-2", "timeout")]
    retried = {case: after for case, _, after in sink.of("decoded")}
    assert retried == {"crash-1": "worker process died with SIGSEGV", "3": None}
    assert any("retried once" in note[0] for note in sink.of("note"))
    # Once per unit: a second death (the same task again, or another) is a result.
    sink = _drive([(_job("a"), (32, 32), [_task("crash-1"), _task("crash-2")])], retries=1)
    assert sink.of("failed") == [("crash-1", "crashed"), ("crash-2", "crashed")]
    assert len(sink.of("note")) == 1 and sink.of("decoded") == []


def test_a_load_failure_fails_every_unit_of_that_decoder_without_loading_again() -> None:
    sink = _drive([(_job("broken"), (32, 32), [_task("1"), _task("2")]),
                   (_job("broken"), (64, 64), [_task("3", (64, 64))]), (_job("b"), (32, 32), [_task("4")])])
    assert sink.of("load_failed") == [("broken@32x32#1/1", "unavailable")]
    assert sink.of("failed") == [("1", "unavailable"), ("2", "unavailable"), ("3", "unavailable")]
    assert [case for case, _, _ in sink.of("decoded")] == ["4"]
    sink = _drive([(_job("dies"), (32, 32), [_task("1")])], retries=1)  # Ray: dying while loading
    assert len(sink.of("note")) == 1 and sink.of("failed") == [("1", "crashed")]


def test_slots_run_units_at_once_and_every_task_ends_once() -> None:
    class Slow(ScriptedWorker):
        def receive(self, timeout_s):
            time.sleep(0.05)
            return super().receive(timeout_s)

    groups = [(_job(d), (32, 32), [_task(f"{d}{i}") for i in range(6)]) for d in ("a", "b")]
    begin = time.perf_counter()
    sink = _drive(groups, slots=4, factory=Slow)
    elapsed = time.perf_counter() - begin
    cases = [case for case, _, _ in sink.of("decoded")]
    assert sorted(cases) == sorted(f"{d}{i}" for d in "ab" for i in range(6))
    assert elapsed < 12 * 0.05 * 0.75  # sequentially 0.6 s
    assert len({slot for _, slot in sink.of("start")}) == 4


def test_an_error_in_one_slot_stops_all_and_is_raised() -> None:
    class Broken(Recorder):
        def decoded(self, unit, slot, task, reply, retried_after):
            raise OSError("disk full")

    groups = [(_job(d), (32, 32), [_task(f"{d}{i}") for i in range(3)]) for d in ("a", "b")]
    with pytest.raises(OSError, match="disk full"):
        run_slots([Slot("s0"), Slot("s1")], plan_units(groups, 2), ScriptedWorker, Broken(),
                  Policy(timeout_s=1, load_timeout_s=1, pipeline=False))


def test_concurrency_is_stated_never_hidden() -> None:
    alone = [{"unit": "a", "decoder": "a", "slot": "gpu0", "started_s": 0, "finished_s": 1, "host": "n1",
              "gpu_index": 0, "gpu_name": "H100"},
             {"unit": "b", "decoder": "b", "slot": "gpu0", "started_s": 1, "finished_s": 2, "host": "n1",
              "gpu_index": 0, "gpu_name": "H100"}]
    assert not ran_concurrently(alone) and concurrency_notes(alone, "cuda") == []
    together = [alone[0], {**alone[1], "slot": "gpu1", "started_s": 0.5, "gpu_index": 1}]
    assert ran_concurrently(together)
    notes = concurrency_notes(together, "cuda")
    assert "ran concurrently on 2 slots (gpu0, gpu1)" in notes[0]
    assert notes[1] == "decoders were measured on different GPUs: a on n1:GPU 0 (H100); b on n1:GPU 1 (H100)"
    assert "may have shared its CPU cores" in concurrency_notes(together, "cpu")[0]


# =========================================================================== real workers on CPU slots


def _run(write_suite, tmp_path: Path, text: str, name: str = "run", **overrides: Any):
    suite = load_suite(write_suite(text, name=f"{name}.toml")).with_overrides(**overrides)
    outcome = Runner.new(suite, tmp_path / name, TensorCache(tmp_path / "cache")).run()
    store = RunStore.open(outcome.run_dir)
    records, warning = store.records()
    assert warning is None
    decodes = [r for r in records if r["kind"] == "decode"]
    assert Counter((r["decoder"], r["case"]) for r in decodes).most_common(1)[0][1] == 1
    return store, records, {(r["decoder"], r["case"]): r for r in decodes}


def test_gpu_slots_pin_each_worker_and_run_decoders_concurrently(write_suite, tmp_path, image_folder) -> None:
    """Two "GPU slots" on a CPU suite: each worker process sees its own CUDA_VISIBLE_DEVICES, both
    decoders' units overlap in time, every record says where it ran, the manifest says so."""
    probe = 'params = {sleep_per_image_s = 0.3, report_env = ["CUDA_VISIBLE_DEVICES", "DECODERBENCH_PROBE"]}'
    tables = decoder_tables(f'name = "fault"\nlabel = "a"\n{probe}', f'name = "fault"\nlabel = "b"\n{probe}')
    text = suite_text(image_folder, tables).replace("repeats = 2", "repeats = 1")
    os.environ["DECODERBENCH_PROBE"] = "set-after-the-forkserver-started"  # reaches the workers too
    try:
        store, records, decodes = _run(write_suite, tmp_path, text, gpus=[0, 1])
    finally:
        del os.environ["DECODERBENCH_PROBE"]
    assert {r["status"] for r in decodes.values()} == {"ok"} and len(decodes) == 6
    loads = [r for r in records if r["kind"] == "load"]
    pinned = {r["facts"]["env"]["CUDA_VISIBLE_DEVICES"] for r in loads}
    assert pinned == {"0", "1"}  # as the worker process itself saw it
    assert {r["facts"]["env"]["DECODERBENCH_PROBE"] for r in loads} == {"set-after-the-forkserver-started"}
    for record in decodes.values():
        assert record["placement"]["cuda_visible_devices"] in ("0", "1") and record["placement"]["host"]
        assert record["slot"] == f"gpu{record['placement']['cuda_visible_devices']}"
    execution = store.manifest()["executions"][-1]
    assert execution["executor"] == "local" and execution["concurrent"] is True
    assert [s["gpu_index"] for s in execution["slots"]] == [0, 1]
    assert any("ran concurrently on 2 slots" in note for note in store.manifest()["notes"])
    a, b = ({"start": u["started_s"], "end": u["finished_s"]} for u in execution["units"])
    assert a["start"] < b["end"] and b["start"] < a["end"]  # they overlapped


def test_shards_on_slots_give_the_same_records_and_pixels_as_one_worker(
        write_suite, tmp_path, image_folder) -> None:
    tables = decoder_tables('name = "bicubic"', 'name = "seeded-noise"')
    text = suite_text(image_folder, tables, seeds="[0, 1]").replace("seeds = [0]\n", "")
    _, _, alone = _run(write_suite, tmp_path, text, name="alone")
    store, records, sharded = _run(write_suite, tmp_path, text, name="sharded", gpus=[0, 1, 2, 3])
    assert set(alone) == set(sharded)
    for key, record in sharded.items():
        assert record["image_sha256"] == alone[key]["image_sha256"]
        alone_png = tmp_path / "alone" / alone[key]["image"]
        assert (store.root / record["image"]).read_bytes() == alone_png.read_bytes()
    units = {r["unit"] for r in sharded.values()}
    assert units == {f"{d}@32x32#{i}/2" for d in ("bicubic", "seeded-noise") for i in (1, 2)}
    assert len({r["pid"] for r in records if r["kind"] == "load"}) == 4  # a fresh process per unit


def test_workers_fork_from_the_forkserver_fresh_and_have_all_exited_before_metrics(
        write_suite, tmp_path, image_folder, monkeypatch) -> None:
    if start_method() != "forkserver":
        pytest.skip("no forkserver on this platform")
    seen: dict[str, Any] = {}
    import harness.runner as runner_module

    real = runner_module.evaluate

    def evaluate(suite, store, *args):
        loads = [r for r in store.records()[0] if r["kind"] == "load"]
        seen["alive"] = [r["pid"] for r in loads if _alive(r["pid"])]
        return real(suite, store, *args)

    monkeypatch.setattr(runner_module, "evaluate", evaluate)
    probe = 'params = {report_env = ["CUDA_VISIBLE_DEVICES"]}'
    tables = decoder_tables(f'name = "fault"\nlabel = "a"\n{probe}', f'name = "fault"\nlabel = "b"\n{probe}')
    _, records, _ = _run(write_suite, tmp_path, suite_text(image_folder, tables))
    loads = [r for r in records if r["kind"] == "load"]
    server = forkserver._forkserver._forkserver_pid
    assert {r["facts"]["parent_pid"] for r in loads} == {server} != {os.getpid()}
    assert len({r["pid"] for r in loads}) == 2  # a fresh process per decoder
    assert len({r["torch_state"]["initial_seed"] for r in loads}) == 2  # reseeded, as a fresh interpreter
    assert seen["alive"] == []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_time_budget_has_sources_startup_decoding_writing_and_the_rest(
        write_suite, tmp_path, image_folder) -> None:
    from harness.cli.show import time_line
    from harness.view import load_run, time_budget

    text = suite_text(image_folder, decoder_tables('name = "fault"\nparams = {sleep_per_image_s = 0.1}'))
    store, _, _ = _run(write_suite, tmp_path, text)
    budget = time_budget(load_run(store.root))
    assert budget is not None
    phases = store.manifest()["phases"][-1]
    assert budget.sources_s == pytest.approx(phases["sources_s"]) and budget.sources_s > 0
    assert budget.writing_s == pytest.approx(phases["writing_s"]) and budget.writing_s > 0  # CPU: on the path
    assert budget.slots == 1 and budget.decoding_s == budget.decoder_calls_s
    parts = (budget.sources_s + budget.startup_wall_s + budget.decoding_s + budget.writing_s
             + budget.metrics_s + budget.judge_s + budget.harness_s)
    assert parts == pytest.approx(budget.wall_s)
    assert budget.overhead_fraction == pytest.approx(
        (budget.wall_s - budget.sources_s - budget.decoding_s - budget.metrics_s) / budget.wall_s)
    line = time_line(budget)
    for part in ("sources", "worker start-up", "decoder calls", "writing", "metrics", "judge", "harness"):
        assert f"{part} " in line


# =========================================================================== the image writer


def _pixels(value: int) -> np.ndarray:
    return np.full((3, 8, 8), value, dtype=np.uint8)


@pytest.mark.parametrize("background", [False, True])
def test_images_are_stored_before_their_records(tmp_path, background) -> None:
    store = RunStore.create(tmp_path / "run", {"suite": {}})
    writer = ImageWriter(store, background, threads=2, max_pending_bytes=500)
    order: list[str] = []
    real_append = store.append

    def append(record):
        assert (store.root / record["image"]).is_file()  # the image is there before its record
        order.append(record["case"])
        real_append(record)

    store.append = append  # type: ignore[method-assign]
    for i in range(6):
        records = [{"kind": "decode", "decoder": "d", "case": f"c{i}", "status": "ok",
                    "image": f"images/d/c{i}.png"}]
        writer.submit(records, (_pixels(i),))
    writer.drain()
    writer.close()
    from harness.images import pixels_sha256, read_png

    stored = {r["case"]: r for r in store.records()[0]}
    assert sorted(order) == [f"c{i}" for i in range(6)]
    for i in range(6):
        assert stored[f"c{i}"]["image_sha256"] == pixels_sha256(_pixels(i))
        assert np.array_equal(read_png(store.root / f"images/d/c{i}.png").numpy(), _pixels(i))  # lossless


def test_an_image_that_cannot_be_written_is_the_environments_failure_and_stops_the_run(tmp_path) -> None:
    """Not the decoder's failure: infrastructure_error (resume runs it again), and the run stops."""
    store = RunStore.create(tmp_path / "run", {"suite": {}})
    (store.root / "images").write_text("a file where the folder should be")
    writer = ImageWriter(store, background=True, threads=1)
    writer.submit([{"kind": "decode", "decoder": "d", "case": "c", "status": "ok", "image": "images/d/c.png",
                    "latency": {"median_ms": 1}}], (_pixels(1),))
    with pytest.raises(EnvironmentFailure, match=r"cannot write the output image .*Not a directory"):
        writer.drain()
    writer.close()
    (record,) = store.records()[0]
    assert record["status"] == INFRASTRUCTURE_ERROR and "(ENOTDIR)" in record["message"]
    assert record["image"] is None and record["latency"] is None


def test_an_image_without_its_record_is_decoded_again_on_resume(write_suite, tmp_path, image_folder) -> None:
    """A kill between the image and its record: resume decodes that case again, once."""
    text = suite_text(image_folder, decoder_tables('name = "bicubic"'))
    store, _, decodes = _run(write_suite, tmp_path, text)
    lost = next(iter(decodes.values()))
    lines = (store.root / "results.jsonl").read_text().splitlines()
    (store.root / "results.jsonl").write_text("".join(
        line + "\n" for line in lines if json.loads(line) != lost))
    image = store.root / lost["image"]
    image.write_bytes(b"left by a killed writer")  # whatever is there is replaced
    Runner.resume(store.root, TensorCache(tmp_path / "cache")).run()
    again = [r for r in RunStore.open(store.root).records()[0]
             if r["kind"] == "decode" and r["case"] == lost["case"]]
    assert len(again) == 1 and again[0]["image_sha256"] == lost["image_sha256"]
    assert image.read_bytes().startswith(b"\x89PNG")


# =========================================================================== command line


def test_cli_rejects_bad_gpu_and_executor_options(write_suite, image_folder, tmp_path) -> None:
    suite = write_suite(suite_text(image_folder, decoder_tables('name = "nearest"')))
    result = invoke("run", str(suite), "--out", str(tmp_path / "r1"), "--gpus", "0,x", "-q")
    assert result.exit_code == 2 and "--gpus: expected 'all' or GPU indices" in result.output
    result = invoke("run", str(suite), "--out", str(tmp_path / "r2"), "--executor", "slurm", "-q")
    assert result.exit_code == 2 and "unknown executor 'slurm'" in result.output
    result = invoke("run", str(suite), "--out", str(tmp_path / "r3"), "--address", "auto", "-q")
    assert result.exit_code == 2 and "--address is for --executor ray" in result.output
    result = invoke("run", str(suite), "--out", str(tmp_path / "r4"), "--executor", "ray", "--gpus", "0",
                    "-q")
    assert result.exit_code == 2 and "--gpus is for the local executor" in result.output
    assert not any((tmp_path / name).exists() for name in ("r1", "r2", "r3", "r4"))  # nothing was started


def test_overlapped_writing_stores_every_output_and_resume_takes_gpus(
        write_suite, tmp_path, image_folder) -> None:
    """overlap_io (the GPU default, asked for here on a CPU suite): tasks queue on the worker and the
    writer works in the background; every record still names a stored image. A resume may choose
    other slots: the rest runs there."""
    text = suite_text(image_folder, decoder_tables('name = "bicubic"', 'name = "nearest"'))
    text = text.replace("[timing]\n", "[timing]\noverlap_io = true\n")
    store, _, decodes = _run(write_suite, tmp_path, text)
    execution = store.manifest()["executions"][-1]
    assert execution["overlap_io"] is True and execution["writer_threads"] >= 1
    assert store.manifest()["phases"][-1]["writer_busy_s"] > 0
    from harness.images import pixels_sha256, read_png

    for record in decodes.values():
        assert record["status"] == "ok"
        assert pixels_sha256(read_png(store.root / record["image"])) == record["image_sha256"]
    # Drop one decoder's records: resume decodes them again, on two CPU "GPU slots".
    lines = (store.root / "results.jsonl").read_text().splitlines()
    kept = [line for line in lines if json.loads(line).get("decoder") != "nearest"]
    (store.root / "results.jsonl").write_text("".join(line + "\n" for line in kept))
    Runner.resume(store.root, TensorCache(tmp_path / "cache"), gpus=[0, 1]).run()
    records = RunStore.open(store.root).records()[0]
    again = [r for r in records if r["kind"] == "decode" and r["decoder"] == "nearest"]
    assert len(again) == 3 and {r["slot"] for r in again} <= {"gpu0", "gpu1"}
    assert [e["slots"] for e in RunStore.open(store.root).manifest()["executions"]][-1] == [
        {"label": "gpu0", "gpu_index": 0}, {"label": "gpu1", "gpu_index": 1}]


def test_a_worker_process_never_loads_a_second_decoder(monkeypatch) -> None:
    import harness.workers.worker as worker

    monkeypatch.setattr(worker, "_loaded_in_this_process", "pid-decoder")
    decoder, reply, _ = worker.load_decoder(_job("next"))
    assert decoder is None and isinstance(reply, LoadFailed) and reply.status == "error"
    assert "already loaded decoder 'pid-decoder': refusing to reuse it" in reply.message


def test_a_machine_refusing_a_process_is_asked_again_then_blamed_not_the_decoder(monkeypatch) -> None:
    monkeypatch.setattr(executor_module, "START_PAUSES_S", (0.0, 0.0))
    refusals = {"a": 2, "b": 99}  # a: refused twice, then started; b: refused every time

    def factory(job, slot):
        if refusals[job.decoder_id] > 0:
            refusals[job.decoder_id] -= 1
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        return ScriptedWorker(job, slot)

    sink = _drive([(_job("a"), (32, 32), [_task("1")]), (_job("b"), (32, 32), [_task("2")])], factory=factory)
    assert [case for case, _, _ in sink.of("decoded")] == ["1"]
    assert sink.of("load_failed") == [("b@32x32#1/1", "infrastructure_error")]  # resume runs it again
    assert sink.of("failed") == [("2", "infrastructure_error")]
    notes = [note[0] for note in sink.of("note")]
    assert len(notes) == 4 and all("could not start a worker process" in n and "(EAGAIN)" in n for n in notes)

    def broken(job, slot):  # any other error of the factory is a bug, raised as it is
        raise OSError(errno.EINVAL, "Invalid argument")

    with pytest.raises(OSError, match="Invalid argument"):
        _drive([(_job("a"), (32, 32), [_task("1")])], factory=broken)
