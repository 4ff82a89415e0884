"""Read a run directory into summary rows: one per (comparison size, decoder).

Latency and memory are kept per decode call: a call decoded `batch_size` cases at once, its timed
repeats give the call's median, and the headline figures come from the calls of the row's batch
size only (a last, smaller batch is kept apart, never pooled). Paired decisions and gates compare
one value per call (per image = call ÷ batch size), so n counts calls, not the cases they held.
The spread of a row's timed repeats (IQR / median) says whether its latency is stable enough to
rank. Quality is the mean over cases of each metric with a normal-approximation 95% interval, and
keeps the per-case values (decisions and gates pair them by case). Anything that is not a number
says why (status counts, notes). The view also keeps what the report shows per case: decode
records, metric artifacts (e.g. invention heat-maps) and judge verdicts.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.metrics.direction import Direction
from harness.records import DecodeKey, Size
from harness.stats import UNSTABLE_SPREAD, relative_spread
from harness.store import INFRASTRUCTURE_ERROR, read_run


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


@dataclass
class RunView:
    run_dir: Path
    manifest: dict[str, Any]
    rows: list[Row]
    metric_info: dict[str, dict[str, Any]]
    metric_names: list[str]
    warnings: list[str]
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    decodes: dict[DecodeKey, dict[str, Any]] = field(default_factory=dict)
    loads: dict[str, dict[str, Any]] = field(default_factory=dict)  # decoder → first ok load
    load_failures: dict[str, dict[str, Any]] = field(default_factory=dict)  # decoder → last failed load
    artifacts: dict[DecodeKey, dict[str, str]] = field(default_factory=dict)  # unit → metric → path
    judge_records: list[dict[str, Any]] = field(default_factory=list)
    load_records: list[dict[str, Any]] = field(default_factory=list)  # every worker load, ok or not
    missing_images: list[str] = field(default_factory=list)  # outputs of ok decodes that are gone
    records: list[dict[str, Any]] = field(default_factory=list)  # every record, as read_run validated it
    set_aside: list[str] = field(default_factory=list)  # "results.jsonl:N: why" of records left out
    cost: dict[str, Any] | None = None  # the suite's [cost] (gpu_hour, currency, kwh); show may override

    @property
    def energy_facts(self) -> dict[str, Any]:
        """What the runner recorded of the GPUs: idle power per GPU UUID, state at start and end."""
        return self.manifest.get("energy") or {}

    @property
    def sizes(self) -> list[Size]:
        return sorted({row.size for row in self.rows})

    def rows_at(self, size: Size) -> list[Row]:
        return [row for row in self.rows if row.size == size]

    @property
    def suite_name(self) -> str:
        return self.manifest["suite"]["name"]

    @property
    def decoders(self) -> list[str]:
        return list(dict.fromkeys(row.decoder for row in self.rows))

    def direction(self, metric: str) -> Direction | None:
        """The metric's direction as the run recorded it, else from the registry; None: unknown."""
        return Direction.from_info(self.metric_info.get(metric)) or registry_direction(metric)

    def unit(self, metric: str) -> str:
        """What the metric's values are measured in ("dB", "0–1", ...; "" when unknown)."""
        recorded = (self.metric_info.get(metric) or {}).get("unit")
        if recorded is not None:
            return recorded
        cls = registry_metric(metric)
        return getattr(cls, "unit", "") if cls is not None else ""

    def metric_over_sizes(self, decoder: str, metric: str) -> MetricSummary:
        """A decoder's metric over every comparison size (case ids are unique across sizes)."""
        merged = MetricSummary()
        for row in self.rows:
            summary = row.metrics.get(metric)
            if row.decoder != decoder or summary is None:
                continue
            merged.per_case.update(summary.per_case)
            merged.unscored.update(summary.unscored)
            merged.infinite.update(summary.infinite)
            for status, count in summary.statuses.items():
                merged.statuses[status] = merged.statuses.get(status, 0) + count
            merged.messages.extend(m for m in summary.messages if m not in merged.messages)
            merged.aggregate = summary.aggregate if merged.aggregate is None else merged.aggregate
        return merged

    def checkpoint(self, decoder: str) -> str:
        """A short digest of the weights a decoder loaded ("no weights" for weight-free ones)."""
        weights = (self.loads.get(decoder) or {}).get("weights") or {}
        if not weights:
            return "no weights"
        canonical = json.dumps(weights, sort_keys=True).encode()
        return hashlib.sha256(canonical).hexdigest()[:12]


