"""The evaluation phase: metrics over the stored outputs, after all decoding.

Each metric is loaded once per run on the evaluation device and fed one set
at a time — the stored 8-bit outputs of one decoder at one comparison size,
with the stored 8-bit references when it needs them and an `ImageContext`
per image — then asked for its values. What gets a record depends on the
metric's scope (see harness/metrics/base.py):

- image:      one record per (decoder, case), plus one aggregate record per
              set (case null, "size") when the metric aggregates;
- seed_group: one record per group of cases that differ only in the seed,
              under the group's lowest-seed case, listing the group's cases;
- set:        one record per set (case null, "size").

A record holds the value, or why there is none: `unavailable` (a dependency
or weight is missing), `not_applicable` (a random-weight decoder; an image
without text lines for an OCR metric; ...), `error` (the metric failed on
that batch or set). Resume never writes a second record for anything: a set
whose aggregate is missing is fed again in full, but only records that do
not exist yet are written.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from decoders.plugins import unavailable_reason
from harness import images
from harness.metrics import METRICS
from harness.metrics.base import ImageContext, Metric, MetricUnavailable, MetricValues, ReferenceSet, Scope
from harness.sources.prepare import PreparedCase
from harness.store import RunStore
from harness.suite import Suite

Unit = tuple[str, str]  # (decoder id, case id)
Size = tuple[int, int]


@dataclass
class EvalSet:
    """The ok units of one decoder at one comparison size, and what is still to be recorded."""

    decoder: str
    size: Size
    units: list[Unit]
    pending: set[str] = field(default_factory=set)  # record keys (case ids) without a record
    aggregate_pending: bool = False


def evaluate(suite: Suite, store: RunStore, prepared: dict[str, PreparedCase],
             reporter: Any, device: torch.device | None = None) -> list[str]:
    """Score every ok unit with every metric; return notes for the run. `device`: where the
    runner chose (default: evaluation.device, else the timing device)."""
    if not suite.metric_params:
        return []
    model = suite.model
    device = device or torch.device(model.evaluation.device or model.timing.device)
    records, _ = store.records()
    decodes = {(r["decoder"], r["case"]): r for r in records if r["kind"] == "decode"}
    notes: list[str] = []
    info = store.manifest().get("metrics", {})
    for name, params in suite.metric_params.items():
        metric: Metric = METRICS.get(name)(params)
        feeder = Feeder(metric, store, decodes, prepared, reporter, model.evaluation.batch_size)
        sets = feeder.pending_sets(records)
        reporter.phase(f"metric {name}", sum(len(s.units) for s in sets))
        if not sets:
            continue
        began = time.perf_counter()
        try:
            metric.load(device)
        except Exception as exc:  # a missing library or weight file, a broken install: unavailable
            reason = str(exc) if isinstance(exc, MetricUnavailable) else unavailable_reason(exc)
            notes.append(f"metric {name} unavailable: {reason}")
            for evaluation_set in sets:
                feeder.fail(evaluation_set, "unavailable", reason)
            info[name] = metric_info(metric, status="unavailable", message=reason)
            store.update_manifest(metrics=info)
            continue
        counted = sum(feeder.score(evaluation_set) for evaluation_set in sets)
        notes.extend(feeder.notes)
        info[name] = metric_info(metric, status="ok", seconds=time.perf_counter() - began, images=counted)
        store.update_manifest(metrics=info)
        del metric, feeder
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return notes


def metric_info(metric: Metric, **extra: Any) -> dict[str, Any]:
    """What the manifest records about a metric: its kind, direction and protocol."""
    return {"family": str(metric.family), "scope": str(metric.scope),
            "direction": metric.direction().as_dict(), "group": metric.group(),
            "higher_is_better": metric.higher_is_better, "target": metric.target,
            "version": metric.version, "protocol": metric.protocol(),
            "protocol_sha256": metric.protocol_sha256(), "summary": metric.summary, "unit": metric.unit,
            **extra}


class Feeder:
    """Feeds one metric its sets and turns what it computes into records."""

    def __init__(self, metric: Metric, store: RunStore, decodes: dict[Unit, dict[str, Any]],
                 prepared: dict[str, PreparedCase], reporter: Any, batch_size: int) -> None:
        self.metric, self.store, self.decodes, self.prepared = metric, store, decodes, prepared
        self.reporter, self.batch_size = reporter, batch_size
        self.notes: list[str] = []
        # A random-weight encoder or pipeline upstream spoils every decoder's quality alike.
        source = store.manifest().get("source_model") or {}
        self.source_not_applicable = source.get("quality_not_applicable")

    # ------------------------------------------------------------------ what is left to do

    def pending_sets(self, records: list[dict[str, Any]]) -> list[EvalSet]:
        name, scope = self.metric.name, self.metric.scope
        mine = [r for r in records if r["kind"] == "metric" and r["metric"] == name]
        scored = {(r["decoder"], r["case"]) for r in mine if r["case"] is not None}
        scored_ok = {(r["decoder"], r["case"]) for r in mine if r["case"] is not None and r["status"] == "ok"}
        aggregated = {(r["decoder"], tuple(r["size"])) for r in mine if r["case"] is None}
        by_set: dict[tuple[str, Size], list[Unit]] = {}
        for unit, record in self.decodes.items():
            if record["status"] == "ok" and unit[1] in self.prepared:
                size = self.prepared[unit[1]].case.output_size
                by_set.setdefault((unit[0], size), []).append(unit)
        sets = []
        for (decoder, size), units in by_set.items():
            keys = [u[1] for u in units] if scope == Scope.IMAGE else self._group_keys(units)
            pending = {key for key in keys if (decoder, key) not in scored}
            wants_aggregate = scope == Scope.SET or (self.metric.aggregates and scope == Scope.IMAGE)
            # An image-scope aggregate is still due if some image may yet be, or was, scored.
            aggregate_pending = wants_aggregate and (decoder, size) not in aggregated and (
                scope == Scope.SET or bool(pending) or any((decoder, key) in scored_ok for key in keys))
            if scope == Scope.SET:
                pending = set()
            if pending or aggregate_pending:
                sets.append(EvalSet(decoder, size, units, pending, aggregate_pending))
        return sets

    def _group_keys(self, units: list[Unit]) -> list[str]:
        return [members[0][1] for members in self._groups(units)]

    def _groups(self, units: list[Unit]) -> list[list[Unit]]:
        """Units that differ only in the decoder seed, lowest seed first."""
        groups: dict[str, list[Unit]] = {}
        for unit in units:
            groups.setdefault(seed_group(self.prepared[unit[1]]), []).append(unit)
        return [sorted(members, key=lambda u: self.prepared[u[1]].case.seed) for members in groups.values()]

    # ------------------------------------------------------------------ feeding

    def score(self, evaluation_set: EvalSet) -> int:
        """Feed one set and write its records; return the number of images fed."""
        metric = self.metric
        metric.reset()
        units = self._applicable(evaluation_set)
        if not units:
            if metric.scope == Scope.SET and evaluation_set.aggregate_pending:
                self._append_set(evaluation_set, "not_applicable",
                                 message="no decoded image of this set has meaningful quality")
            return 0
        if metric.scope == Scope.SET:
            metric.set_reference(self._reference_set(evaluation_set.size))
        if metric.scope == Scope.IMAGE and not evaluation_set.aggregate_pending:
            units = [u for u in units if u[1] in evaluation_set.pending]
        elif metric.scope == Scope.SEED_GROUP:
            units = [u for group in self._groups(units) if group[0][1] in evaluation_set.pending
                     for u in group]
        fed: list[Unit] = []
        for batch in self._batches(units):
            try:
                metric.update([case for _, case in batch], *self._load(batch), self._contexts(batch))
            except Exception as exc:
                self._fail_batch(evaluation_set, batch, f"{type(exc).__name__}: {exc}")
            else:
                fed.extend(batch)
            finally:
                self.reporter.advance(len(batch))
        if not fed:
            return 0
        try:
            values = metric.compute()
        except Exception as exc:
            self._fail_batch(evaluation_set, fed, f"{type(exc).__name__}: {exc}")
            return 0
        self._write(evaluation_set, fed, values)
        return len(fed)

    def _applicable(self, evaluation_set: EvalSet) -> list[Unit]:
        """Units of the set the metric may score; the others get not_applicable with the reason."""
        units = []
        for unit in evaluation_set.units:
            reason = self._not_applicable(unit)
            if reason is None:
                units.append(unit)
            elif unit[1] in evaluation_set.pending:
                self.store.append(self._record(unit[0], unit[1], "not_applicable", message=reason))
        return units

    def _not_applicable(self, unit: Unit) -> str | None:
        """Random-weight decoders have no meaningful quality; without a reference (latents and
        prompts sources) or for a generator whose output is no decoding of it (L2P),
        full-reference metrics do not apply."""
        if self.source_not_applicable:
            return self.source_not_applicable
        facts = self.decodes[unit].get("facts") or {}
        if facts.get("quality_not_applicable"):
            return facts["quality_not_applicable"]
        if self.metric.needs_targets():
            if self.prepared[unit[1]].reference_key is None:
                return "no reference image: the source has none for this case (latents or prompts)"
            return facts.get("full_reference_not_applicable")
        return None

    def _batches(self, units: list[Unit]) -> Iterator[list[Unit]]:
        if self.metric.scope == Scope.SEED_GROUP:
            yield from self._groups(units)
            return
        for start in range(0, len(units), self.batch_size):
            yield units[start:start + self.batch_size]

    def _load(self, batch: list[Unit]) -> tuple[torch.Tensor, torch.Tensor | None]:
        root = self.store.root
        preds = torch.stack([images.read_png(root / self.decodes[u]["image"]) for u in batch])
        targets = None
        if self.metric.needs_targets():
            targets = torch.stack([
                images.read_png(root / RunStore.reference_relpath(self.prepared[case].reference_key))
                for _, case in batch])
            targets = images.to_float(targets).to(self.metric.device)
        return images.to_float(preds).to(self.metric.device), targets

    def _contexts(self, batch: list[Unit]) -> list[ImageContext]:
        contexts = []
        for unit in batch:
            case, decode = self.prepared[unit[1]], self.decodes[unit]
            native = decode.get("native_size")
            contexts.append(ImageContext(
                case_id=unit[1], item_id=case.case.item_id, prompt=case.case.prompt,
                seed=case.case.seed, seed_group=seed_group(case), reference_key=case.reference_key,
                output_size=case.case.output_size,
                native_size=tuple(native) if native else None,  # type: ignore[arg-type]
                facts=decode.get("facts") or {}, annotations=case.annotations,
                input_sha256=decode.get("input_sha256"), input_seed=case.case.input_seed,
            ))
        return contexts

    def _reference_set(self, size: Size) -> ReferenceSet:
        keys = sorted({p.reference_key for p in self.prepared.values()
                       if p.case.output_size == size and p.reference_key is not None})
        root = self.store.root

        def batches(batch_size: int) -> Iterator[tuple[list[str], torch.Tensor]]:
            for start in range(0, len(keys), batch_size):
                chunk = keys[start:start + batch_size]
                yield chunk, torch.stack([images.read_png(root / RunStore.reference_relpath(key))
                                          for key in chunk])

        cache_dir = self.store.manifest().get("cache_dir")
        return ReferenceSet(size=size, dataset_sha256=hashlib.sha256("\n".join(keys).encode()).hexdigest(),
                            count=len(keys), batches=batches,
                            cache_dir=Path(cache_dir) if cache_dir else None)

    # ------------------------------------------------------------------ records

    def _write(self, evaluation_set: EvalSet, fed: list[Unit], values: MetricValues) -> None:
        decoder = evaluation_set.decoder
        members = {group[0][1]: [u[1] for u in group] for group in self._groups(fed)}
        keys = [u[1] for u in fed] if self.metric.scope == Scope.IMAGE else list(members)
        if self.metric.scope != Scope.SET:
            for key in keys:
                if key not in evaluation_set.pending:
                    continue
                extra: dict[str, Any] = {"details": values.details.get(key)}
                if self.metric.scope == Scope.SEED_GROUP:
                    extra["cases"] = members[key]
                if key in values.artifacts:
                    extra["artifact"] = self._write_artifact(decoder, key, values.artifacts[key])
                if key in values.not_applicable:
                    self.store.append(self._record(decoder, key, "not_applicable",
                                                   message=values.not_applicable[key], **extra))
                else:
                    self.store.append(self._record(decoder, key, "ok", value=values.per_key.get(key),
                                                   **extra))
        for warning in values.warnings:
            self.notes.append(f"{self.metric.name} · {decoder} at {evaluation_set.size[0]}x"
                              f"{evaluation_set.size[1]}: {warning}")
        if evaluation_set.aggregate_pending and values.aggregate is not None:
            scored = [u for u in fed if u[1] not in values.not_applicable]  # n: images the value rests on
            self._append_set(evaluation_set, "ok", value=values.aggregate, n=len(scored),
                             details=values.aggregate_details or None, warnings=values.warnings or None)

    def _write_artifact(self, decoder: str, key: str, image: torch.Tensor) -> str:
        relpath = f"artifacts/{self.metric.name}/{decoder}/{key}.png"
        images.write_png(image, self.store.root / relpath)
        return relpath

    def fail(self, evaluation_set: EvalSet, status: str, message: str) -> None:
        """Record a failure for everything the set still needed."""
        for key in sorted(evaluation_set.pending):
            self.store.append(self._record(evaluation_set.decoder, key, status, message=message))
        if evaluation_set.aggregate_pending:
            self._append_set(evaluation_set, status, message=message)
        self.reporter.advance(len(evaluation_set.units))

    def _fail_batch(self, evaluation_set: EvalSet, batch: list[Unit], message: str) -> None:
        if self.metric.scope == Scope.SET:
            if evaluation_set.aggregate_pending:
                self._append_set(evaluation_set, "error", message=message)
                evaluation_set.aggregate_pending = False
            return
        keys = [u[1] for u in batch] if self.metric.scope == Scope.IMAGE else [batch[0][1]]
        for key in keys:
            if key in evaluation_set.pending:
                self.store.append(self._record(evaluation_set.decoder, key, "error", message=message))
                evaluation_set.pending.discard(key)

    def _append_set(self, evaluation_set: EvalSet, status: str, **fields: Any) -> None:
        self.store.append(self._record(evaluation_set.decoder, None, status,
                                       size=list(evaluation_set.size), **fields))

    def _record(self, decoder: str, case: str | None, status: str, value: float | None = None,
                message: str | None = None, **extra: Any) -> dict[str, Any]:
        metric = self.metric
        record: dict[str, Any] = {
            "kind": "metric", "decoder": decoder, "case": case, "metric": metric.name,
            "status": status, "value": None, "version": metric.version,
            "protocol_sha256": metric.protocol_sha256(),
        }
        if value is not None and math.isfinite(value):
            record["value"] = value
        elif value is not None:
            record["nonfinite"] = "inf" if value > 0 else ("-inf" if value < 0 else "nan")
        if message:
            record["message"] = message
        record.update({k: v for k, v in extra.items() if v is not None})
        return record


def seed_group(prepared: PreparedCase) -> str:
    """Identity of a case without its decoder seed: item, sizes, noise level and input seed."""
    case = prepared.case
    return "|".join(map(str, (case.item_id, case.item_sha256[:16], list(case.input_size),
                              list(case.output_size), case.sigma, case.input_seed)))
