"""The evaluation phase: metrics over the stored outputs, after all decoding.

Each metric is loaded once per run on the evaluation device and fed batches
of (stored 8-bit output, stored 8-bit reference) grouped by size. Every
successfully decoded unit gets one record per metric: its value, or why
there is none (`unavailable`: a dependency or weight is missing;
`not_applicable`: e.g. a random-weight decoder, whose quality means nothing;
`error`: the metric failed on that batch). Units already scored are skipped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import torch

from harness import images
from harness.metrics import METRICS
from harness.metrics.base import Family, Metric, MetricUnavailable
from harness.sources import PreparedCase
from harness.store import RunStore
from harness.suite import Suite

Unit = tuple[str, str]  # (decoder id, case id)


def evaluate(suite: Suite, store: RunStore, prepared: dict[str, PreparedCase],
             reporter: Any) -> list[str]:
    """Score every ok unit with every metric; return notes for the run."""
    if not suite.metric_params:
        return []
    model = suite.model
    device = torch.device(model.evaluation.device or model.timing.device)
    records, _ = store.records()
    decodes = {(r["decoder"], r["case"]): r for r in records if r["kind"] == "decode"}
    scored = {(r["decoder"], r["case"], r["metric"]) for r in records if r["kind"] == "metric"}
    notes: list[str] = []
    info = store.manifest().get("metrics", {})
    for name, params in suite.metric_params.items():
        metric: Metric = METRICS.get(name)(params)
        units = [u for u, r in decodes.items()
                 if r["status"] == "ok" and (*u, name) not in scored and u[1] in prepared]
        reporter.phase(f"metric {name}", len(units))
        if not units:
            continue
        began = time.perf_counter()
        try:
            metric.load(device)
        except MetricUnavailable as exc:
            notes.append(f"metric {name} unavailable: {exc}")
            for unit in units:
                store.append(_record(metric, unit, "unavailable", message=str(exc)))
            reporter.advance(len(units))
            continue
        counted = _score(metric, units, decodes, prepared, store, reporter, model.evaluation.batch_size)
        info[name] = {
            "family": str(metric.family), "higher_is_better": metric.higher_is_better,
            "version": metric.version, "protocol": metric.protocol(),
            "protocol_sha256": metric.protocol_sha256(), "summary": metric.summary,
            "seconds": time.perf_counter() - began, "images": counted,
        }
        store.update_manifest(metrics=info)
        del metric
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return notes


def _score(metric: Metric, units: list[Unit], decodes: dict[Unit, dict[str, Any]],
           prepared: dict[str, PreparedCase], store: RunStore, reporter: Any,
           batch_size: int) -> int:
    """Feed one metric every unit, decoder by decoder; return the images scored."""
    counted = 0
    by_decoder: dict[str, list[Unit]] = {}
    for unit in units:
        by_decoder.setdefault(unit[0], []).append(unit)
    for decoder_id, members in by_decoder.items():
        metric.reset()
        fed: list[Unit] = []
        for batch in _batches(members, prepared, batch_size):
            reasons = {u: _not_applicable(metric, decodes[u], prepared[u[1]]) for u in batch}
            skipped = [u for u in batch if reasons[u]]
            for unit in skipped:
                store.append(_record(metric, unit, "not_applicable", message=reasons[unit]))
            batch = [u for u in batch if u not in skipped]
            if not batch:
                continue
            preds, targets = _load(batch, decodes, prepared, store, metric)
            try:
                metric.update([case for _, case in batch], preds, targets)
            except Exception as exc:
                for unit in batch:
                    store.append(_record(metric, unit, "error", message=f"{type(exc).__name__}: {exc}"))
                continue
            finally:
                reporter.advance(len(batch))
            fed.extend(batch)
        if not fed:
            continue
        values = metric.compute()
        for unit in fed:
            store.append(_record(metric, unit, "ok", value=values.per_key.get(unit[1])))
        if values.aggregate is not None:
            store.append(_record(metric, (decoder_id, None), "ok", value=values.aggregate))
        counted += len(fed)
    return counted


def _batches(units: list[Unit], prepared: dict[str, PreparedCase],
             batch_size: int) -> Iterator[list[Unit]]:
    by_size: dict[tuple[int, int], list[Unit]] = {}
    for unit in units:
        by_size.setdefault(prepared[unit[1]].case.output_size, []).append(unit)
    for members in by_size.values():
        for start in range(0, len(members), batch_size):
            yield members[start:start + batch_size]


def _load(batch: list[Unit], decodes: dict[Unit, dict[str, Any]],
          prepared: dict[str, PreparedCase], store: RunStore,
          metric: Metric) -> tuple[torch.Tensor, torch.Tensor | None]:
    preds = torch.stack([images.read_png(store.root / decodes[u]["image"]) for u in batch])
    targets = None
    if metric.family == Family.FULL_REFERENCE:
        targets = torch.stack([
            images.read_png(store.root / RunStore.reference_relpath(prepared[case].reference_key))
            for _, case in batch
        ])
        targets = images.to_float(targets).to(metric.device)
    return images.to_float(preds).to(metric.device), targets


def _not_applicable(metric: Metric, decode: dict[str, Any], case: PreparedCase) -> str | None:
    facts = decode.get("facts") or {}
    if facts.get("quality_not_applicable"):
        return facts["quality_not_applicable"]
    if metric.family == Family.FULL_REFERENCE:
        if case.reference_key is None:
            return "no reference image: the source has none for this case (latents or prompts)"
        return facts.get("full_reference_not_applicable")
    return None


def _record(metric: Metric, unit: tuple[str, str | None], status: str,
            value: float | None = None, message: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "kind": "metric", "decoder": unit[0], "case": unit[1], "metric": metric.name,
        "status": status, "value": None, "version": metric.version,
        "protocol_sha256": metric.protocol_sha256(),
    }
    if value is not None and math.isfinite(value):
        record["value"] = value
    elif value is not None:
        record["nonfinite"] = "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    if message:
        record["message"] = message
    return record
