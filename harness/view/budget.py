"""Where an invocation's wall time went: sources, worker start-ups, decoder calls, writing, metrics.

Each decode batch and worker start counts in the invocation whose interval holds its record's
time, so the harness's own share is never negative (docs/measurement.md, where the time went).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace

from harness.records import DecodeRecord, Invocation, LoadRecord
from harness.view.run import RunView


@dataclass(frozen=True)
class TimeBudget:
    """Where wall time went: one invocation (`run`, or a `run --resume`), or all of them summed."""

    wall_s: float
    decoder_calls_s: float  # every decode call: warm-up and timed repeats
    worker_startup_s: float  # start → ready of every worker: process, imports, decoder load
    metrics_s: float  # the evaluation phase
    judge_s: float
    sources_s: float = 0.0  # inputs: references, encoders, text-to-image pipelines (a phase of its own)
    writing_s: float = 0.0  # time decoding waited for the image writer (PNG encoding, fsync)
    writer_background_s: float = 0.0  # writer time spent while workers decoded (not on the wall)
    slots: int = 1  # workers at once: their calls and start-ups are shared over this many
    server_s: float = 0.0  # waiting for the worker server's imports, before the first worker starts
    complete: bool = True  # False: an invocation was killed; its wall runs from its start to its last record
    invocations: tuple[TimeBudget, ...] = ()

    @property
    def decoding_s(self) -> float:
        """Decoder calls as wall time: summed calls ÷ slots (exact for one slot), per invocation."""
        if self.invocations:
            return sum(i.decoding_s for i in self.invocations)
        return self.decoder_calls_s / self.slots

    @property
    def startup_wall_s(self) -> float:
        """Worker start-ups as wall time (shared over the slots), and the server they fork from."""
        if self.invocations:
            return sum(i.startup_wall_s for i in self.invocations)
        return self.worker_startup_s / self.slots + self.server_s

    @property
    def harness_s(self) -> float:
        """Everything else: IPC, checks, records, scheduling, the runner itself (and idle slots). Each
        part is counted in the invocation it happened in, so this is never negative (0 within clock
        jitter)."""
        rest = (self.wall_s - self.sources_s - self.decoding_s - self.startup_wall_s - self.writing_s
                - self.metrics_s - self.judge_s)
        return max(0.0, rest)

    @property
    def overhead_fraction(self) -> float:
        """(wall − sources − decoder calls − metrics − judge) / wall: the share of the wall the
        harness adds around the work it runs (worker start-up, writing and the rest)."""
        if not self.wall_s:
            return 0.0
        work = self.sources_s + self.decoding_s + self.metrics_s + self.judge_s
        return max(0.0, self.wall_s - work) / self.wall_s


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def _calls_ms(record: DecodeRecord) -> float:
    return sum((record.get("latency") or {}).get("samples_ms", [])) + \
        ((record.get("warmup") or {}).get("total_ms") or 0.0)


def time_budget(view: RunView) -> TimeBudget | None:
    """Per invocation and in total. Each decode batch and worker start counts in the invocation
    whose interval holds its record's time; a killed invocation (no wall_s) lasts from its start
    to its last record, with the phase it was in taking what the records do not explain."""
    phases = view.manifest.get("phases") or []
    if not phases:
        return None
    if not all(p.get("started") for p in phases):  # runs written before invocations were timed
        return _budget(phases, list(view.decodes.values()), view.load_records)
    starts = [_seconds(p["started"]) for p in phases]

    def invocation_of(iso: str) -> int:
        return max(0, bisect.bisect_right(starts, _seconds(iso)) - 1)

    per: list[list[DecodeRecord | LoadRecord]] = [[] for _ in phases]
    for record in [*view.decodes.values(), *view.load_records]:
        if record.get("time"):
            per[invocation_of(record["time"])].append(record)
    last: list[float | None] = [None for _ in phases]
    for iso in (r["time"] for r in view.records if isinstance(r.get("time"), str)):
        index, at = invocation_of(iso), _seconds(iso)
        last[index] = max(at, last[index] or at)
    invocations = tuple(_invocation(*args) for args in zip(phases, starts, last, per, strict=True))
    def total(name: str) -> float:
        return sum(getattr(i, name) for i in invocations)

    return TimeBudget(
        wall_s=total("wall_s"), decoder_calls_s=total("decoder_calls_s"),
        worker_startup_s=total("worker_startup_s"), metrics_s=total("metrics_s"), judge_s=total("judge_s"),
        sources_s=total("sources_s"), writing_s=total("writing_s"),
        writer_background_s=total("writer_background_s"), slots=max(i.slots for i in invocations),
        complete=all(i.complete for i in invocations), invocations=invocations, server_s=total("server_s"))


def _budget(phases: list[Invocation], decodes: list[DecodeRecord], loads: list[LoadRecord],
            wall_s: float | None = None, complete: bool = True) -> TimeBudget:
    calls_ms, seen = 0.0, set()
    for record in decodes:
        if record.get("kind") != "decode":
            continue
        batch = (record["decoder"], record.get("batch_id") or record["case"])
        if batch not in seen:
            seen.add(batch)
            calls_ms += _calls_ms(record)
    startup_ms = sum(r.get("spawn_to_ready_ms") or 0.0 for r in loads if r.get("kind") == "load")

    def total(key: str) -> float:
        return sum(p.get(key, 0.0) for p in phases)

    return TimeBudget(
        wall_s=sum(p.get("wall_s", 0.0) for p in phases) if wall_s is None else wall_s,
        decoder_calls_s=calls_ms / 1e3, worker_startup_s=startup_ms / 1e3,
        metrics_s=total("evaluate_s"), judge_s=total("judge_s"), sources_s=total("sources_s"),
        writing_s=total("writing_s"),
        writer_background_s=max(0.0, total("writer_busy_s") - total("writing_s")),
        slots=max(int(p.get("slots", 1)) for p in phases), complete=complete, server_s=total("server_s"))


def _invocation(phase: Invocation, start: float, last: float | None,
                records: list[DecodeRecord | LoadRecord]) -> TimeBudget:
    if phase.get("wall_s") is not None:
        return _budget([phase], records, records)
    # Killed: from its start to its last record; the phase it was in when killed gets the rest.
    budget = _budget([phase], records, records, wall_s=max(0.0, (last or start) - start), complete=False)
    done = sum(phase.get(k, 0.0) for k in ("sources_s", "decode_s", "evaluate_s"))
    unexplained = max(0.0, budget.wall_s - done)
    if "decode_s" in phase and "evaluate_s" not in phase:
        return replace(budget, metrics_s=budget.metrics_s + unexplained)
    if "evaluate_s" in phase and "judge_s" not in phase:
        return replace(budget, judge_s=budget.judge_s + unexplained)
    return budget
