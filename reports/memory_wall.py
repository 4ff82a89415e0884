"""Memory (and latency) against output resolution, from memory-wall sweep records.

Sizes that decoded are joined by a line; sizes that ran out of memory are
marked with a red cross (at their measured peak when a declared budget made
them count as out of memory, else on the top edge); other failures with a
grey cross. A declared budget is drawn as a horizontal line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

GIB = 2**30


def _peak(record: dict[str, Any]) -> float | None:
    memory = record.get("memory") or {}
    peak = memory.get("peak_reserved_bytes") or memory.get("peak_rss_bytes")
    return peak / GIB if peak else None


def plot_memory_wall(records: list[dict[str, Any]], path: Path, budget: int | None = None,
                     title: str = "") -> Path:
    records = sorted(records, key=lambda r: r["size"][0])
    fig, (memory_ax, latency_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    ok = [r for r in records if r["status"] == "ok"]
    memory_label = "peak reserved (CUDA)" if any("peak_reserved_bytes" in (r.get("memory") or {})
                                                  for r in records) else "peak RSS (CPU)"
    memory_ax.plot([r["size"][0] for r in ok], [_peak(r) for r in ok], "o-", label=memory_label)
    allocated = [(r["size"][0], r["memory"]["peak_allocated_bytes"] / GIB) for r in ok
                 if "peak_allocated_bytes" in (r.get("memory") or {})]
    if allocated:
        memory_ax.plot(*zip(*allocated, strict=True), "s--", label="peak allocated (CUDA)")
    top = max([_peak(r) or 0 for r in records] + [budget / GIB if budget else 0] + [1e-3]) * 1.15
    for record in records:
        if record["status"] == "ok":
            continue
        oom = record["status"] == "oom"
        y = _peak(record) or top
        memory_ax.plot(record["size"][0], y, "x", color="red" if oom else "grey", markersize=11,
                       markeredgewidth=2.5)
        memory_ax.annotate("OOM" if oom else record["status"], (record["size"][0], y),
                           textcoords="offset points", xytext=(4, 6), color="red" if oom else "grey")
    if budget is not None:
        memory_ax.axhline(budget / GIB, color="red", linestyle=":", label="declared budget")
    memory_ax.set(xlabel="output side (px)", ylabel="GiB", title="peak memory", ylim=(0, top))
    memory_ax.legend(loc="upper left")
    latency_ax.plot([r["size"][0] for r in ok], [r["latency"]["median_ms"] for r in ok], "o-")
    latency_ax.set(xlabel="output side (px)", ylabel="median ms", title="latency")
    for ax in (memory_ax, latency_ax):
        ax.grid(alpha=0.3)
    fig.suptitle(f"memory wall: {title}" if title else "memory wall")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
