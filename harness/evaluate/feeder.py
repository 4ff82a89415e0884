"""One metric's side of the evaluation: what it still has to record, what it is fed, its records.

A `Feeder` works out, from the records already there, the sets and cases a metric still needs
(resume writes only what is missing), feeds it each batch's part, and turns its values — or why
there are none — into metric records.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from decoders.plugins import unavailable_reason
from harness import images
from harness.metrics import weights
from harness.metrics.base import (
    ImageContext,
    Metric,
    MetricUnavailable,
    MetricValues,
    MetricWeightsMissing,
    ReferenceSet,
    Scope,
)
from harness.records import DecodeKey, MetricRecord, Size, metrics
from harness.sources.prepare import PreparedCase
from harness.store import RunStore

SetKey = tuple[str, Size]  # (decoder id, comparison size)


@dataclass
class EvalSet:
    """The ok units of one decoder at one comparison size, and what is still to be recorded."""

    decoder: str
    size: Size
    units: list[DecodeKey]
    pending: set[str] = field(default_factory=set)  # record keys (case ids) without a record
    aggregate_pending: bool = False


def seed_group(prepared: PreparedCase) -> str:
    """Identity of a case without its decoder seed: item, sizes, noise level and input seed."""
    case = prepared.case
    return "|".join(map(str, (case.item_id, case.item_sha256[:16], list(case.input_size),
                              list(case.output_size), case.sigma, case.input_seed)))


class Feeder:
    """One metric in a pass: what it still needs, what it is fed, and the records it writes."""

    def __init__(self, metric: Metric, store: RunStore, decodes: dict[DecodeKey, dict[str, Any]],
                 prepared: dict[str, PreparedCase], source_not_applicable: str | None = None) -> None:
        self.metric, self.store, self.decodes, self.prepared = metric, store, decodes, prepared
        self.sets: dict[SetKey, EvalSet] = {}
        self.notes: list[str] = []
        self.unavailable: str | None = None
        self.weights_missing = False  # unavailable only for lock-table weight files not here
        self.seconds = 0.0
        self.counted = 0
        self._wanted: set[DecodeKey] = set()
        self._fed: list[DecodeKey] = []
        # A random-weight encoder or pipeline upstream spoils every decoder's quality alike.
        self.source_not_applicable = source_not_applicable

    def start(self, records: list[dict[str, Any]], device: torch.device) -> bool:
        """Find the pending sets and load the metric; False when there is nothing to feed (no
        pending set, none that applies, or the metric cannot load)."""
        self.sets = {(s.decoder, s.size): s for s in self.pending_sets(records)}
        if not self.sets:
            return False
        if all(self._not_applicable(u) for s in self.sets.values() for u in s.units):
            for key in self.sets:  # records every image as not applicable, loads nothing
                self.begin(key)
            return False
        began = time.perf_counter()
        try:
            self.metric.load(device)
        except Exception as exc:  # a missing library or weight file, a broken install: unavailable
            self.unavailable = str(exc) if isinstance(exc, MetricUnavailable) else unavailable_reason(exc)
            self.weights_missing = isinstance(exc, MetricWeightsMissing) and bool(
                weights.missing_files([self.metric.name]))
            # records say it short (the manifest's metrics table keeps the whole message)
            message = weights.short_missing(self.metric.name) if self.weights_missing else self.unavailable
            for evaluation_set in self.sets.values():
                self.fail(evaluation_set, "unavailable", message)
            return False
        self.seconds += time.perf_counter() - began
        return True



    def pending_sets(self, records: list[dict[str, Any]]) -> list[EvalSet]:
        name, scope = self.metric.name, self.metric.scope
        mine = [r for r in metrics(records) if r["metric"] == name]
        scored = {(r["decoder"], r["case"]) for r in mine if r["case"] is not None}
        scored_ok = {(r["decoder"], r["case"]) for r in mine if r["case"] is not None and r["status"] == "ok"}
        aggregated = {(r["decoder"], tuple(r["size"])) for r in mine if r["case"] is None}
        sets = []
        for (decoder, size), units in ok_sets(self.decodes, self.prepared).items():
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

    def _group_keys(self, units: list[DecodeKey]) -> list[str]:
        return [members[0][1] for members in seed_groups(units, self.prepared)]



    def plan(self, key: SetKey) -> list[DecodeKey]:
        """The units of a set the metric is to be fed: applicable, and still needed."""
        evaluation_set = self.sets.get(key)
        if evaluation_set is None:
            return []
        units = [u for u in evaluation_set.units if self._not_applicable(u) is None]
        if self.metric.scope == Scope.IMAGE and not evaluation_set.aggregate_pending:
            units = [u for u in units if u[1] in evaluation_set.pending]
        elif self.metric.scope == Scope.SEED_GROUP:
            units = [u for group in seed_groups(units, self.prepared)
                     if group[0][1] in evaluation_set.pending for u in group]
        return units

    def begin(self, key: SetKey) -> None:
        """Start a set: record the images the metric may not score, reset it, give it the references."""
        self._wanted, self._fed = set(), []
        evaluation_set = self.sets.get(key)
        if evaluation_set is None:
            return
        applicable = False
        for unit in evaluation_set.units:
            reason = self._not_applicable(unit)
            applicable = applicable or reason is None
            if reason is not None and unit[1] in evaluation_set.pending:
                self.store.append(self._record(unit[0], unit[1], "not_applicable", message=reason))
        if not applicable:
            if self.metric.scope == Scope.SET and evaluation_set.aggregate_pending:
                self._append_set(evaluation_set, "not_applicable",
                                 message="no decoded image of this set has meaningful quality")
            return
        self.metric.reset()
        if self.metric.scope == Scope.SET:
            self.metric.set_reference(self._reference_set(evaluation_set.size))
        self._wanted = set(self.plan(key))

    def feed(self, key: SetKey, batch: list[DecodeKey], preds: torch.Tensor, targets: torch.Tensor | None,
             contexts: list[ImageContext]) -> None:
        """Give the metric its part of a batch (whole seed groups for seed-group metrics)."""
        mine = [i for i, unit in enumerate(batch) if unit in self._wanted]
        if not mine:
            return
        pieces = ([mine] if self.metric.scope != Scope.SEED_GROUP
                  else group_indices([batch[i] for i in mine], mine, self.prepared))
        for indices in pieces:
            self._update(key, [batch[i] for i in indices], select_rows(preds, indices),
                         None if targets is None else select_rows(targets, indices),
                         [contexts[i] for i in indices])

    def _update(self, key: SetKey, units: list[DecodeKey], preds: torch.Tensor, targets: torch.Tensor | None,
                contexts: list[ImageContext]) -> None:
        began = time.perf_counter()
        try:
            self.metric.update([case for _, case in units], preds,
                               targets if self.metric.needs_targets() else None, contexts)
        except Exception as exc:
            self._fail_batch(self.sets[key], units, f"{type(exc).__name__}: {exc}")
        else:
            self._fed.extend(units)
        finally:
            self.seconds += time.perf_counter() - began

    def fail_read(self, key: SetKey, batch: list[DecodeKey], message: str) -> None:
        """The images of a batch could not be read: an error for the part this metric wanted."""
        units = [u for u in batch if u in self._wanted]
        if units:
            self._fail_batch(self.sets[key], units, message)

    def finish(self, key: SetKey) -> None:
        """Compute the set's values and write its records."""
        evaluation_set = self.sets.get(key)
        if evaluation_set is None or not self._fed:
            return
        began = time.perf_counter()
        try:
            values = self.metric.compute()
        except Exception as exc:
            self._fail_batch(evaluation_set, self._fed, f"{type(exc).__name__}: {exc}")
            return
        finally:
            self.seconds += time.perf_counter() - began
        self._write(evaluation_set, self._fed, values)
        self.counted += len(self._fed)

    def _not_applicable(self, unit: DecodeKey) -> str | None:
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



    def _write(self, evaluation_set: EvalSet, fed: list[DecodeKey], values: MetricValues) -> None:
        decoder = evaluation_set.decoder
        members = {group[0][1]: [u[1] for u in group] for group in seed_groups(fed, self.prepared)}
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

    def _fail_batch(self, evaluation_set: EvalSet, batch: list[DecodeKey], message: str) -> None:
        if self.metric.scope == Scope.SET:
            if evaluation_set.aggregate_pending:
                self._append_set(evaluation_set, "error", message=message)
                evaluation_set.aggregate_pending = False
            return
        keys = ([u[1] for u in batch] if self.metric.scope == Scope.IMAGE
                else [group[0][1] for group in seed_groups(batch, self.prepared)])
        for key in keys:
            if key in evaluation_set.pending:
                self.store.append(self._record(evaluation_set.decoder, key, "error", message=message))
                evaluation_set.pending.discard(key)

    def _append_set(self, evaluation_set: EvalSet, status: str, **fields: Any) -> None:
        self.store.append(self._record(evaluation_set.decoder, None, status,
                                       size=list(evaluation_set.size), **fields))

    def _record(self, decoder: str, case: str | None, status: str, value: float | None = None,
                message: str | None = None, **extra: Any) -> MetricRecord:
        metric = self.metric
        record = MetricRecord(kind="metric", decoder=decoder, case=case, metric=metric.name, status=status,
                              value=None, version=metric.version, protocol_sha256=metric.protocol_sha256())
        if value is not None and math.isfinite(value):
            record["value"] = value
        elif value is not None:
            record["nonfinite"] = "inf" if value > 0 else ("-inf" if value < 0 else "nan")
        if message:
            record["message"] = message
        record.update({k: v for k, v in extra.items() if v is not None})  # type: ignore[typeddict-item]
        return record


