"""`load_run`: a run directory read into a `RunView`, the rows gates and reports both read.

One row per (comparison size, decoder), built from the checked records of `read_run`; the view
also keeps what the report shows per case (decode records, metric artifacts, judge verdicts) and
the notes a reader must see (records set aside, missing images, environment failures).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.metrics.direction import Direction
from harness.records import (
    CaseLine,
    DecodeKey,
    DecodeRecord,
    JudgeRecord,
    LoadRecord,
    Manifest,
    MetricRecord,
    Record,
    Size,
)
from harness.store import INFRASTRUCTURE_ERROR, read_run
from harness.view.rows import (
    HEADLINE_MEMORY,
    MEMORY_KINDS,
    Call,
    MetricSummary,
    Row,
)


@dataclass
class RunView:
    run_dir: Path
    manifest: Manifest
    rows: list[Row]
    metric_info: dict[str, dict[str, Any]]
    metric_names: list[str]
    warnings: list[str]
    cases: dict[str, CaseLine] = field(default_factory=dict)
    decodes: dict[DecodeKey, DecodeRecord] = field(default_factory=dict)
    loads: dict[str, LoadRecord] = field(default_factory=dict)  # decoder → first ok load
    load_failures: dict[str, LoadRecord] = field(default_factory=dict)  # decoder → last failed load
    artifacts: dict[DecodeKey, dict[str, str]] = field(default_factory=dict)  # unit → metric → path
    judge_records: list[JudgeRecord] = field(default_factory=list)
    load_records: list[LoadRecord] = field(default_factory=list)  # every worker load, ok or not
    missing_images: list[str] = field(default_factory=list)  # outputs of ok decodes that are gone
    records: list[Record] = field(default_factory=list)  # every record, as read_run validated it
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
    calls: dict[tuple[str, str], tuple[Row, list[DecodeRecord]]] = {}
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


def _add_metrics(view: RunView, records: list[Record], row_for: Any) -> list[str]:
    metric_names: list[str] = []
    aggregates: list[MetricRecord] = []
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


def _ceiling(record: MetricRecord, size: Size) -> float | None:
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


def _add_decode(row: Row, record: DecodeRecord) -> None:
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


def _call(records: list[DecodeRecord]) -> Call:
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
    first: dict[tuple[str, Size], DecodeRecord] = {}
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


def _order(manifest: Manifest, decoder: str) -> int:
    ids = [d["label"] or d["name"] for d in manifest["suite"]["resolved"]["decoder"]]
    return ids.index(decoder) if decoder in ids else len(ids)
