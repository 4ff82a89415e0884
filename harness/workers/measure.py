"""Timing and memory of one decode call, repeated.

Only the callable passed to `measure()` runs inside the timed region (CUDA events with synchronize,
or perf counters); `repeats = "auto"` stops on the median's own interval; every memory figure is
named by what it is (docs/measurement.md).
"""

from __future__ import annotations

import gc
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from harness.stats import median_interval

AUTO = "auto"
AUTO_MIN_REPEATS = 6  # the fewest calls whose median has a 95 % interval
AUTO_FLOOR = 3  # "auto" times at least this many calls even past its budget (a spread needs some)
AUTO_MAX_REPEATS = 1000
AUTO_PRECISION = 0.02  # stop once the median's 95 % interval is within ± 2 % of it
AUTO_BUDGET_S = 10.0  # ... or once this much time went into the repeats of one call


@dataclass(frozen=True)
class LatencyStats:
    timer: str
    n: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    samples_ms: list[float]
    median_ci95_ms: list[float] | None = None  # distribution-free 95 % interval of the median
    stopped: str | None = None  # "auto" repeats: "converged" (within 2 %) or "time budget"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(samples_ms: list[float], timer: str, stopped: str | None = None) -> LatencyStats:
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no samples to summarize")
    interval = median_interval(samples_ms)
    return LatencyStats(
        timer=timer,
        n=int(values.size),
        median_ms=float(np.median(values)),
        p10_ms=float(np.percentile(values, 10)),
        p90_ms=float(np.percentile(values, 90)),
        mean_ms=float(values.mean()),
        std_ms=float(values.std(ddof=1)) if values.size > 1 else 0.0,
        min_ms=float(values.min()),
        max_ms=float(values.max()),
        samples_ms=[round(float(v), 6) for v in values],
        median_ci95_ms=None if interval is None else [round(v, 6) for v in interval],
        stopped=stopped,
    )


@dataclass
class Measurement:
    latency: LatencyStats
    memory: dict[str, Any]
    output: Any
    energy: dict[str, Any] | None = None  # kind ("gpu", "cpu") → the block's figures (energy.py)


class BlockHook(Protocol):
    """What the timing loop tells an observer of its block of calls (harness.workers.energy)."""

    def start(self) -> None: ...
    def tick(self) -> None: ...  # after each timed call, outside the timed region
    def wants_more(self, calls: int) -> bool: ...  # the block is too short for it: time more calls
    def stop(self, calls: int, batch_size: int) -> dict[str, Any]: ...


# --------------------------------------------------------------------------- clocks


def _is_cuda(device: torch.device) -> bool:
    return device.type == "cuda"


