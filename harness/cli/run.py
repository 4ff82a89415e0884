"""`decoderbench run` (a suite, or resume a run) and `decoderbench validate`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from harness.cli.console import EXIT_FAILED, EXIT_USAGE, RichReporter, console, fail, out
from harness.cli.show import print_summary
from harness.cli.tables import print_note, print_wrapped
from harness.metrics import weights
from harness.suite import OverrideError, Suite, SuiteError, load_suite


def run(
    suite: Annotated[str | None, typer.Argument(
        help="Suite file, or a built-in suite name (default: the offline demo 'smoke')."
    )] = None,
    out: Annotated[str | None, typer.Option(
        "--out", help="Run directory to create (default: runs/<suite>-<timestamp>).")] = None,
    resume: Annotated[Path | None, typer.Option(
        help="Resume this run directory: finished (decoder, case) units are skipped; units an "
             "environment failure stopped (infrastructure_error) run again.")] = None,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="With --resume: also run again the units the decoders themselves "
        "failed (error, crashed, timeout, oom, invalid_output, unavailable, input_error).")] = False,
    device: Annotated[str | None, typer.Option(help="Override timing.device (cpu, cuda, cuda:N).")] = None,
    dtype: Annotated[str | None, typer.Option(help="Override timing.dtype.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(
        help="Latent cache (default: $DECODERBENCH_CACHE_DIR or ~/.cache/decoderbench).")] = None,
    gpus: Annotated[str | None, typer.Option(
        help="Decode on these GPUs at once, one worker per GPU: 'all' or indices like 0,1,3 "
             "(overrides timing.gpus).")] = None,
    executor: Annotated[str, typer.Option(
        help="Where units run: 'local' (this machine) or 'ray' (a Ray cluster; extra 'cluster').")] = "local",
    address: Annotated[str | None, typer.Option(
        help="Ray cluster to join ('auto': the running one); default: a local Ray instance.")] = None,
    gpu_hour_price: Annotated[float | None, typer.Option(
        "--gpu-hour-price", help="Price of one hour of the timing device, for the price per 1,000 "
        "images (overrides the suite's [cost] gpu_hour; currency USD unless [cost] says).")] = None,
    report: Annotated[bool, typer.Option(help="Write RUN_DIR/report/index.html at the end.")] = True,
    offline: Annotated[bool, typer.Option(
        "--offline", help="Fetch nothing: metrics whose weight files are missing are skipped (as with "
        "HF_HUB_OFFLINE=1).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Run a suite (or resume a run) and print the summary table.

    Where the network is reachable, the weight files its metrics need are fetched first (checked
    against their sha256); --offline or HF_HUB_OFFLINE=1 skips those metrics instead."""
    from harness.runner import Runner
    from harness.sources.cache import TensorCache, default_cache_dir
    from harness.workers.execution import check_execution
    from harness.workers.local import parse_gpus, require_devices

    cache = TensorCache(cache_dir or default_cache_dir())
    execution = {"executor": executor, "address": address}
    try:
        _check_run_options(suite, out, resume, retry_failed, device, dtype)
        out_dir = Path(out) if out is not None else None
        wanted_gpus = parse_gpus(gpus)
        check_execution(executor, address, wanted_gpus)
        with RichReporter(quiet) as reporter:
            if resume is not None:
                if gpu_hour_price is not None:
                    raise fail("--gpu-hour-price prices a new run; re-price this one with "
                               f"`decoderbench show {resume} --gpu-hour-price {gpu_hour_price:g}`")
                def check(stored: Suite) -> None:
                    _same_suite(suite, stored, resume)
                    require_devices(stored)
                    skipped = weights_before_run(stored, offline)  # as a new run: fetched on first use
                    if skipped:
                        print_note(console, weights.skipped_line(skipped))

                runner = Runner.resume(resume, cache if cache_dir else None, reporter, gpus=wanted_gpus,
                                       check=check, retry_failed=retry_failed, **execution)
            else:
                loaded = load_suite(suite or "smoke").with_overrides(device=device, dtype=dtype,
                                                                     gpus=wanted_gpus)
                loaded = loaded.with_price(gpu_hour_price)
                require_devices(loaded)
                for problem in missing_before_run(loaded):
                    print_note(console, problem, label="missing")
                skipped = weights_before_run(loaded, offline)
                if skipped:  # said once, before the run; the run keeps it (and says it no more)
                    print_note(console, weights.skipped_line(skipped))
                stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
                run_dir = out_dir or Path("runs") / f"{loaded.name}-{stamp}"
                runner = Runner.new(loaded, run_dir, cache, reporter, **execution)
                runner.notes += [weights.skipped_line(skipped)] if skipped else []
            outcome = runner.run()
        if outcome.nothing_to_do:
            print_note(console, f"nothing to do: every decode, metric and judge record of {outcome.run_dir} "
                       "is there", label="resume", style="cyan")
        print_summary(outcome.run_dir, notes=False)
        if report:
            from reports.html import render_report

            print_note(console, str(render_report(outcome.run_dir)), label="report", style="cyan")
    except OverrideError as exc:
        raise fail(str(exc)) from None
    except SuiteError as exc:
        raise fail(str(exc), prefix="invalid suite: ") from None
    print_note(console, str(outcome.run_dir), label="run directory", style="cyan")
    environment = outcome.environment_units
    if environment:
        resume_command = escape(f"decoderbench run --resume {outcome.run_dir}")
        console.print(f"[red]{environment} decode unit(s) were stopped by the environment, not by their "
                      f"decoder[/] (infrastructure_error): `{resume_command}` runs them again",
                      highlight=False, soft_wrap=True)
    if outcome.failed_units > environment:
        console.print(f"[red]{outcome.failed_units - environment} decode unit(s) did not succeed[/]")
    if outcome.failed_units:
        raise typer.Exit(EXIT_FAILED)


