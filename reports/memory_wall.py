"""Memory (and latency) against output resolution, from memory-wall sweep records (the PNG a
sweep writes next to its records; the report draws the same from reports/sweep.py).

Sizes that decoded are joined by a line; sizes that ran out of memory are marked with a red
cross (at their measured peak when a declared budget made them count as out of memory, else on
the top edge), other failures with a grey cross, each labelled where no other label or marker
is (reports/plots.place_labels). The deciding figure — CUDA peak reserved, or the CPU RSS
increment — is named on the axis; a declared budget is drawn as a horizontal line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from harness.view import MEMORY_KINDS, format_bytes
from reports.plots import place_labels, prepare_for_labels
from reports.sweep import deciding_memory

GIB = 2**30


def _peak(record: dict[str, Any]) -> float | None:
    peak = deciding_memory(record.get("memory"))[1]
    return peak / GIB if peak else None


def plot_memory_wall(records: list[dict[str, Any]], path: Path, budget: int | None = None,
                     title: str = "") -> Path:
    records = sorted(records, key=lambda r: r["size"][0])
    figure = Figure(figsize=(11, 4.4), layout="constrained")
    memory_ax, latency_ax = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    ok = [r for r in records if r["status"] == "ok"]
    kind = next((k for k in (deciding_memory(r.get("memory"))[0] for r in records) if k), None)
    memory_label = MEMORY_KINDS[kind][0] if kind else "peak memory"
    memory_ax.plot([r["size"][0] for r in ok], [_peak(r) for r in ok], "o-", label=memory_label)
    allocated = [(r["size"][0], r["memory"]["peak_allocated_bytes"] / GIB) for r in ok
                 if "peak_allocated_bytes" in (r.get("memory") or {}) and kind != "peak_allocated_bytes"]
    if allocated:
        memory_ax.plot(*zip(*allocated, strict=True), "s--", label="peak allocated (CUDA)")
    top = max([_peak(r) or 0 for r in records] + [budget / GIB if budget else 0] + [1e-3]) * 1.15
    failed = [r for r in records if r["status"] != "ok"]
    for record in failed:
        oom = record["status"] == "oom"
        memory_ax.plot(record["size"][0], _peak(record) or top, "x", color="red" if oom else "grey",
                       markersize=11, markeredgewidth=2.5)
    if budget is not None:
        memory_ax.axhline(budget / GIB, color="red", linestyle=":",
                          label=f"declared budget {format_bytes(budget)}")
    memory_ax.set(xlabel="output side (px)", ylabel=f"{memory_label} (GiB)", title="peak memory",
                  ylim=(0, top * 1.12))
    memory_ax.legend(loc="upper left")
    latency_ax.plot([r["size"][0] for r in ok], [r["latency"]["median_ms"] for r in ok], "o-")
    latency_ax.set(xlabel="output side (px)", ylabel="median ms", title="latency")
    for ax in (memory_ax, latency_ax):
        ax.grid(alpha=0.3)
    figure.suptitle(f"memory wall: {title}" if title else "memory wall")
    prepare_for_labels(figure)
    labels = [(r["size"][0], _peak(r) or top, f"{'OOM' if r['status'] == 'oom' else r['status']} "
               f"{r['size'][0]}", "red" if r["status"] == "oom" else "grey") for r in failed]
    place_labels(memory_ax, labels, avoid=[(r["size"][0], _peak(r)) for r in ok if _peak(r)])
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path
