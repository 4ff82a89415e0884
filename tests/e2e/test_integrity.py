"""Run integrity under environment failures (issue 24): a full disk, a file-size limit, a full cache,
a closed or broken stream, a worker killed from outside, a lost Ray node. Each is injected without
root — at the write calls (monkeypatch), with `RLIMIT_FSIZE` in a subprocess, by closing fd 2 in
the child — and each ends the same way: the unit it stopped is `infrastructure_error` (never the
decoder's `error` or `crashed`), the run says so in one line, and `run --resume` once the cause is
gone ends with every unit `ok`, each with exactly one record.

Slow (real worker processes, subprocesses): marked `slow`.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import decoder_tables, invoke, started, suite_text
from PIL import Image

from harness.store import INFRASTRUCTURE_ERROR, RunStore

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")]


def small_suite(folder: Path, decoders: str = 'name = "nearest"\n\n[[decoder]]\nname = "bilinear"') -> str:
    text = suite_text(folder, decoder_tables(decoders)).replace('["psnr", "ssim"]', '["psnr"]')
    return text.replace("warmup = 1", "warmup = 0").replace("repeats = 2", "repeats = 1")


def decodes(run_dir: Path) -> list[dict]:
    return [r for r in RunStore.open(run_dir).records()[0] if r["kind"] == "decode"]


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def assert_resumes_to_ok(run_dir: Path, units: int, **env: str) -> None:
    """`run --resume` after the cause is gone: every unit ok, once; no decoder blamed."""
    command = [sys.executable, "-m", "harness", "run", "--resume", str(run_dir), "-q", "--no-report"]
    result = started(subprocess.run,
                     command, capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    records = decodes(run_dir)
    assert Counter(r["status"] for r in records) == {"ok": units}, Counter(r["status"] for r in records)
    assert set(Counter((r["decoder"], r["case"]) for r in records).values()) == {1}
    metrics = [r for r in RunStore.open(run_dir).records()[0] if r["kind"] == "metric"]
    assert Counter(r["status"] for r in metrics) == {"ok": units}
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "finished"


# =========================================================================== full disk, at the write calls


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG, errno.EDQUOT])
def test_a_full_disk_at_the_output_images_stops_the_run_and_resume_finishes_it(
        write_suite, image_folder, tmp_path, monkeypatch, code) -> None:
    import harness.images

    real, written = harness.images.write_png, []

    def write_png(image, path, fsync=False):  # the disk fills after the third output
        if "images" in path.parts:
            if len(written) >= 3:
                raise OSError(code, os.strerror(code), str(path))
            written.append(path)
        return real(image, path, fsync)

    monkeypatch.setattr(harness.images, "write_png", write_png)
    run_dir = tmp_path / "run"
    result = invoke("run", str(write_suite(small_suite(image_folder))), "--out", str(run_dir), "--cache-dir",
                    str(tmp_path / "cache"), "-q", "--no-report")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = error_lines(result.output)
    assert len(lines) == 1 and errno.errorcode[code] in lines[0] and f"--resume {run_dir}" in lines[0], lines
    statuses = Counter(r["status"] for r in decodes(run_dir))
    assert statuses == {"ok": 3, INFRASTRUCTURE_ERROR: 1}  # stopped at once; no decoder blamed
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
    assert not list(run_dir.rglob("*.tmp"))  # no half image takes the space
    shown = invoke("show", str(run_dir))
    assert shown.exit_code == 0 and "stopped by the environment" in shown.output
    refused = invoke("baseline", "save", str(run_dir), "--name", "b", "--dir", str(tmp_path / "b"))
    assert refused.exit_code == 2 and "the run is incomplete" in refused.output  # no verdict from half a run
    monkeypatch.setattr(harness.images, "write_png", real)
    assert_resumes_to_ok(run_dir, 6)
    superseded = (run_dir / "results.jsonl.superseded").read_text()
    assert superseded.count(f'"status": "{INFRASTRUCTURE_ERROR}"') == 1


@pytest.mark.parametrize("after", [2, 7, 12, 20])
def test_the_disk_filling_at_any_write_loses_nothing(write_suite, image_folder, tmp_path, monkeypatch,
                                                      after) -> None:
    """Whatever write meets the full disk (the manifest, cases, a record, an image): one line, no
    traceback, and a resume with space finishes the run."""
    real, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) > after:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    run_dir = tmp_path / "run"
    suite = str(write_suite(small_suite(image_folder)))
    monkeypatch.setattr(os, "fsync", fsync)  # every fsync of the run: records, manifest, images
    result = invoke("run", suite, "--out", str(run_dir), "--cache-dir", str(tmp_path / "cache"), "-q",
                    "--no-report")
    monkeypatch.setattr(os, "fsync", real)
    assert "Traceback" not in result.output and result.exit_code == 2, result.output
    assert len(error_lines(result.output)) == 1 and "No space left on device" in result.output
    assert_resumes_to_ok(run_dir, 6)


def test_a_full_cache(write_suite, image_folder, tmp_path, monkeypatch) -> None:
    import safetensors.torch
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    result = invoke("run", str(write_suite(small_suite(image_folder))), "--out", str(run_dir), "--cache-dir",
                    str(cache), "-q", "--no-report")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = error_lines(result.output)
    assert len(lines) == 1 and "cannot write the cache entry" in lines[0] and "(ENOSPC)" in lines[0]
    assert str(cache) in lines[0] and not list(cache.rglob("*.tmp"))
    monkeypatch.undo()
    assert_resumes_to_ok(run_dir, 6)


def _limited(limit: int):
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def test_a_file_size_limit_in_a_subprocess(tmp_path) -> None:
    """`ulimit -f`: the cache entry of a 256×256 reference (196 KB) cannot be written under a 100 KB
    limit — EFBIG, one line, exit 2 — and the run finishes once the limit is gone."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for index in range(2):
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(folder / f"n{index}.png")
    suite = tmp_path / "suite.toml"
    suite.write_text(small_suite(folder).replace("input = 16\noutput_scale = 2",
                                                 "input = 64\noutput_scale = 4"))
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "harness", "run", str(suite), "--out", str(run_dir), "--cache-dir",
               str(tmp_path / "cache"), "-q", "--no-report"]
    result = started(subprocess.run, command, capture_output=True, text=True, timeout=300,
                            preexec_fn=_limited(100_000))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and "File too large (EFBIG)" in lines[0], result.stderr
    assert_resumes_to_ok(run_dir, 4)


