"""matplotlib figures of the report, written as SVG files (no pyplot global state).

- cost–quality: a quality metric against latency and against peak memory,
  with the Pareto front (no other decoder is both cheaper and better);
- memory wall: peak memory and latency against output size from sweeps,
  every size that did not decode marked with its status;
- history: a metric and latency per decoder checkpoint over runs;
- judge ranking: Bradley–Terry strengths with their 95% intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from harness.metrics.direction import Direction
from reports.aggregate import MEMORY_KINDS
from reports.history import History
from reports.judge import JudgeCriterion
from reports.sweep import SweepView

matplotlib.rcParams.update({
    "font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
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


def cost_quality_figure(panels: Sequence[tuple[str, Sequence[Point]]], metric: str,
                        direction: Direction, names: Sequence[str], path: Path) -> Path:
    """panels: (cost axis label, points) — e.g. latency and peak memory."""
    figure = Figure(figsize=(4.2 * len(panels), 3.4))
    for index, (cost_label, points) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        front = set(pareto_front(points, direction))
        for label, cost, quality in points:
            on_front = label in front
            axes.scatter([cost], [quality], s=46 if on_front else 30, color=color_of(label, names),
                         edgecolors="black" if on_front else "none", zorder=3)
            axes.annotate(label, (cost, quality), textcoords="offset points", xytext=(5, 4), fontsize=8)
        line = sorted((c, q) for label, c, q in points if label in front)
        if len(line) > 1:
            axes.plot(*zip(*line, strict=True), color="#555555", linewidth=1, linestyle="--", zorder=2)
        axes.set_xlabel(f"{cost_label} (lower is better)")
        axes.set_ylabel(f"{metric} ({direction.label} is better)")
        if points and min(c for _, c, _ in points) > 0 and _spread(points) > 20:
            axes.set_xscale("log")
    figure.suptitle(f"cost vs {metric} — Pareto front dashed, front points outlined", fontsize=9)
    return _save(figure, path)


def _spread(points: Sequence[Point]) -> float:
    costs = [c for _, c, _ in points]
    return max(costs) / min(costs)


def sweep_figure(sweep: SweepView, path: Path) -> Path:
    figure = Figure(figsize=(8.6, 3.4))
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
                axes.plot(*zip(*ok, strict=True), marker="o", markersize=4, label=decoder,
                          color=color_of(decoder, names))
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
        if index == 0 and names:
            axes.legend(fontsize=7, frameon=False)
    figure.suptitle(f"memory wall — {_plain(sweep.title)} (× = did not decode)", fontsize=9)
    return _save(figure, path)


def history_figure(history: History, names: Sequence[str], path: Path) -> Path:
    figure = Figure(figsize=(8.6, 3.2))
    runs = list(range(len(history.runs)))
    panels = ((f"{history.metric}", lambda p: p.mean), ("latency median (ms)", lambda p: p.latency_median_ms))
    for index, (label, value_of) in enumerate(panels):
        axes = figure.add_subplot(1, 2, index + 1)
        for line in history.lines:
            xy = [(x, value_of(p)) for x, p in zip(runs, line.points, strict=True) if value_of(p) is not None]
            if xy:
                axes.plot(*zip(*xy, strict=True), marker="o", markersize=4, label=line.label,
                          color=color_of(line.decoder, names))
        axes.set_xticks(runs, [f"#{i + 1}" for i in runs])
        axes.set_xlabel("run (oldest first)")
        axes.set_ylabel(label)
        if index == 0:
            axes.legend(fontsize=7, frameon=False)
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
