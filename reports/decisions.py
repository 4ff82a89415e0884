"""Decisions a reader can trust: paired tests with a known error rate, an honest summary.

Per criterion, exact sign-flip tests of every decoder pair, Holm at 5 %: the best mark goes to the
best decoder and every one not separated from it, or the criterion says why nothing was decided;
summary groups score HELM-style win rates (docs/statistics.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from harness.metrics.direction import HIGHER, LOWER, Direction
from harness.records import Size
from harness.stats import ALPHA, UNSTABLE_SPREAD, cases_needed, holm, sign_flip_pvalues, sign_test_pvalue
from harness.view import MetricSummary, Row, RunView, registry_metric

COST_GROUP = "cost"


# Costs are ranked only on differences above run-to-run noise: 10 % of latency, and 5 % of peak
# memory or 16 MiB, whichever is larger (CPU RSS moves by a few MiB between identical runs).
LATENCY_MARGIN = 0.10


ENERGY_MARGIN = 0.10  # energy per image: a timing figure times a power figure, as noisy as latency


MEMORY_MARGIN, MEMORY_FLOOR_BYTES = 0.05, 16 * 2**20


# Why a criterion ranks nothing (Decision.state), and the header tag that says so.
TOO_FEW, UNINFORMATIVE, TIED, UNSTABLE, SET_VALUE, SINGLE = (
    "too_few", "uninformative", "tied", "unstable", "set_value", "single")


STATE_TAGS = {TOO_FEW: "too few cases", UNINFORMATIVE: "uninformative", TIED: "no difference",
              UNSTABLE: "unstable", SET_VALUE: "not tested", SINGLE: "one decoder"}


@dataclass(frozen=True)
class Criterion:
    key: str  # "metric:<name>", "cost:latency", "cost:memory", "cost:energy"
    label: str
    direction: Direction
    group: str | None  # summary group; None: shown, not ranked
    weight: float = 1.0

    @property
    def is_cost(self) -> bool:
        return self.key.startswith("cost:")

    @property
    def is_judge(self) -> bool:
        return self.key.startswith("judge:")

    def margin(self, value: float) -> float:
        """Differences at or below this are no decision whatever the test says; `value` is the
        better of the two headlines."""
        if self.key == "cost:latency":
            return LATENCY_MARGIN * abs(value)
        if self.key == "cost:memory":
            return max(MEMORY_MARGIN * abs(value), MEMORY_FLOOR_BYTES)
        if self.key == "cost:energy":
            return ENERGY_MARGIN * abs(value)
        return 0.0


@dataclass(frozen=True)
class Pairing:
    """a vs b on one criterion: the mean paired difference of badness (a − b; < 0: a is better)."""

    delta: float
    p: float | None  # the sign-flip test's two-sided p-value (None: not tested, see `reason`)
    n: int  # paired units: cases, or calls of one batch size for costs
    outcome: int  # +1 a better, −1 b better, 0 no decision
    reason: str = ""  # why it was not tested, or why a rejection was no decision

    def flipped(self) -> Pairing:
        return Pairing(-self.delta, self.p, self.n, -self.outcome, self.reason)


@dataclass
class Decision:
    criterion: Criterion
    values: dict[str, float]  # decoder → headline value
    best: str | None = None
    marked: set[str] = field(default_factory=set)  # best, and those not separated from it
    versus_best: dict[str, Pairing] = field(default_factory=dict)  # decoder → it vs the best
    outcomes: dict[tuple[str, str], int] = field(default_factory=dict)
    state: str | None = None  # None: it decided something; else why not (STATE_TAGS)
    reason: str | None = None  # the sentence that says why not
    reference_value: float | None = None
    excluded: dict[str, str] = field(default_factory=dict)  # decoder → why it is not compared
    pairings: dict[tuple[str, str], Pairing] = field(default_factory=dict)  # every compared pair
    pairs: int = 0  # comparisons in the Holm family
    needed: int | None = None  # units a decision needs with this family

    @property
    def informative(self) -> bool:
        return self.state is None

    @property
    def tag(self) -> str | None:
        if self.state == TOO_FEW and self.criterion.is_cost:
            return "too few calls"
        return STATE_TAGS.get(self.state or "")

    def note(self, decoder: str) -> str:
        """Why a decoder has (or lacks) the best mark, for hover text and logs."""
        if decoder in self.excluded:
            return self.excluded[decoder]
        if decoder not in self.values:
            return ""
        if not self.informative:
            return self.reason or ""
        if decoder == self.best:
            ties = sorted(self.marked - {decoder})
            return "best" + (f"; not separated from: {', '.join(ties)}" if ties else "")
        pairing = self.versus_best.get(decoder)
        if pairing is None or self.best is None:
            return ""
        verdict = "not separated from the best" if decoder in self.marked else "worse than the best"
        if pairing.p is None:
            return f"{verdict} ({self.best}): {pairing.reason}"
        extra = f"; {pairing.reason}" if pairing.reason else ""
        test = "sign test" if self.criterion.is_judge else "sign-flip"
        return (f"{verdict} ({self.best}): paired difference {pairing.delta:+.4g} over {pairing.n} "
                f"{'calls' if self.criterion.is_cost else 'cases'}, {test} p = {pairing.p:.3g} "
                f"(Holm over {self.pairs} pairs at {ALPHA:.0%}; {self.criterion.direction.label} is "
                f"better){extra}")


def criteria(view: RunView) -> list[Criterion]:
    """Cost and metric criteria of a run, with the suite's [summary] groups or the default ones."""
    declared = summary_groups(view)
    found = [Criterion("cost:latency", "latency per image", LOWER, COST_GROUP),
             Criterion("cost:memory", "peak memory", LOWER, COST_GROUP),
             Criterion("cost:energy", "energy per image", LOWER, COST_GROUP)]
    for metric in view.metric_names:
        direction = view.direction(metric)
        if direction is None:
            continue
        info = view.metric_info.get(metric) or {}
        found.append(Criterion(f"metric:{metric}", metric, direction, info.get("group", _group(metric))))
    judged = dict.fromkeys(r.get("criterion") or "overall" for r in view.judge_records)
    found += [Criterion(f"judge:{name}", f"judge {name}", HIGHER, "judge") for name in judged]
    if declared is None:
        return found
    placed: dict[str, tuple[str, float]] = {}
    for group, (_, entries) in declared.items():
        for name, weight in entries:
            placed[name] = (group, weight)
    named = {c.key.split(":", 1)[1]: c for c in found if not c.is_judge}
    return [Criterion(c.key, c.label, c.direction, *placed[name]) if name in placed
            else Criterion(c.key, c.label, c.direction, None) for name, c in named.items()]