# =========================================================================== streams


def test_a_closed_stderr(write_suite, image_folder, tmp_path) -> None:
    """`decoderbench run … 2>&-`: fd 2 closed in the child (stderr=DEVNULL is not the same). Healthy
    decoders stay healthy: every unit ok."""
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "harness", "run", str(write_suite(small_suite(image_folder))), "--out",
               str(run_dir), "--cache-dir", str(tmp_path / "cache"), "-q", "--no-report"]
    result = started(subprocess.run, command, stdout=subprocess.PIPE, text=True, timeout=300,
                            preexec_fn=lambda: os.close(2))
    assert result.returncode == 0, result.stdout
    assert Counter(r["status"] for r in decodes(run_dir)) == {"ok": 6}


def test_a_stderr_whose_reader_goes_away(write_suite, image_folder, tmp_path) -> None:
    """The reader of stderr closes it at once (`2>&1 | head -0`): the runner's progress and notes hit
    EPIPE and are dropped; the run is not touched."""
    run_dir = tmp_path / "run"
    suite = write_suite(small_suite(image_folder).replace("input = 16\noutput_scale = 2",
                                                          "input = 16\noutput_scale = 4"))  # notes to print
    process = started(subprocess.Popen,
                      [sys.executable, "-m", "harness", "run", str(suite), "--out", str(run_dir),
                                "--cache-dir", str(tmp_path / "cache"), "--no-report"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    process.stderr.close()
    process.wait(timeout=300)
    assert Counter(r["status"] for r in decodes(run_dir)) == {"ok": 6}
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "finished"


# =========================================================================== workers killed from outside


def _kill_worker_mid_unit(run_dir: Path, sig: int) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        if (run_dir / "results.jsonl").exists():
            records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()
                       if line.strip()]
            loads = [r for r in records if r["kind"] == "load"]
            if loads and any(r["kind"] == "decode" for r in records):
                time.sleep(0.3)  # inside the second case's decode
                os.kill(loads[-1]["pid"], sig)
                return
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_worker_killed_from_outside_is_not_the_decoders_failure(write_suite, image_folder, tmp_path,
                                                                   sig) -> None:
    from harness.workers.process import oom_kill_counts

    suite = write_suite(small_suite(image_folder, 'name = "fault"\nparams = {mode = "sleep", sleep_s = 1.0}'))
    run_dir = tmp_path / "run"
    counters_readable = any(count is not None for count in oom_kill_counts())
    killer = threading.Thread(target=_kill_worker_mid_unit, args=(run_dir, sig))
    killer.start()
    result = invoke("run", str(suite), "--out", str(run_dir), "--cache-dir", str(tmp_path / "cache"), "-q",
                    "--no-report")
    killer.join()
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    statuses = Counter(r["status"] for r in decodes(run_dir))
    killed = next(r for r in decodes(run_dir) if r["status"] != "ok")
    if sig == signal.SIGKILL and not counters_readable:
        assert statuses == {"ok": 2, "crashed": 1} and "no OOM counter is readable" in killed["message"]
        return
    assert statuses == {"ok": 2, INFRASTRUCTURE_ERROR: 1}, statuses
    assert "from outside decoderbench" in killed["message"]
    assert "stopped by the environment" in result.output
    assert_resumes_to_ok(run_dir, 3)


def test_a_segfault_is_the_decoders_crash_and_says_so(write_suite, image_folder, tmp_path) -> None:
    suite = write_suite(small_suite(image_folder, 'name = "fault"\nparams = {mode = "crash"}'))
    run_dir = tmp_path / "run"
    result = invoke("run", str(suite), "--out", str(run_dir), "--cache-dir", str(tmp_path / "cache"), "-q",
                    "--no-report")
    assert result.exit_code == 1
    assert "worker process died with SIGSEGV (segmentation fault, signal 11)" in result.output
    assert {r["status"] for r in decodes(run_dir)} == {"crashed"}
    resumed = invoke("run", "--resume", str(run_dir), "-q", "--no-report")
    assert resumed.exit_code == 1 and {r["status"] for r in decodes(run_dir)} == {"crashed"}  # kept
    again = invoke("run", "--resume", str(run_dir), "--retry-failed", "-q", "--no-report")
    assert again.exit_code == 1 and "their decoder failed (--retry-failed)" in again.output
    records = decodes(run_dir)
    assert len(records) == 3 and {r["status"] for r in records} == {"crashed"}  # decoded again, once each


def test_retry_failed_runs_the_decoders_own_failures_again_once(write_suite, image_folder, tmp_path) -> None:
    """An `unavailable` decoder (its weights missing) is kept by a plain resume and run again by
    --retry-failed: its units and its failed load move aside; each unit still has one record."""
    suite = write_suite(small_suite(image_folder, 'name = "fault"\nparams = {mode = "unavailable"}'))
    run_dir = tmp_path / "run"
    assert invoke("run", str(suite), "--out", str(run_dir), "--cache-dir", str(tmp_path / "c"), "-q",
                  "--no-report").exit_code == 1
    first = decodes(run_dir)
    assert {r["status"] for r in first} == {"unavailable"} and len(first) == 3
    result = invoke("run", "--resume", str(run_dir), "--retry-failed", "-q", "--no-report")
    assert "Traceback" not in result.output and "decoding them again (3 unit(s))" in result.output
    records = decodes(run_dir)
    assert len(records) == 3 and {r["time"] for r in records}.isdisjoint({r["time"] for r in first})
    loads = [r for r in RunStore.open(run_dir).records()[0] if r["kind"] == "load"]
    assert len(loads) == 1  # the old failed load moved aside with its units
    assert (run_dir / "results.jsonl.superseded").read_text().count('"kind": "decode"') == 3


# =========================================================================== how a death is read


def test_what_a_workers_death_says() -> None:
    from harness.workers.process import ENVIRONMENT_EXIT, death_of

    tail = "Traceback (most recent call last):\n  File \"x.py\", line 1\nRuntimeError: Found no NVIDIA driver"
    gone = death_of(1, tail, None)
    assert gone.status == "crashed"
    first = gone.reason.splitlines()[0]
    assert first == "worker process exited with code 1: RuntimeError: Found no NVIDIA driver"
    segv = death_of(-signal.SIGSEGV, "Fatal Python error: Segmentation fault", False)
    assert segv.status == "crashed"
    assert segv.reason.startswith("worker process died with SIGSEGV (segmentation fault, signal 11)")
    assert death_of(-signal.SIGKILL, "", True).status == "oom"
    assert death_of(-signal.SIGKILL, "", False).status == INFRASTRUCTURE_ERROR
    assert death_of(-signal.SIGKILL, "", None).status == "crashed"
    assert death_of(-signal.SIGTERM, "", None).status == INFRASTRUCTURE_ERROR
    closed = death_of(ENVIRONMENT_EXIT, "BrokenPipeError: [Errno 32] Broken pipe", None)
    assert closed.status == INFRASTRUCTURE_ERROR and "Broken pipe" in closed.reason.splitlines()[0]
    assert death_of(0, "", None).reason == "worker process exited with code 0"


def test_the_oom_counters_are_read_as_the_kernel_keeps_them(tmp_path, monkeypatch) -> None:
    import harness.workers.process as process

    events, vmstat = tmp_path / "memory.events", tmp_path / "vmstat"
    events.write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    vmstat.write_text("nr_free_pages 1\noom_kill 7\n")
    monkeypatch.setattr(process, "OOM_COUNTERS", (events, vmstat, tmp_path / "absent"))
    before = process.oom_kill_counts()
    assert before == (1, 7, None)
    vmstat.write_text("nr_free_pages 1\noom_kill 8\n")
    assert process.killed_by_oom(before, process.oom_kill_counts()) is True
    assert process.killed_by_oom(before, before) is False
    assert process.killed_by_oom((None,), (None,)) is None


def test_a_worker_that_cannot_describe_its_device_fails_its_load_with_the_cause(monkeypatch) -> None:
    import harness.workers.worker as worker
    from harness.workers.channel import LoadFailed, WorkerJob

    def no_driver(device):
        raise RuntimeError("Found no NVIDIA driver on your system.")

    monkeypatch.setattr(worker, "_loaded_in_this_process", None)
    monkeypatch.setattr(worker, "device_facts", no_driver)
    job = WorkerJob("nearest", "nearest", {}, "cpu", "float32", 0, 1, None, "lanczos", "/tmp", "/tmp/x.log")
    decoder, reply, _ = worker.load_decoder(job)
    assert decoder is None and isinstance(reply, LoadFailed) and reply.status == "error"
    assert reply.message == "RuntimeError: Found no NVIDIA driver on your system."


# =========================================================================== Ray


def test_a_lost_ray_node_is_the_environments_failure() -> None:
    ray = pytest.importorskip("ray")
    from harness.workers.ray_executor import RayHandle

    handle = RayHandle.__new__(RayHandle)
    handle.ray = ray

    class Lost:
        def get(self, ref, timeout):
            raise ray.exceptions.NodeDiedError("node 10.0.0.7 is dead")

    class Died:
        def get(self, ref, timeout):
            raise ray.exceptions.WorkerCrashedError()

    handle.ray = type("R", (), {"get": Lost().get, "exceptions": ray.exceptions})()
    assert handle._get(None, 1).status == INFRASTRUCTURE_ERROR
    handle.ray = type("R", (), {"get": Died().get, "exceptions": ray.exceptions})()
    assert handle._get(None, 1).status == "crashed"


def test_ray_at_an_address_where_nothing_listens_answers_within_seconds(write_suite, image_folder,
                                                                         tmp_path) -> None:
    pytest.importorskip("ray")
    began = time.monotonic()
    result = invoke("run", str(write_suite(small_suite(image_folder))), "--out", str(tmp_path / "run"),
                    "--executor", "ray", "--address", "127.0.0.1:1", "-q")
    assert result.exit_code == 2 and "--address 127.0.0.1:1: nothing answers there" in result.output
    assert time.monotonic() - began < 60 and not (tmp_path / "run").exists()