def registry_metric(metric: str) -> Any:
    """The registered metric class (its module imports no tensor library), None when unknown."""
    from harness.metrics import METRICS

    try:
        return METRICS.get(metric)
    except Exception:  # unknown name, or a plug-in that cannot be imported here
        return None


def registry_direction(metric: str) -> Direction | None:
    cls = registry_metric(metric)
    try:
        return cls.direction() if cls is not None else None
    except TypeError:  # a plug-in that declares no direction
        return None


def load_run(run_dir: Path) -> RunView:
    data = read_run(run_dir)
    manifest, records = data.manifest, data.records
    cases = {c["id"]: c for c in data.cases}
    names = {d["label"] or d["name"]: d["name"] for d in manifest["suite"]["resolved"]["decoder"]}
    rows: dict[tuple[str, Size], Row] = {}
    view = RunView(run_dir=run_dir, manifest=manifest, rows=[], metric_info=manifest.get("metrics", {}),
                   metric_names=[], warnings=[], cases=cases)

    def row_for(decoder: str, size: Size) -> Row:
        key = (decoder, size)
        if key not in rows:
            rows[key] = Row(decoder, names.get(decoder, decoder), size)
        return rows[key]

    for record in records:
        if record["kind"] == "load":
            view.load_records.append(record)
        if record["kind"] == "load" and record["status"] == "ok":
            view.loads.setdefault(record["decoder"], record)
        elif record["kind"] == "load":
            view.load_failures[record["decoder"]] = record
        elif record["kind"] == "judge":
            view.judge_records.append(record)
    calls: dict[tuple[str, str], tuple[Row, list[dict[str, Any]]]] = {}
    for record in records:
        if record["kind"] != "decode":
            continue
        size = tuple(record.get("output_size") or cases.get(record["case"], {}).get("output_size"))
        view.decodes[(record["decoder"], record["case"])] = record
        row = row_for(record["decoder"], size)  # type: ignore[arg-type]
        _add_decode(row, record)
        if record["status"] == "ok":  # an invalid output keeps its timings, but they are no measurement
            key = (record["decoder"], record.get("batch_id") or record["case"])
            calls.setdefault(key, (row, []))[1].append(record)
    for row, members in calls.values():
        row.calls.append(_call(members))
    metric_names = _add_metrics(view, records, row_for)
    declared = [m["name"] for m in manifest["suite"]["resolved"].get("metrics", [])]
    ordered = [m for m in declared if m in metric_names] + [m for m in metric_names if m not in declared]
    view.rows = sorted(rows.values(), key=lambda r: (r.size, _order(manifest, r.decoder)))
    _add_first_calls(view)
    view.metric_names = ordered or declared
    view.warnings = [w for w in [data.torn, data.missing_note, data.set_aside_note, _environment_note(view),
                                 *manifest.get("notes", [])] if w]
    view.missing_images = data.missing_images
    view.set_aside = data.set_aside
    view.records = records
    view.cost = manifest["suite"]["resolved"].get("cost")
    idle = view.energy_facts.get("idle") or {}
    for row in view.rows:
        row.pool_energy(idle)
    return view


def _environment_note(view: RunView) -> str | None:
    """Units the environment stopped are no decoder's result: say so, and how to finish them."""
    stopped = [record for record in view.decodes.values() if record["status"] == INFRASTRUCTURE_ERROR]
    if not stopped:
        return None
    first = (stopped[0].get("message") or "").splitlines()
    return (f"{len(stopped)} unit(s) were stopped by the environment, not by their decoder "
            f"(infrastructure_error{': ' + first[0] if first else ''}); they count against no decoder, and "
            f"`decoderbench run --resume {view.run_dir}` runs them again")


