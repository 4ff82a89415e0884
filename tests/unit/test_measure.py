"""Latency statistics, CPU peak memory and OOM classification."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from harness.workers import measure as measure_module
from harness.workers.measure import MemoryProbe, is_oom, measure, summarize


def test_summarize_matches_numpy() -> None:
    samples = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0]
    stats = summarize(samples, "perf_counter_ns")
    assert stats.n == 6 and stats.median_ms == 3.5
    assert stats.p10_ms == pytest.approx(np.percentile(samples, 10))
    assert stats.p90_ms == pytest.approx(np.percentile(samples, 90))
    assert stats.std_ms == pytest.approx(np.std(samples, ddof=1))
    assert stats.samples_ms == samples and stats.min_ms == 1.0 and stats.max_ms == 10.0
    assert summarize([2.0], "x").std_ms == 0.0
    with pytest.raises(ValueError):
        summarize([], "x")


def test_measure_times_only_the_callable_and_keeps_last_output() -> None:
    calls = []

    def fn() -> int:
        calls.append(1)
        time.sleep(0.02)
        return len(calls)

    result = measure(fn, 3, torch.device("cpu"))
    assert result.output == 3 and result.latency.n == 3
    assert 15 < result.latency.median_ms < 200
    assert result.latency.timer == "perf_counter_ns"


def test_cpu_peak_memory_sees_a_transient_allocation() -> None:
    probe = MemoryProbe(torch.device("cpu"))
    probe.start()
    block = torch.ones(200 * 2**20, dtype=torch.uint8)  # touched, so resident
    del block
    memory = probe.stop()
    assert memory["method"] in ("linux_vmhwm_reset", "ru_maxrss_process_lifetime")
    if memory["method"] == "linux_vmhwm_reset":
        assert memory["peak_rss_bytes"] - memory["baseline_rss_bytes"] >= 190 * 2**20
        # The reset makes the next window start from the current RSS, not the old peak.
        probe.start()
        small = probe.stop()
        assert small["peak_rss_bytes"] - small["baseline_rss_bytes"] < 50 * 2**20


def test_oom_classification() -> None:
    with pytest.raises(RuntimeError) as info:
        torch.empty(2**50, dtype=torch.uint8)
    assert is_oom(info.value)
    assert is_oom(MemoryError())
    assert is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_oom(ValueError("bad shape"))


def test_cpu_memory_reports_the_increment_over_the_loaded_worker() -> None:
    probe = MemoryProbe(torch.device("cpu"))
    probe.start()
    block = torch.ones(64 * 2**20, dtype=torch.uint8)
    del block
    loaded = 100 * 2**20
    memory = probe.stop(loaded_rss_bytes=loaded)
    assert memory["loaded_rss_bytes"] == loaded
    assert memory["rss_increment_bytes"] == memory["peak_rss_bytes"] - loaded
    assert probe.stop()["rss_increment_bytes"] is None  # no loaded figure, no increment


def test_cuda_memory_names_allocated_reserved_and_device_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA branch, with the allocator statistics and cudaMemGetInfo stubbed (no GPU here)."""
    gib = 2**30
    for name, value in {"synchronize": None, "reset_peak_memory_stats": None, "memory_allocated": 1 * gib,
                        "max_memory_allocated": 9 * gib, "max_memory_reserved": 16 * gib,
                        "mem_get_info": (60 * gib, 80 * gib)}.items():
        monkeypatch.setattr(torch.cuda, name, lambda *a, _v=value, **k: _v)
    probe = MemoryProbe(torch.device("cuda"))
    probe.start()
    memory = probe.stop()
    assert memory == {"method": "cuda_max_memory_allocated", "baseline_allocated_bytes": 1 * gib,
                      "peak_allocated_bytes": 9 * gib, "peak_reserved_bytes": 16 * gib,
                      "device_used_bytes": 20 * gib, "device_total_bytes": 80 * gib}


def _scripted(monkeypatch: pytest.MonkeyPatch, times_ms: list[float]) -> None:
    """time_call returns these latencies in turn (and the callable's result)."""
    script = iter(times_ms)
    monkeypatch.setattr(measure_module, "time_call", lambda fn, device: (fn(), next(script)))


def test_auto_repeats_stop_once_the_median_is_known_to_2_percent(monkeypatch: pytest.MonkeyPatch) -> None:
    _scripted(monkeypatch, [10.0, 10.1, 9.9, 10.0, 10.05, 9.95] + [10.0] * 100)
    result = measure(lambda: None, "auto", torch.device("cpu"))
    assert result.latency.stopped == "converged" and result.latency.n == 6  # the fewest with an interval
    low, high = result.latency.median_ci95_ms
    assert low == 9.9 and high == 10.1
    _scripted(monkeypatch, [10.0, 30.0] * 500)  # bimodal: the median is never known to 2 %
    result = measure(lambda: None, "auto", torch.device("cpu"), budget_s=0.0)
    assert result.latency.stopped == "time budget" and result.latency.n == 3  # but a spread needs 3
    _scripted(monkeypatch, [10.0, 30.0] * 600)
    result = measure(lambda: None, "auto", torch.device("cpu"), budget_s=60.0)
    assert result.latency.stopped == "time budget" and result.latency.n == 1000  # the hard cap
    assert measure(lambda: None, 4, torch.device("cpu")).latency.stopped is None
