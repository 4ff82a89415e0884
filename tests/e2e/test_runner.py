"""The runner end to end, with real spawned workers: identical inputs, failures as results,
process isolation, and resume after a worker or the parent is SIGKILLed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from helpers import decoder_tables, started, suite_text
from safetensors.torch import load_file

from harness.runner import Runner
from harness.sources.cache import TensorCache, tensor_sha256
from harness.store import INFRASTRUCTURE_ERROR, RunStore
from harness.suite import load_suite


def _run(write_suite, tmp_path: Path, text: str, name: str = "run") -> tuple[Path, list[dict]]:
    suite = load_suite(write_suite(text))
    outcome = Runner.new(suite, tmp_path / name, TensorCache(tmp_path / "cache")).run()
    records, warning = RunStore.open(outcome.run_dir).records()
    assert warning is None
    return outcome.run_dir, records


def _decodes(records: list[dict]) -> dict[tuple[str, str], dict]:
    units = Counter((r["decoder"], r["case"]) for r in records if r["kind"] == "decode")
    assert all(n == 1 for n in units.values()), f"duplicated units: {units}"
    return {(r["decoder"], r["case"]): r for r in records if r["kind"] == "decode"}


def test_every_decoder_receives_byte_identical_inputs(write_suite, tmp_path, image_folder) -> None:
    text = suite_text(image_folder, decoder_tables(
        'name = "nearest"', 'name = "bicubic"', 'name = "seeded-noise"'), seeds="[0, 1]")
    run_dir, records = _run(write_suite, tmp_path, text.replace("seeds = [0]\n", ""))
    decodes = _decodes(records)
    cases = RunStore.open(run_dir).cases()
    assert len(cases) == 6 and len(decodes) == 18
    for case in cases:
        received = {decodes[(d, case["id"])]["input_sha256"] for d in ("nearest", "bicubic", "seeded-noise")}
        # What each worker hashed after loading equals the cache file and the case record.
        assert received == {case["input_sha256"]}
        assert tensor_sha256(load_file(case["input_path"])["latent"]) == case["input_sha256"]
    assert all(r["status"] == "ok" for r in decodes.values())
    # The stochastic decoder's outputs differ by seed, the deterministic ones' do not.
    by_item: dict[tuple[str, str], set[str]] = {}
    for case in cases:
        for decoder in ("nearest", "seeded-noise"):
            sha = decodes[(decoder, case["id"])]["image_sha256"]
            by_item.setdefault((decoder, case["item_id"]), set()).add(sha)
    assert all(len(v) == 1 for (d, _), v in by_item.items() if d == "nearest")
    assert all(len(v) == 2 for (d, _), v in by_item.items() if d == "seeded-noise")


def test_records_hold_measurements_images_and_metrics(write_suite, tmp_path, image_folder) -> None:
    run_dir, records = _run(write_suite, tmp_path, suite_text(
        image_folder, decoder_tables('name = "lanczos"')))
    decode = next(r for r in records if r["kind"] == "decode")
    assert decode["latency"]["n"] == 2 and decode["latency"]["timer"] == "perf_counter_ns"
    assert decode["memory"]["peak_rss_bytes"] > 0
    assert decode["warmup"]["n"] == 1 and decode["warmup"]["first_call_ms"] > 0
    assert decode["native_size"] == [32, 32] and decode["resampled"] is None
    image = run_dir / decode["image"]
    assert image.exists() and image.name == f"{decode['case']}.png"
    load = next(r for r in records if r["kind"] == "load")
    assert load["status"] == "ok" and load["spawn_to_ready_ms"] > load["load_ms"]
    metrics = [r for r in records if r["kind"] == "metric"]
    assert Counter(r["metric"] for r in metrics) == {"psnr": 3, "ssim": 3}
    assert all(r["status"] == "ok" and 5 < r["value"] < 60 for r in metrics if r["metric"] == "psnr")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "finished"
    assert manifest["metrics"]["ssim"]["protocol_sha256"] == metrics[-1]["protocol_sha256"]
    assert manifest["environment"]["torch"] == torch.__version__
    assert manifest["decoders"]["lanczos"]["name"] == "lanczos"
    assert manifest["decoders"]["lanczos"]["device"]["device"] == "cpu"
    # Only the first case of a shape is warmed up.
    warmed = [r for r in records if r["kind"] == "decode" and r.get("warmup")]
    assert len(warmed) == len({tuple(r["input_shape"]) for r in warmed})


FAULTS = {
    "oom": ("oom", "can't allocate memory"),
    "nan": ("invalid_output", "non-finite"),
    "range": ("invalid_output", "protocol requires [0, 1]"),
    # Outputs of another size were resampled to the comparison size and ranked (★ latency seen).
    "tiny": ("invalid_output", "decoder returned 10×10 images; it was asked for 32×32 from a 16×16 input"),
    "aspect": ("invalid_output", "decoder returned 32×16 images; it was asked for 32×32"),
    "raise": ("error", "decoder exploded on purpose"),
    "crash": ("crashed", "SIGSEGV"),
    "sleep": ("timeout", "no answer within 3 s"),
}


def test_failures_are_results_and_other_decoders_complete(write_suite, tmp_path, image_folder) -> None:
    tables = [f'name = "fault"\nlabel = "{mode}"\nparams = {{mode = "{mode}", sleep_s = 60}}'
              for mode in FAULTS]
    tables += ['name = "bilinear"', 'name = "fault"\nlabel = "unavailable"\nparams = {mode = "unavailable"}',
               'name = "fault"\nlabel = "load-crash"\nparams = {mode = "load_crash"}']
    text = suite_text(image_folder, decoder_tables(*tables)).replace("timeout_s = 60", "timeout_s = 3")
    _, records = _run(write_suite, tmp_path, text)
    decodes = _decodes(records)
    for label, (status, words) in FAULTS.items():
        mine = [r for (d, _), r in decodes.items() if d == label]
        assert len(mine) == 3, label
        assert {r["status"] for r in mine} == {status}, (label, mine[0])
        assert all(words in r["message"] for r in mine), (label, mine[0]["message"])
    oom = next(r for (d, _), r in decodes.items() if d == "oom")
    assert oom["failed_size"] == [32, 32] and "decoder.decode" in oom["traceback"]
    assert [r["status"] for (d, _), r in decodes.items() if d == "bilinear"] == ["ok"] * 3
    unavailable = [r for (d, _), r in decodes.items() if d == "unavailable"]
    assert {r["status"] for r in unavailable} == {"unavailable"}
    assert "fault-weights.safetensors not found" in unavailable[0]["message"]
    assert {r["status"] for (d, _), r in decodes.items() if d == "load-crash"} == {"crashed"}
    # NaN output keeps its measurements; metrics only score ok units.
    nan = next(r for (d, _), r in decodes.items() if d == "nan")
    assert nan["latency"]["n"] == 2
    scored = {r["decoder"] for r in records if r["kind"] == "metric"}
    assert scored == {"bilinear"}
    # A crashed worker is replaced: each crash case ran in its own process.
    crash_loads = [r for r in records if r["kind"] == "load" and r["decoder"] == "crash"]
    assert len(crash_loads) == 3 and len({r["pid"] for r in crash_loads}) == 3


def test_failing_on_one_case_only(write_suite, tmp_path, image_folder) -> None:
    text = suite_text(image_folder, decoder_tables(
        'name = "fault"\nparams = {mode = "crash", fail_seeds = [1]}'), seeds="[0, 1]")
    _, records = _run(write_suite, tmp_path, text.replace("seeds = [0]\n", ""))
    statuses = Counter(r["status"] for r in _decodes(records).values())
    assert statuses == {"ok": 3, "crashed": 3}


def test_global_torch_state_does_not_leak_between_decoders(write_suite, tmp_path, image_folder) -> None:
    text = suite_text(image_folder, decoder_tables(
        'name = "fault"\nlabel = "pid-like"\nparams = {set_global_state = true}', 'name = "nearest"'))
    _, records = _run(write_suite, tmp_path, text)
    states = {r["decoder"]: r["torch_state"] for r in records if r["kind"] == "load"}
    assert states["pid-like"]["cudnn_benchmark"] is True
    assert states["pid-like"]["tf32_matmul"] is True
    assert states["pid-like"]["initial_seed"] == 0
    assert states["nearest"]["cudnn_benchmark"] is False
    assert states["nearest"]["tf32_matmul"] is False
    assert states["nearest"]["float32_matmul_precision"] == "highest"
    assert states["nearest"]["initial_seed"] != 0


def test_worker_killed_externally_is_recorded_and_the_run_goes_on(
        write_suite, tmp_path, image_folder) -> None:
    text = suite_text(image_folder, decoder_tables(
        'name = "fault"\nparams = {mode = "sleep", sleep_s = 1.0}'))
    text = text.replace("warmup = 1", "warmup = 0").replace("repeats = 2", "repeats = 1")
    suite = load_suite(write_suite(text))
    run_dir = tmp_path / "run"
    runner = Runner.new(suite, run_dir, TensorCache(tmp_path / "cache"))
    import threading

    def killer() -> None:
        deadline = time.time() + 60
        while time.time() < deadline:
            records, _ = RunStore(run_dir).records()
            decodes = [r for r in records if r["kind"] == "decode"]
            loads = [r for r in records if r["kind"] == "load"]
            if decodes and loads:
                time.sleep(0.3)  # the worker is now inside the second case's decode
                os.kill(loads[-1]["pid"], signal.SIGKILL)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    runner.run()
    thread.join()
    records, _ = RunStore.open(run_dir).records()
    statuses = [r["status"] for r in _decodes(records).values()]
    # A SIGKILL the runner did not send, while the kernel's OOM-kill counter did not move, came from
    # outside: the environment's failure, which resume runs again (docs/run-integrity.md).
    from harness.workers.process import oom_kill_counts

    killed_status = INFRASTRUCTURE_ERROR if any(c is not None for c in oom_kill_counts()) else "crashed"
    assert statuses.count(killed_status) == 1 and statuses.count("ok") == 2
    killed = next(r for r in records if r.get("status") == killed_status)
    assert "SIGKILL" in killed["message"]
    before = (run_dir / "results.jsonl").read_bytes()
    Runner.resume(run_dir).run()
    if killed_status == "crashed":  # the decoder's own failure: kept, nothing appended
        assert (run_dir / "results.jsonl").read_bytes() == before
    else:  # decoded again, once
        assert [r["status"] for r in _decodes(RunStore.open(run_dir).records()[0]).values()] == ["ok"] * 3


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_resume_after_the_parent_is_killed(write_suite, tmp_path, image_folder) -> None:
    text = suite_text(image_folder, decoder_tables(
        'name = "fault"\nlabel = "slow"\nparams = {mode = "sleep", sleep_s = 0.4}', 'name = "nearest"'),
        seeds="[0, 1, 2]")
    text = text.replace("seeds = [0]\n", "").replace("warmup = 1", "warmup = 0")
    suite_path = write_suite(text.replace("repeats = 2", "repeats = 1"))
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    command = [sys.executable, "-m", "harness", "run", str(suite_path), "--out", str(run_dir),
               "--cache-dir", str(cache), "--quiet", "--no-report"]
    parent = started(subprocess.Popen, command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = run_dir / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if results.exists() and results.read_text().count('"kind": "decode"') >= 3:
            break
        time.sleep(0.05)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    records, _ = RunStore(run_dir).records()
    worker_pid = next(r["pid"] for r in records if r["kind"] == "load")
    deadline = time.time() + 10
    while _alive(worker_pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(worker_pid), "the worker outlived its parent"
    # Simulate a write cut short by the kill.
    kept = results.read_bytes()
    with results.open("ab") as handle:
        handle.write(b'{"kind": "decode", "decoder": "slow", "ca')
    finished_before = len([r for r in records if r["kind"] == "decode"])
    assert 3 <= finished_before < 18
    resumed = started(subprocess.run,
        [sys.executable, "-m", "harness", "run", "--resume", str(run_dir), "--quiet", "--no-report"],
        capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "truncated last line" in resumed.stderr
    assert results.read_bytes().startswith(kept)  # nothing finished was lost or rewritten
    records, warning = RunStore.open(run_dir).records()
    assert warning is None
    decodes = _decodes(records)  # asserts no duplicates
    assert len(decodes) == 18 and {r["status"] for r in decodes.values()} == {"ok"}
    assert Counter(r["metric"] for r in records if r["kind"] == "metric") == {"psnr": 18, "ssim": 18}
    assert (run_dir / "results.jsonl.partial").read_bytes().startswith(b'{"kind": "decode"')
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "finished" and len(manifest["resumed"]) == 1
    # Time per invocation: the killed one lasts from its start to its last record, and each part is
    # counted where it happened, so the harness share is never negative (it was −2.9 s before).
    from harness.view import load_run, time_budget

    budget = time_budget(load_run(run_dir))
    assert budget is not None and [i.complete for i in budget.invocations] == [False, True]
    for part in (budget, *budget.invocations):
        parts = part.decoder_calls_s + part.worker_startup_s + part.metrics_s + part.judge_s
        assert parts <= part.wall_s + 0.05 and part.harness_s >= 0
    assert budget.invocations[0].decoder_calls_s >= 3 * 0.4  # the three slow cases it finished


def test_new_run_refuses_an_existing_run_dir(write_suite, tmp_path, image_folder) -> None:
    from harness.store import StoreError

    text = suite_text(image_folder, decoder_tables('name = "nearest"'))
    run_dir, _ = _run(write_suite, tmp_path, text)
    with pytest.raises(StoreError, match="--resume"):
        Runner.new(load_suite(write_suite(text)), run_dir, TensorCache(tmp_path / "cache"))


def test_decoders_run_without_autograd(write_suite, tmp_path, image_folder) -> None:
    text = suite_text(image_folder, decoder_tables('name = "fault"\nparams = {mode = "grad_probe"}'))
    _, records = _run(write_suite, tmp_path, text)
    assert {r["status"] for r in _decodes(records).values()} == {"ok"}
    assert {r["facts"]["grad_enabled"] for r in _decodes(records).values()} == {False}


def test_time_budget_accounts_for_the_wall_time(write_suite, tmp_path, image_folder) -> None:
    from harness.view import load_run, time_budget

    sleepy = 'name = "fault"\nparams = {mode = "sleep", sleep_s = 0.2}'
    text = suite_text(image_folder, decoder_tables(sleepy))
    run_dir, records = _run(write_suite, tmp_path, text)
    budget = time_budget(load_run(run_dir))
    assert budget is not None
    # (1 warm-up for the one input shape + 3 cases × 2 repeats) × 0.2 s asleep inside decode.
    assert 1.4 <= budget.decoder_calls_s < 2.4
    load = next(r for r in records if r["kind"] == "load")
    assert budget.worker_startup_s == pytest.approx(load["spawn_to_ready_ms"] / 1e3)
    assert budget.metrics_s > 0 and budget.harness_s > 0
    assert budget.decoder_calls_s + budget.worker_startup_s + budget.metrics_s < budget.wall_s
    assert 0 < budget.overhead_fraction < 1
