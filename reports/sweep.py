"""Memory-wall sweep runs: a run directory whose manifest says "kind": "sweep".

Its results.jsonl holds {"kind": "sweep", "decoder", "size": [w, h],
"status", "latency": {...}, "memory": {...}, "message"} records, one per
size tried. The report plots peak memory and latency against output size
per decoder and marks every size that did not decode (OOM and the rest).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.store import MANIFEST, read_run

# The figure that decides whether a size fits, and that a declared memory budget is compared with:
# what the allocator held (CUDA peak reserved, what an out-of-memory is about), or what decoding
# needs on a CPU (the RSS increment over the loaded worker: the figure the summary and the gates
# use, without the ~330 MiB of interpreter and torch). Older records fall back to the worker's
# peak RSS, or to CUDA peak allocated, each labelled by its name.
DECIDING_MEMORY = ("peak_reserved_bytes", "rss_increment_bytes", "peak_rss_bytes", "peak_allocated_bytes")


def deciding_memory(memory: dict[str, Any] | None) -> tuple[str | None, int | None]:
    """(field, bytes) of the deciding figure of a record's memory."""
    for kind in DECIDING_MEMORY:
        if (memory or {}).get(kind):
            return kind, memory[kind]  # type: ignore[index]
    return None, None


@dataclass(frozen=True)
class SweepPoint:
    decoder: str
    size: tuple[int, int]
    status: str
    latency_median_ms: float | None
    memory: dict[str, int]  # every recorded figure (harness.view.MEMORY_KINDS)
    message: str | None
    energy: dict[str, Any] | None = None  # the decoding device's block: per_image_j, or the reason

    @property
    def energy_per_image_j(self) -> float | None:
        return (self.energy or {}).get("per_image_j")

    @property
    def energy_reason(self) -> str | None:
        return (self.energy or {}).get("reason")

    @property
    def megapixels(self) -> float:
        return self.size[0] * self.size[1] / 1e6

    @property
    def peak_memory_bytes(self) -> int | None:
        """The deciding figure (CUDA peak reserved, CPU RSS increment)."""
        return deciding_memory(self.memory)[1]


@dataclass
class SweepView:
    run_dir: Path
    manifest: dict[str, Any]
    points: list[SweepPoint] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        suite = self.manifest.get("suite")
        name = suite.get("name") if isinstance(suite, dict) else None
        return name or self.run_dir.name

    @property
    def decoders(self) -> list[str]:
        return list(dict.fromkeys(p.decoder for p in self.points))

    @property
    def has_energy(self) -> bool:
        """Whether the sweep's records hold energy (measured or not): recorded since it existed."""
        return any(p.energy is not None for p in self.points)

    @property
    def deciding_kind(self) -> str | None:
        return next((k for k in DECIDING_MEMORY if any(k in p.memory for p in self.points)), None)

    @property
    def memory_kinds(self) -> list[str]:
        """The memory figures these records hold, CUDA allocated and reserved or CPU RSS."""
        from harness.view import MEMORY_KINDS

        return [k for k in MEMORY_KINDS if any(k in p.memory for p in self.points)]

    def of(self, decoder: str) -> list[SweepPoint]:
        return sorted((p for p in self.points if p.decoder == decoder), key=lambda p: p.megapixels)

    def largest_ok(self, decoder: str) -> SweepPoint | None:
        ok = [p for p in self.of(decoder) if p.status == "ok"]
        return ok[-1] if ok else None

    def smallest_failure(self, decoder: str) -> SweepPoint | None:
        failed = [p for p in self.of(decoder) if p.status != "ok"]
        return failed[0] if failed else None


def device_energy(energy: Any) -> dict[str, Any] | None:
    """The decoding device's block of a record's energy: the GPU's where there is one, else the CPU's."""
    if not isinstance(energy, dict):
        return None
    block = energy.get("gpu") or energy.get("cpu")
    return block if isinstance(block, dict) else None


def is_sweep(run_dir: Path) -> bool:
    """Whether a run directory holds a sweep (an unreadable one is a run, and load_run says why)."""
    try:
        manifest = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("kind") == "sweep"


def load_sweep(run_dir: Path) -> SweepView:
    data = read_run(run_dir, results_required=False, expect="sweep")
    manifest, records, warning = data.manifest, data.records, data.torn
    view = SweepView(run_dir, manifest, warnings=[warning] if warning else [])
    for record in records:
        if record.get("kind") != "sweep":
            continue
        latency, memory = record.get("latency") or {}, record.get("memory") or {}
        view.points.append(SweepPoint(
            decoder=record["decoder"], size=(int(record["size"][0]), int(record["size"][1])),
            status=record["status"], latency_median_ms=latency.get("median_ms"),
            memory={k: v for k, v in memory.items() if k.endswith("_bytes") and isinstance(v, int)},
            message=record.get("message"), energy=device_energy(record.get("energy")),
        ))
    return view
