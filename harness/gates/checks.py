"""Regression gates: a run against a baseline, one check per (gate, decoder[, size]).

Each statistic (mean_delta, fraction_exceeding, latency/memory/energy ratios, hash_equal) is a
one-sided test with a stated error rate; a check passes, fails, skips (an optional gate that cannot
be evaluated) or is undecided (the data cannot say) — docs/gates.md and docs/statistics.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.gates.baselines import Baseline
from harness.gates.costs import cost_check, cost_ratio
from harness.gates.outcomes import (
    FAIL,
    PASS,
    SKIP,
    UNDECIDED,
    Check,
    GateReport,
    Measurement,
    Mismatch,
    Regression,
    Unavailable,
    Undecided,
    statuses_text,
)
from harness.gates.spec import COST_STATISTICS, GateSpec
from harness.metrics import METRICS
from harness.metrics.direction import Direction
from harness.stats import (
    binomial_upper_bound,
    cases_for_fraction,
    min_detectable,
    pass_probability,
    t_upper_bound,
)
from harness.store import inside

DISTANCE_BATCH = 8


SKEWED = 1.0  # sample skewness of the per-case worsening above which the t bound is flagged


def evaluate_gates(run: dict[str, Any], run_dir: Path, baseline: Baseline, gates: list[GateSpec],
                   allow_environment_mismatch: bool = False, device: str | None = None) -> GateReport:
    """`run` is harness.gates.baselines.snapshot() of the run at `run_dir`."""
    mismatches = environment_mismatches(baseline.data["environment"], run["environment"])
    notes = []
    if baseline.data["suite"]["sha256"] != run["suite"]["sha256"]:
        before, after = baseline.data["suite"]["sha256"][:12], run["suite"]["sha256"][:12]
        notes.append(f"the suite changed since the baseline (sha256 {before} → {after}); "
                     "cases are matched by id")
    if not gates:
        notes.append("the suite declares no [[gate]] tables: nothing to check")
    context = _Context(run, run_dir, baseline, device or run.get("evaluation_device") or "cpu")
    checks = []
    for gate in gates:
        allowed = allow_environment_mismatch or gate.allow_environment_mismatch
        for decoder in gate.decoders or sorted(set(baseline.data["decoders"]) | set(run["decoders"])):
            checks.extend(_check(gate, decoder, context, mismatches, allowed))
    return GateReport(run_dir, baseline.name, checks, mismatches, notes)


def environment_mismatches(baseline: dict[str, Any], run: dict[str, Any]) -> list[Mismatch]:
    found = []
    for fact in sorted(set(baseline) | set(run)):
        if fact == "packages":
            continue
        if baseline.get(fact) != run.get(fact):
            found.append(Mismatch(fact, baseline.get(fact), run.get(fact)))
    packages_a, packages_b = baseline.get("packages") or {}, run.get("packages") or {}
    for package in sorted(set(packages_a) | set(packages_b)):
        if packages_a.get(package) != packages_b.get(package):
            found.append(Mismatch(f"package {package}", packages_a.get(package), packages_b.get(package)))
    return found


@dataclass
class _Context:
    run: dict[str, Any]
    run_dir: Path
    baseline: Baseline
    device: str
    metrics: dict[str, Any] = field(default_factory=dict)  # distance metrics, loaded once


def _check(gate: GateSpec, decoder: str, context: _Context, mismatches: list[Mismatch],
           allowed: bool) -> list[Check]:
    base = context.baseline.data["decoders"].get(decoder)
    run = context.run["decoders"].get(decoder)
    if base is None:
        return [Check(gate.label, decoder, SKIP, message="not in the baseline (a new decoder?)")]
    if run is None:
        return [Check(gate.label, decoder, FAIL, message="in the baseline but missing from this run")]
    if gate.statistic in COST_STATISTICS:
        return [cost_check(gate, decoder, size, base, run, mismatches, allowed)
                for size in sorted(base["sizes"])]
    try:
        measured = _measure(gate, decoder, base, run, context)
    except Unavailable as exc:
        return [Check(gate.label, decoder, SKIP if gate.optional else FAIL,
                      message=f"{'optional, skipped' if gate.optional else 'cannot evaluate'}: {exc}")]
    except Regression as exc:
        return [Check(gate.label, decoder, FAIL, message=str(exc))]
    except Undecided as exc:
        return [Check(gate.label, decoder, UNDECIDED, message=str(exc))]
    holds, limit = _holds(gate, measured)
    return [Check(gate.label, decoder, PASS if holds else FAIL, measured.observed, limit,
                  message=measured.details.get("power", ""), details=measured.details)]


def _holds(gate: GateSpec, measured: Measurement) -> tuple[bool, str]:
    if gate.statistic == "mean_delta":
        tolerance = measured.details["tolerance"]
        return measured.value <= tolerance, f"≤ {tolerance:.4g}"
    if gate.statistic == "fraction_exceeding":
        assert gate.max_fraction is not None
        limit = f"≤ {gate.max_fraction:.1%} beyond τ={gate.tau:g}"
        return measured.value <= gate.max_fraction, limit
    return measured.value == 0, "no output differs"


def measure(gate: GateSpec, decoder: str, baseline: Baseline, run: dict[str, Any], run_dir: Path,
            device: str = "cpu", loaded: dict[str, Any] | None = None) -> Measurement:
    """The gate's statistic for one decoder (calibration reuses it with its own baselines);
    `loaded` keeps distance metrics loaded across calls."""
    context = _Context(run, run_dir, baseline, device, loaded if loaded is not None else {})
    base, current = baseline.data["decoders"][decoder], run["decoders"][decoder]
    if gate.statistic in COST_STATISTICS:
        ratios = [cost_ratio(gate, size, base, current) for size in sorted(base["sizes"])]
        worst = max(ratios)
        return Measurement(worst, f"{worst:.3f}×", {"ratios": ratios})
    return _measure(gate, decoder, base, current, context)


def _measure(gate: GateSpec, decoder: str, base: dict[str, Any], run: dict[str, Any],
             context: _Context) -> Measurement:
    if gate.statistic == "mean_delta":
        return _mean_delta(gate, base, run)
    if gate.statistic == "fraction_exceeding":
        return _fraction_exceeding(gate, decoder, base, run, context)
    return _hash_equal(base, run)


def _mean_delta(gate: GateSpec, base: dict[str, Any], run: dict[str, Any]) -> Measurement:
    base_metric, run_metric = _metric(gate.metric, base, "baseline"), _metric(gate.metric, run, "run")
    if base_metric.get("protocol_sha256") and run_metric.get("protocol_sha256") \
            and base_metric["protocol_sha256"] != run_metric["protocol_sha256"]:
        raise Unavailable(f"{gate.metric}'s protocol changed since the baseline; values are not "
                          "comparable (re-save the baseline)")
    direction = _direction(gate, base_metric, run_metric)
    base_values, run_values = base_metric["values"], run_metric["values"]
    statuses = (f"decode {statuses_text(run['decode_statuses'])}; "
                f"{gate.metric} {statuses_text(run_metric['statuses'])}")
    _require_cases(gate.metric, base_values, run_values, statuses)
    cases = sorted(base_values)
    deltas = np.array([run_values[c] - base_values[c] for c in cases], dtype=np.float64)
    worsening = np.array([direction.worsening(run_values[c], base_values[c]) for c in cases],
                         dtype=np.float64)
    if len(cases) < 2:
        raise Undecided(f"too few cases: {len(cases)} case gives no spread to bound the mean worsening "
                        "by; a mean_delta gate needs ≥ 2")
    bound = t_upper_bound(worsening, gate.confidence)
    base_mean = float(np.mean([base_values[c] for c in cases]))
    tolerance = gate.tolerance if gate.tolerance is not None else \
        (gate.tolerance_relative or 0.0) * abs(base_mean)
    observed = (f"Δ {float(deltas.mean()):+.4g} ({direction.label} is better); "
                f"{gate.confidence:.0%} bound on worsening {bound:+.4g} (n={len(cases)})")
    spread = float(worsening.std(ddof=1))
    return Measurement(bound, observed, {
        "cases": len(cases), "mean_delta": float(deltas.mean()), "mean_worsening": float(worsening.mean()),
        "bound": bound, "confidence": gate.confidence, "tolerance": tolerance, "baseline_mean": base_mean,
        "spread": spread, "min_detectable": min_detectable(spread, len(cases), 1 - gate.confidence),
        "power": _power_note(gate.metric, worsening, tolerance, gate.confidence),
    })


def _power_note(metric: str, worsening: np.ndarray, tolerance: float, confidence: float) -> str:
    """What this gate can detect with its n and spread, and whether its tolerance is attainable."""
    n, spread = len(worsening), float(worsening.std(ddof=1))
    detectable = min_detectable(spread, n, 1 - confidence)
    note = (f"n = {n}, spread {spread:.3g}: detects a worsening ≥ {detectable:.3g} in {metric} at 80 % "
            "power")
    if spread > 0 and detectable > tolerance:
        unchanged = pass_probability(tolerance, 0.0, spread, n, confidence)
        note += (f"; the tolerance {tolerance:.3g} is below that: an unchanged decoder would pass only "
                 f"~{unchanged:.0%} of the time (add cases or widen the tolerance)")
    if n >= 3 and spread > 0:
        centred = worsening - worsening.mean()
        skew = float(np.mean(centred**3) / np.mean(centred**2) ** 1.5)
        if skew > SKEWED:
            note += (f"; the per-case worsening is skewed ({skew:.1f}: a few cases moved far), where the "
                     "bound errs more often than 5 % (docs/statistics.md): a fraction_exceeding gate "
                     "catches such regressions")
    return note


def _metric(name: str, decoder: dict[str, Any], where: str) -> dict[str, Any]:
    entry = decoder["metrics"].get(name)
    if entry is None:
        raise Unavailable(f"the {where} holds no {name} values")
    if not entry["values"]:
        if where == "run" and decoder["decode_statuses"].keys() - {"ok"} and not decoder["outputs"]:
            failures = "; ".join(decoder["failures"][:2])
            raise Regression(f"no {name} values: the decoder did not decode "
                             f"({statuses_text(decoder['decode_statuses'])}; {failures})")
        why = "; ".join(entry["messages"][:2]) or statuses_text(entry["statuses"])
        raise Unavailable(f"{name} has no values in the {where} ({statuses_text(entry['statuses'])}): {why}")
    return entry


def _direction(gate: GateSpec, *entries: dict[str, Any]) -> Direction:
    if gate.direction is not None:
        return Direction("higher" if gate.direction == "higher_is_better" else "lower")
    for entry in entries:
        direction = Direction.from_info(entry)
        if direction is not None:
            return direction
    raise Unavailable(f"the direction of {gate.metric} is unknown; set direction on the gate")


def _require_cases(what: str, base_values: dict[str, Any], run_values: dict[str, Any], statuses: str) -> None:
    """Every baseline case must still have its value (or output) in this run."""
    lost = [case for case in base_values if case not in run_values]
    if not base_values:
        raise Unavailable(f"the baseline has no {what} values")
    if lost:
        raise Regression(f"{len(lost)} of {len(base_values)} baseline cases have no {what} in this run "
                         f"({statuses}); e.g. {lost[0]}")


def _fraction_exceeding(gate: GateSpec, decoder: str, base: dict[str, Any], run: dict[str, Any],
                        context: _Context) -> Measurement:
    root = context.baseline.images_root
    if root is None:
        raise Unavailable(f"baseline {context.baseline.name} holds no output images (saved with "
                          "--images none); re-save it with --images copy")
    statuses = f"decode {statuses_text(run['decode_statuses'])}"
    _require_cases("output", base["outputs"], run["outputs"], statuses)
    cases = sorted(base["outputs"])
    pairs = [(case, inside(context.run_dir, run["outputs"][case]["image"]),  # never out of its folder
              inside(root, base["outputs"][case]["image"])) for case in cases]
    for whose, index in (("baseline", 2), ("run", 1)):
        missing = [str(pair[index]) for pair in pairs if not pair[index].is_file()]  # type: ignore[attr-defined]
        if missing:
            raise Unavailable(f"{len(missing)} {whose} output image(s) are missing, e.g. {missing[0]}")
    distances, direction = output_distances(gate.metric, pairs, context.device, context.metrics)
    if direction.better != "lower":
        raise Unavailable(f"{gate.metric} is best {direction.label}: fraction_exceeding needs a distance "
                          "(lower is better, e.g. lpips, dists)")
    assert gate.tau is not None and gate.max_fraction is not None
    needed = cases_for_fraction(gate.max_fraction, gate.confidence)
    if len(cases) < needed:
        raise Undecided(f"too few cases: with n = {len(cases)} the {gate.confidence:.0%} bound on the share "
                        f"beyond τ cannot go below {binomial_upper_bound(0, len(cases), gate.confidence):.1%}"
                        f"; showing a share ≤ {gate.max_fraction:.1%} needs ≥ {needed} cases")
    tau = gate.tau
    beyond = [case for case in cases if direction.is_better(tau, distances[case])]
    worst = max(distances.values(), key=direction.badness)
    fraction = len(beyond) / len(cases)
    bound = binomial_upper_bound(len(beyond), len(cases), gate.confidence)
    observed = (f"{len(beyond)}/{len(cases)} ({fraction:.1%}) beyond τ, {gate.confidence:.0%} bound "
                f"{bound:.1%}; worst {gate.metric} {worst:.4g}")
    return Measurement(bound, observed, {"cases": len(cases), "beyond": beyond[:20], "worst": worst,
                                         "fraction": fraction, "bound": bound, "distances": distances,
                                         "direction": direction.as_dict()})


def output_distances(metric_name: str, pairs: list[tuple[str, Path, Path]], device: str,
                     loaded: dict[str, Any]) -> tuple[dict[str, float], Direction]:
    """metric(run output, baseline output) per case, through the metric registry."""
    import torch

    from harness import images
    from harness.metrics.base import MetricUnavailable

    if metric_name not in loaded:
        try:
            metric = METRICS.get(metric_name)()
            metric.load(torch.device(device))
        except MetricUnavailable as exc:
            raise Unavailable(f"metric {metric_name} unavailable: {exc}") from None
        except Exception as exc:  # unknown name or a plug-in that cannot be imported
            raise Unavailable(f"metric {metric_name}: {exc}") from None
        loaded[metric_name] = metric
    metric = loaded[metric_name]
    by_size: dict[tuple[int, ...], list[tuple[str, torch.Tensor, torch.Tensor]]] = {}
    for case, run_path, base_path in pairs:
        pred, target = images.read_png(run_path), images.read_png(base_path)
        if pred.shape != target.shape:
            raise Regression(f"{case}: output size changed from {tuple(target.shape[1:])} to "
                             f"{tuple(pred.shape[1:])}")
        by_size.setdefault(tuple(pred.shape), []).append((case, pred, target))
    metric.reset()
    for members in by_size.values():
        for start in range(0, len(members), DISTANCE_BATCH):
            batch = members[start:start + DISTANCE_BATCH]
            metric.update([case for case, _, _ in batch],
                          images.to_float(torch.stack([p for _, p, _ in batch])).to(metric.device),
                          images.to_float(torch.stack([t for _, _, t in batch])).to(metric.device))
    return dict(metric.compute().per_key), metric.direction()


def _hash_equal(base: dict[str, Any], run: dict[str, Any]) -> Measurement:
    statuses = f"decode {statuses_text(run['decode_statuses'])}"
    _require_cases("output", base["outputs"], run["outputs"], statuses)
    differ = [case for case, output in base["outputs"].items()
              if output.get("sha256") != run["outputs"][case].get("sha256")]
    count = len(base["outputs"])
    return Measurement(len(differ), f"{len(differ)}/{count} outputs differ from the baseline",
                       {"differ": differ[:20]})