def _add_metrics(view: RunView, records: list[dict[str, Any]], row_for: Any) -> list[str]:
    metric_names: list[str] = []
    aggregates: list[dict[str, Any]] = []
    for record in records:
        if record["kind"] != "metric":
            continue
        if record["metric"] not in metric_names:
            metric_names.append(record["metric"])
        if record["case"] is None:
            aggregates.append(record)
            continue
        decode = view.decodes.get((record["decoder"], record["case"]))
        if decode is None:
            continue
        size = tuple(decode.get("output_size") or view.cases[record["case"]]["output_size"])
        summary = row_for(record["decoder"], size).metrics.setdefault(record["metric"], MetricSummary())
        message = record.get("message")
        if record.get("nonfinite"):
            message = f"non-finite value ({record['nonfinite']}) on some cases"
        ceiling = _ceiling(record, size)
        if ceiling is not None:  # +∞: identical to the reference; counted at the metric's ceiling
            summary.add_status("ok", None)
            summary.per_case[record["case"]] = ceiling
            summary.infinite.add(record["case"])
            continue
        summary.add_status(record["status"], message)
        if record["status"] == "ok" and record.get("value") is not None:
            summary.per_case[record["case"]] = record["value"]
            reference = _reference_value(record.get("details") or {})
            if reference is not None:
                summary.references[record["case"]] = reference
        else:
            summary.unscored[record["case"]] = record.get("nonfinite") or record["status"]
        if record.get("artifact"):
            view.artifacts.setdefault((record["decoder"], record["case"]), {})[record["metric"]] = \
                record["artifact"]
    for record in aggregates:  # one value for a (decoder, size) set; without "size": every size
        sizes = ({tuple(record["size"])} if record.get("size") else
                 {tuple(d.get("output_size") or ()) for (dec, _), d in view.decodes.items()
                  if dec == record["decoder"]})
        for size in sizes:
            summary = row_for(record["decoder"], size).metrics.setdefault(record["metric"], MetricSummary())
            if summary.aggregate is None and record["status"] == "ok":
                summary.aggregate = record.get("value")
                summary.aggregate_details = record.get("details") or {}
                summary.aggregate_n = record.get("n")
                if not summary.statuses:
                    summary.add_status("ok", None)
            elif record["status"] != "ok" and record["status"] not in summary.statuses:
                summary.add_status(record["status"], record.get("message"))
    return metric_names


def _ceiling(record: dict[str, Any], size: Size) -> float | None:
    """For an ok +∞ value of a metric that declares a finite ceiling (PSNR), that ceiling."""
    if record["status"] != "ok" or record.get("nonfinite") != "inf":
        return None
    ceiling = getattr(registry_metric(record["metric"]), "finite_ceiling", None)
    return float(ceiling(size)) if ceiling is not None else None


def _reference_value(details: dict[str, Any]) -> float | None:
    """What the metric scored on the reference itself for this case (legibility: the OCR's CER on
    the reference, the floor a decoder is read against), when the record says."""
    for key in ("reference_cer", "reference_value"):
        if isinstance(details.get(key), int | float):
            return float(details[key])
    return None


def _add_decode(row: Row, record: dict[str, Any]) -> None:
    status = record["status"]
    row.statuses[status] = row.statuses.get(status, 0) + 1
    if status != "ok" and record.get("message"):
        message = record["message"].splitlines()[0]
        if message not in row.failures:
            row.failures.append(message)
    if status != "ok":
        return
    memory = record.get("memory")
    if memory:
        for kind in MEMORY_KINDS:
            value = memory.get(kind)
            if value is not None and value > row.memory.get(kind, -1):
                row.memory[kind] = value
        row.memory_method = row.memory_method or memory.get("method")
    if record.get("native_size") and row.native_size is None:
        row.native_size = tuple(record["native_size"])  # type: ignore[assignment]
    if record.get("resampled"):
        row.resampled_from = record["resampled"]["from"]