def _check_run_options(suite: str | None, out_dir: str | None, resume: Path | None, retry_failed: bool,
                       device: str | None, dtype: str | None) -> None:
    """What `run` cannot honour, refused before anything is read or written."""
    from harness.store import StoreError

    if out_dir is not None and not out_dir.strip():
        raise StoreError("--out: an empty path; name the run directory (or leave --out out for "
                         "runs/<suite>-<timestamp>)")
    if resume is None:
        if retry_failed:
            raise StoreError("--retry-failed goes with --resume RUN_DIR: it runs a stored run's failed "
                             "units again")
        return
    fixed = [name for name, value in (("--out", out_dir), ("--device", device), ("--dtype", dtype))
             if value is not None]
    if fixed:
        raise StoreError(f"--resume {resume}: {', '.join(fixed)} cannot change a run that has started (its "
                         "suite, device, dtype and folder are stored in its manifest.json); start a new run "
                         "to use them")


def _same_suite(spec: str | None, stored: Suite, run_dir: Path) -> None:
    """`run SUITE --resume RUN_DIR`: SUITE must be the run's own suite (the same hash), else refused."""
    from harness.store import StoreError

    if spec is None:
        return
    given = load_suite(spec)
    if given.sha256 != stored.sha256:
        raise StoreError(f"--resume {run_dir}: {given.path} is not the suite this run was started with "
                         f"(sha256 {given.sha256[:12]}, the run's {stored.sha256[:12]}); a resumed run uses "
                         "its stored suite: leave SUITE out, or start a new run")


def missing_before_run(suite: Suite) -> list[str]:
    """What a run of `suite` will find missing, known without loading a model: benchmark data
    and the source pipeline's checkpoint (metric weight files: `weights_before_run`). Decoders
    report their own missing weights as `unavailable` results."""
    from decoders.base import DecoderUnavailable
    from decoders.weights import resolve_pretrained
    from harness.sources import benchmarks

    problems = []
    source = suite.model.source
    for name in getattr(source, "benchmark", []):
        try:
            benchmarks.require(name)
        except benchmarks.BenchmarkDataMissing as exc:
            problems.extend(str(exc).splitlines())
    pipeline = getattr(source, "pipeline", None)
    if pipeline is not None:
        try:
            resolve_pretrained(pipeline.reference, None, f"source pipeline {pipeline.family}")
        except DecoderUnavailable as exc:
            problems.append(str(exc))
    return problems


