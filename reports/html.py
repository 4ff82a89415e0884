"""Static HTML report of one or more runs (Jinja2, autoescaped, no network).

    OUT/index.html                 leaderboards, cost–quality, judge, history, memory wall, run facts
    OUT/cases/<suite>/index.html   case index (reference thumbnails, sortable)
    OUT/cases/<suite>/<case>.html  side-by-side viewer of one case
    OUT/assets/                    the stylesheet and script (no CDN)
    OUT/figures/                   matplotlib SVGs
    OUT/images/, thumbs/, artifacts/   outputs and references (hard links), thumbnails, heat-maps

Runs are grouped by suite; the newest run of a suite gives its leaderboard
and viewer, and every run of it its history. Sweep runs ("kind": "sweep")
give the memory wall. Every link is relative, so the folder works from
file:// and from any static web server.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, partial
from importlib import resources
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from harness import __version__
from harness.errors import DecoderbenchError
from harness.records import Size
from harness.view import MEMORY_KINDS, RunView, format_bytes, load_run
from reports.cells import format_number, status_label
from reports.dial import sigma_dial, stop_step_dial
from reports.facts import RunFacts, run_facts, sweep_facts
from reports.history import History, build_history
from reports.judge import JudgeCriterion, load_judge
from reports.leaderboard import Leaderboard, build_leaderboards
from reports.plots import (
    CostPoint,
    cost_quality_figure,
    dial_figure,
    history_figure,
    ranking_figure,
    sweep_figure,
)
from reports.sweep import SweepView, is_sweep, load_sweep
from reports.viewer import CasePage, case_index_rows, safe_name, write_case_pages


class ReportError(DecoderbenchError, ValueError):
    pass


@dataclass
class CostQualityFigure:
    metric: str
    srcs: list[str]  # one figure per cost axis; none: fewer than two decoders could be placed
    left_out: list[str]


@dataclass
class DialFigure:
    src: str
    axis: str
    metrics: list[str]


@dataclass
class SuiteSection:
    name: str
    latest: RunView
    quality_metric: str | None
    boards: list[Leaderboard]
    cost_quality: dict[Size, list[CostQualityFigure]] = field(default_factory=dict)  # chosen metric first
    dial: DialFigure | None = None
    judge: list[JudgeCriterion] = field(default_factory=list)
    judge_figures: dict[str, str] = field(default_factory=dict)
    histories: list[History] = field(default_factory=list)
    history_figures: dict[Size, str] = field(default_factory=dict)
    cases_page: str = ""
    has_artifacts: bool = False
    note: str = ""

    @property
    def slug(self) -> str:
        return safe_name(self.name)

    @property
    def description(self) -> str:
        return self.latest.manifest["suite"]["resolved"].get("description", "")

    @staticmethod
    def heat(rate: float) -> str:
        """Background of a win-rate cell: green above 50%, red below."""
        strength = min(1.0, abs(rate - 0.5) * 2)
        rgb = "46,160,67" if rate >= 0.5 else "214,39,40"
        return f"rgba({rgb},{0.08 + 0.32 * strength:.2f})"


@dataclass
class SweepSection:
    view: SweepView
    figure: str


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("reports", "templates"),
        autoescape=select_autoescape(["html", "j2"], default=True),
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["bytes"] = format_bytes
    env.filters["words"] = whole_words
    env.filters["plural"] = lambda n, word: f"{n} {word}" + ("" if n == 1 else "s")
    env.globals.update(fmt=format_number, label=status_label)
    return env


def whole_words(text: object) -> Markup:
    """Text for a table header: a word holding a hyphen or dash (a decoder's name, Bradley–Terry)
    in a span that never breaks, so a header wraps between words only."""
    return Markup(" ").join(Markup('<span class="w">{}</span>').format(word) if "-" in word or "–" in word
                            else escape(word) for word in str(text).split(" "))


def render_report(run_dir: Path, out_dir: Path | None = None, metric: str | None = None) -> Path:
    """The report of one run (default folder: RUN_DIR/report)."""
    return render_reports([run_dir], out_dir or run_dir / "report", metric)


def render_reports(run_dirs: list[Path], out_dir: Path, metric: str | None = None) -> Path:
    """Render every run into one static folder; return its index.html."""
    if not run_dirs:
        raise ReportError("give at least one run directory")
    sweeps = [load_sweep(d) for d in run_dirs if is_sweep(d)]
    by_suite: dict[str, list[RunView]] = {}
    for run_dir in run_dirs:
        if not is_sweep(run_dir):
            view = load_run(run_dir)
            by_suite.setdefault(view.suite_name, []).append(view)
    out_dir.mkdir(parents=True, exist_ok=True)
    _copy_assets(out_dir)
    sections = [_suite_section(views, out_dir, metric) for views in by_suite.values()]
    sweep_sections = []
    for index, sweep in enumerate(sweeps):
        path, src = _figure(out_dir, f"sweep-{index}-{sweep.title}")
        sweep_figure(sweep, path)
        sweep_sections.append(SweepSection(sweep, src))
    facts: list[RunFacts] = [run_facts(v) for views in by_suite.values() for v in views]
    facts += [sweep_facts(s) for s in sweeps]
    names = sorted(by_suite) + [s.title for s in sweeps]
    html = _environment().get_template("index.html.j2").render(
        root="", title=f"decoderbench report · {', '.join(names)}", suites=sections, sweeps=sweep_sections,
        run_facts=facts, runs_total=len(run_dirs), version=__version__, memory_kinds=MEMORY_KINDS,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    target = out_dir / "index.html"
    target.write_text(html, encoding="utf-8")
    return target


def _copy_assets(out_dir: Path) -> None:
    assets = out_dir / "assets"
    assets.mkdir(exist_ok=True)
    for name in ("report.css", "report.js"):
        source = resources.files("reports") / "static" / name
        (assets / name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")


def _figure(out_dir: Path, stem: str) -> tuple[Path, str]:
    """Where a figure goes, and its link relative to the report root."""
    path = out_dir / "figures" / f"{safe_name(stem)}.svg"
    return path, path.relative_to(out_dir).as_posix()


def choose_metric(view: RunView, requested: str | None) -> tuple[str | None, str]:
    """The quality metric of the plots — the one asked for, else the suite's first with
    values — and a note when the one asked for is not in the run."""
    if requested is not None and requested in view.metric_names:
        return requested, ""
    note = (f"{requested} is not measured in this run; the plots use another metric"
            if requested is not None else "")
    for name in view.metric_names:
        if any(row.metrics.get(name) and row.metrics[name].mean is not None for row in view.rows):
            return name, note
    return None, note


def _suite_section(views: list[RunView], out_dir: Path, requested_metric: str | None) -> SuiteSection:
    latest = max(views, key=lambda v: str(v.manifest.get("created", "")))
    metric, note = choose_metric(latest, requested_metric)
    section = SuiteSection(latest.suite_name, latest, metric, build_leaderboards(latest), note=note)
    slug = section.slug
    if metric is not None:
        plotted = [metric] + [m for m in latest.metric_names if m != metric]
        for board in section.boards:
            figures = (_cost_quality(board, latest, m, out_dir, slug) for m in plotted)
            section.cost_quality[board.size] = [f for f in figures if f is not None]
    if metric is not None and len(views) > 1:
        section.histories = build_history(views, metric)
        for history in section.histories:
            path, src = _figure(out_dir, f"history-{slug}-{history.size[0]}x{history.size[1]}")
            history_figure(history, latest.decoders, path, latest.unit(metric))
            section.history_figures[history.size] = src
    dial = sigma_dial(latest) or stop_step_dial(views)
    if dial is not None:
        path, src = _figure(out_dir, f"dial-{slug}")
        dial_figure(dial, latest.decoders, path)
        section.dial = DialFigure(src, dial.axis, [p.metric for p in dial.panels])
    section.judge = load_judge(latest.run_dir)
    for criterion in section.judge:
        if criterion.ranking:
            path, src = _figure(out_dir, f"judge-{slug}-{criterion.name}")
            ranking_figure(criterion, path)
            section.judge_figures[criterion.name] = src
    section.has_artifacts = bool(latest.artifacts)
    section.cases_page = _render_cases(latest, out_dir, metric)
    return section


def _cost_quality(board: Leaderboard, view: RunView, metric: str, out_dir: Path,
                  slug: str) -> CostQualityFigure | None:
    """The cost–quality figure of one metric at one size (None: the metric has no direction or
    no values here); no plot, only the reason, when fewer than two decoders can be placed."""
    direction = view.direction(metric)
    column = next((i for i, c in enumerate(board.columns) if c.key == f"metric:{metric}"), None)
    if direction is None or column is None or not any(row.metrics.get(metric) for row, _ in board.rows):
        return None
    panels, left_out = _cost_quality_points(board, metric, column)
    if len(panels[0][2]) < 2:
        return CostQualityFigure(metric, [], left_out)
    quality = _outcomes(board, f"metric:{metric}")
    srcs = []
    for key, label, points in panels:
        path, src = _figure(out_dir, f"cost-{slug}-{board.size[0]}x{board.size[1]}-{metric}-{key}")
        cost_quality_figure(label, points, metric, view.unit(metric), direction, view.decoders, path,
                            _outcomes(board, f"cost:{key}"), quality)
        srcs.append(src)
    return CostQualityFigure(metric, srcs, left_out)


def _outcomes(board: Leaderboard, criterion: str) -> Callable[[str, str], int]:
    """The paired decision of a criterion as an outcome function (+1: the first decoder is better,
    −1: the second, 0: not separated — also when the criterion decides nothing)."""
    assert board.decisions is not None
    decision = board.decisions.decisions.get(criterion)
    if decision is None or not decision.informative:
        return lambda a, b: 0
    return lambda a, b: decision.outcomes.get((a, b), 0)


def _cost_quality_points(board: Leaderboard, metric: str, column: int
                         ) -> tuple[list[tuple[str, str, list[CostPoint]]], list[str]]:
    """Panels (criterion key, axis label, points) — latency per image with p10–p90, the headline
    memory figure, energy per image where two decoders have it — and the decoders that cannot be
    placed, with why."""
    latency: list[CostPoint] = []
    memory: list[CostPoint] = []
    energy: list[CostPoint] = []
    left_out = []
    bytes_max = max((row.peak_memory_bytes or 0 for row, _ in board.rows), default=0)
    unit, scale = ("GiB", 2**30) if bytes_max >= 2**30 else ("MiB", 2**20)
    for row, cells in board.rows:
        summary = row.metrics.get(metric)
        quality = summary.headline if summary is not None else None
        median = row.image_latency(0.5)
        if quality is None or median is None or not math.isfinite(quality):
            left_out.append(f"{row.decoder} ({cells[column].text})")
            continue
        best = cells[column].best
        latency.append(CostPoint(row.decoder, median, quality,
                                 (row.image_latency(0.1), row.image_latency(0.9)), best))  # type: ignore[arg-type]
        if row.peak_memory_bytes is not None:
            memory.append(CostPoint(row.decoder, row.peak_memory_bytes / scale, quality, None, best))
        if row.energy_per_image_j is not None:
            energy.append(CostPoint(row.decoder, row.energy_per_image_j, quality, None, best))
    kinds = {row.memory_headline_kind for row, _ in board.rows} - {None}
    memory_label = MEMORY_KINDS[kinds.pop()][0] if len(kinds) == 1 else "peak memory"
    panels = [("latency", "latency per image, median (ms)", latency)]
    if memory:
        panels.append(("memory", f"{memory_label} ({unit})", memory))
    if len(energy) > 1:  # energy on the x axis wherever two decoders have it
        counters = {row.energy_kind for row, _ in board.rows if row.energy_per_image_j is not None}
        whose = counters.pop().upper() if len(counters) == 1 else "device"
        panels.append(("energy", f"{whose} energy per image (J)", energy))
    return panels, left_out


def _write_case_page(page: CasePage, out_dir: Path, suite: str) -> None:
    html = _environment().get_template("case.html.j2").render(
        root="../../", page=page, suite=suite)
    (out_dir / page.page).write_text(html, encoding="utf-8")


def _render_cases(view: RunView, out_dir: Path, metric: str | None) -> str:
    suite = safe_name(view.suite_name)
    folder = out_dir / "cases" / suite
    folder.mkdir(parents=True, exist_ok=True)
    pages = write_case_pages(view, out_dir, view.metric_names,
                             partial(_write_case_page, out_dir=out_dir, suite=view.suite_name))
    env = _environment()
    metrics = [m for m in view.metric_names if any(row.metrics.get(m) for row in view.rows)]
    metrics = sorted(metrics, key=lambda m: m != metric)  # the plots' metric first
    rows = case_index_rows(view, pages, metrics)
    html = env.get_template("cases.html.j2").render(
        root="../../", suite=view.suite_name, pages=pages, rows=rows, decoders=view.decoders,
        metrics=[(m, view.direction(m)) for m in metrics],
        has_prompts=any(p.case.get("prompt") for p in pages),
    )
    (folder / "index.html").write_text(html, encoding="utf-8")
    return f"cases/{suite}/index.html"
