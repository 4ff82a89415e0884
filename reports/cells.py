"""The cells of a leaderboard: a number with its interval, or why there is none.

A failure is never a blank or a zero: a cell names the decode failure or the metric's own status,
with the reasons for hover, or says "not measured"; costs carry their spread, energy its counter
and price its basis (docs/reports.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.metrics.direction import Direction
from harness.view import (
    ENERGY_KINDS,
    EnergySummary,
    MetricSummary,
    Row,
    RunView,
)
from reports.price import Price, device_time_price, electricity_price

INFINITY = "∞"


STATUS_LABELS = {
    "oom": "OOM", "error": "error", "timeout": "timeout", "crashed": "crashed",
    "invalid_output": "invalid output", "unavailable": "unavailable",
    "not_applicable": "not applicable", "input_error": "bad input", "ok": "ok",
    "infrastructure_error": "stopped (environment)",
}


MEMORY_METHODS = {
    "linux_vmhwm_reset": "kernel high-water mark (VmHWM) reset before the timed calls",
    "ru_maxrss_process_lifetime": "peak over the worker's lifetime (VmHWM could not be reset)",
    "cuda_max_memory_allocated": "torch.cuda peak statistics reset after warm-up",
}


@dataclass
class Cell:
    text: str
    sort: float | None = None  # None sorts last in either direction
    title: str = ""
    state: str = "value"  # value | failed | missing
    ci: str | None = None
    note: str | None = None  # e.g. "12/13 cases"
    best: bool = False
    value: float | None = None  # a number still to be formatted with its column's precision
    ci_value: float | None = None
    raw: float | None = None  # the number shown, unformatted, in the column's unit (exports, JSON)
    n: int | None = None  # values the number stands on (cases, timed calls)
    footnote: int | None = None  # the number of its reason under the table (readable without hover)
    shown: str | None = None  # text that replaces the formatted value ("∞": every case identical)
    status: str = "ok"  # why there is no number, as a token: a decode or metric status, "not_measured",


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status.replace("_", " "))


def decimals_for(magnitude: float) -> int:
    """Digits after the point that give about four significant digits."""
    if magnitude >= 1000:
        return 0
    if magnitude >= 100:
        return 1
    if magnitude >= 10:
        return 2
    return 3 if magnitude >= 1 else 4


def format_number(value: float, decimals: int | None = None) -> str:
    decimals = decimals_for(abs(value)) if decimals is None else decimals
    return f"{value:,.{decimals}f}"


def energy_cell(row: Row, summary: EnergySummary | None, value: float | None, what: str) -> Cell:
    """An energy figure, or why there is none: the decode failed, or the counter's reason."""
    if value is not None and summary is not None:
        cell = Cell("", sort=value, value=value, raw=value, n=summary.blocks)
        if summary.low_resolution:
            cell.note = "low resolution"
            cell.title = (f"{summary.low_resolution} of {summary.blocks} blocks of calls were too short for "
                          f"the counter: {summary.reason}")
        elif summary.worst_resolution is not None:
            cell.title = (f"counter updates every {summary.update_interval_s * 1e3:.3g} ms: within about "
                          f"{100 * summary.worst_resolution:.1f} % over the shortest block")
        return cell
    if row.failure_status and not row.ok:
        return Cell(status_label(row.failure_status), state="failed", title=failure_title(row))
    if summary is not None and summary.measured:
        why = "the GPU's idle power was not measured in this run (see the run's facts)"
    elif summary is not None and summary.reason:
        why = f"{summary.kind.upper()} energy: {summary.reason}"
    else:
        why = f"this run holds no {what} for {row.decoder}"
    return Cell("not measured", state="missing", title=why)


def price_of(view: RunView, row: Row, key: str) -> Price:
    """The row's price per 1,000 images: of device time ("price_time") or electricity."""
    if key == "price_time":
        device = str((view.manifest["suite"]["resolved"].get("timing") or {}).get("device") or "device")
        return device_time_price(view.cost, row.image_latency(0.5), device)
    summary = row.device_energy
    what = ENERGY_KINDS.get(row.energy_kind or "", "the device")
    why = summary.reason if summary is not None and summary.reason else "no energy was recorded"
    return electricity_price(view.cost, row.energy_per_image_j, what, why)


def price_cell(row: Row, price: Price) -> Cell:
    """A price with three significant digits: a fast decoder's price per 1,000 images is a
    fraction of a cent, which the column's fixed decimals would round to one digit."""
    if price.value is not None:
        text = f"{price.value:,.2f}" if price.value >= 10 else f"{price.value:#.3g}"
        return Cell(text, sort=price.value, raw=price.value, title=price.includes)
    if row.failure_status and not row.ok:
        return Cell(status_label(row.failure_status), state="failed", title=failure_title(row))
    return Cell("not priced", state="missing", title=price.reason or "")