def _call(records: list[dict[str, Any]]) -> Call:
    """The records of one call's cases (each carries the call's timings and memory) as one Call."""
    first = records[0]
    latency, memory = first.get("latency") or {}, first.get("memory") or {}
    headline = next((memory[k] for k in HEADLINE_MEMORY if memory.get(k) is not None), None)
    energy = first.get("energy")
    return Call(cases=tuple(sorted(r["case"] for r in records)),
                batch_size=int(first.get("batch_size") or len(records)),
                median_ms=latency.get("median_ms"), samples_ms=tuple(latency.get("samples_ms") or ()),
                memory=headline, energy=energy if isinstance(energy, dict) else None)


def _add_first_calls(view: RunView) -> None:
    """Per row: the first call at its size, the start-up of the worker that made it, and a cold
    start only where that call was the worker's first (a later size is served warm)."""
    startup = {r.get("pid"): r.get("spawn_to_ready_ms") for r in view.load_records if r["status"] == "ok"}
    first: dict[tuple[str, Size], dict[str, Any]] = {}
    for (decoder, _), record in sorted(view.decodes.items(), key=lambda kv: kv[1].get("time", "")):
        if record["status"] != "ok" or not (record.get("warmup") or {}).get("first_call_ms"):
            continue
        size = tuple(record.get("output_size") or ())
        first.setdefault((decoder, size), record)  # type: ignore[arg-type]
    for row in view.rows:
        record = first.get((row.decoder, row.size))
        if record is None:
            continue
        warm = record["warmup"]
        row.first_call_ms = warm["first_call_ms"]
        row.worker_startup_ms = startup.get(record.get("worker_pid"))
        if warm.get("worker_first_call") and row.worker_startup_ms is not None:
            row.cold_start_ms = row.worker_startup_ms + row.first_call_ms


@dataclass(frozen=True)
class TimeBudget:
    """Where wall time went: one invocation (`run`, or a `run --resume`), or all of them summed."""

    wall_s: float
    decoder_calls_s: float  # every decode call: warm-up and timed repeats
    worker_startup_s: float  # start → ready of every worker: process, imports, decoder load
    metrics_s: float  # the evaluation phase
    judge_s: float
    sources_s: float = 0.0  # inputs: references, encoders, text-to-image pipelines (a phase of its own)
    writing_s: float = 0.0  # time decoding waited for the image writer (PNG encoding, fsync)
    writer_background_s: float = 0.0  # writer time spent while workers decoded (not on the wall)
    slots: int = 1  # workers at once: their calls and start-ups are shared over this many
    server_s: float = 0.0  # waiting for the worker server's imports, before the first worker starts
    complete: bool = True  # False: an invocation was killed; its wall runs from its start to its last record
    invocations: tuple[TimeBudget, ...] = ()

    @property
    def decoding_s(self) -> float:
        """Decoder calls as wall time: summed calls ÷ slots (exact for one slot), per invocation."""
        if self.invocations:
            return sum(i.decoding_s for i in self.invocations)
        return self.decoder_calls_s / self.slots

    @property
    def startup_wall_s(self) -> float:
        """Worker start-ups as wall time (shared over the slots), and the server they fork from."""
        if self.invocations:
            return sum(i.startup_wall_s for i in self.invocations)
        return self.worker_startup_s / self.slots + self.server_s

    @property
    def harness_s(self) -> float:
        """Everything else: IPC, checks, records, scheduling, the runner itself (and idle slots). Each
        part is counted in the invocation it happened in, so this is never negative (0 within clock
        jitter)."""
        rest = (self.wall_s - self.sources_s - self.decoding_s - self.startup_wall_s - self.writing_s
                - self.metrics_s - self.judge_s)
        return max(0.0, rest)

    @property
    def overhead_fraction(self) -> float:
        """(wall − sources − decoder calls − metrics − judge) / wall: the share of the wall the
        harness adds around the work it runs (worker start-up, writing and the rest)."""
        if not self.wall_s:
            return 0.0
        work = self.sources_s + self.decoding_s + self.metrics_s + self.judge_s
        return max(0.0, self.wall_s - work) / self.wall_s


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def _calls_ms(record: dict[str, Any]) -> float:
    return sum((record.get("latency") or {}).get("samples_ms", [])) + \
        ((record.get("warmup") or {}).get("total_ms") or 0.0)


