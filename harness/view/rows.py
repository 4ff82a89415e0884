"""What one row of a run holds: one decoder at one comparison size (latency, memory, energy, metrics).

Latency and memory are kept per decode call: a call decoded `batch_size` cases at once, its timed
repeats give the call's median, and the headline figures come from the calls of the row's batch
size only (a last, smaller batch is kept apart, never pooled). Quality is the mean over cases of
each metric with a normal-approximation 95% interval, keeping the per-case values that decisions
and gates pair by case. Anything that is not a number says why (status counts, notes).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.records import Size
from harness.stats import UNSTABLE_SPREAD, relative_spread


def ci95_half(values: list[float]) -> float | None:
    """Half-width of a normal-approximation 95% interval of the mean; None under two values."""
    if len(values) < 2:
        return None
    return 1.96 * statistics.stdev(values) / math.sqrt(len(values))


@dataclass
class MetricSummary:
    per_case: dict[str, float] = field(default_factory=dict)
    unscored: dict[str, str] = field(default_factory=dict)  # case → status, for cases without a value
    statuses: dict[str, int] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    aggregate: float | None = None  # the metric's one value for the set (FID, GenEval score, ...)
    aggregate_details: dict[str, Any] = field(default_factory=dict)
    aggregate_n: int | None = None  # images the set value was computed from
    references: dict[str, float] = field(default_factory=dict)  # case → the reference's own value
    # cases whose value is +∞ (PSNR of an output identical to its reference): per_case holds the
    # metric's finite ceiling for them (what means and decisions use); views show ∞
    infinite: set[str] = field(default_factory=set)

    @property
    def n(self) -> int:
        return len(self.per_case)

    @property
    def mean(self) -> float | None:
        if self.per_case:
            return statistics.fmean(self.per_case.values())
        return self.aggregate

    @property
    def headline(self) -> float | None:
        """What a table shows: the set's own value when the metric gives one (FID, GenEval, CER per
        font size pooled), else the mean over cases."""
        return self.aggregate if self.aggregate is not None else self.mean

    @property
    def ci95(self) -> float | None:
        return ci95_half(list(self.per_case.values()))

    def add_status(self, status: str, message: str | None) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if message and message not in self.messages:
            self.messages.append(message)


MEMORY_KINDS: dict[str, tuple[str, str]] = {  # record field → (label, what it is)
    "peak_allocated_bytes": ("peak allocated", "torch.cuda.max_memory_allocated over the timed calls: "
                             "the decoder's tensors"),
    "peak_reserved_bytes": ("peak reserved", "torch.cuda.max_memory_reserved over the timed calls: what "
                            "the caching allocator held, what an out-of-memory is about"),
    "device_used_bytes": ("device used", "cudaMemGetInfo total − free after the timed calls: what "
                          "nvidia-smi shows (CUDA context, allocator reservation, other processes)"),
    "peak_rss_bytes": ("peak RSS", "the worker's peak resident set size (CPU): interpreter, torch, "
                       "weights and decoding"),
    "rss_increment_bytes": ("RSS increment", "peak RSS minus the worker's RSS once its decoder was "
                            "loaded: what decoding needs (CPU)"),
}


# The figure one memory column or budget compares, first present: CUDA peak allocated, CPU RSS
# increment (the decoder's own), CPU peak RSS where the increment was not recorded.
HEADLINE_MEMORY = ("peak_allocated_bytes", "rss_increment_bytes", "peak_rss_bytes")


ENERGY_KINDS: dict[str, str] = {  # record key → what its counter covers
    "gpu": "the GPU board (NVML total-energy counter)",
    "cpu": "the CPU packages (Linux powercap/RAPL)",
}


@dataclass
class EnergySummary:
    """One counter's blocks of a row (calls of the row's batch size), pooled as ratios of sums:
    energy per image = Σ energy ÷ Σ images, mean power = Σ energy ÷ Σ block time."""

    kind: str  # "gpu" | "cpu"
    energy_j: float = 0.0
    block_s: float = 0.0
    images: int = 0
    calls: int = 0
    blocks: int = 0
    low_resolution: int = 0
    idle_j: float | None = 0.0  # idle power × block time, summed; None: a block's GPU has no idle figure
    worst_resolution: float | None = None  # the largest update interval ÷ block length of the blocks
    update_interval_s: float | None = None
    reasons: list[str] = field(default_factory=list)  # why not measured, or why low resolution
    call_per_image_j: dict[tuple[str, ...], float] = field(default_factory=dict)  # call's cases → J/image

    @property
    def measured(self) -> bool:
        return self.images > 0

    @property
    def per_image_j(self) -> float | None:
        return self.energy_j / self.images if self.images else None

    @property
    def mean_power_w(self) -> float | None:
        return self.energy_j / self.block_s if self.images and self.block_s > 0 else None

    @property
    def above_idle_per_image_j(self) -> float | None:
        """Energy per image minus what the device drew idle over the same time."""
        if not self.images or self.idle_j is None:
            return None
        return (self.energy_j - self.idle_j) / self.images

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def add(self, block: dict[str, Any], idle: dict[str, Any], pooled: bool) -> None:
        """A block's figures; `pooled`: it is of the row's batch size and not yet counted."""
        reason = block.get("reason")
        if reason and reason not in self.reasons:
            self.reasons.append(reason)
        if block.get("status") not in ("ok", "low_resolution") or not pooled:
            return
        self.energy_j += block["energy_j"]
        self.block_s += block["block_s"]
        self.images += block["images"]
        self.calls += block["calls"]
        self.blocks += 1
        self.low_resolution += block["status"] == "low_resolution"
        resolution = block.get("resolution")
        if resolution is not None:
            self.worst_resolution = max(resolution, self.worst_resolution or 0.0)
            self.update_interval_s = block.get("update_interval_s")
        idle_w = (idle.get(block.get("gpu_uuid") or "") or {}).get("power_w") if self.kind == "gpu" else None
        if idle_w is None or self.idle_j is None:
            self.idle_j = None
        else:
            self.idle_j += idle_w * block["block_s"]


@dataclass(frozen=True)
class Call:
    """One ok decode call: the cases it decoded at once, its timed repeats and its memory."""

    cases: tuple[str, ...]  # sorted case ids: the same key for two decoders that decoded the same batch
    batch_size: int
    median_ms: float | None
    samples_ms: tuple[float, ...]
    memory: int | None  # its headline memory figure (HEADLINE_MEMORY), None where not recorded
    energy: dict[str, Any] | None = None  # the energy counters' block (harness.workers.energy), by kind


@dataclass
class Row:
    """One decoder at one comparison size. Latency and memory come from `ok` decodes only (an
    invalid output's timings are not pooled); calls of different batch sizes are never pooled."""

    decoder: str
    name: str
    size: Size
    statuses: dict[str, int] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)  # the ok decode calls, in record order
    native_size: tuple[int, int] | None = None  # the decoder's own output size (before resampling)
    memory: dict[str, int] = field(default_factory=dict)  # MEMORY_KINDS field → max over calls
    memory_method: str | None = None
    energy: dict[str, EnergySummary] = field(default_factory=dict)  # kind → calls of `batch_size`
    worker_startup_ms: float | None = None  # spawn → ready of the worker that served this size first
    first_call_ms: float | None = None  # first (warm-up) call at this size
    cold_start_ms: float | None = None  # start-up + first call, where that call was the worker's first
    resampled_from: list[int] | None = None
    metrics: dict[str, MetricSummary] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def units(self) -> int:
        return sum(self.statuses.values())

    @property
    def ok(self) -> int:
        return self.statuses.get("ok", 0)

    @property
    def failure_status(self) -> str | None:
        """The most frequent non-ok decode status, or None when every unit decoded."""
        failed = {s: n for s, n in self.statuses.items() if s != "ok"}
        return max(failed, key=lambda s: failed[s]) if failed else None

    # ------------------------------------------------------------------ latency

    @property
    def calls_ms(self) -> dict[int, list[float]]:
        """Batch size → the timed samples of every call of that size (for quantiles and spread)."""
        pooled: dict[int, list[float]] = {}
        for call in self.calls:
            if call.samples_ms:
                pooled.setdefault(call.batch_size, []).extend(call.samples_ms)
        return pooled

    @property
    def batch_size(self) -> int | None:
        """The batch size of most timed calls (the larger on a tie): what latency describes."""
        counts: dict[int, int] = {}
        for call in self.calls:
            if call.samples_ms:
                counts[call.batch_size] = counts.get(call.batch_size, 0) + 1
        if not counts:
            return None
        return max(counts, key=lambda b: (counts[b], b))

    @property
    def other_batches(self) -> dict[int, int]:
        """Timed samples of calls of other batch sizes (a last, smaller batch): kept apart."""
        return {b: len(s) for b, s in self.calls_ms.items() if b != self.batch_size}

    def headline_calls(self) -> list[Call]:
        """The calls of `batch_size`: the only ones latency and memory decisions compare."""
        return [call for call in self.calls if call.batch_size == self.batch_size]

    def call_latency(self, quantile: float) -> float | None:
        """Latency of one decode call of `batch_size` images (ms)."""
        batch = self.batch_size
        if batch is None:
            return None
        return float(np.quantile(np.asarray(self.calls_ms[batch]), quantile))

    def image_latency(self, quantile: float) -> float | None:
        """Latency per image: a call of `batch_size` images ÷ batch_size (ms)."""
        call = self.call_latency(quantile)
        return None if call is None else call / self.batch_size  # type: ignore[operator]

    @property
    def latency_spread(self) -> float | None:
        """IQR ÷ median of the timed samples of `batch_size` calls: how much one call's time moves."""
        batch = self.batch_size
        return None if batch is None else relative_spread(self.calls_ms[batch])

    @property
    def latency_unstable(self) -> bool:
        spread = self.latency_spread
        return spread is not None and spread > UNSTABLE_SPREAD

    def per_call_latency(self) -> dict[tuple[str, ...], float]:
        """Per image latency of each `batch_size` call (its median ÷ batch size), keyed by its cases."""
        return {call.cases: call.median_ms / call.batch_size
                for call in self.headline_calls() if call.median_ms is not None}

    def per_call_memory(self) -> dict[tuple[str, ...], float]:
        """The headline memory figure of each `batch_size` call, keyed by its cases."""
        return {call.cases: float(call.memory) for call in self.headline_calls() if call.memory is not None}

    @property
    def images_per_s(self) -> float | None:
        median = self.call_latency(0.5)
        return None if not median else self.batch_size * 1e3 / median  # type: ignore[operator]

    @property
    def megapixels_per_s(self) -> float | None:
        """Decoded pixels per second, at the decoder's own output size."""
        rate = self.images_per_s
        size = self.native_size or self.size
        return None if rate is None else rate * size[0] * size[1] / 1e6

    # ------------------------------------------------------------------ memory

    @property
    def memory_headline_kind(self) -> str | None:
        """The figure a single memory column or budget compares (HEADLINE_MEMORY)."""
        return next((kind for kind in HEADLINE_MEMORY if kind in self.memory), None)

    @property
    def peak_memory_bytes(self) -> int | None:
        kind = self.memory_headline_kind
        return None if kind is None else self.memory[kind]

    # ------------------------------------------------------------------ energy

    @property
    def energy_kind(self) -> str | None:
        """The counter of the decoding device: the GPU's where there is one, else the CPU's."""
        return next((kind for kind in ENERGY_KINDS if kind in self.energy), None)

    @property
    def device_energy(self) -> EnergySummary | None:
        kind = self.energy_kind
        return None if kind is None else self.energy[kind]

    @property
    def energy_per_image_j(self) -> float | None:
        summary = self.device_energy
        return None if summary is None else summary.per_image_j

    def pool_energy(self, idle: dict[str, Any]) -> None:
        """The energy blocks of the calls (one per call), pooled over the calls of `batch_size`."""
        self.energy = {}
        for call in self.calls:
            pooled = call.batch_size == self.batch_size
            for kind, block in (call.energy or {}).items():
                if kind not in ENERGY_KINDS or not isinstance(block, dict):
                    continue
                summary = self.energy.setdefault(kind, EnergySummary(kind))
                summary.add(block, idle, pooled)
                if pooled and block.get("status") in ("ok", "low_resolution") \
                        and block.get("per_image_j") is not None:
                    summary.call_per_image_j[call.cases] = block["per_image_j"]

    def per_call_energy(self) -> dict[tuple[str, ...], float]:
        """The decoding device's energy per image of each `batch_size` call, keyed by its cases."""
        summary = self.device_energy
        return dict(summary.call_per_image_j) if summary is not None else {}


def format_bytes(value: int | None) -> str:
    if value is None:
        return "—"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value} B"
