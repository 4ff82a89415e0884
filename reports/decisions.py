"""Decisions a reader can trust: paired comparisons, ties within noise, summary win rates.

For every criterion of a comparison size — each metric, and the two costs
(latency per image, peak memory) — decoders are compared pairwise over the
cases both have values for. The paired difference of their values (on the
criterion's "smaller is better" axis, see harness.metrics.direction) is
resampled over cases (a percentile bootstrap, fixed seed); a decoder is
better than another only when the 95 % interval excludes zero *and* the
mean difference exceeds the criterion's resolution (for costs, a relative
margin that run-to-run timing and RSS noise stay under). Everything else is
a tie. So:

- the best mark goes to the best decoder and to every decoder tied with it
  ("tied within noise"); identical runs give identical marks (quality values
  are reproducible; a latency difference must also exceed the decoders' own
  timing spread, p10–p90 of their calls relative to the median, which is what
  moves between runs on a busy machine);
- a criterion on which no two decoders differ, or that its metric declares
  uninformative (legibility when OCR cannot read the reference itself), is
  flagged and left out of the win rates, its reference value shown;
- summary groups (the suite's `[summary]`, else one per metric family plus
  cost) score each decoder HELM-style: the share of other decoders it beats
  on a criterion (a tie counts one half), averaged over the group's criteria
  with their weights; "overall" is the mean of the group win rates.

Set-level values without per-case values (FID, KID) cannot be paired: they
are ranked by value and say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import combinations
from typing import Any

import numpy as np

from harness.metrics.direction import LOWER, Direction
from reports.aggregate import MetricSummary, Row, RunView, Size, registry_metric

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
COST_GROUP = "cost"
# Costs are ranked only on differences above run-to-run noise: 10 % of latency, and 5 % of peak
# memory or 16 MiB, whichever is larger (CPU RSS moves by a few MiB between identical runs).
LATENCY_MARGIN = 0.10
ENERGY_MARGIN = 0.10  # energy per image: a timing figure times a power figure, as noisy as latency
MEMORY_MARGIN, MEMORY_FLOOR_BYTES = 0.05, 16 * 2**20


@dataclass(frozen=True)
class Criterion:
    key: str  # "metric:<name>", "cost:latency", "cost:memory", "cost:energy"
    label: str
    direction: Direction
    group: str | None  # summary group; None: shown, not ranked
    weight: float = 1.0

    def margin(self, value: float, spread: float = 0.0) -> float:
        """Differences at or below this are ties whatever the interval says; `value` is the
        better of the two headlines, `spread` the larger relative timing spread of the two."""
        if self.key == "cost:latency":
            return max(LATENCY_MARGIN, spread) * abs(value)
        if self.key == "cost:memory":
            return max(MEMORY_MARGIN * abs(value), MEMORY_FLOOR_BYTES)
        if self.key == "cost:energy":
            return ENERGY_MARGIN * abs(value)
        return 0.0


@dataclass(frozen=True)
class Pairing:
    """a vs b on one criterion: the mean paired difference of badness (a − b; < 0: a is better)."""

    delta: float
    low: float | None  # 95 % bootstrap interval; None where values could not be paired
    high: float | None
    n: int  # paired cases (0: compared by set value)
    outcome: int  # +1 a better, −1 b better, 0 tie


@dataclass
class Decision:
    criterion: Criterion
    values: dict[str, float]  # decoder → headline value
    best: str | None = None
    marked: set[str] = field(default_factory=set)  # best, and those tied with it
    versus_best: dict[str, Pairing] = field(default_factory=dict)  # decoder → it vs the best
    outcomes: dict[tuple[str, str], int] = field(default_factory=dict)
    uninformative: str | None = None
    reference_value: float | None = None

    def note(self, decoder: str) -> str:
        """Why a decoder has (or lacks) the best mark, for hover text and logs."""
        if decoder not in self.values:
            return ""
        if decoder == self.best:
            ties = sorted(self.marked - {decoder})
            return "best" + (f"; tied within noise: {', '.join(ties)}" if ties else "")
        pairing = self.versus_best.get(decoder)
        if pairing is None or self.best is None:
            return ""
        verdict = "tied with the best within noise" if decoder in self.marked else "worse than the best"
        if pairing.low is None:
            return f"{verdict} ({self.best}); set value, no interval"
        return (f"{verdict} ({self.best}): paired difference {pairing.delta:+.4g} "
                f"[{pairing.low:+.4g}, {pairing.high:+.4g}] over {pairing.n} cases "
                f"({self.criterion.direction.label} is better)")


@dataclass
class SizeDecisions:
    size: Size
    decisions: dict[str, Decision]  # criterion key → decision
    groups: dict[str, list[Criterion]]
    win_rates: dict[str, dict[str, float]]  # group (and "overall") → decoder → mean win rate

    @property
    def group_names(self) -> list[str]:
        return [*self.groups, "overall"] if self.groups else []


# --------------------------------------------------------------------------- criteria


def criteria(view: RunView) -> list[Criterion]:
    """Cost and metric criteria of a run, with the suite's [summary] groups or the default ones."""
    declared = (view.manifest["suite"]["resolved"].get("summary") or None)
    weights: dict[str, tuple[str, float]] = {}
    if declared:
        for group, entries in declared.items():
            for entry in entries:
                weights[entry["metric"]] = (group, float(entry.get("weight", 1.0)))
    found = [Criterion("cost:latency", "latency per image", LOWER, COST_GROUP),
             Criterion("cost:memory", "peak memory", LOWER, COST_GROUP),
             Criterion("cost:energy", "energy per image", LOWER, COST_GROUP)]
    for metric in view.metric_names:
        direction = view.direction(metric)
        if direction is None:
            continue
        info = view.metric_info.get(metric) or {}
        found.append(Criterion(f"metric:{metric}", metric, direction, info.get("group", _group(metric))))
    if declared is None:
        return found
    named = {c.key.split(":", 1)[1]: c for c in found}
    return [Criterion(c.key, c.label, c.direction, *weights[name]) if name in weights
            else Criterion(c.key, c.label, c.direction, None) for name, c in named.items()]


