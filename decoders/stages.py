"""Per-stage wall times inside one decode call (cascades, PiD, L2P).

The harness times the whole call; multi-stage decoders also say where the
time went. On CUDA each stage boundary synchronizes the device so a stage's
time is its own (the synchronizations are part of the measured call and cost
microseconds). Stage names are recorded in every decode record as `stage_ms`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from decoders.lazy import torch


class StageClock:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.last: dict[str, float] = {}
        self._current: dict[str, float] = {}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self) -> None:
        """Begin a new decode call."""
        self._current = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._sync()
        begin = time.perf_counter_ns()
        try:
            yield
        finally:
            self._sync()
            self.add(name, (time.perf_counter_ns() - begin) / 1e6)

    def add(self, name: str, milliseconds: float) -> None:
        self._current[name] = self._current.get(name, 0.0) + milliseconds

    def finish(self, total_ms: float | None = None, rest: str | None = None) -> None:
        """End the call; with `rest`, the time not in any stage is recorded under that name."""
        if rest is not None and total_ms is not None:
            self._current[rest] = max(0.0, total_ms - sum(self._current.values()))
        self.last = dict(self._current)

    def now_ms(self) -> float:
        self._sync()
        return time.perf_counter_ns() / 1e6