def summary_groups(view: RunView) -> dict[str, tuple[float, list[tuple[str, float]]]] | None:
    """The suite's [summary]: group → (its weight in overall, [(metric, weight)]); None: default."""
    declared = view.manifest["suite"]["resolved"].get("summary") or None
    if not declared:
        return None
    groups = {}
    for group, spec in declared.items():
        entries = spec.get("metrics", []) if isinstance(spec, dict) else spec
        weight = float(spec.get("weight", 1.0)) if isinstance(spec, dict) else 1.0
        groups[group] = (weight, [(e["metric"], float(e.get("weight", 1.0))) for e in entries])
    return groups


def _group(metric: str) -> str | None:
    cls = registry_metric(metric)
    try:
        return None if cls is None else cls.group()
    except Exception:  # not importable here: shown, not ranked
        return None


@dataclass
class _Values:
    headline: float
    units: dict[Any, float]  # case id, or a call's cases, → value
    batch_size: int | None = None
    summary: MetricSummary | None = None


def _values(row: Row, criterion: Criterion) -> _Values | None:
    if criterion.key == "cost:latency":
        value = row.image_latency(0.5)
        return None if value is None else _Values(value, row.per_call_latency(), row.batch_size)
    if criterion.key == "cost:memory":
        memory = row.peak_memory_bytes
        return None if memory is None else _Values(float(memory), row.per_call_memory(), row.batch_size)
    if criterion.key == "cost:energy":
        energy = row.energy_per_image_j
        return None if energy is None else _Values(energy, row.per_call_energy(), row.batch_size)
    summary = row.metrics.get(criterion.key.split(":", 1)[1])
    if summary is None or summary.headline is None:
        return None
    return _Values(summary.headline, dict(summary.per_case), None, summary)


