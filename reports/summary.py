"""The summary of a comparison size: HELM-style win rates per group and overall, and how robust they are.

Each group scores a decoder by the share of the other decoders it beats on the group's informative
criteria (no decision counts ½), weighted; "overall" weighs the quality groups (perceptual ones
lead, cost beside it); the summary says whether its top decoder survives leaving out any one group
(docs/statistics.md, the summary).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness.records import Size
from harness.view import RunView
from reports.decisions import COST_GROUP, Criterion, Decision, criteria, decide, summary_groups, win_rate

OVERALL = "overall"


# A group's weight in "overall" when the suite declares no [summary]: the mission is perceptual
# quality, so perceptual distances and the judge lead; a pixel-fidelity family counts once, a
# no-reference IQA score (one weak, content-biased number) half; cost is never mixed into quality.
DEFAULT_GROUP_WEIGHTS: dict[str, float] = {
    "perceptual": 2.0, "judge": 2.0, "distribution": 1.0, "fidelity": 1.0, "text": 1.0,
    "no_reference": 0.5, COST_GROUP: 0.0,
}


GROUP_ORDER = ("perceptual", "judge", "distribution", "fidelity", "no_reference", "text", COST_GROUP)


@dataclass
class GroupSummary:
    name: str
    criteria: list[Criterion]
    weight: float  # its weight in "overall" (0: shown beside it)
    rates: dict[str, float] = field(default_factory=dict)  # decoder → mean win rate
    reason: str | None = None  # why it ranks nothing (every criterion without a decision)

    @property
    def is_cost(self) -> bool:
        return all(c.is_cost for c in self.criteria)


@dataclass
class SizeDecisions:
    size: Size
    decisions: dict[str, Decision]  # criterion key → decision
    groups: dict[str, GroupSummary]
    overall: dict[str, float] = field(default_factory=dict)  # decoder → weighted mean of its groups
    overall_groups: dict[str, list[str]] = field(default_factory=dict)  # decoder → groups it stands on
    overall_reason: str | None = None  # why there is no overall
    robustness: str | None = None  # whether the top decoder survives leaving out any one group

    @property
    def group_names(self) -> list[str]:
        return [*self.groups, OVERALL] if self.groups else []

    @property
    def win_rates(self) -> dict[str, dict[str, float]]:
        """Group (and "overall") → decoder → win rate, for tables and exports."""
        rates = {name: group.rates for name, group in self.groups.items()}
        if self.groups:
            rates[OVERALL] = self.overall
        return rates

    def weighting(self) -> str:
        """What overall is, in one line (the legend states it): the groups that rank, their weights,
        and those that do not count."""
        counted = [f"{n} ×{g.weight:g}" for n, g in self.groups.items() if g.weight > 0 and g.rates]
        idle = [n for n, g in self.groups.items() if g.weight > 0 and not g.rates]
        beside = [n for n, g in self.groups.items() if g.weight == 0]
        if counted:
            text = "overall = weighted mean of " + ", ".join(counted)
            if idle:
                text += f" ({', '.join(idle)} rank nothing here)"
        else:
            text = "no overall: no quality group ranks anything here"
            text += f" ({', '.join(idle)})" if idle else ""
        return text + (f"; {', '.join(beside)} shown beside it, not in overall" if beside else "")


def decide_size(view: RunView, size: Size) -> SizeDecisions:
    found = criteria(view)
    decisions = {c.key: decide(view, size, c) for c in found}
    declared = summary_groups(view)
    members: dict[str, list[Criterion]] = {}
    for criterion in found:
        if criterion.group is not None:
            members.setdefault(criterion.group, []).append(criterion)
    order = list(declared) if declared else sorted(
        members, key=lambda g: (GROUP_ORDER.index(g) if g in GROUP_ORDER else len(GROUP_ORDER), g))
    decoders = [row.decoder for row in view.rows_at(size)]
    groups = {}
    for name in order:
        if name not in members:
            continue
        weight = declared[name][0] if declared else DEFAULT_GROUP_WEIGHTS.get(name, 1.0)
        groups[name] = _group_summary(name, members[name], weight, decisions, decoders)
    decided = SizeDecisions(size, decisions, groups)
    _overall(decided, decoders)
    return decided


def _group_summary(name: str, members: list[Criterion], weight: float, decisions: dict[str, Decision],
                   decoders: list[str]) -> GroupSummary:
    group = GroupSummary(name, members, weight)
    informative = [c for c in members if decisions[c.key].informative]
    for decoder in decoders:
        scored = [(c.weight, rate) for c in informative
                  if (rate := win_rate(decisions[c.key], decoder)) is not None]
        if scored:
            total = sum(w for w, _ in scored)
            group.rates[decoder] = sum(w * r for w, r in scored) / total
    if not group.rates:
        group.reason = "; ".join(_criterion_reason(decisions[c.key]) for c in members)
    return group


def _criterion_reason(decision: Decision) -> str:
    """A criterion's state in a few words (its column's note has the whole reason)."""
    label = decision.criterion.label
    if not decision.values:
        return f"{label} not measured"
    return f"{label} {decision.tag or 'decides nothing'}"


def _overall(decided: SizeDecisions, decoders: list[str]) -> None:
    counted = {n: g for n, g in decided.groups.items() if g.weight > 0 and g.rates}
    if not any(not g.is_cost for g in counted.values()):
        ranked = [n for n, g in decided.groups.items() if g.weight > 0 and not g.is_cost]
        decided.overall_reason = ("no quality group separates the decoders" if ranked
                                  else "no quality group counts towards overall")
        return
    decided.overall, decided.overall_groups = _weighted(counted, decoders)
    decided.robustness = _robustness(counted, decoders, decided.overall)


def _weighted(groups: dict[str, GroupSummary], decoders: list[str],
              ) -> tuple[dict[str, float], dict[str, list[str]]]:
    """Each decoder's weighted mean over the groups it has a rate in. A decoder needs a rate in a
    quality group: cost values alone (a decoder whose quality could not be scored) give no overall."""
    overall, used = {}, {}
    for decoder in decoders:
        parts = [(g.weight, g.rates[decoder], name) for name, g in groups.items() if decoder in g.rates]
        if not any(not groups[name].is_cost for _, _, name in parts):
            continue
        total = sum(w for w, _, _ in parts)
        overall[decoder] = sum(w * r for w, r, _ in parts) / total
        used[decoder] = [name for _, _, name in parts]
    return overall, used


def _top(rates: dict[str, float]) -> set[str]:
    best = max(rates.values(), default=None)
    return {d for d, r in rates.items() if best is not None and math.isclose(r, best, abs_tol=1e-12)}


def _robustness(groups: dict[str, GroupSummary], decoders: list[str], overall: dict[str, float]) -> str:
    top = _top(overall)
    shown = " and ".join(sorted(top))
    if len(groups) < 2:
        (only,) = groups
        return f"top: {shown}, from the {only} group alone"
    changes = []
    for name in groups:
        rest = {n: g for n, g in groups.items() if n != name}
        without, _ = _weighted(rest, decoders)
        if without and _top(without) != top:
            changes.append(f"without {name}: {' and '.join(sorted(_top(without)))}")
    if not changes:
        return f"top: {shown}; stays on top when any one group is left out"
    return f"top: {shown}; the top changes when one group is left out ({'; '.join(changes)})"


def summary_rows(view: RunView) -> list[dict[str, Any]]:
    """Every group's win rate per decoder, and overall, as tidy rows (size, decoder, group, win_rate,
    criteria, weight, reason) for exports; a group that ranks nothing keeps its rows, with the reason."""
    rows = []
    for size in view.sizes:
        decided = decide_size(view, size)
        decoders = [row.decoder for row in view.rows_at(size)]
        for name, group in decided.groups.items():
            for decoder in decoders:
                rate = group.rates.get(decoder)
                rows.append({"size": size, "decoder": decoder, "group": name, "win_rate": rate,
                             "criteria": [c.label for c in group.criteria], "weight": group.weight,
                             "reason": None if rate is not None else
                             group.reason or f"{decoder} has no value in this group"})
        if not decided.groups:
            continue
        for decoder in decoders:
            rate = decided.overall.get(decoder)
            rows.append({"size": size, "decoder": decoder, "group": OVERALL, "win_rate": rate,
                         "criteria": decided.overall_groups.get(decoder, []), "weight": None,
                         "reason": None if rate is not None else
                         decided.overall_reason or "no value in any quality group"})
    return rows
