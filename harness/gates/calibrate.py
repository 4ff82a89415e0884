"""Gate calibration: tolerances from measured run-to-run noise, not guesses.

`decoderbench gate calibrate SUITE --repeats N` runs the suite N times and proposes, per gate,
k × the worst statistic seen under pure noise (docs/gates.md, calibration).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import permutations
from pathlib import Path
from typing import Any

from harness.gates.baselines import Baseline, snapshot
from harness.gates.checks import measure
from harness.gates.outcomes import Regression, Unavailable, Undecided
from harness.gates.spec import COST_STATISTICS, PIXEL_EXACT_METRICS, GateSpec
from harness.metrics.direction import LOWER, Direction
from harness.store import atomic_write_text
from harness.view import load_run

DEFAULT_K = 2.0


@dataclass
class Proposal:
    gate: GateSpec
    key: str  # the gate field the proposal sets
    value: float | None
    spread: float | None
    pairs: int
    per_decoder: dict[str, float] = field(default_factory=dict)  # decoder → its spread
    notes: list[str] = field(default_factory=list)

    def proposed_gate(self) -> dict[str, Any]:
        fields = self.gate.model_dump(exclude_unset=True)
        fields.setdefault("statistic", self.gate.statistic)
        if self.value is not None:
            fields.pop("tolerance_relative", None)
            fields[self.key] = self.value
        return fields


def default_gates(metrics: list[str]) -> list[GateSpec]:
    """What to calibrate when a suite declares no gates."""
    gates = [GateSpec(metric=m, tolerance=0.0) for m in metrics if m not in PIXEL_EXACT_METRICS]
    return [*gates, GateSpec(statistic="latency_ratio", max_ratio=1.0),
            GateSpec(statistic="memory_ratio", max_ratio=1.0)]


def calibrate(run_dirs: list[Path], gates: list[GateSpec], k: float = DEFAULT_K,
              device: str = "cpu") -> list[Proposal]:
    if len(run_dirs) < 2:
        raise ValueError("calibration needs at least two repeats")
    snapshots = [snapshot(load_run(d)) for d in run_dirs]
    baselines = [Baseline(d / "calibration-baseline.json",
                          {**s, "name": d.name, "images": {"mode": "link", "run_dir": str(d.resolve())}})
                 for d, s in zip(run_dirs, snapshots, strict=True)]
    loaded: dict[str, Any] = {}
    return [_propose(gate, run_dirs, snapshots, baselines, k, device, loaded) for gate in gates]


def _propose(gate: GateSpec, run_dirs: list[Path], snapshots: list[dict[str, Any]],
             baselines: list[Baseline], k: float, device: str, loaded: dict[str, Any]) -> Proposal:
    key = {"mean_delta": "tolerance", "fraction_exceeding": "tau"}.get(gate.statistic, "max_ratio")
    proposal = Proposal(gate, key, None, None, 0)
    decoders = gate.decoders or sorted(set.intersection(*(set(s["decoders"]) for s in snapshots)))
    for i, j in permutations(range(len(run_dirs)), 2):
        for decoder in decoders:
            try:
                measured = measure(gate, decoder, baselines[i], snapshots[j], run_dirs[j], device, loaded)
            except (Unavailable, Regression, Undecided) as exc:
                note = f"{decoder}: {exc}"
                if note not in proposal.notes:
                    proposal.notes.append(note)
                continue
            spread = _spread(gate, measured.value, measured.details)
            if spread is None:
                proposal.notes.append(f"{gate.metric} is not lower-is-better: tau is calibrated for "
                                      "distances (lower is better) only")
                return proposal
            proposal.per_decoder[decoder] = max(spread, proposal.per_decoder.get(decoder, 0.0))
        proposal.pairs += 1
    if proposal.per_decoder:
        proposal.spread = max(proposal.per_decoder.values())
        proposal.value = 1 + k * proposal.spread if key == "max_ratio" else k * proposal.spread
        if proposal.spread == 0:
            proposal.notes.append("no run-to-run difference observed (deterministic on this machine): "
                                  "any worsening fails; loosen deliberately if small changes are acceptable")
    return proposal


def _spread(gate: GateSpec, value: float, details: dict[str, Any]) -> float | None:
    if gate.statistic == "mean_delta":
        return abs(value)
    if gate.statistic in COST_STATISTICS:
        return max(abs(ratio - 1) for ratio in details["ratios"])
    if gate.statistic == "fraction_exceeding":
        if (Direction.from_info(details) or LOWER) != LOWER:
            return None
        return max(details["distances"].values())
    return float(value)


def proposals_toml(proposals: list[Proposal], k: float, repeats: int) -> str:
    lines = [f"# Proposed by `decoderbench gate calibrate` from {repeats} repeats (k = {k:g});",
             "# spread = the worst statistic seen between two repeats of the same code.", ""]
    for proposal in proposals:
        spread = "not measured" if proposal.spread is None else f"{proposal.spread:.4g}"
        lines.append(f"# {proposal.gate.label}: spread {spread} over {proposal.pairs} pairs")
        lines += [f"# note: {note}" for note in proposal.notes]
        lines.append("[[gate]]")
        for key, value in proposal.proposed_gate().items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def write_calibration(out_dir: Path, proposals: list[Proposal], k: float, run_dirs: list[Path]) -> Path:
    data = {
        "k": k, "repeats": [str(d) for d in run_dirs],
        "gates": [{"gate": p.gate.label, "key": p.key, "proposed": p.value, "spread": p.spread,
                   "pairs": p.pairs, "per_decoder": p.per_decoder, "notes": p.notes} for p in proposals],
    }
    atomic_write_text(out_dir / "calibration.json", json.dumps(data, indent=2) + "\n")
    target = out_dir / "proposed-gates.toml"
    atomic_write_text(target, proposals_toml(proposals, k, len(run_dirs)))
    return target
