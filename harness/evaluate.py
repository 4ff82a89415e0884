"""The evaluation phase: metrics over the stored outputs, after all decoding.

Each metric is loaded once on the evaluation device and fed one set (a decoder's outputs at one
comparison size) at a time, in shared passes that read each PNG once, with bounded memory; every
value, or why there is none, becomes one metric record, and resume writes only the missing ones
(docs/metrics.md, the evaluation phase).
"""

from __future__ import annotations

import hashlib
import math
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from decoders.plugins import unavailable_reason
from harness import images
from harness.metrics import METRICS, weights
from harness.metrics.base import (
    Family,
    ImageContext,
    Metric,
    MetricUnavailable,
    MetricValues,
    MetricWeightsMissing,
    ReferenceSet,
    Scope,
)
from harness.progress import Reporter
from harness.records import DecodeKey, MetricRecord, Size, decodes, metrics
from harness.sources.prepare import PreparedCase
from harness.store import RunStore, inside
from harness.suite import Suite

SetKey = tuple[str, Size]  # (decoder id, comparison size)

READ_AHEAD_BATCHES = 2
REFERENCE_CACHE_BYTES = 512 << 20
OWN_PASS_FAMILIES = frozenset({Family.TEXT_ALIGNMENT})


@dataclass
class EvalSet:
    """The ok units of one decoder at one comparison size, and what is still to be recorded."""

    decoder: str
    size: Size
    units: list[DecodeKey]
    pending: set[str] = field(default_factory=set)  # record keys (case ids) without a record
    aggregate_pending: bool = False


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


def seed_group(prepared: PreparedCase) -> str:
    """Identity of a case without its decoder seed: item, sizes, noise level and input seed."""
    case = prepared.case
    return "|".join(map(str, (case.item_id, case.item_sha256[:16], list(case.input_size),
                              list(case.output_size), case.sigma, case.input_seed)))