def cost_cell(row: Row, key: str) -> Cell:
    if key == "cases":
        cell = Cell(f"{row.ok}/{row.units}", sort=-(row.ok / row.units) if row.units else None,
                    raw=row.ok)
        if row.failure_status:
            cell.state, cell.title = "failed", failure_title(row)
        return cell
    if key == "batch":
        if row.batch_size is None:
            return measured_cell(row, None, "latency")
        cell = Cell(str(row.batch_size), sort=row.batch_size, raw=row.batch_size)
        if row.other_batches:
            cell.note = "+" + ", ".join(f"{n} samples of batch {b}" for b, n in row.other_batches.items())
            cell.title = "calls of another batch size are reported apart, never pooled"
        return cell
    if key == "latency":
        cell = measured_cell(row, row.image_latency(0.5), "latency")
        cell.n = len(row.headline_calls()) or None
        p90, spread = row.image_latency(0.9), row.latency_spread
        if p90 is not None:
            cell.ci = f"p90 {p90:,.4g}" + ("" if spread is None else f", spread {spread:.0%}")
        if row.latency_unstable:
            cell.note = "unstable"
            cell.title = (f"unstable: the timed calls spread by {spread:.0%} of their median (IQR / median, "
                          "above 10 %); not ranked — rerun on a quieter machine or with "
                          'timing.repeats = "auto"')
        return cell
    if key == "throughput":
        rate = row.images_per_s
        cell = measured_cell(row, rate, "latency")
        if rate is not None:
            cell.sort = -rate
            cell.ci = f"{row.megapixels_per_s:,.3g} MP/s"
        return cell
    if key == "first_call":
        cell = measured_cell(row, row.first_call_ms, "first call")
        if row.worker_startup_ms is not None:
            cell.ci = f"start-up {row.worker_startup_ms:,.0f}"
        return cell
    return measured_cell(row, row.cold_start_ms, "cold start")


def measured_cell(row: Row, value: float | None, what: str) -> Cell:
    if value is not None:
        return Cell("", sort=float(value), value=float(value), raw=float(value))
    if row.failure_status and not row.ok:
        return Cell(status_label(row.failure_status), state="failed", title=failure_title(row),
                    status=row.failure_status)
    return Cell("not measured", state="missing", title=f"this run holds no {what} for {row.decoder}",
                status="not_measured")


def metric_cell(row: Row, metric: str, summary: MetricSummary | None, direction: Direction | None) -> Cell:
    if summary is None:
        if row.failure_status and not row.ok:
            return Cell(status_label(row.failure_status), state="failed", status=row.failure_status,
                        title=f"no decoded output to score — {failure_title(row)}")
        return Cell("not measured", state="missing", title=f"this run holds no {metric} values",
                    status="not_measured")
    if summary.mean is None:
        failed = {s: n for s, n in summary.statuses.items() if s != "ok"}
        status = max(failed, key=lambda s: failed[s]) if failed else "not measured"
        title = "\n".join(summary.messages) or f"{metric}: {status_label(status)}"
        return Cell(status_label(status), state="failed" if status == "error" else "missing", title=title,
                    status=status.replace(" ", "_"))
    value = summary.headline
    sort = None if direction is None else direction.badness(value)  # type: ignore[arg-type]
    if summary.aggregate is not None:  # the metric's own value for the set (FID, GenEval, ...)
        cell = Cell("", sort=sort, value=summary.aggregate, title=f"{metric} over the whole set (one value)",
                    raw=summary.aggregate)
        covered = summary.aggregate_n if summary.aggregate_n is not None else summary.n or None
        cell.n = covered
        if covered is not None and covered < row.units:
            cell.note = f"{covered}/{row.units}"
            failures = failure_title(row)
            cell.title += f"; computed from {covered} of {row.units} cases"
            cell.title += f" ({failures})" if failures else ""
        return cell
    cell = Cell("", sort=sort, value=summary.mean, ci_value=summary.ci95, raw=summary.mean, n=summary.n)
    if summary.infinite:
        _infinite(cell, summary, metric)
    if summary.n < row.units:
        cell.note = f"{summary.n}/{row.units}"
        missing = {s: n for s, n in summary.statuses.items() if s != "ok"}
        if row.failure_status:
            missing[row.failure_status] = row.units - row.ok
        reasons = ", ".join(f"{n} {status_label(s)}" for s, n in missing.items())
        cell.title = "\n".join([f"mean over {summary.n} of {row.units} cases ({reasons})",
                                *summary.messages, *row.failures])
    return cell


def _infinite(cell: Cell, summary: MetricSummary, metric: str) -> None:
    """Outputs identical to their references score +∞: every case → the cell says ∞; some → the
    mean counts them at the metric's ceiling, and the cell's title says so."""
    count = len(summary.infinite)
    identical = f"{count} of {summary.n} case(s) identical to the reference ({metric} = ∞)"
    if count == summary.n:
        cell.shown, cell.raw = INFINITY, math.inf
        cell.title = f"{identical}: every output reproduces its reference exactly"
    else:
        ceiling = min(summary.per_case[case] for case in summary.infinite)
        cell.title = (f"{identical}; the mean counts ∞ as {ceiling:.1f}, the {metric} of the smallest "
                      "possible difference between two 8-bit images of this size")


def failure_title(row: Row) -> str:
    counts = ", ".join(f"{n} {status_label(s)}" for s, n in row.statuses.items() if s != "ok")
    return "\n".join([counts, *row.failures])
