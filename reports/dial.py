"""The fidelity–plausibility dial: each decoder's fidelity and plausibility against the knob.

A generative decoder fed a noisier latent (a larger σ of the suite's `sigmas`, or an earlier
stop of the prompts pipeline, `stop_at_step`) leans on what it invents: its outputs drift from
the reference (fidelity falls) while they may stay plausible. Which point on that curve a use
case wants is a setting a team must choose, so the report draws it as curves, not a table:

- fidelity: the full-reference metrics of the run (PSNR, SSIM, LPIPS, DISTS, ...);
- plausibility: the no-reference metrics (NR-IQA) and the pairwise judge's win rate.

Each point is the mean over the cases at that σ (or stop step) with its 95 % interval
(normal approximation, as the leaderboard's), the judge's win rate (ties ½) with its Wilson
interval. Against σ: one run whose cases cover two or more σ. Against the stop step: two or
more runs of one suite whose pipelines stop at different steps.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.judge.aggregate import combine_orders, wilson_interval
from harness.metrics.direction import HIGHER, Direction
from harness.view import RunView, ci95_half, registry_metric

Kind = Literal["fidelity", "plausibility"]
FAMILY_KINDS: dict[str, Kind] = {"full_reference": "fidelity", "no_reference": "plausibility"}


@dataclass(frozen=True)
class DialPoint:
    x: float
    mean: float
    low: float
    high: float
    n: int


@dataclass
class DialPanel:
    metric: str
    kind: Kind
    unit: str
    direction: Direction | None
    series: dict[str, list[DialPoint]] = field(default_factory=dict)  # decoder → points by x


@dataclass
class Dial:
    axis: str  # what x is
    panels: list[DialPanel]


def _kind(view: RunView, metric: str) -> Kind | None:
    family = (view.metric_info.get(metric) or {}).get("family")
    if family is None:
        cls = registry_metric(metric)
        family = str(getattr(cls, "family", "")) if cls is not None else None
    return FAMILY_KINDS.get(str(family))


def _mean_point(x: float, values: list[float]) -> DialPoint:
    mean = statistics.fmean(values)
    half = ci95_half(values) or 0.0
    return DialPoint(x, mean, mean - half, mean + half, len(values))


def _metric_panels(runs: list[tuple[RunView, Callable[[str], float]]]) -> list[DialPanel]:
    """Per metric of a fidelity or plausibility family: per decoder, per x, the mean over cases."""
    first = runs[0][0]
    panels = []
    for metric in first.metric_names:
        kind = _kind(first, metric)
        if kind is None:
            continue
        panel = DialPanel(metric, kind, first.unit(metric), first.direction(metric))
        for decoder in first.decoders:
            by_x: dict[float, list[float]] = {}
            for view, x_of in runs:
                for case, value in view.metric_over_sizes(decoder, metric).per_case.items():
                    if math.isfinite(value):
                        by_x.setdefault(x_of(case), []).append(value)
            if len(by_x) > 1:
                panel.series[decoder] = [_mean_point(x, v) for x, v in sorted(by_x.items())]
        if panel.series:
            panels.append(panel)
    return panels


def _judge_panels(runs: list[tuple[RunView, Callable[[str], float]]]) -> list[DialPanel]:
    """Per judge criterion: each decoder's share of its judged comparisons won, per x."""
    tallies: dict[str, dict[str, dict[float, list[float]]]] = {}  # criterion → decoder → x → shares
    for view, x_of in runs:
        by_criterion: dict[str, list[dict[str, Any]]] = {}
        for record in view.judge_records:
            by_criterion.setdefault(record.get("criterion", "overall"), []).append(record)
        for criterion, records in by_criterion.items():
            for (case, a, b), outcome in combine_orders(records).items():
                if not outcome["complete"] or outcome["verdict"] is None or case not in view.cases:
                    continue
                share = {"a": 1.0, "b": 0.0, "tie": 0.5}[outcome["verdict"]]
                x = x_of(case)
                for decoder, won in ((a, share), (b, 1 - share)):
                    tallies.setdefault(criterion, {}).setdefault(decoder, {}).setdefault(x, []).append(won)
    panels = []
    for criterion, decoders in sorted(tallies.items()):
        panel = DialPanel(f"judge win rate · {criterion}", "plausibility", "share of comparisons won", HIGHER)
        for decoder, by_x in decoders.items():
            if len(by_x) > 1:
                panel.series[decoder] = [_rate_point(x, shares) for x, shares in sorted(by_x.items())]
        if panel.series:
            panels.append(panel)
    return panels


def _rate_point(x: float, shares: list[float]) -> DialPoint:
    low, high = wilson_interval(sum(shares), len(shares))
    return DialPoint(x, sum(shares) / len(shares), low, high, len(shares))


def sigma_dial(view: RunView) -> Dial | None:
    """Against σ, the noise added to the latent: a run whose cases cover two or more σ."""
    if len({case["sigma"] for case in view.cases.values()}) < 2:
        return None
    runs = [(view, lambda case: float(view.cases[case]["sigma"]))]
    panels = _metric_panels(runs) + _judge_panels(runs)
    return Dial("σ, the noise added to the decoder's input latent", panels) if panels else None


def stop_step(view: RunView) -> int | None:
    source = view.manifest["suite"]["resolved"].get("source") or {}
    return (source.get("pipeline") or {}).get("stop_at_step")


def stop_step_dial(views: list[RunView]) -> Dial | None:
    """Against the prompts pipeline's stop step: runs of one suite that stop at different steps
    (the newest run of each step)."""
    newest: dict[int, RunView] = {}
    for view in sorted(views, key=lambda v: str(v.manifest.get("created", ""))):
        step = stop_step(view)
        if step is not None:
            newest[step] = view
    if len(newest) < 2:
        return None
    runs = [(view, lambda case, step=step: float(step)) for step, view in sorted(newest.items())]
    panels = _metric_panels(runs) + _judge_panels(runs)
    return Dial("the step after which the text-to-image pipeline stops (x_t captured)", panels) \
        if panels else None
