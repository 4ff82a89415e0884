"""One block of timed calls measured with energy counters: what the timing loop sees (`EnergyMeter`).

A counter is read around the whole block, and ticked after each call (outside the timed region) to
count its updates; a block shorter than `timing.energy_min_block_s` asks the loop for more calls,
or is marked `low_resolution` where it may not be lengthened (docs/energy-and-price.md).
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

NOT_MEASURED = "not_measured"


LOW_RESOLUTION = "low_resolution"


OK = "ok"


DEFAULT_MIN_BLOCK_S = 1.0


MAX_CALLS = 2000  # the most timed calls a block is lengthened to (a 0.5 ms decode reaches 1 s)


Clock = Callable[[], float]


class Counter(Protocol):
    kind: str  # "gpu" | "cpu"
    source: str  # "nvml_total_energy" | "linux_powercap_rapl"

    def read_mj(self) -> float: ...  # cumulative millijoules, monotonic
    def identity(self) -> dict[str, Any]: ...  # which device the counter belongs to
    def state(self) -> dict[str, Any]: ...  # clocks, temperature, power limit (GPU); {} for the CPU


def not_measured(reason: str) -> dict[str, Any]:
    return {"status": NOT_MEASURED, "reason": reason}


@dataclass(frozen=True)
class Period:
    """How a counter updates, watched before any block: the median time between its changes and
    the median change (what one update adds, while the device does what it did then)."""

    update_interval_s: float | None
    step_mj: float | None
    changes: int


def probe_period(counter: Counter, clock: Clock = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep, poll_s: float = 0.001,
                 max_s: float = 0.5, changes: int = 4) -> Period:
    """Poll a counter (every `poll_s`, at most `max_s`) until it has changed `changes` times."""
    began = clock()
    seen: list[tuple[float, float]] = []
    last = counter.read_mj()
    while len(seen) < changes and clock() - began < max_s:
        sleep(poll_s)
        value = counter.read_mj()
        if value != last:
            seen.append((clock(), value - last))
            last = value
    intervals = [b[0] - a[0] for a, b in itertools.pairwise(seen)]
    return Period(statistics.median(intervals) if intervals else None,
                  statistics.median(step for _, step in seen[1:]) if len(seen) > 1 else None, len(seen))


@dataclass
class BlockMeter:
    """One counter read around a block of timed calls (and after each call, to count its updates)."""

    counter: Counter
    period: Period
    min_block_s: float = DEFAULT_MIN_BLOCK_S
    max_calls: int = MAX_CALLS
    clock: Clock = time.perf_counter
    _reads: list[tuple[float, float]] = field(default_factory=list)  # (time, mJ)
    _state: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        self._state = self.counter.state()
        self._reads = []
        self._read()

    def _read(self) -> None:
        try:
            value = self.counter.read_mj()
        except Exception:  # a counter lost mid-block (driver reset): the block has no figure
            value = math.nan
        self._reads.append((self.clock(), value))

    def tick(self) -> None:
        self._read()

    def elapsed_s(self) -> float:
        return self.clock() - self._reads[0][0] if self._reads else 0.0

    def wants_more(self, calls: int) -> bool:
        return self.elapsed_s() < self.min_block_s and calls < self.max_calls

    def stop(self, calls: int, batch_size: int) -> dict[str, Any]:
        self._read()
        return block_figures(self._reads, calls, batch_size, self.period, self.min_block_s, self.max_calls,
                             {"source": self.counter.source, **self.counter.identity()},
                             self._state, self.counter.state())


def block_figures(reads: Sequence[tuple[float, float]], calls: int, batch_size: int, period: Period,
                  min_block_s: float, max_calls: int, identity: dict[str, Any], before: dict[str, Any],
                  after: dict[str, Any]) -> dict[str, Any]:
    """A block's energy per call and per image (J), mean power (W), and how well it is resolved:
    its energy is off by at most about one counter update at each end, so `resolution` (update
    interval ÷ block length) bounds the relative error."""
    (t0, e0), (t1, e1) = reads[0], reads[-1]
    if any(math.isnan(e) for _, e in reads):
        return {**not_measured("the counter could not be read during the block"), **identity}
    block_s, energy_j = t1 - t0, (e1 - e0) / 1000.0
    changes = sum(b != a for (_, a), (_, b) in itertools.pairwise(reads))
    update_s = period.update_interval_s
    figures: dict[str, Any] = {
        "status": OK, **identity, "energy_j": energy_j, "block_s": block_s, "calls": calls,
        "images": calls * batch_size, "per_call_j": energy_j / calls,
        "per_image_j": energy_j / (calls * batch_size),
        "mean_power_w": energy_j / block_s if block_s > 0 else None,
        "reads": len(reads), "changes": changes, "min_block_s": min_block_s,
        "update_interval_s": update_s, "step_mj": period.step_mj,
        "resolution": update_s / block_s if update_s is not None and block_s > 0 else None,
        "state_start": before, "state_end": after,
    }
    problems = []
    if block_s < min_block_s:
        problems.append(f"the block lasted {block_s:.3g} s, under the {min_block_s:g} s minimum"
                        + (f" (stopped at {max_calls} calls)" if calls >= max_calls else ""))
    if update_s is None:
        problems.append(f"the counter's update interval is unknown (it changed {period.changes} "
                        "time(s) while watched)")
    elif update_s >= block_s:
        problems.append(f"the counter updates every {update_s * 1e3:.3g} ms, not shorter than the block")
    if problems:
        figures.update(status=LOW_RESOLUTION, reason="; ".join(problems))
    return figures


@dataclass
class Unmeasured:
    """A counter that cannot be read: no lengthening, one reason."""

    reason: str

    def start(self) -> None:
        pass

    def tick(self) -> None:
        pass

    def wants_more(self, calls: int) -> bool:
        return False

    def stop(self, calls: int, batch_size: int) -> dict[str, Any]:
        return not_measured(self.reason)


class EnergyMeter:
    """The meters of one task's timed block, by kind ("gpu", "cpu"): what measure() consults."""

    def __init__(self, meters: dict[str, BlockMeter | Unmeasured], sync: Callable[[], None] = lambda: None):
        self.meters, self.sync = meters, sync

    def start(self) -> None:
        self.sync()
        for meter in self.meters.values():
            meter.start()

    def tick(self) -> None:
        for meter in self.meters.values():
            meter.tick()

    def wants_more(self, calls: int) -> bool:
        """The block is too short for a counter that is read: the loop should time more calls."""
        return any(meter.wants_more(calls) for meter in self.meters.values())

    def stop(self, calls: int, batch_size: int) -> dict[str, Any]:
        self.sync()
        return {kind: meter.stop(calls, batch_size) for kind, meter in self.meters.items()}
