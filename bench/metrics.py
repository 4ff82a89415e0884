"""Metric benchmark: each metric against the library it matches or wraps, on the same inputs.

    python bench/metrics.py [--sizes 256 1024 2048] [--memory-size 4096] [--device cpu cuda]
                            [--metrics psnr ssim ...] [--repeats 5] [--json out.json]
    nox -s bench-metrics

Both sides of every metric come from tests/support/metric_references.py (the table the tests
check); each is called once untimed, then interleaved (ours, library, library, ours, ...). Rows
give images per second, the ratio ours ÷ library (> 1: faster), the largest value difference and
each side's peak memory; `--memory-size` adds an ours-only row per metric (docs/metrics.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from metric_references import CASES, Inputs, Values, photo_inputs

IMAGES_PER_SIZE = {256: 8, 512: 4, 1024: 2}  # larger sizes: one image
NOT_RUN = {
    "clipiqa": "needs OpenAI CLIP RN50 weights to build", "maniqa": "needs timm ViT-B/8 weights to build",
    "dists": "pyiqa builds it from downloaded VGG16 weights", "niqe": "needs its parameter file",
    "brisque": "needs its SVM weights", "clipscore": "needs CLIP ViT-L/14 weights",
    "geneval": "needs a detector backend and its weights", "dpg_bench": "needs a VQA backend and its weights",
    "kid": "shares fid's feature pipeline (the row `fid`)",
    "patch_fid": "shares fid's feature pipeline (the row `fid`)",
    "invention_lpips": "is lpips over pairs (the row `lpips`)",
}


@dataclass
class Row:
    metric: str
    size: int
    device: str
    images: int
    library: str
    ours_per_s: float | None = None
    library_per_s: float | None = None
    ratio: float | None = None
    max_abs_diff: float | None = None
    ours_peak_mb: float | None = None
    library_peak_mb: float | None = None
    note: str = ""


# --------------------------------------------------------------------------- measuring


def _call(fn: Callable[[], Values], device: torch.device) -> tuple[Values, float]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    began = time.perf_counter()
    values = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return values, time.perf_counter() - began


def _release_freed_heap() -> None:
    """Return freed heap pages to the kernel (glibc), so that a call's peak resident set above the
    baseline counts the memory it needs, not only what earlier calls left unreturned."""
    import contextlib
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError):  # not glibc: the peak may be understated
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def peak_mb(fn: Callable[[], Values], device: torch.device) -> tuple[float | None, float]:
    """(peak memory of one call above what was held before it in MB, its seconds)."""
    import gc

    from harness.workers.measure import MemoryProbe

    gc.collect()
    _release_freed_heap()
    probe = MemoryProbe(device)
    probe.start()
    seconds = _call(fn, device)[1]
    memory = probe.stop()
    if device.type == "cuda":
        return (memory["peak_allocated_bytes"] - memory["baseline_allocated_bytes"]) / 1e6, seconds
    if memory["method"] != "linux_vmhwm_reset" or memory["baseline_rss_bytes"] is None:
        return None, seconds
    return max(0, memory["peak_rss_bytes"] - memory["baseline_rss_bytes"]) / 1e6, seconds


def measure(name: str, inputs: Inputs, repeats: int, with_library: bool = True) -> Row:
    device = inputs.device
    row = Row(name, inputs.size, str(device), len(inputs.preds), "")
    try:
        case = CASES[name](inputs)
    except ImportError as exc:
        row.note = f"not run: {exc}"
        return row
    row.library, row.note = case.library, case.note
    if not with_library:  # a memory row: one call, its peak and its time
        row.ours_peak_mb, seconds = peak_mb(case.ours, device)
        row.ours_per_s, row.library = len(inputs.preds) / seconds, "—"
        return row
    ours_values, first = _call(case.ours, device)  # warm-up (and the values)
    ours_times: list[float] = []
    their_times: list[float] = []
    if case.theirs is not None:
        their_values, _ = _call(case.theirs, device)
        difference = float(np.max(np.abs(np.subtract(ours_values, their_values))))
        row.max_abs_diff = difference / float(np.max(np.abs(their_values))) if case.relative else difference
    for index in range(1 if first > 60 else repeats):  # interleaved, alternating who goes first
        order = [(case.ours, ours_times), (case.theirs, their_times)]
        for fn, times in order if index % 2 == 0 else order[::-1]:
            if fn is not None:
                times.append(_call(fn, device)[1])
    row.ours_per_s = len(inputs.preds) / statistics.median(ours_times)
    row.ours_peak_mb = peak_mb(case.ours, device)[0]
    if case.theirs is not None:
        row.library_per_s = len(inputs.preds) / statistics.median(their_times)
        row.ratio = row.ours_per_s / row.library_per_s
        row.library_peak_mb = peak_mb(case.theirs, device)[0]
    return row


def run(metrics: list[str], sizes: list[int], devices: list[str], repeats: int,
        memory_size: int | None) -> list[Row]:
    rows = []
    for device_name in devices:
        device = torch.device(device_name)
        plan = [(size, True) for size in sizes] + ([(memory_size, False)] if memory_size else [])
        for size, with_library in plan:
            inputs = photo_inputs(size, IMAGES_PER_SIZE.get(size, 1) if with_library else 1, device)
            inputs.against_library = with_library
            for name in metrics:
                if name in NOT_RUN:
                    continue
                rows.append(measure(name, inputs, repeats if with_library else 1, with_library))
                print(format_row(rows[-1]), flush=True)
    return rows


# --------------------------------------------------------------------------- output


HEADER = ("| metric | size | device | images | ours img/s | library | library img/s | ours ÷ library "
          "| max \\|Δ\\| | peak MB ours / library | note |\n|---|---|---|---|---|---|---|---|---|---|---|")


def _number(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def format_row(row: Row) -> str:
    peak = f"{_number(row.ours_peak_mb, '.0f')} / {_number(row.library_peak_mb, '.0f')}"
    return (f"| {row.metric} | {row.size}² | {row.device} | {row.images} | {_number(row.ours_per_s, '.3g')} "
            f"| {row.library} | {_number(row.library_per_s, '.3g')} | {_number(row.ratio, '.2f')} "
            f"| {_number(row.max_abs_diff, '.1e')} | {peak} | {row.note} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/metrics.py",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--metrics", nargs="+", default=list(CASES), choices=sorted(CASES))
    parser.add_argument("--sizes", nargs="*", type=int, default=[256, 1024, 2048])
    parser.add_argument("--memory-size", type=int, default=4096,
                        help="one ours-only row per metric at this size (0: none)")
    parser.add_argument("--device", nargs="+", default=None, help="default: cpu, and cuda where available")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    devices = args.device or ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if "cuda" in devices else ""))
    print(HEADER, flush=True)
    rows = run(args.metrics, args.sizes, devices, args.repeats, args.memory_size or None)
    for name in sorted(NOT_RUN):
        print(f"not run: {name} — {NOT_RUN[name]}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump([asdict(row) for row in rows], handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