def _group(metric: str) -> str | None:
    cls = registry_metric(metric)
    try:
        return None if cls is None else cls.group()
    except Exception:  # not importable here: shown, not ranked
        return None


def _per_case(row: Row, criterion: Criterion) -> tuple[float | None, dict[str, float], MetricSummary | None]:
    """The headline value and per-case values of a row on a criterion."""
    if criterion.key == "cost:latency":
        return row.image_latency(0.5), row.case_latency_ms, None
    if criterion.key == "cost:memory":
        memory = row.peak_memory_bytes
        per_case = {k: float(v) for k, v in row.case_memory.items()}
        return (None if memory is None else float(memory)), per_case, None
    if criterion.key == "cost:energy":
        energy = row.device_energy
        return row.energy_per_image_j, (energy.case_per_image_j if energy else {}), None
    summary = row.metrics.get(criterion.key.split(":", 1)[1])
    if summary is None:
        return None, {}, None
    return summary.headline, summary.per_case, summary


# --------------------------------------------------------------------------- comparisons


def _timing_spread(row: Row) -> float:
    """(p90 − p10) / median of a row's calls: how much its latency moves within one run."""
    median = row.call_latency(0.5)
    if not median:
        return 0.0
    return (row.call_latency(0.9) - row.call_latency(0.1)) / median  # type: ignore[operator]


@lru_cache(maxsize=16)
def _resamples(n: int) -> np.ndarray:
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    return rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))


def pair(criterion: Criterion, a: dict[str, float], b: dict[str, float],
         headline_a: float, headline_b: float, margin: float) -> Pairing:
    """a against b on one criterion (see the module docstring)."""
    direction = criterion.direction
    common = sorted(a.keys() & b.keys())
    if len(common) < 2:
        delta = direction.badness(headline_a) - direction.badness(headline_b)
        outcome = 0 if abs(delta) <= margin else (1 if delta < 0 else -1)
        return Pairing(delta, None, None, 0, outcome)
    diffs = np.array([direction.badness(a[c]) - direction.badness(b[c]) for c in common])
    means = diffs[_resamples(len(common))].mean(axis=1)
    tail = (1 - CONFIDENCE) / 2
    low, high = (float(q) for q in np.quantile(means, [tail, 1 - tail]))
    delta = float(diffs.mean())
    significant = (high < 0 or low > 0) and abs(delta) > margin
    return Pairing(delta, low, high, len(common), (1 if delta < 0 else -1) if significant else 0)