def ok_sets(decodes: dict[DecodeKey, dict[str, Any]],
            prepared: dict[str, PreparedCase]) -> dict[SetKey, list[DecodeKey]]:
    """The ok units of the run by set, in record order."""
    by_set: dict[SetKey, list[DecodeKey]] = {}
    for unit, record in decodes.items():
        if record["status"] == "ok" and unit[1] in prepared:
            by_set.setdefault((unit[0], prepared[unit[1]].case.output_size), []).append(unit)
    return by_set


def seed_groups(units: Iterable[DecodeKey], prepared: dict[str, PreparedCase]) -> list[list[DecodeKey]]:
    """Units that differ only in the decoder seed, lowest seed first; groups in order of first appearance."""
    groups: dict[str, list[DecodeKey]] = {}
    for unit in units:
        groups.setdefault(seed_group(prepared[unit[1]]), []).append(unit)
    return [sorted(members, key=lambda u: prepared[u[1]].case.seed) for members in groups.values()]


def group_indices(units: list[DecodeKey], indices: list[int],
                   prepared: dict[str, PreparedCase]) -> list[list[int]]:
    position = dict(zip(units, indices, strict=True))
    return [[position[u] for u in group] for group in seed_groups(units, prepared)]


def select_rows(tensor: torch.Tensor, indices: list[int]) -> torch.Tensor:
    """The batch rows `indices` (the tensor itself when that is all of them, in order)."""
    if indices == list(range(tensor.shape[0])):
        return tensor
    return tensor[torch.tensor(indices, device=tensor.device)]
