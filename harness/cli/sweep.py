"""`decoderbench sweep`: the memory wall of one decoder (bisection on the output size).

Finding the wall is the expected outcome: exit 0 whether or not some sizes ran out of memory
(even the smallest); exit 1 when a size failed for another reason (an error, a crash, a
timeout: the sweep could not tell where the wall is), 2 on a usage or suite error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.console import EXIT_FAILED, RichReporter, console, fail, num, out
from harness.cli.tables import Column, Grid, print_grid, print_note

DEFAULT_STEP = 64  # px: the wall to within 64 px is what a reader uses (finer: --step 8)


def sweep(
    suite: Annotated[str, typer.Argument(help="Suite file or built-in name holding the decoder.")],
    decoder: Annotated[str, typer.Option("--decoder", help="Decoder id (label) in the suite.")],
    start: Annotated[int, typer.Option("--from", help="Smallest output side (px).")] = 512,
    stop: Annotated[int, typer.Option("--to", help="Largest output side (px).")] = 4096,
    step: Annotated[int, typer.Option(
        help="Sizes are multiples of this and of what the decoder accepts: the wall is found to within "
        "it (a smaller step refines, with more sizes to try).")] = DEFAULT_STEP,
    device: Annotated[str | None, typer.Option(help="Override timing.device.")] = None,
    dtype: Annotated[str | None, typer.Option(help="Override timing.dtype.")] = None,
    memory_budget: Annotated[str | None, typer.Option(
        "--memory-budget", help="Sizes whose memory exceeds this count as out of memory: CUDA peak "
        "reserved, or on a CPU the RSS increment (bytes, or 24GiB, 512MB, ...).")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Run directory (default: runs/sweep-<suite>-<decoder>-<timestamp>).")] = None,
) -> None:
    """Memory wall: the largest output size a decoder can decode.

    Bisects on the output size; plots memory and latency against size. Exit 0 when the search
    ends (out-of-memory sizes are its result), 1 when a size failed otherwise."""
    from harness.suite import load_suite
    from harness.sweep import OOM, Sweep, SweepError, default_run_dir, parse_bytes
    from harness.view import MEMORY_KINDS, format_bytes
    from harness.workers.local import require_devices
    from reports.sweep import device_energy

    try:
        try:
            budget = parse_bytes(memory_budget) if memory_budget else None
        except ValueError as exc:
            raise SweepError(f"--memory-budget: {exc}") from None
        loaded = load_suite(suite).with_overrides(device=device, dtype=dtype)
        require_devices(loaded)
        run_dir = out_dir or default_run_dir(loaded, decoder)
        outcome = Sweep(loaded, decoder, run_dir, budget, RichReporter(quiet=True)).run(start, stop, step)
    except ValueError as exc:  # the project's own errors reach reports_errors, which says the same
        raise fail(str(exc)) from None
    kinds = [k for k in MEMORY_KINDS if any(k in (r.get("memory") or {}) for r in outcome.records)]
    with_energy = any(r.get("energy") for r in outcome.records)
    deciding = next((r["peak_kind"] for r in outcome.records if r.get("peak_kind")), None)
    figure = MEMORY_KINDS[deciding][0] if deciding else "peak memory"
    title = f"memory wall: {decoder} · a size fits when its {figure} does"
    if budget is not None:
        title += f" (budget {format_bytes(budget)})"
    grid = Grid(title, Column("output"), [
        Column("status"), Column("median ms", numeric=True),
        *(Column(MEMORY_KINDS[k][0], numeric=True) for k in kinds),
        *([Column("J / image", numeric=True), Column("W", numeric=True)] if with_energy else []),
        Column("note", text=True, min_text=16)],
        field_name="measure")
    unmeasured: dict[str, None] = {}
    for record in sorted(outcome.records, key=lambda r: r["size"][0]):
        latency = (record.get("latency") or {}).get("median_ms")
        memory = record.get("memory") or {}
        message = (record.get("message") or "").splitlines()
        energy = device_energy(record.get("energy")) or {}
        if record["status"] == "ok" and energy.get("per_image_j") is None and energy.get("reason"):
            unmeasured[energy["reason"]] = None
        shown = [num(energy.get("per_image_j"), ".4g"), num(energy.get("mean_power_w"), ".0f")]
        if energy.get("status") == "not_measured":
            shown = ["not measured", "—"]
        grid.add(f"{record['size'][0]}×{record['size'][1]}", [
            record["status"], num(latency, ".1f"), *(format_bytes(memory.get(k)) for k in kinds),
            *(shown if with_energy else []), message[0] if message else "—"])
    print_grid(grid, out)
    for reason in unmeasured:
        print_note(console, f"energy / image: not measured — {reason}", label="cost")
    largest = outcome.largest_ok
    print_note(console, (f"{largest}×{largest}" if largest else f"none from {start} px")
               + (f"; smallest that failed: {outcome.smallest_failed}" if outcome.smallest_failed else
                  f"; none failed up to {stop} px"),
               label="largest size that decodes", style="cyan")
    print_note(console, str(outcome.plot), label="plot", style="cyan")
    print_note(console, str(outcome.run_dir), label="run directory", style="cyan")
    failed = [r for r in outcome.records if r["status"] not in ("ok", OOM)]
    if failed:
        print_note(console, f"{len(failed)} size(s) failed for another reason than memory ("
                   f"{', '.join(sorted({r['status'] for r in failed}))}): the wall is not known there",
                   label="result", style="red")
        raise typer.Exit(EXIT_FAILED)
