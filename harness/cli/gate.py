"""The `gate` and `baseline` verbs.

    decoderbench baseline save RUN_DIR --name NAME [--dir baselines] [--images copy|link|none]
    decoderbench gate RUN_DIR --baseline baselines/NAME.json [--junit F] [--markdown F]
    decoderbench gate calibrate SUITE --repeats N [--k 2] [--out DIR]

`gate` exits 0 when every gate holds, 1 when one fails, 3 when none fails but the data cannot decide
one (too few cases, unstable timings), 2 on a usage error.
"""

from __future__ import annotations

import os
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text
from typer.core import TyperGroup

from harness.cli.console import EXIT_FAILED, EXIT_OK, EXIT_UNDECIDED, RichReporter, console, fail, out
from harness.cli.tables import Cell, Column, Grid, print_grid, print_note

if TYPE_CHECKING:
    from harness.gates.outcomes import GateReport


class _CheckByDefault(TyperGroup):
    """`gate RUN_DIR ...` runs the hidden `check` command; `gate calibrate ...` the subcommand."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["check", *args]
        return super().parse_args(ctx, args)


gate_app = typer.Typer(cls=_CheckByDefault, no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                       help="Check a run against a baseline: `gate RUN_DIR --baseline baselines/NAME.json` "
                       "(exit 0 when every gate holds, 1 when one fails, 3 when the data cannot decide one; "
                       "options: `gate check --help`); "
                       "or propose tolerances from measured noise: `gate calibrate SUITE --repeats N`.")
baseline_app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                           help="Save a run as the baseline that gates compare against.")


class _Images(StrEnum):
    copy = "copy"
    link = "link"
    none = "none"


@baseline_app.command("save")
def save(
    run_dir: Annotated[Path, typer.Argument(help="The run to keep as the baseline.")],
    name: Annotated[str, typer.Option(help="Baseline name: writes DIR/NAME.json.")],
    directory: Annotated[Path, typer.Option("--dir", help="Baselines folder.")] = Path("baselines"),
    images: Annotated[_Images, typer.Option(
        help="Output images for distance gates: copy them next to the JSON, link to the run, or none."
    )] = _Images.copy,
) -> None:
    """Save a run as baselines/NAME.json.

    Per decoder and metric the per-case values and summary, latency and memory, the environment
    fingerprint and the suite hash."""
    from harness.gates.baselines import save_baseline

    try:
        target = save_baseline(run_dir, name, directory, images.value)
    except OSError as exc:
        raise fail(f"cannot write the baseline into {directory}: {exc.strerror or exc}") from None
    out.print(f"baseline {name!r} → {target}", markup=False, highlight=False)


@gate_app.command("check")
def check(
    run_dir: Annotated[Path, typer.Argument(help="The run to check.")],
    baseline: Annotated[Path, typer.Option(help="baselines/NAME.json")],
    suite: Annotated[str | None, typer.Option(
        help="Take the [[gate]] tables from this suite instead of the run's own suite.")] = None,
    junit: Annotated[Path | None, typer.Option(help="JUnit XML (default RUN_DIR/gate/junit.xml).")] = None,
    markdown: Annotated[Path | None, typer.Option(
        help="Markdown summary (default RUN_DIR/gate/summary.md); also appended to "
        "$GITHUB_STEP_SUMMARY when set.")] = None,
    allow_environment_mismatch: Annotated[bool, typer.Option(
        help="Let latency/memory gates pass on a machine that differs from the baseline's.")] = False,
    device: Annotated[str | None, typer.Option(
        help="Device for distance metrics (default: the run's evaluation device).")] = None,
) -> None:
    """Check a run against a baseline with the suite's gates.

    Also `decoderbench gate RUN_DIR --baseline F`."""
    from harness.gates.baselines import load_baseline, require_clean, snapshot
    from harness.gates.checks import evaluate_gates
    from harness.gates.report import write_outputs
    from harness.gates.spec import GateSpec
    from harness.store import StoreError, writable_file
    from harness.suite import load_suite
    from harness.view import load_run

    junit = junit or run_dir / "gate" / "junit.xml"
    markdown = markdown or run_dir / "gate" / "summary.md"
    try:
        view = load_run(run_dir)
        require_clean(view, "a gate verdict")
        base = load_baseline(baseline)
        if suite is not None:
            gates = list(load_suite(suite).model.gate)
        else:
            gates = [GateSpec.model_validate(g) for g in view.manifest["suite"]["resolved"].get("gate", [])]
        writable_file(junit, "--junit file")
        writable_file(markdown, "--markdown file")
    except ValueError as exc:  # the project's own errors reach reports_errors, which says the same
        raise fail(str(exc)) from None
    if not gates:
        raise fail(f"{suite or 'the suite of ' + str(run_dir)} declares no [[gate]] tables: nothing to "
                    "check (add gates to the suite, or pass --suite FILE)")
    try:
        report = evaluate_gates(snapshot(view), run_dir, base, gates, allow_environment_mismatch, device)
    except StoreError as exc:  # an output path that leaves its folder through a symlink
        raise fail(str(exc)) from None
    print_report(report)
    if view.missing_images:
        print_note(console, f"{len(view.missing_images)} output image(s) of this run are missing (e.g. "
                   f"{view.missing_images[0]}); gates that compare images cannot use them")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    try:
        write_outputs(report, junit, markdown, Path(summary) if summary else None)
    except OSError as exc:
        raise fail(f"cannot write the gate reports: {exc.strerror or exc}: {exc.filename}") from None
    raise typer.Exit(EXIT_FAILED if report.failed else EXIT_OK if report.passed else EXIT_UNDECIDED)


def print_report(report: GateReport) -> None:
    """The checks (result, gate, decoder, observed, limit, note), environment differences, verdict."""
    from harness.gates.outcomes import FAIL, PASS, SKIP, UNDECIDED
    from harness.gates.report import ENVIRONMENT_ADVICE, counts, verdict

    colors = {PASS: "green", FAIL: "bold red", SKIP: "yellow", UNDECIDED: "bold yellow"}
    grid = Grid(f"gates · baseline {report.baseline}", Column("decoder"), [
        Column("result"), Column("gate", text=True, min_text=12), Column("observed", text=True, min_text=16),
        Column("limit", numeric=True), Column("note", text=True, optional=True, notes="gate")],
        field_name="check")
    for check in report.checks:
        grid.add(check.name, [Cell(check.status, style=colors[check.status]), check.gate, check.observed,
                              check.limit, check.message or "—"])
    print_grid(grid, out)
    for mismatch in report.mismatches:
        print_note(console, str(mismatch), label="environment differs from the baseline")
    if report.mismatches:
        print_note(console, ENVIRONMENT_ADVICE, label="advice")
    for note in report.notes:
        print_note(console, note)
    style = "bold green" if report.passed else "bold red" if report.failed else "bold yellow"
    out.print(Text(verdict(report), style=style) + Text(f" ({counts(report)})"), soft_wrap=True)


@gate_app.command("calibrate")
def calibrate_(
    suite: Annotated[str, typer.Argument(help="Suite file or built-in name.")],
    repeats: Annotated[int, typer.Option(min=2, help="How many times to run the suite.")] = 3,
    k: Annotated[float, typer.Option(min=1.0, help="Tolerance = k × observed spread.")] = 2.0,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Where the repeats go (default runs/calibrate-<suite>-<timestamp>).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Latent cache.")] = None,
    device: Annotated[str | None, typer.Option(help="Override timing.device.")] = None,
    dtype: Annotated[str | None, typer.Option(help="Override timing.dtype.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Propose gate tolerances from measured run-to-run noise.

    Runs SUITE N times."""
    from harness.gates.calibrate import calibrate, default_gates, write_calibration
    from harness.runner import Runner
    from harness.sources.cache import TensorCache, default_cache_dir
    from harness.store import writable_dir
    from harness.suite import OverrideError, SuiteError, load_suite
    from harness.workers.local import require_devices

    try:
        loaded = load_suite(suite).with_overrides(device=device, dtype=dtype)
    except OverrideError as exc:
        raise fail(str(exc)) from None
    except SuiteError as exc:
        raise fail(str(exc), prefix="invalid suite: ") from None
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    root = out_dir or Path("runs") / f"calibrate-{loaded.name}-{stamp}"
    cache = TensorCache(cache_dir or default_cache_dir())
    run_dirs = []
    require_devices(loaded)
    writable_dir(root, "--out folder")
    with RichReporter(quiet) as reporter:
        for index in range(1, repeats + 1):
            reporter.note(f"repeat {index}/{repeats}")
            run_dirs.append(Runner.new(loaded, root / f"repeat-{index}", cache, reporter).run().run_dir)
    gates = list(loaded.model.gate) or default_gates([m.name for m in loaded.model.metrics])
    evaluation = loaded.model.evaluation.device or loaded.model.timing.device
    proposals = calibrate(run_dirs, gates, k, evaluation)
    grid = Grid(f"calibration · {loaded.name} · {repeats} repeats · k = {k:g}", Column("gate"), [
        Column("sets"), Column("spread", numeric=True), Column("proposed", numeric=True),
        Column("worst decoder"), Column("notes", text=True, optional=True, notes=True)],
        field_name="proposal")
    for p in proposals:
        worst = max(p.per_decoder, key=lambda d: p.per_decoder[d]) if p.per_decoder else "—"
        grid.add(p.gate.label, [p.key, "—" if p.spread is None else f"{p.spread:.4g}",
                                "—" if p.value is None else f"{p.value:.4g}", worst,
                                "; ".join(p.notes) or "—"])
    print_grid(grid, out)
    target = write_calibration(root, proposals, k, run_dirs)
    out.print(f"proposed [[gate]] tables → {target}", markup=False, highlight=False)
