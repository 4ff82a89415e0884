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

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backend_bases import RendererBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from harness.metrics.direction import Direction
from harness.view import MEMORY_KINDS
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


Outcome = Callable[[str, str], int]  # +1: the first decoder is better, −1: the second, 0: no decision


def pareto_front(points: Sequence[Point], direction: Direction, cost_outcome: Outcome | None = None,
                 quality_outcome: Outcome | None = None) -> list[str]:
    """Labels of the points no other point dominates: at least as good on both axes and better on
    one. Given outcomes (the paired decisions of the table) "better" is a decided difference and
    an undecided one is a tie; without them, the numbers are compared (quality in the metric's
    direction, closest to a target included)."""
    cost = {label: c for label, c, _ in points}
    bad = {label: direction.badness(q) for label, _, q in points}

    def numeric(values: dict[str, float]) -> Outcome:
        return lambda a, b: (values[a] < values[b]) - (values[a] > values[b])

    by_cost = cost_outcome or numeric(cost)
    by_quality = quality_outcome or numeric(bad)
    front = []
    for label, _, _ in points:
        dominated = any(
            by_cost(other, label) >= 0 and by_quality(other, label) >= 0
            and (by_cost(other, label) > 0 or by_quality(other, label) > 0)
            for other, _, _ in points if other != label)
        if not dominated:
            front.append(label)
    return front


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="svg", bbox_inches="tight", metadata={"Date": None})
    return path


# --------------------------------------------------------------------------- labels that never overlap

# Offsets (points) tried around a marker, nearest first; the farther rings draw a leader line.
_DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1.3), (0, -1.3), (1.3, 0), (-1.3, 0),
               (0.6, 1.2), (-0.6, 1.2), (0.6, -1.2), (-0.6, -1.2), (1.2, 0.6), (-1.2, 0.6), (1.2, -0.6),
               (-1.2, -0.6))
_RINGS = (7, 16, 28, 42, 60, 82, 108, 140)


def place_labels(axes: Axes, anchors: Sequence[tuple[float, float, str, str]], fontsize: float = 9,
                 avoid: Sequence[tuple[float, float]] = (), gid: str = "label") -> list[Text]:
    """Annotate each (x, y, text, colour) anchor at the first offset (nearest first) where its text
    overlaps no label placed before it, no marker (the anchors and `avoid`, in data coordinates),
    no legend, and stays inside the axes; a label moved off its marker gets a thin leader line
    (where no offset is free, the least crowded one). The figure's layout must be final
    (`prepare_for_labels`). Labels carry gids `<gid>-<n>` so that a test can read their boxes
    from the SVG. Returns the labels placed."""
    figure = axes.get_figure()
    assert isinstance(figure, Figure)
    renderer = _renderer(figure)
    frame = axes.get_window_extent(renderer)
    radius = 5 * figure.dpi / 72  # a marker's half size (points → display units)
    obstacles = [Bbox.from_extents(mx - radius, my - radius, mx + radius, my + radius)
                 for mx, my in (axes.transData.transform(xy) for xy in [*(a[:2] for a in anchors), *avoid])]
    legend = axes.get_legend()
    if legend is not None:
        obstacles.append(legend.get_window_extent(renderer))
    texts = []
    for number, (x, y, text, colour) in enumerate(anchors):
        best: tuple[int, Text, Bbox] | None = None
        for offset, leader in _offsets():
            label = axes.annotate(
                text, (x, y), xytext=offset, textcoords="offset points", fontsize=fontsize, color=colour,
                ha="left" if offset[0] > 0 else "right" if offset[0] < 0 else "center",
                va="bottom" if offset[1] > 0 else "top" if offset[1] < 0 else "center", annotation_clip=False,
                arrowprops=dict(arrowstyle="-", color=colour, linewidth=0.6, shrinkA=0, shrinkB=4)
                if leader else None)
            label.set_in_layout(False)
            label.update_positions(renderer)
            box = Text.get_window_extent(label, renderer).padded(2)  # the text, not its leader line
            clash = sum(box.overlaps(other) for other in obstacles) + (0 if _inside(box, frame) else 1)
            if best is not None and clash >= best[0]:
                label.remove()
                continue
            if best is not None:
                best[1].remove()
            best = (clash, label, box)
            if clash == 0:
                break
        assert best is not None
        best[1].set_gid(f"{gid}-{number}")
        obstacles.append(best[2])  # later labels keep off this one
        texts.append(best[1])
    return texts


def _offsets() -> Iterator[tuple[tuple[float, float], bool]]:
    """(offset in points, with a leader line) around a marker, nearest first."""
    for ring in _RINGS:
        for dx, dy in _DIRECTIONS:
            yield (dx * ring, dy * ring), ring > _RINGS[0]


def prepare_for_labels(figure: Figure) -> None:
    """Fix the figure's layout before `place_labels` measures it."""
    _renderer(figure)
    figure.draw_without_rendering()


def _renderer(figure: Figure) -> RendererBase:
    """The renderer that measures text (a Figure made without pyplot has a bare canvas)."""
    if not hasattr(figure.canvas, "get_renderer"):
        FigureCanvasAgg(figure)
    return figure.canvas.get_renderer()  # type: ignore[attr-defined]


def _inside(box: Bbox, frame: Bbox) -> bool:
    return box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1