def weights_before_run(suite: Suite, offline: bool) -> list[str]:
    """Fetch the lock-table weight files of the suite's metrics (those at their default models)
    that are not here — unless offline or the network is unreachable; return the metrics still
    missing some (a run skips them, and names them in one line)."""
    from harness.cli.weights import fetch_files
    from harness.metrics import METRICS

    metrics = [name for name, params in suite.metric_params.items() if params == METRICS.get(name).Params()]
    missing = weights.missing_files(metrics)
    if not missing or offline or weights.offline():
        return list(missing)
    entries = list(dict.fromkeys(entry for files in missing.values() for entry in files))
    hosts = {weights.host_of(entry): entry.url for entry in entries}
    unreachable = [host for host, url in hosts.items() if not weights.reachable(url)]
    if unreachable:
        print_note(console, f"{', '.join(unreachable)} not reachable: nothing fetched from "
                   f"{'it' if len(unreachable) == 1 else 'them'}", label="weights")
    fetch_files([entry for entry in entries if weights.host_of(entry) not in unreachable])
    return list(weights.missing_files(missing))


def _not_runnable_here(loaded: Any, spec: str) -> None:
    """A valid suite is not a runnable one: name its decoders that cannot run here (cheap checks)."""
    from decoders.registry import DECODERS
    from harness.cli.listing import cuda_driver_present, decoder_availability

    device = loaded.model.timing.device
    if device.startswith("cuda") and not cuda_driver_present():
        missing = [entry.id for entry in loaded.model.decoder]
        why = f"it runs on {device} and this machine has no NVIDIA driver"
    else:
        params = loaded.decoder_params
        missing = [entry.id for entry in loaded.model.decoder
                   if not decoder_availability(DECODERS.get(entry.name), params.get(entry.id))[0]]
        why = "something they need is missing"
    if missing:
        print_note(console, f"valid, but {len(missing)} of {len(loaded.model.decoder)} decoder(s) cannot "
                   f"run on this machine ({', '.join(missing)}): {why}; `decoderbench doctor {spec}` says "
                   "what to install or fetch", label="note")


def validate(
    suites: Annotated[list[str], typer.Argument(help="Suite files or built-in names.")],
) -> None:
    """Check suite files: schema, registries, sources. Prints what each would run, and which of
    its decoders cannot run on this machine (`decoderbench doctor SUITE` says why and how to fix)."""
    from harness.sources.listing import list_items
    from harness.sources.prepare import SourceError, source_protocol

    failed = False
    for spec in suites:
        try:
            loaded = load_suite(spec)
        except SuiteError as exc:
            failed = _invalid(str(exc))
            continue
        try:
            listed = list_items(loaded)
            items = [entry.item for entry in listed]
            cases = loaded.expand(items, source_protocol(loaded))
        except (SuiteError, SourceError) as exc:
            failed = _invalid(exc if isinstance(exc, SuiteError) else f"{loaded.path}: source: {exc}")
            continue
        bad = [entry.problem for entry in listed if entry.problem]
        for problem in bad:  # one line per item that a run would record as input_error
            failed = _invalid(f"{loaded.path}: source: {problem}")
        if bad:
            continue
        model = loaded.model
        print_wrapped(out, f"{loaded.path}: suite {loaded.name!r}, {len(items)} item(s), "
                      f"{len(cases)} case(s) × {len(model.decoder)} decoder(s), "
                      f"{len(model.metrics)} metric(s); sha256 {loaded.sha256[:12]}",
                      prefix="✓ ", prefix_style="green")
        _not_runnable_here(loaded, spec)
    if failed:
        raise typer.Exit(EXIT_USAGE)


def _invalid(message: object) -> bool:
    console.print(f"[red]✗[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    return True