def decide(view: RunView, size: Size, criterion: Criterion) -> Decision:
    if criterion.is_judge:
        return _judge_decision(view, size, criterion)
    rows = {row.decoder: row for row in view.rows_at(size)}
    decision = Decision(criterion, {})
    found: dict[str, _Values] = {}
    for decoder, row in rows.items():
        values = _values(row, criterion)
        if values is None or not math.isfinite(values.headline):
            continue
        decision.values[decoder] = values.headline
        if values.summary is not None:
            details = values.summary.aggregate_details or {}
            if details.get("uninformative") and decision.state is None:
                decision.state, decision.reason = UNINFORMATIVE, details["uninformative"]
            if details.get("reference_value") is not None:
                decision.reference_value = details["reference_value"]
        if criterion.key == "cost:latency" and row.latency_unstable:
            decision.excluded[decoder] = (f"unstable: its timed calls spread by {row.latency_spread:.0%} "
                                          f"(IQR / median, above {UNSTABLE_SPREAD:.0%}); not ranked")
            continue
        found[decoder] = values
    decision.best = criterion.direction.best({d: decision.values[d] for d in found})
    _compare(decision, found)
    _settle(decision, found)
    return decision


def _compare(decision: Decision, found: dict[str, _Values]) -> None:
    """Every pair: the sign-flip test where they share units, then Holm over the tested pairs."""
    criterion = decision.criterion
    pairs = list(combinations(found, 2))
    pairings: dict[tuple[str, str], Pairing] = {}
    tested: dict[tuple[str, str], np.ndarray] = {}
    for a, b in pairs:
        va, vb = found[a], found[b]
        delta = criterion.direction.badness(va.headline) - criterion.direction.badness(vb.headline)
        if criterion.is_cost and va.batch_size != vb.batch_size:
            pairings[(a, b)] = Pairing(delta, None, 0, 0, f"timed at different batch sizes "
                                       f"({va.batch_size} vs {vb.batch_size}): not comparable")
            continue
        common = sorted(va.units.keys() & vb.units.keys())
        if not common:
            why = ("one value per set: no per-case values to test a difference on"
                   if not va.units or not vb.units else "no cases in common")
            pairings[(a, b)] = Pairing(delta, None, 0, 0, why)
            continue
        tested[(a, b)] = np.array([criterion.direction.badness(va.units[u]) -
                                   criterion.direction.badness(vb.units[u]) for u in common])
    pvalues = _pvalues(tested)
    keys = list(tested)
    rejected = dict(zip(keys, holm([pvalues[k] for k in keys]), strict=True))
    decision.pairs = len(keys)
    decision.needed = cases_needed(len(keys)) if keys else None
    for key in keys:
        diffs = tested[key]
        delta = float(diffs.mean())
        better = min(found[key[0]].headline, found[key[1]].headline, key=criterion.direction.badness)
        outcome, reason = 0, ""
        if rejected[key]:
            if abs(delta) > criterion.margin(better):
                outcome = 1 if delta < 0 else -1
            else:
                reason = "significant, but within the criterion's resolution"
        pairings[key] = Pairing(delta, pvalues[key], len(diffs), outcome, reason)
    _keep(decision, pairings)


def _keep(decision: Decision, pairings: dict[tuple[str, str], Pairing]) -> None:
    """Record every pair's outcome both ways, and each decoder's pairing against the best."""
    decision.pairings = pairings
    for (a, b), pairing in pairings.items():
        decision.outcomes[(a, b)], decision.outcomes[(b, a)] = pairing.outcome, -pairing.outcome
        if b == decision.best:
            decision.versus_best[a] = pairing
        elif a == decision.best:
            decision.versus_best[b] = pairing.flipped()


def _settle(decision: Decision, found: dict[str, _Values]) -> None:
    """Why nothing was decided, or the best mark: the best and every decoder not separated from it."""
    if decision.state is None:
        decision.state, decision.reason = _why_nothing(decision, found)
    if decision.state is None:
        decision.marked = {decision.best} | {d for d, p in decision.versus_best.items() if p.outcome == 0}


