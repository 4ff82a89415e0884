"""matplotlib figures of the report, written as SVG files (no pyplot global state).

- cost–quality: a quality metric against latency and against peak memory,
  with the Pareto front (no other decoder is both cheaper and better);
- memory wall: peak memory and latency against output size from sweeps,
  every size that did not decode marked with its status;
- history: a metric and latency per decoder checkpoint over runs;
- judge ranking: Bradley–Terry strengths with their 95% intervals;
- the fidelity–plausibility dial: fidelity and plausibility metrics against σ or the stop step.

Axes name their units; error bars and bands are the intervals of the tables; legends sit
outside the axes, so they never cover data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from harness.metrics.direction import Direction
from reports.aggregate import MEMORY_KINDS
from reports.dial import Dial
from reports.history import History
from reports.judge import JudgeCriterion
from reports.sweep import SweepView

matplotlib.rcParams.update({
    "font.size": 10, "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.alpha": 0.3, "svg.hashsalt": "decoderbench",
})
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
           "#e377c2", "#7f7f7f", "#bcbd22")
FAILED_COLOR = "#b00020"

Point = tuple[str, float, float]  # (label, cost, quality)


def _plain(text: str) -> str:
    """Text from run files shown literally (matplotlib would read $...$ as math)."""
    return text.replace("$", r"\$")


def color_of(name: str, names: Sequence[str]) -> str:
    return PALETTE[list(names).index(name) % len(PALETTE)] if name in names else "#444444"


def pareto_front(points: Sequence[Point], direction: Direction) -> list[str]:
    """Labels of the points no other point dominates (cost ≤ and quality at least as good, one
    strictly); quality is compared in the metric's direction (closest to a target included)."""
    front = []
    for label, cost, quality in points:
        bad = direction.badness(quality)
        dominated = any(
            c <= cost and direction.badness(q) <= bad and (c < cost or direction.badness(q) < bad)
            for other, c, q in points if other != label
        )
        if not dominated:
            front.append(label)
    return front


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="svg", bbox_inches="tight", metadata={"Date": None})
    return path


@dataclass(frozen=True)
class CostPoint:
    """A decoder on a cost–quality plot: cost with its p10–p90 bar, quality with its 95 % interval."""

    label: str
    cost: float
    quality: float
    cost_range: tuple[float, float] | None = None
    quality_ci: float | None = None


def cost_quality_figure(panels: Sequence[tuple[str, Sequence[CostPoint]]], metric: str, unit: str,
                        direction: Direction, names: Sequence[str], path: Path) -> Path:
    """panels: (cost axis label with its unit, points) — latency and peak memory. The Pareto front
    (dashed, outlined points) is drawn where two or more decoders are placed; the legend sits
    outside the axes."""
    figure = Figure(figsize=(5.6 * len(panels) + 1.8, 4.4), layout="constrained")
    quality_label = f"{_plain(metric)}{f' ({unit})' if unit else ''} — {direction.label} is better"
    for index, (cost_label, points) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        simple = [(p.label, p.cost, p.quality) for p in points]
        front = set(pareto_front(simple, direction)) if len(points) > 1 else set()
        for point in points:
            on_front = point.label in front
            xerr = None if point.cost_range is None else [[point.cost - point.cost_range[0]],
                                                          [point.cost_range[1] - point.cost]]
            axes.errorbar([point.cost], [point.quality], xerr=xerr,
                          yerr=None if point.quality_ci is None else [point.quality_ci],
                          fmt="o", markersize=8 if on_front else 6, capsize=3, elinewidth=1,
                          color=color_of(point.label, names), markeredgecolor="black" if on_front else "none",
                          label=_plain(point.label) if index == 0 else None, zorder=3)
        line = sorted((p.cost, p.quality) for p in points if p.label in front)
        if len(line) > 1:
            axes.plot(*zip(*line, strict=True), color="#555555", linewidth=1, linestyle="--", zorder=2,
                      label="Pareto front" if index == 0 else None)
        axes.set_xlabel(f"{cost_label} — lower is better")
        axes.set_ylabel(quality_label)
        if points and min(p.cost for p in points) > 0 and _spread(simple) > 20:
            axes.set_xscale("log")
    figure.legend(loc="outside right upper", fontsize=9, frameon=False)
    figure.suptitle(f"cost vs {_plain(metric)} · bars: p10–p90 of the cost, 95 % interval of the mean",
                    fontsize=10)
    return _save(figure, path)


def _spread(points: Sequence[Point]) -> float:
    costs = [c for _, c, _ in points]
    return max(costs) / min(costs)


