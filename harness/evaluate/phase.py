"""The evaluation phase: every metric of the suite over the stored outputs, after all decoding.

Metrics run in passes: one shared pass for the light ones (each PNG read once for all of them), and
a pass of its own for each metric with a multi-gigabyte model, so at most one is resident
(docs/metrics.md, the evaluation phase).
"""

from __future__ import annotations

from typing import Any

import torch

from harness.evaluate.feeder import Feeder
from harness.evaluate.stream import Stream
from harness.metrics import METRICS, weights
from harness.metrics.base import (
    Family,
    Metric,
)
from harness.progress import Reporter
from harness.records import decodes, metrics
from harness.sources.prepare import PreparedCase
from harness.store import RunStore
from harness.suite import Suite

OWN_PASS_FAMILIES = frozenset({Family.TEXT_ALIGNMENT})


def evaluate(suite: Suite, store: RunStore, prepared: dict[str, PreparedCase],
             reporter: Reporter, device: torch.device | None = None) -> list[str]:
    """Score every ok unit with every metric; return notes for the run. `device`: where the
    runner chose (default: evaluation.device, else the timing device)."""
    if not suite.metric_params:
        return []
    model = suite.model
    device = device or torch.device(model.evaluation.device or model.timing.device)
    records, _ = store.records()
    decoded = {(r["decoder"], r["case"]): r for r in decodes(records)}
    notes: list[str] = []
    skipped: list[str] = []  # metrics whose lock-table weight files are missing: one line for all
    manifest = store.manifest()
    info = manifest.get("metrics", {})
    upstream = (manifest.get("source_model") or {}).get("quality_not_applicable")
    for names in passes(suite.metric_params):
        feeders = []
        for name in names:
            feeder = Feeder(METRICS.get(name)(suite.metric_params[name]), store, decoded, prepared, upstream)
            if feeder.start(records, device):
                feeders.append(feeder)
            elif feeder.unavailable is not None:
                if feeder.weights_missing:
                    skipped.append(name)
                else:
                    notes.append(f"metric {name} unavailable: {feeder.unavailable}")
                info[name] = metric_info(feeder.metric, status="unavailable", message=feeder.unavailable)
                store.update_manifest(metrics=info)
            elif feeder.sets:  # nothing applied: the not_applicable records are written
                info[name] = metric_info(feeder.metric, status="ok", seconds=0.0, images=0)
                store.update_manifest(metrics=info)
        if not feeders:
            continue
        Stream(feeders, store, decoded, prepared, reporter, model.evaluation.batch_size, device).run()
        for feeder in feeders:
            notes.extend(feeder.notes)
            info[feeder.metric.name] = metric_info(feeder.metric, status="ok", seconds=feeder.seconds,
                                                   images=feeder.counted)
        store.update_manifest(metrics=info)
        del feeders
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if skipped:
        notes.insert(0, weights.skipped_line(skipped))
    return notes


def weights_arrived(records: list[dict[str, Any]]) -> set[str]:
    """Metrics whose records say their lock-table weight files were missing, and whose files are all
    here now (fetched since, or copied): a resume scores them again."""
    short = {r["metric"] for r in metrics(records)
             if r["status"] == "unavailable" and r.get("message") == weights.short_missing(r["metric"])}
    return {name for name in short if weights.files_for(name) and not weights.missing_files([name])}


def passes(metric_params: dict[str, Any]) -> list[list[str]]:
    """The shared pass (every metric but those with multi-GB models), then one pass per such metric."""
    own = [name for name in metric_params if METRICS.get(name).family in OWN_PASS_FAMILIES]
    shared = [name for name in metric_params if name not in own]
    return [group for group in (shared, *[[name] for name in own]) if group]


def metric_info(metric: Metric, **extra: Any) -> dict[str, Any]:
    """What the manifest records about a metric: its kind, direction and protocol."""
    return {"family": str(metric.family), "scope": str(metric.scope),
            "direction": metric.direction().as_dict(), "group": metric.group(),
            "higher_is_better": metric.higher_is_better, "target": metric.target,
            "version": metric.version, "protocol": metric.protocol(),
            "protocol_sha256": metric.protocol_sha256(), "summary": metric.summary, "unit": metric.unit,
            **extra}
