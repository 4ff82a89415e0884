"""`decoderbench judge RUN_DIR`: judge, re-judge or resume judging a run that has decoded.

The judge settings are the run's own [judge] table, merged key by key with
the [judge] table of --suite-override FILE (a suite file or a file holding
only a [judge] table) and the cap options. Finished requests are never asked
again and cached answers are never paid twice; `failed` ones are retried.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from harness.cli.console import EXIT_FAILED, RichReporter, fail, out
from harness.cli.tables import Column, Grid, print_grid, print_note
from harness.errors import DecoderbenchError
from harness.progress import Reporter
from harness.suite import OverrideError, Suite, SuiteError, validate_raw

if TYPE_CHECKING:
    from harness.judge.phase import JudgeOutcome


class JudgeUsageError(DecoderbenchError, ValueError):
    pass


def judge(
    run_dir: Annotated[Path, typer.Argument(help="A run directory that has decoded.")],
    suite_override: Annotated[Path | None, typer.Option(
        help="TOML file whose [judge] table is merged over the run's (a suite file works).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(
        help="Cache holding judge verdicts (default: the run's cache directory).")] = None,
    max_requests: Annotated[int | None, typer.Option(help="Override judge.max_requests.")] = None,
    cost_cap_usd: Annotated[float | None, typer.Option(help="Override judge.cost_cap_usd.")] = None,
    dry_run: Annotated[bool, typer.Option(
        help="Only count what would be asked and its worst-case cost.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Judge a run pairwise with a multimodal model.

    Judges, re-judges or resumes judging; writes RUN_DIR/judge.json."""

    caps = {"max_requests": max_requests, "cost_cap_usd": cost_cap_usd}
    try:
        with RichReporter(quiet) as reporter:
            outcome = judge_run(run_dir, suite_override, cache_dir, caps, reporter, dry_run)
    except OverrideError as exc:
        raise fail(str(exc)) from None
    except SuiteError as exc:
        raise fail(str(exc), prefix="invalid judge settings: ") from None
    print_outcome(outcome, out)
    if outcome.counts["failed"]:
        raise typer.Exit(EXIT_FAILED)


def judge_run(run_dir: Path, override: Path | None, cache_dir: Path | None, caps: dict[str, Any],
              reporter: Reporter, dry_run: bool = False) -> JudgeOutcome:
    from harness.judge.phase import run_judge
    from harness.store import MANIFEST, RunStore, read_run

    manifest = read_run(run_dir).manifest  # RunDirError: FILE:LINE: what is wrong
    store = RunStore(run_dir)
    store.lock()
    try:
        suite = _suite(manifest, override, {k: v for k, v in caps.items() if v is not None})
        if not dry_run:
            store.remove_temp_files()
            store.repair()
        cache = cache_dir or (Path(manifest["cache_dir"]) if manifest.get("cache_dir") else None)
        if cache is None:
            raise JudgeUsageError(f"{run_dir / MANIFEST}: cache_dir: missing; give --cache-dir")
        return run_judge(suite, store, cache, reporter, dry_run=dry_run)
    finally:
        store.close()


def _suite(manifest: dict[str, Any], override: Path | None, caps: dict[str, Any]) -> Suite:
    info = manifest["suite"]
    raw = dict(info["resolved"])
    path = Path(info["path"])
    table = dict(raw.get("judge") or {})
    if override is not None:
        table.update(_judge_table(override))
        path = override
    if not table:
        raise JudgeUsageError("this run's suite has no [judge] table; give one with --suite-override FILE")
    raw["judge"] = {**table, **caps}
    try:
        return validate_raw(raw, path, info.get("texts"))
    except SuiteError as exc:  # a bad --max-requests is the command line's, not the suite file's
        options = {f"judge.{key}": f"--{key.replace('_', '-')}" for key in caps}
        problems = [("command line", options[key], message) if key in options else (file, key, message)
                    for file, key, message in exc.problems]
        raise (OverrideError if all(key in options for _, key, _ in exc.problems) else SuiteError)(
            problems) from None


def _judge_table(path: Path) -> dict[str, Any]:
    from harness.store import PathProblem, read_regular
    from harness.suite import MAX_SUITE_BYTES

    try:
        data = tomllib.loads(read_regular(path, MAX_SUITE_BYTES).decode("utf-8"))
    except (PathProblem, UnicodeDecodeError) as exc:
        raise SuiteError([(str(path), "", f"cannot read: {exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError([(str(path), "", f"invalid TOML: {exc}")]) from None
    except RecursionError:
        raise SuiteError([(str(path), "", "invalid TOML: tables or arrays nested too deeply")]) from None
    table = data.get("judge")
    if not isinstance(table, dict):
        raise SuiteError([(str(path), "judge", "expected a [judge] table")])
    return table


def print_outcome(outcome: JudgeOutcome, out: Console) -> None:
    counts = outcome.counts
    if "to_ask" in counts:
        out.print(f"dry run: {counts['to_ask']} request(s) to ask, {outcome.cached} answered by the cache; "
                  f"worst-case estimated cost ${outcome.estimate_usd:.4f}", highlight=False)
        return
    out.print(f"judge: {counts['ok']} ok, {counts['invalid']} invalid, {counts['failed']} failed "
              f"({outcome.cached} from the cache); estimated spend of this run ${outcome.spent_usd:.4f}",
              highlight=False)
    for name, entry in outcome.summary.get("criteria", {}).items():
        consistency = entry["consistency_rate"]
        pairs = Grid(f"{name} · {entry['judge_model']} · order consistency "
                     f"{'—' if consistency is None else f'{consistency:.0%}'}", Column("a vs b"), [
                         Column(c, numeric=True) for c in ("n", "a wins", "b wins", "ties", "inconsistent",
                                                           "a win rate [95%]")], field_name="count")
        for pair in entry["pairs"]:
            rate = "—" if pair["win_rate_a"] is None else \
                f"{pair['win_rate_a']:.2f} [{pair['wilson95_a'][0]:.2f}, {pair['wilson95_a'][1]:.2f}]"
            counts = [str(pair[k]) for k in ("n", "wins_a", "wins_b", "ties", "inconsistent")]
            pairs.add(f"{pair['a']} vs {pair['b']}", [*counts, rate])
        print_grid(pairs, out)
        strengths = Grid(f"{name} · strengths", Column("decoder"), [
            Column("Bradley–Terry strength", numeric=True), Column("95% CI", numeric=True)])
        for row in sorted(entry["bradley_terry"], key=lambda r: -r["strength"]):
            ci = "—" if row["ci95"] is None else f"[{row['ci95'][0]:+.2f}, {row['ci95'][1]:+.2f}]"
            strengths.add(row["decoder"], [f"{row['strength']:+.2f}", ci])
        print_grid(strengths, out)
    for note in outcome.notes:
        print_note(out, note)