# --------------------------------------------------------------------------- one metric


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

    # ------------------------------------------------------------------ what is left to do

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

    # ------------------------------------------------------------------ feeding

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
                  else _group_indices([batch[i] for i in mine], mine, self.prepared))
        for indices in pieces:
            self._update(key, [batch[i] for i in indices], _select(preds, indices),
                         None if targets is None else _select(targets, indices),
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

    # ------------------------------------------------------------------ records

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


def _group_indices(units: list[DecodeKey], indices: list[int],
                   prepared: dict[str, PreparedCase]) -> list[list[int]]:
    position = dict(zip(units, indices, strict=True))
    return [[position[u] for u in group] for group in seed_groups(units, prepared)]


def _select(tensor: torch.Tensor, indices: list[int]) -> torch.Tensor:
    """The batch rows `indices` (the tensor itself when that is all of them, in order)."""
    if indices == list(range(tensor.shape[0])):
        return tensor
    return tensor[torch.tensor(indices, device=tensor.device)]


# --------------------------------------------------------------------------- the pass


@dataclass
class Batch:
    key: SetKey
    units: list[DecodeKey]
    preds: torch.Tensor | None = None  # uint8 [B, 3, H, W], filled by the reader
    targets: torch.Tensor | None = None
    error: str | None = None  # the outputs could not be read
    targets_error: str | None = None  # the references could not be read


class Stream:
    """One pass: every set once, batch by batch, each batch fed to every metric of the pass."""

    def __init__(self, feeders: list[Feeder], store: RunStore, decodes: dict[DecodeKey, dict[str, Any]],
                 prepared: dict[str, PreparedCase], reporter: Reporter, batch_size: int,
                 device: torch.device) -> None:
        self.feeders, self.store, self.decodes, self.prepared = feeders, store, decodes, prepared
        self.reporter, self.batch_size, self.device = reporter, batch_size, device

    def run(self) -> None:
        keys = sorted({key for f in self.feeders for key in f.sets}, key=lambda k: (k[1], k[0]))
        batches = {key: self._cut(self._units(key)) for key in keys}
        self.reporter.phase(f"metrics: {', '.join(f.metric.name for f in self.feeders)}",
                            sum(len(units) for cut in batches.values() for units in cut))
        needs_targets = any(f.metric.needs_targets() for f in self.feeders)
        reader = Reader(self.store.root, self.decodes, self.prepared, needs_targets, self.device)
        stream = reader.read([Batch(key, units) for key in keys for units in batches[key]])
        try:
            for key in keys:
                for feeder in self.feeders:
                    feeder.begin(key)
                for _ in batches[key]:
                    self._feed(next(stream))
                for feeder in self.feeders:
                    feeder.finish(key)
        finally:
            stream.close()

    def _units(self, key: SetKey) -> list[DecodeKey]:
        """The set's units that at least one metric is to be fed, in record order."""
        wanted = {unit for feeder in self.feeders for unit in feeder.plan(key)}
        return [unit for unit in ok_sets(self.decodes, self.prepared)[key] if unit in wanted]

    def _cut(self, units: list[DecodeKey]) -> list[list[DecodeKey]]:
        """Batches of whole seed groups, up to batch_size units (a larger group is one batch)."""
        batches: list[list[DecodeKey]] = []
        for group in seed_groups(units, self.prepared):
            if batches and len(batches[-1]) + len(group) <= self.batch_size:
                batches[-1].extend(group)
            else:
                batches.append(list(group))
        return batches

    def _feed(self, batch: Batch) -> None:
        if batch.preds is None:
            for feeder in self.feeders:
                feeder.fail_read(batch.key, batch.units, batch.error or "no images")
        else:
            preds = images.to_float(batch.preds.to(self.device, non_blocking=True))
            targets = (None if batch.targets is None
                       else images.to_float(batch.targets.to(self.device, non_blocking=True)))
            contexts = self._contexts(batch.units)
            for feeder in self.feeders:
                if batch.targets_error is not None and feeder.metric.needs_targets():
                    feeder.fail_read(batch.key, batch.units, batch.targets_error)
                else:
                    feeder.feed(batch.key, batch.units, preds, targets, contexts)
        self.reporter.advance(len(batch.units))

    def _contexts(self, batch: list[DecodeKey]) -> list[ImageContext]:
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


class Reader:
    """Decodes the PNGs of the coming batches in a background thread, `READ_AHEAD_BATCHES` ahead.

    References stay decoded while they fit `REFERENCE_CACHE_BYTES`, so the next decoder's set of
    the same size does not read them again.
    """

    def __init__(self, root: Path, decodes: dict[DecodeKey, dict[str, Any]],
                 prepared: dict[str, PreparedCase], needs_targets: bool, device: torch.device) -> None:
        self.root, self.decodes, self.prepared = root, decodes, prepared
        self.needs_targets = needs_targets
        self.pin = device.type == "cuda"
        self._references: dict[str, torch.Tensor] = {}
        self._cached_bytes = 0

    def read(self, batches: list[Batch]) -> Iterator[Batch]:
        """The batches in order, their images filled in (or `error` set) by the reader thread."""
        ready: queue.Queue[Batch | None] = queue.Queue(maxsize=READ_AHEAD_BATCHES)
        stop = threading.Event()

        def offer(item: Batch | None) -> bool:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            for batch in batches:
                self._load(batch)
                if not offer(batch):
                    return
            offer(None)

        thread = threading.Thread(target=work, name="decoderbench-png-reader", daemon=True)
        thread.start()
        try:
            while (batch := ready.get()) is not None:
                yield batch
        finally:
            stop.set()
            thread.join()

    def _load(self, batch: Batch) -> None:
        try:
            batch.preds = self._stack([images.read_png(inside(self.root, self.decodes[u]["image"]))
                                       for u in batch.units])
        except Exception as exc:  # an unreadable or missing file: an error for this batch's images
            batch.error = f"{type(exc).__name__}: {exc}"
            return
        if not self.needs_targets:
            return
        try:
            keys = [self.prepared[case].reference_key for _, case in batch.units]
            # A case without a reference gets zeros: no metric that needs targets is fed it.
            batch.targets = self._stack([self._reference(key) if key is not None
                                         else torch.zeros_like(batch.preds[i]) for i, key in enumerate(keys)])
        except Exception as exc:
            batch.targets_error = f"{type(exc).__name__}: {exc}"

    def _stack(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(tensors)
        return stacked.pin_memory() if self.pin else stacked

    def _reference(self, key: str) -> torch.Tensor:
        if key in self._references:
            return self._references[key]
        image = images.read_png(self.root / RunStore.reference_relpath(key))
        if self._cached_bytes + image.numel() <= REFERENCE_CACHE_BYTES:
            self._references[key] = image
            self._cached_bytes += image.numel()
        return image