def sweep_figure(sweep: SweepView, path: Path) -> Path:
    figure = Figure(figsize=(11, 4.4), layout="constrained")
    names = sweep.decoders
    deciding = MEMORY_KINDS[sweep.deciding_kind][0] if sweep.deciding_kind else "peak memory"
    panels = ((f"{deciding} (GiB)", lambda p: p.peak_memory_bytes and p.peak_memory_bytes / 2**30),
              ("latency median (ms)", lambda p: p.latency_median_ms))
    for index, (label, value_of) in enumerate(panels):
        axes = figure.add_subplot(1, 2, index + 1)
        for decoder in names:
            points = sweep.of(decoder)
            ok = [(p.megapixels, value_of(p)) for p in points if p.status == "ok" and value_of(p)]
            if ok:
                axes.plot(*zip(*ok, strict=True), marker="o", markersize=4, color=color_of(decoder, names),
                          label=_plain(decoder) if index == 0 else None)
            top = max((v for _, v in ok), default=1.0)
            for p in points:
                if p.status != "ok":
                    axes.scatter([p.megapixels], [top], marker="x", s=60, color=FAILED_COLOR, zorder=4)
                    axes.annotate(f"{p.status.upper() if p.status == 'oom' else p.status} "
                                  f"{p.size[0]}×{p.size[1]}", (p.megapixels, top),
                                  textcoords="offset points", xytext=(-6, -12), fontsize=7,
                                  color=FAILED_COLOR, ha="right")
        axes.set_xlabel("output size (megapixels)")
        axes.set_ylabel(label)
    if names:
        figure.legend(loc="outside right upper", fontsize=9, frameon=False)
    figure.suptitle(f"memory wall — {_plain(sweep.title)} (× = did not decode)", fontsize=10)
    return _save(figure, path)


def history_figure(history: History, names: Sequence[str], path: Path, unit: str = "") -> Path:
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    runs = list(range(len(history.runs)))
    panels = ((f"{_plain(history.metric)}{f' ({unit})' if unit else ''}", lambda p: p.mean),
              ("latency per image, median (ms)", lambda p: p.latency_median_ms))
    for index, (label, value_of) in enumerate(panels):
        axes = figure.add_subplot(1, 2, index + 1)
        for line in history.lines:
            xy = [(x, value_of(p)) for x, p in zip(runs, line.points, strict=True) if value_of(p) is not None]
            if xy:
                color = color_of(line.decoder, names)
                axes.plot(*zip(*xy, strict=True), marker="o", markersize=4, color=color,
                          label=_plain(line.label) if index == 0 else None)
        axes.set_xticks(runs, [f"#{i + 1}" for i in runs])
        axes.set_xlabel("run (oldest first)")
        axes.set_ylabel(label)
    figure.legend(loc="outside right upper", fontsize=9, frameon=False)
    return _save(figure, path)


def ranking_figure(criterion: JudgeCriterion, path: Path) -> Path:
    ranking = list(reversed(criterion.ranking))  # strongest on top
    figure = Figure(figsize=(5.0, 0.45 * len(ranking) + 1.0))
    axes = figure.add_subplot(1, 1, 1)
    for y, entry in enumerate(ranking):
        low, high = entry.get("ci95") or (entry["strength"], entry["strength"])
        axes.errorbar([entry["strength"]], [y], xerr=[[entry["strength"] - low], [high - entry["strength"]]],
                      fmt="o", color=PALETTE[0], capsize=3)
    axes.set_yticks(range(len(ranking)), [entry["decoder"] for entry in ranking])
    axes.set_xlabel("Bradley–Terry strength (95% interval)")
    axes.set_title(_plain(f"{criterion.name} — {criterion.judge_model}"), fontsize=9)
    return _save(figure, path)


def dial_figure(dial: Dial, names: Sequence[str], path: Path) -> Path:
    """The fidelity–plausibility dial: one panel per metric (fidelity first), a line per decoder
    with its 95 % band, against σ or the pipeline's stop step."""
    panels = sorted(dial.panels, key=lambda p: p.kind != "fidelity")
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(4.8 * columns + 2.0, 3.8 * rows), layout="constrained")
    labelled: set[str] = set()
    for index, panel in enumerate(panels):
        axes = figure.add_subplot(rows, columns, index + 1)
        for decoder, points in panel.series.items():
            xs = [p.x for p in points]
            color = color_of(decoder, names)
            axes.fill_between(xs, [p.low for p in points], [p.high for p in points], color=color, alpha=0.15,
                              linewidth=0)
            axes.plot(xs, [p.mean for p in points], marker="o", markersize=4, color=color,
                      label=None if decoder in labelled else _plain(decoder))
            labelled.add(decoder)
        arrow = f" {panel.direction.symbol}" if panel.direction else ""
        axes.set_title(f"{panel.kind}: {_plain(panel.metric)}{arrow}", fontsize=10)
        axes.set_ylabel(_plain(panel.unit) or _plain(panel.metric))
        axes.set_xlabel(dial.axis.split(",")[0])
    figure.legend(loc="outside right upper", fontsize=9, frameon=False)
    figure.suptitle(f"fidelity–plausibility dial against {dial.axis} · bands: 95 % intervals", fontsize=10)
    return _save(figure, path)
