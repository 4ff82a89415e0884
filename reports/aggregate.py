"""Read a run directory into summary rows: one per (comparison size, decoder).

Latency pools the timed repeats of every decode call of that decoder at that
size (a batch counts once); peak memory is the maximum over its calls;
quality is the mean over cases of each metric with a normal-approximation
95% interval. Anything that is not a number says why (status counts, notes).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.store import RunStore

Size = tuple[int, int]


@dataclass
class MetricSummary:
    values: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    aggregate: float | None = None  # the metric's one value for the set (FID, GenEval score, ...)
    aggregate_details: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def ci95(self) -> float | None:
        """Half-width of a normal-approximation 95% interval of the mean."""
        if len(self.values) < 2:
            return None
        return 1.96 * statistics.stdev(self.values) / math.sqrt(len(self.values))

    @property
    def headline(self) -> float | None:
        """What a table shows: the set's aggregate when the metric gives one, else the mean."""
        return self.aggregate if self.aggregate is not None else self.mean


@dataclass
class Row:
    decoder: str
    name: str
    size: Size
    statuses: dict[str, int] = field(default_factory=dict)
    latency_samples_ms: list[float] = field(default_factory=list)
    batch_size: int = 1
    peak_memory_bytes: int | None = None
    memory_method: str | None = None
    cold_start_ms: float | None = None
    resampled_from: list[int] | None = None
    metrics: dict[str, MetricSummary] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def units(self) -> int:
        return sum(self.statuses.values())

    def latency(self, quantile: float) -> float | None:
        if not self.latency_samples_ms:
            return None
        return float(np.quantile(np.asarray(self.latency_samples_ms), quantile))


@dataclass
class RunView:
    run_dir: Path
    manifest: dict[str, Any]
    rows: list[Row]
    metric_info: dict[str, dict[str, Any]]
    metric_names: list[str]
    warnings: list[str]

    @property
    def sizes(self) -> list[Size]:
        return sorted({row.size for row in self.rows})

    def rows_at(self, size: Size) -> list[Row]:
        return [row for row in self.rows if row.size == size]


def load_run(run_dir: Path) -> RunView:
    store = RunStore.open(run_dir)
    manifest = store.manifest()
    records, warning = store.records()
    cases = {c["id"]: c for c in store.cases()}
    names = {d["label"] or d["name"]: d["name"] for d in manifest["suite"]["resolved"]["decoder"]}
    rows: dict[tuple[str, Size], Row] = {}
    seen_batches: set[tuple[str, str]] = set()
    decode_size: dict[tuple[str, str], Size] = {}

    def row_for(decoder: str, size: Size) -> Row:
        key = (decoder, size)
        if key not in rows:
            rows[key] = Row(decoder, names.get(decoder, decoder), size)
        return rows[key]

    first_load = _first_loads(records)
    for record in records:
        if record["kind"] != "decode":
            continue
        size = tuple(record.get("output_size") or cases.get(record["case"], {}).get("output_size"))
        decode_size[(record["decoder"], record["case"])] = size  # type: ignore[assignment]
        row = row_for(record["decoder"], size)  # type: ignore[arg-type]
        _add_decode(row, record, seen_batches, first_load)
    metric_names: list[str] = []
    for record in records:
        if record["kind"] != "metric":
            continue
        if record["case"] is None:  # one record for a whole (decoder, size) set
            size = tuple(record["size"]) if record.get("size") else None
        else:
            size = decode_size.get((record["decoder"], record["case"]))
        if size is None:
            continue
        if record["metric"] not in metric_names:
            metric_names.append(record["metric"])
        summary = row_for(record["decoder"], size).metrics.setdefault(  # type: ignore[arg-type]
            record["metric"], MetricSummary())
        if record.get("message") and record["message"] not in summary.messages:
            summary.messages.append(record["message"])
        if record["case"] is None and record["status"] == "ok":
            summary.aggregate = record.get("value")
            summary.aggregate_details = record.get("details") or {}
            continue
        summary.statuses[record["status"]] = summary.statuses.get(record["status"], 0) + 1
        if record["status"] == "ok" and record.get("value") is not None:
            summary.values.append(record["value"])
    declared = [m["name"] for m in manifest["suite"]["resolved"].get("metrics", [])]
    ordered = [m for m in declared if m in metric_names] + [m for m in metric_names if m not in declared]
    return RunView(
        run_dir=run_dir, manifest=manifest,
        rows=sorted(rows.values(), key=lambda r: (r.size, _order(manifest, r.decoder))),
        metric_info=manifest.get("metrics", {}), metric_names=ordered or declared,
        warnings=[w for w in [warning, *manifest.get("notes", [])] if w],
    )


def _first_loads(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    loads: dict[str, dict[str, Any]] = {}
    for record in records:
        if record["kind"] == "load" and record["status"] == "ok":
            loads.setdefault(record["decoder"], record)
    return loads


def _add_decode(row: Row, record: dict[str, Any], seen_batches: set[tuple[str, str]],
                first_load: dict[str, dict[str, Any]]) -> None:
    status = record["status"]
    row.statuses[status] = row.statuses.get(status, 0) + 1
    if status != "ok" and record.get("message"):
        message = record["message"].splitlines()[0]
        if message not in row.failures:
            row.failures.append(message)
    latency, memory = record.get("latency"), record.get("memory")
    batch = (record["decoder"], record.get("batch_id") or record["case"])
    if latency and batch not in seen_batches:
        seen_batches.add(batch)
        row.latency_samples_ms.extend(latency["samples_ms"])
        row.batch_size = max(row.batch_size, record.get("batch_size", 1))
    if memory:
        peak = memory.get("peak_allocated_bytes", memory.get("peak_rss_bytes"))
        if peak is not None and (row.peak_memory_bytes is None or peak > row.peak_memory_bytes):
            row.peak_memory_bytes, row.memory_method = peak, memory.get("method")
    warm = record.get("warmup") or {}
    load = first_load.get(record["decoder"])
    if row.cold_start_ms is None and load and warm.get("first_call_ms") is not None:
        row.cold_start_ms = load["spawn_to_ready_ms"] + warm["first_call_ms"]
    if record.get("resampled"):
        row.resampled_from = record["resampled"]["from"]


def _order(manifest: dict[str, Any], decoder: str) -> int:
    ids = [d["label"] or d["name"] for d in manifest["suite"]["resolved"]["decoder"]]
    return ids.index(decoder) if decoder in ids else len(ids)


def direction(info: dict[str, Any]) -> str:
    """↑ higher is better, ↓ lower is better, →x closest to x is best."""
    if info.get("target") is not None:
        return f"→{info['target']:g}"
    return "↑" if info.get("higher_is_better", True) else "↓"


def format_bytes(value: int | None) -> str:
    if value is None:
        return "—"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value} B"