def time_call(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """Run fn once; return its result and the elapsed milliseconds."""
    if _is_cuda(device):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        result = fn()
        end.record()
        end.synchronize()
        return result, float(start.elapsed_time(end))
    begin = time.perf_counter_ns()
    result = fn()
    return result, (time.perf_counter_ns() - begin) / 1e6


def timer_name(device: torch.device) -> str:
    return "cuda_event" if _is_cuda(device) else "perf_counter_ns"


# --------------------------------------------------------------------------- memory

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _status_bytes(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class MemoryProbe:
    """Peak memory between start() and stop() on one device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._baseline: int | None = None
        self._method = ""

    def start(self) -> None:
        if _is_cuda(self.device):
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device)
            self._method = "cuda_max_memory_allocated"
            return
        self._baseline = _status_bytes("VmRSS")
        try:
            _CLEAR_REFS.write_text("5")  # resets VmHWM to the current RSS
            self._method = "linux_vmhwm_reset"
        except OSError:
            self._method = "ru_maxrss_process_lifetime"

    def stop(self, loaded_rss_bytes: int | None = None) -> dict[str, Any]:
        if _is_cuda(self.device):
            torch.cuda.synchronize(self.device)
            free, total = torch.cuda.mem_get_info(self.device)
            return {
                "method": self._method,
                "baseline_allocated_bytes": self._baseline,
                "peak_allocated_bytes": torch.cuda.max_memory_allocated(self.device),
                "peak_reserved_bytes": torch.cuda.max_memory_reserved(self.device),
                "device_used_bytes": total - free,
                "device_total_bytes": total,
            }
        if self._method == "linux_vmhwm_reset":
            peak = _status_bytes("VmHWM")
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        increment = (peak - loaded_rss_bytes
                     if peak is not None and loaded_rss_bytes is not None else None)
        return {"method": self._method, "baseline_rss_bytes": self._baseline, "peak_rss_bytes": peak,
                "loaded_rss_bytes": loaded_rss_bytes, "rss_increment_bytes": increment}


def resident_bytes() -> int | None:
    """The process's resident set size now (None where /proc is unavailable)."""
    return _status_bytes("VmRSS")


def converged(samples_ms: list[float], precision: float = AUTO_PRECISION) -> bool:
    """The median's 95 % interval lies within ± `precision` of the median."""
    interval = median_interval(samples_ms)
    if interval is None:
        return False
    median = float(np.median(samples_ms))
    return median > 0 and max(median - interval[0], interval[1] - median) <= precision * median


def measure(fn: Callable[[], Any], repeats: int | str, device: torch.device,
            loaded_rss_bytes: int | None = None, budget_s: float = AUTO_BUDGET_S,
            meter: BlockHook | None = None, batch_size: int = 1) -> Measurement:
    """Time `repeats` calls of fn (or "auto": until the median is known to ± 2 % or `budget_s`
    ends) and take peak memory over them; keep the last output.

    `loaded_rss_bytes` (CPU): the worker's resident set once its decoder was loaded, the base of
    `rss_increment_bytes`. `meter` (energy counters): started before the block and stopped after
    it; where its counter needs a longer block it asks for more calls, which are ordinary timed
    samples of the same batch (`batch_size` images per call)."""
    probe = MemoryProbe(device)
    probe.start()
    samples: list[float] = []
    output: Any = None
    began, stopped = time.perf_counter(), None
    if meter is not None:
        meter.start()
    while True:
        output = None  # drop the previous output before the next call allocates its own
        output, elapsed_ms = time_call(fn, device)
        samples.append(elapsed_ms)
        if meter is not None:
            meter.tick()
            if meter.wants_more(len(samples)):  # the energy counter needs a longer block
                continue
        if repeats != AUTO:
            if len(samples) >= int(repeats):
                break
        elif len(samples) >= AUTO_MIN_REPEATS and converged(samples):
            stopped = "converged"
            break
        elif len(samples) >= AUTO_FLOOR and (time.perf_counter() - began >= budget_s
                                             or len(samples) >= AUTO_MAX_REPEATS):
            stopped = "time budget"
            break
    energy = meter.stop(len(samples), batch_size) if meter is not None else None
    memory = probe.stop(loaded_rss_bytes)
    return Measurement(summarize(samples, timer_name(device), stopped), memory, output, energy)


# --------------------------------------------------------------------------- failures


OOM_MARKERS = ("out of memory", "defaultcpuallocator: can't allocate memory",
               "cublas_status_alloc_failed", "cudnn_status_alloc_failed", "cufft_alloc_failed")


def is_oom(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError (torch.OutOfMemoryError), MemoryError, and the allocation
    failures CUDA libraries and the CPU allocator raise as plain RuntimeErrors."""
    if isinstance(exc, MemoryError | torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(marker in text for marker in OOM_MARKERS)


def memory_at_failure(device: torch.device) -> dict[str, Any] | None:
    """What the CUDA allocator held when a call failed (after its tensors were released)."""
    if not _is_cuda(device):
        return None
    free, total = torch.cuda.mem_get_info(device)
    return {"allocated_bytes": torch.cuda.memory_allocated(device),
            "reserved_bytes": torch.cuda.memory_reserved(device),
            "peak_reserved_bytes": torch.cuda.max_memory_reserved(device),
            "device_used_bytes": total - free, "device_total_bytes": total}


def release_memory(device: torch.device) -> None:
    gc.collect()
    if _is_cuda(device):
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
