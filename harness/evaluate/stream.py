"""One pass over the stored images: every set once, batch by batch, read ahead by a background thread.

Memory is three batches of images plus the largest metric's working set, never a whole run;
references are kept decoded for the next decoder's set of the same size while they fit
`REFERENCE_CACHE_BYTES`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness import images
from harness.evaluate.feeder import (
    Feeder,
    SetKey,
    ok_sets,
    seed_group,
    seed_groups,
)
from harness.metrics.base import (
    ImageContext,
)
from harness.progress import Reporter
from harness.records import DecodeKey
from harness.sources.prepare import PreparedCase
from harness.store import RunStore, inside

READ_AHEAD_BATCHES = 2


REFERENCE_CACHE_BYTES = 512 << 20


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
