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

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from harness import __version__
from reports.aggregate import Row, RunView, Size, format_bytes, load_run
from reports.facts import RunFacts, run_facts, sweep_facts
from reports.history import History, build_history
from reports.judge import JudgeCriterion, load_judge
from reports.leaderboard import Cell, Leaderboard, build_leaderboards, format_number, status_label
from reports.plots import cost_quality_figure, history_figure, ranking_figure, sweep_figure
from reports.sweep import SweepView, is_sweep, load_sweep
from reports.viewer import CROP_DISPLAY_PX, CasePage, build_case_pages, safe_name


class ReportError(ValueError):
    pass


@dataclass
class CostQualityFigure:
    src: str
    left_out: list[str]


@dataclass
class SuiteSection:
    name: str
    latest: RunView
    quality_metric: str | None
    boards: list[Leaderboard]
    cost_quality: dict[Size, CostQualityFigure] = field(default_factory=dict)
    judge: list[JudgeCriterion] = field(default_factory=list)
    judge_figures: dict[str, str] = field(default_factory=dict)
    histories: list[History] = field(default_factory=list)
    history_figures: dict[Size, str] = field(default_factory=dict)
    cases_page: str = ""
    has_artifacts: bool = False

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
    env.globals.update(fmt=format_number, label=status_label)
    return env


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
    sweep_sections = [SweepSection(s, _relative(sweep_figure(s, out_dir / "figures" /
                                                             f"sweep-{i}-{safe_name(s.title)}.svg"), out_dir))
                      for i, s in enumerate(sweeps)]
    facts: list[RunFacts] = [run_facts(v) for views in by_suite.values() for v in views]
    facts += [sweep_facts(s) for s in sweeps]
    names = sorted(by_suite) + [s.title for s in sweeps]
    html = _environment().get_template("index.html.j2").render(
        root="", title=f"decoderbench report · {', '.join(names)}", suites=sections, sweeps=sweep_sections,
        run_facts=facts, runs_total=len(run_dirs), version=__version__,
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


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def choose_metric(view: RunView, requested: str | None) -> str | None:
    """The quality metric of the plots: the one asked for, else the suite's first with values."""
    if requested is not None:
        return requested if requested in view.metric_names else None
    for name in view.metric_names:
        if any(row.metrics.get(name) and row.metrics[name].mean is not None for row in view.rows):
            return name
    return None


def _suite_section(views: list[RunView], out_dir: Path, requested_metric: str | None) -> SuiteSection:
    latest = max(views, key=lambda v: str(v.manifest.get("created", "")))
    metric = choose_metric(latest, requested_metric)
    section = SuiteSection(latest.suite_name, latest, metric, build_leaderboards(latest))
    slug = section.slug
    figures = out_dir / "figures"
    if metric is not None:
        higher = latest.higher_is_better(metric)
        for board in section.boards:
            figure = _cost_quality(board, metric, higher, latest.decoders,
                                   figures / f"cost-{slug}-{board.size[0]}x{board.size[1]}.svg")
            if figure is not None:
                figure.src = _relative(Path(figure.src), out_dir)
                section.cost_quality[board.size] = figure
        if len(views) > 1:
            section.histories = build_history(views, metric)
            for history in section.histories:
                path = figures / f"history-{slug}-{history.size[0]}x{history.size[1]}.svg"
                section.history_figures[history.size] = _relative(
                    history_figure(history, latest.decoders, path), out_dir)
    section.judge = load_judge(latest.run_dir)
    for criterion in section.judge:
        if criterion.ranking:
            path = figures / f"judge-{slug}-{safe_name(criterion.name)}.svg"
            section.judge_figures[criterion.name] = _relative(ranking_figure(criterion, path), out_dir)
    section.has_artifacts = bool(latest.artifacts)
    section.cases_page = _render_cases(latest, out_dir, metric)
    return section


def _cost_quality(board: Leaderboard, metric: str, higher: bool | None, names: list[str],
                  path: Path) -> CostQualityFigure | None:
    if higher is None:
        return None
    latency, memory, left_out = [], [], []
    column = next(i for i, c in enumerate(board.columns) if c.key == f"metric:{metric}")
    for row, cells in board.rows:
        summary = row.metrics.get(metric)
        quality = summary.mean if summary is not None else None
        median = row.latency(0.5)
        if quality is None or median is None:
            left_out.append(f"{row.decoder} ({cells[column].text})")
            continue
        latency.append((row.decoder, median, quality))
        if row.peak_memory_bytes is not None:
            memory.append((row.decoder, row.peak_memory_bytes / 2**20, quality))
    if not latency:
        return None
    panels = [("latency median (ms)", latency)] + ([("peak memory (MiB)", memory)] if memory else [])
    cost_quality_figure(panels, metric, higher, names, path)
    return CostQualityFigure(str(path), left_out)


def _render_cases(view: RunView, out_dir: Path, metric: str | None) -> str:
    pages = build_case_pages(view, out_dir, view.metric_names)
    suite = safe_name(view.suite_name)
    folder = out_dir / "cases" / suite
    folder.mkdir(parents=True, exist_ok=True)
    env = _environment()
    case_template = env.get_template("case.html.j2")
    for page in pages:
        html = case_template.render(root="../../", page=page, suite=view.suite_name, crop_px=CROP_DISPLAY_PX)
        (out_dir / page.page).write_text(html, encoding="utf-8")
    higher = view.higher_is_better(metric) if metric else None
    by_key = {(row.decoder, row.size): row for row in view.rows}
    rows = [(page, _case_cells(view, page, metric, by_key, higher)) for page in pages]
    html = env.get_template("cases.html.j2").render(
        root="../../", suite=view.suite_name, pages=pages, rows=rows, decoders=view.decoders,
        metric=metric, higher_is_better=higher, has_prompts=any(p.case.get("prompt") for p in pages),
    )
    (folder / "index.html").write_text(html, encoding="utf-8")
    return f"cases/{suite}/index.html"


def _case_cells(view: RunView, page: CasePage, metric: str | None,
                rows: dict[tuple[str, Size], Row], higher: bool | None) -> list[Cell]:
    cells = []
    case_id, size = page.case["id"], tuple(page.case["output_size"])
    for decoder in view.decoders:
        record = view.decodes.get((decoder, case_id))
        row = rows.get((decoder, size))  # type: ignore[arg-type]
        summary = row.metrics.get(metric) if row is not None and metric is not None else None
        if record is None:
            cells.append(Cell("not run", state="missing", title="no decode of this case in the run"))
        elif record["status"] != "ok":
            cells.append(Cell(status_label(record["status"]), state="failed",
                              title=record.get("message") or ""))
        elif summary is not None and case_id in summary.per_case:
            value = summary.per_case[case_id]
            cells.append(Cell(format_number(value), sort=value))
        elif summary is not None:
            status = summary.unscored.get(case_id, "not measured")
            cells.append(Cell(status_label(status), state="missing", title="\n".join(summary.messages)))
        else:
            cells.append(Cell("not measured", state="missing",
                              title=f"no {metric or 'quality metric'} values"))
    scored = [cell for cell in cells if cell.sort is not None]
    if higher is not None and len(scored) > 1:
        best = (max if higher else min)(cell.sort for cell in scored)  # type: ignore[type-var]
        for cell in scored:
            cell.best = cell.sort == best
    return cells