def _judge_decision(view: RunView, size: Size, criterion: Criterion) -> Decision:
    """The judge's verdicts at this size: per pair, the exact sign test of the cases one decoder was
    preferred in both orders against those the other was (ties and inconsistent orders left out),
    Holm over the pairs; a decoder's value is the share of its comparisons it won (ties ½)."""
    from harness.judge.aggregate import combine_orders

    name = criterion.key.split(":", 1)[1]
    records = [r for r in view.judge_records if (r.get("criterion") or "overall") == name
               and tuple(view.cases.get(r["case"], {}).get("output_size") or ()) == size]
    tally: dict[tuple[str, str], list[int]] = {}
    for (_, a, b), outcome in combine_orders(records).items():
        if outcome["complete"]:
            counts = tally.setdefault((a, b), [0, 0, 0])
            counts[{"a": 0, "b": 1}.get(outcome["verdict"], 2)] += 1
    decision = Decision(criterion, {})
    score: dict[str, list[float]] = {}
    for (a, b), (wins_a, wins_b, ties) in tally.items():
        score.setdefault(a, []).extend([1.0] * wins_a + [0.0] * wins_b + [0.5] * ties)
        score.setdefault(b, []).extend([1.0] * wins_b + [0.0] * wins_a + [0.5] * ties)
    decision.values = {d: sum(v) / len(v) for d, v in score.items() if v}
    decision.best = criterion.direction.best(decision.values)
    keys = list(tally)
    pvalues = [sign_test_pvalue(tally[k][0], tally[k][1]) for k in keys]
    decision.pairs, decision.needed = len(keys), cases_needed(len(keys)) if keys else None
    pairings = {}
    for key, p, rejected in zip(keys, pvalues, holm(pvalues), strict=True):
        wins_a, wins_b, ties = tally[key]
        outcome = (1 if wins_a > wins_b else -1) if rejected else 0
        pairings[key] = Pairing((wins_b - wins_a) / (wins_a + wins_b + ties), p, wins_a + wins_b, outcome,
                                f"{ties} tie(s) or inconsistent order(s) left out" if ties else "")
    _keep(decision, pairings)
    _settle(decision, {d: _Values(v, {}) for d, v in decision.values.items()})
    return decision


def _pvalues(tested: dict[tuple[str, str], np.ndarray]) -> dict[tuple[str, str], float]:
    """Sign-flip p-values, the pairs of one n tested together (one matrix product per n)."""
    by_n: dict[int, list[tuple[str, str]]] = {}
    for key, diffs in tested.items():
        by_n.setdefault(len(diffs), []).append(key)
    pvalues = {}
    for keys in by_n.values():
        found = sign_flip_pvalues(np.stack([tested[k] for k in keys], axis=1))
        pvalues.update(zip(keys, (float(p) for p in found), strict=True))
    return pvalues


def _why_nothing(decision: Decision, found: dict[str, _Values]) -> tuple[str | None, str | None]:
    """Why a criterion separates no decoders (None, None where it separates some)."""
    if any(decision.outcomes.values()):
        return None, None
    compared = [p for p in decision.pairings.values() if p.p is not None]
    unit = "calls" if decision.criterion.is_cost else "cases"
    test = "sign test of the judge's verdicts" if decision.criterion.is_judge else "sign-flip test"
    if len(found) < 2:
        if decision.excluded and len(decision.values) >= 2:
            return UNSTABLE, ("every latency row but at most one is unstable (IQR / median of its timed "
                              f"calls above {UNSTABLE_SPREAD:.0%}): not ranked; rerun on a quieter "
                              "machine or with timing.repeats = \"auto\"")
        return SINGLE, "one decoder: nothing to compare"
    if not compared:
        reasons = sorted({p.reason for p in decision.pairings.values()})
        if any("per set" in r for r in reasons):
            return SET_VALUE, ("one value per set, no per-case values: a difference cannot be tested, "
                               "values are shown unranked")
        return TIED, "no pair can be compared: " + "; ".join(reasons)
    largest = max(p.n for p in compared)
    if decision.needed is not None and largest < decision.needed:
        decoders = len(found)
        return TOO_FEW, (f"too few {unit} to separate: n = {largest}, a decision needs ≥ {decision.needed} "
                         f"({decoders} decoders: {decision.pairs} pair{'s' * (decision.pairs > 1)}, Holm at "
                         f"{ALPHA:.0%})")
    return TIED, (f"does not separate the decoders: no paired difference is significant at {ALPHA:.0%} "
                  f"({test}, Holm over {decision.pairs} pairs) and beyond the criterion's resolution")


def win_rate(decision: Decision, decoder: str) -> float | None:
    """HELM's win rate on one criterion: share of the others beaten, no decision counting one half."""
    compared = {d for d in decision.values if d not in decision.excluded}
    others = [d for d in compared if d != decoder]
    if decoder not in compared or not others:
        return None
    score = sum({1: 1.0, 0: 0.5, -1: 0.0}[decision.outcomes.get((decoder, other), 0)] for other in others)
    return score / len(others)