def decide(view: RunView, size: Size, criterion: Criterion) -> Decision:
    rows = {row.decoder: row for row in view.rows_at(size)}
    headline: dict[str, float] = {}
    per_case: dict[str, dict[str, float]] = {}
    decision = Decision(criterion, headline)
    for decoder, row in rows.items():
        value, cases, summary = _per_case(row, criterion)
        if value is None or not math.isfinite(value):
            continue
        headline[decoder] = value
        per_case[decoder] = cases
        if summary is not None:
            details = summary.aggregate_details or {}
            decision.uninformative = decision.uninformative or details.get("uninformative")
            if details.get("reference_value") is not None:
                decision.reference_value = details["reference_value"]
    decision.best = criterion.direction.best(headline)
    if decision.best is None:
        return decision
    spread = {d: _timing_spread(rows[d]) for d in headline} if criterion.key == "cost:latency" else {}
    for a, b in combinations(headline, 2):
        better = min(headline[a], headline[b], key=criterion.direction.badness)
        margin = criterion.margin(better, max(spread.get(a, 0.0), spread.get(b, 0.0)))
        pairing = pair(criterion, per_case[a], per_case[b], headline[a], headline[b], margin)
        decision.outcomes[(a, b)], decision.outcomes[(b, a)] = pairing.outcome, -pairing.outcome
        if b == decision.best:
            decision.versus_best[a] = pairing
        elif a == decision.best:
            decision.versus_best[b] = Pairing(-pairing.delta, None if pairing.high is None else -pairing.high,
                                              None if pairing.low is None else -pairing.low,
                                              pairing.n, -pairing.outcome)
    decision.marked = {decision.best} | {d for d, p in decision.versus_best.items() if p.outcome == 0}
    if len(headline) >= 2 and decision.uninformative is None and not any(decision.outcomes.values()):
        decision.uninformative = "does not separate the decoders: every difference is within noise"
    return decision


# --------------------------------------------------------------------------- summary


def win_rate(decision: Decision, decoder: str) -> float | None:
    """HELM's win rate on one criterion: share of the others beaten, a tie counting one half."""
    others = [d for d in decision.values if d != decoder]
    if decoder not in decision.values or not others:
        return None
    score = sum({1: 1.0, 0: 0.5, -1: 0.0}[decision.outcomes[(decoder, other)]] for other in others)
    return score / len(others)


def decide_size(view: RunView, size: Size) -> SizeDecisions:
    found = criteria(view)
    decisions = {c.key: decide(view, size, c) for c in found}
    groups: dict[str, list[Criterion]] = {}
    for criterion in found:
        if criterion.group is not None:
            groups.setdefault(criterion.group, []).append(criterion)
    decoders = [row.decoder for row in view.rows_at(size)]
    win_rates: dict[str, dict[str, float]] = {}
    for group, members in groups.items():
        win_rates[group] = {}
        for decoder in decoders:
            scored = [(c.weight, rate) for c in members
                      if decisions[c.key].uninformative is None
                      and (rate := win_rate(decisions[c.key], decoder)) is not None]
            if scored:
                total = sum(weight for weight, _ in scored)
                win_rates[group][decoder] = sum(w * r for w, r in scored) / total
    groups = {g: m for g, m in groups.items() if win_rates[g]}
    win_rates = {g: win_rates[g] for g in groups}
    overall: dict[str, float] = {}
    for decoder in decoders:
        rates = [win_rates[g][decoder] for g in groups if decoder in win_rates[g]]
        if rates:
            overall[decoder] = sum(rates) / len(rates)
    if groups:
        win_rates["overall"] = overall
    return SizeDecisions(size, decisions, groups, win_rates)


def summary_rows(view: RunView) -> list[dict[str, Any]]:
    """Win rates as tidy rows (size, decoder, group, win_rate, criteria) for tables and exports."""
    rows = []
    for size in view.sizes:
        decided = decide_size(view, size)
        for group in decided.group_names:
            members = [c.label for c in decided.groups.get(group, [])] if group != "overall" else \
                list(decided.groups)
            for decoder, rate in decided.win_rates[group].items():
                rows.append({"size": size, "decoder": decoder, "group": group, "win_rate": rate,
                             "criteria": members})
    return rows