def _pad_limits(axes: Axes, log_x: bool = False, fraction: float = 0.18, positive_x: bool = False,
                positive_y: bool = False) -> None:
    """Room around the data for the labels; an axis of non-negative quantities (latency, memory,
    sizes: `positive_*`) never goes below zero."""
    low, high = axes.get_ylim()
    span = (high - low) or abs(high) or 1.0
    axes.set_ylim(max(0.0, low - fraction * span) if positive_y else low - fraction * span,
                  high + fraction * span)
    low, high = axes.get_xlim()
    if log_x and low > 0:
        axes.set_xlim(low / (high / low) ** fraction, high * (high / low) ** fraction)
    else:
        span = (high - low) or abs(high) or 1.0
        axes.set_xlim(max(0.0, low - fraction * span) if positive_x else low - fraction * span,
                      high + fraction * span)


@dataclass(frozen=True)
class CostPoint:
    """A decoder on a cost–quality plot: its cost (with the p10–p90 of its timed calls) and quality."""

    label: str
    cost: float
    quality: float
    cost_range: tuple[float, float] | None = None
    best: bool = False  # ★ in the table's column of the metric


def cost_quality_figure(cost_label: str, points: Sequence[CostPoint], metric: str, unit: str,
                        direction: Direction, names: Sequence[str], path: Path,
                        cost_outcome: Outcome | None = None, quality_outcome: Outcome | None = None) -> Path:
    """One cost axis against the metric, every point labelled with its decoder (★ where the table
    marks it), the Pareto front of the paired decisions (outlined points, dashed line) — sized to
    stay readable when a phone shows it 360 px wide."""
    figure = Figure(figsize=(4.8, 3.9), layout="constrained")  # ~460 px wide: ×0.78 on a phone
    axes = figure.add_subplot(1, 1, 1)
    simple = [(p.label, p.cost, p.quality) for p in points]
    front = set(pareto_front(simple, direction, cost_outcome, quality_outcome)) if len(points) > 1 else set()
    for number, point in enumerate(points):
        on_front = point.label in front
        color = color_of(point.label, names)
        if point.cost_range is not None:
            axes.plot(point.cost_range, [point.quality] * 2, color=color, linewidth=1, alpha=0.45, zorder=2)
        marker = axes.scatter([point.cost], [point.quality], s=70 if on_front else 40, color=color, zorder=3,
                              edgecolors="black" if on_front else "none", linewidths=1.2)
        marker.set_gid(f"marker-{number}")
    line = sorted((p.cost, p.quality) for p in points if p.label in front)
    if len(line) > 1:
        axes.plot(*zip(*line, strict=True), color="#555555", linewidth=1, linestyle="--", zorder=1)
    log_x = bool(points) and min(p.cost for p in points) > 0 and _spread(simple) > 20
    if log_x:
        axes.set_xscale("log")
    axes.set_xlabel(f"{cost_label}, lower is better", fontsize=10.5)
    unit_text = f" ({unit})" if unit else ""
    axes.set_ylabel(f"{_plain(metric)}{unit_text}, {direction.label} is better", fontsize=10.5)
    axes.tick_params(labelsize=10)
    _pad_limits(axes, log_x, positive_x=True)
    prepare_for_labels(figure)
    place_labels(axes, [(p.cost, p.quality, _plain(p.label) + (" ★" if p.best else ""),
                         color_of(p.label, names)) for p in points], fontsize=10.5)
    return _save(figure, path)


def _spread(points: Sequence[Point]) -> float:
    costs = [c for _, c, _ in points]
    return max(costs) / min(costs)


def sweep_figure(sweep: SweepView, path: Path) -> Path:
    """Memory (the deciding figure, by its name) and latency against output size, one panel above
    the other (readable on a phone); each size that did not decode is a cross with its status and
    size, labelled where no other label or marker is."""
    figure = Figure(figsize=(6.0, 7.2), layout="constrained")
    names = sweep.decoders
    deciding = MEMORY_KINDS[sweep.deciding_kind][0] if sweep.deciding_kind else "peak memory"
    panels = ((f"{deciding} (GiB)", lambda p: p.peak_memory_bytes and p.peak_memory_bytes / 2**30),
              ("latency median (ms)", lambda p: p.latency_median_ms))
    labelled = []
    for index, (label, value_of) in enumerate(panels):
        axes = figure.add_subplot(2, 1, index + 1)
        top = max((value_of(p) or 0 for p in sweep.points if p.status == "ok"), default=1.0) or 1.0
        failures, drawn = [], []
        for decoder in names:
            points = sweep.of(decoder)
            ok = [(p.megapixels, value_of(p)) for p in points if p.status == "ok" and value_of(p)]
            drawn += ok
            if ok:
                axes.plot(*zip(*ok, strict=True), marker="o", markersize=4, color=color_of(decoder, names),
                          label=_plain(decoder) if index == 0 else None)
            for p in points:
                if p.status != "ok":
                    y = value_of(p) or top * 1.1
                    axes.scatter([p.megapixels], [y], marker="x", s=60, color=FAILED_COLOR, zorder=4)
                    status = p.status.upper() if p.status == "oom" else p.status
                    failures.append((p.megapixels, y, f"{status} {p.size[0]}×{p.size[1]}", FAILED_COLOR))
        axes.set_xlabel("output size (megapixels)", fontsize=10)
        axes.set_ylabel(label, fontsize=10)
        axes.tick_params(labelsize=9)
        _pad_limits(axes, fraction=0.12, positive_x=True, positive_y=True)
        labelled.append((axes, failures, drawn))
    if len(names) > 1:
        figure.legend(loc="outside upper center", ncols=min(3, len(names)), fontsize=9, frameon=False)
    figure.suptitle(f"memory wall: {_plain(sweep.title)} (× did not decode)", fontsize=10)
    prepare_for_labels(figure)
    for number, (axes, failures, drawn) in enumerate(labelled):
        place_labels(axes, failures, fontsize=8.5, avoid=drawn, gid=f"label-{number}")
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
