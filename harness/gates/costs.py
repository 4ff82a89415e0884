"""The cost gates: latency, memory and energy of this run over the baseline's, per comparison size.

Like with like only (calls of one batch size, one named memory figure, one energy counter); an
environment that differs fails them unless allowed; unstable timings leave the latency gate
undecided (docs/gates.md).
"""

from __future__ import annotations

from typing import Any

from harness.gates.outcomes import (
    FAIL,
    PASS,
    SKIP,
    UNDECIDED,
    Check,
    Mismatch,
    Regression,
    Unavailable,
    Undecided,
    statuses_text,
)
from harness.gates.spec import GateSpec
from harness.stats import (
    UNSTABLE_SPREAD,
)


def cost_check(gate: GateSpec, decoder: str, size: str, base: dict[str, Any], run: dict[str, Any],
                mismatches: list[Mismatch], allowed: bool) -> Check:
    assert gate.max_ratio is not None
    limit = f"≤ {gate.max_ratio:.3g}×"
    try:
        ratio = cost_ratio(gate, size, base, run)
    except (Unavailable, Regression) as exc:
        optional = isinstance(exc, Unavailable) and gate.optional
        return Check(gate.label, decoder, SKIP if optional else FAIL, limit=limit, message=str(exc),
                     size=size)
    except Undecided as exc:
        return Check(gate.label, decoder, UNDECIDED, _cost_observed(gate, size, base, run), limit,
                     message=str(exc), size=size)
    what = COST_LABELS[gate.statistic]
    check = Check(gate.label, decoder, PASS if ratio <= gate.max_ratio else FAIL,
                  f"{what} {ratio:.3f}× ({_cost_observed(gate, size, base, run)})", limit, size=size,
                  details={"ratio": ratio})
    if mismatches:
        differences = "; ".join(str(m) for m in mismatches[:3]) + ("; …" if len(mismatches) > 3 else "")
        if allowed:
            check.message = f"environment differs from the baseline (allowed): {differences}"
        else:
            check.status = FAIL
            check.message = f"{what} not comparable, the environment differs: {differences}"
    return check


def _cost_observed(gate: GateSpec, size: str, base: dict[str, Any], run: dict[str, Any]) -> str:
    """Baseline and run values side by side (latency with the spread of its timed calls)."""
    def one(entry: dict[str, Any] | None) -> str:
        entry = entry or {}
        value = entry.get(COST_KEYS[gate.statistic][0])
        if value is None:
            return "—"
        if gate.statistic == "latency_ratio":
            spread = entry.get("latency_spread")
            return f"{value:.4g} ms" + ("" if spread is None else f" (spread {spread:.0%})")
        if gate.statistic == "energy_ratio":
            return f"{value:.4g} J"
        return f"{value / 2**20:.1f} MiB"

    return f"baseline {one(base['sizes'].get(size))} → run {one(run['sizes'].get(size))}"


COST_LABELS = {"latency_ratio": "latency per image", "memory_ratio": "peak memory",
               "energy_ratio": "energy per image"}


# The figure each budget compares, and what must match for the two figures to be comparable.
COST_KEYS = {"latency_ratio": ("latency_median_ms", ("batch_size",)),
             "memory_ratio": ("peak_memory_bytes", ("batch_size", "memory_kind")),
             "energy_ratio": ("energy_per_image_j", ("batch_size", "energy_counter"))}


def cost_ratio(gate: GateSpec, size: str, base: dict[str, Any], run: dict[str, Any]) -> float:
    key, same = COST_KEYS[gate.statistic]
    baseline = base["sizes"].get(size) or {}
    before = baseline.get(key)
    if before is None or before <= 0:
        reason = baseline.get("energy_reason") if key == "energy_per_image_j" else None
        why = f": {reason}" if reason else ""
        raise Unavailable(f"the baseline has no {key} at {size}{why}")
    entry = run["sizes"].get(size)
    if key == "energy_per_image_j" and entry is not None and entry.get(key) is None \
            and entry.get("latency_median_ms") is not None:  # decoded, but no counter could be read here
        raise Unavailable(f"energy was not measured at {size} in this run: "
                          f"{entry.get('energy_reason') or 'no energy recorded'}")
    if entry is None or entry.get(key) is None:
        statuses = (entry or {}).get("decode_statuses") or {}
        raise Regression(f"no {key} at {size} in this run (decode statuses: {statuses_text(statuses)})")
    # Like with like: calls of one batch size, one named memory figure, one energy counter (recorded
    # since each existed).
    for name in same:
        if baseline.get(name) is not None and entry.get(name) is not None and baseline[name] != entry[name]:
            raise Unavailable(f"{name.replace('_', ' ')} differs from the baseline's at {size} "
                              f"({baseline[name]} → {entry[name]}): not comparable")
    if key == "latency_median_ms":
        unstable = [f"{who} {spread:.0%}" for who, spread in (("baseline", baseline.get("latency_spread")),
                                                              ("run", entry.get("latency_spread")))
                    if spread is not None and spread > UNSTABLE_SPREAD]
        if unstable:
            raise Undecided(f"unstable timings ({', '.join(unstable)} IQR / median, above "
                            f"{UNSTABLE_SPREAD:.0%}): a ratio of medians this noisy cannot decide; rerun "
                            'on a quieter machine or with timing.repeats = "auto"')
    return float(entry[key]) / float(before)