def time_budget(view: RunView) -> TimeBudget | None:
    """Per invocation and in total. Each decode batch and worker start counts in the invocation
    whose interval holds its record's time; a killed invocation (no wall_s) lasts from its start
    to its last record, with the phase it was in taking what the records do not explain."""
    phases = view.manifest.get("phases") or []
    if not phases:
        return None
    if not all(p.get("started") for p in phases):  # runs written before invocations were timed
        return _budget(phases, list(view.decodes.values()), view.load_records)
    starts = [_seconds(p["started"]) for p in phases]

    def invocation_of(iso: str) -> int:
        return max(0, bisect.bisect_right(starts, _seconds(iso)) - 1)

    per: list[list[dict[str, Any]]] = [[] for _ in phases]
    for record in [*view.decodes.values(), *view.load_records]:
        if record.get("time"):
            per[invocation_of(record["time"])].append(record)
    last: list[float | None] = [None for _ in phases]
    for iso in (r["time"] for r in view.records if isinstance(r.get("time"), str)):
        index, at = invocation_of(iso), _seconds(iso)
        last[index] = max(at, last[index] or at)
    invocations = tuple(_invocation(*args) for args in zip(phases, starts, last, per, strict=True))
    def total(name: str) -> float:
        return sum(getattr(i, name) for i in invocations)

    return TimeBudget(
        wall_s=total("wall_s"), decoder_calls_s=total("decoder_calls_s"),
        worker_startup_s=total("worker_startup_s"), metrics_s=total("metrics_s"), judge_s=total("judge_s"),
        sources_s=total("sources_s"), writing_s=total("writing_s"),
        writer_background_s=total("writer_background_s"), slots=max(i.slots for i in invocations),
        complete=all(i.complete for i in invocations), invocations=invocations, server_s=total("server_s"))


def _budget(phases: list[dict[str, Any]], decodes: list[dict[str, Any]], loads: list[dict[str, Any]],
            wall_s: float | None = None, complete: bool = True) -> TimeBudget:
    calls_ms, seen = 0.0, set()
    for record in decodes:
        if record.get("kind") != "decode":
            continue
        batch = (record["decoder"], record.get("batch_id") or record["case"])
        if batch not in seen:
            seen.add(batch)
            calls_ms += _calls_ms(record)
    startup_ms = sum(r.get("spawn_to_ready_ms") or 0.0 for r in loads if r.get("kind") == "load")

    def total(key: str) -> float:
        return sum(p.get(key, 0.0) for p in phases)

    return TimeBudget(
        wall_s=sum(p.get("wall_s", 0.0) for p in phases) if wall_s is None else wall_s,
        decoder_calls_s=calls_ms / 1e3, worker_startup_s=startup_ms / 1e3,
        metrics_s=total("evaluate_s"), judge_s=total("judge_s"), sources_s=total("sources_s"),
        writing_s=total("writing_s"),
        writer_background_s=max(0.0, total("writer_busy_s") - total("writing_s")),
        slots=max(int(p.get("slots", 1)) for p in phases), complete=complete, server_s=total("server_s"))


def _invocation(phase: dict[str, Any], start: float, last: float | None,
                records: list[dict[str, Any]]) -> TimeBudget:
    if phase.get("wall_s") is not None:
        return _budget([phase], records, records)
    # Killed: from its start to its last record; the phase it was in when killed gets the rest.
    budget = _budget([phase], records, records, wall_s=max(0.0, (last or start) - start), complete=False)
    done = sum(phase.get(k, 0.0) for k in ("sources_s", "decode_s", "evaluate_s"))
    unexplained = max(0.0, budget.wall_s - done)
    if "decode_s" in phase and "evaluate_s" not in phase:
        return replace(budget, metrics_s=budget.metrics_s + unexplained)
    if "evaluate_s" in phase and "judge_s" not in phase:
        return replace(budget, judge_s=budget.judge_s + unexplained)
    return budget


def _order(manifest: dict[str, Any], decoder: str) -> int:
    ids = [d["label"] or d["name"] for d in manifest["suite"]["resolved"]["decoder"]]
    return ids.index(decoder) if decoder in ids else len(ids)


def format_bytes(value: int | None) -> str:
    if value is None:
        return "—"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value} B"
