"""Run facts: what a reader needs to trust and reproduce a run's numbers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from harness.view import RunView
from reports.sweep import SweepView


@dataclass
class DecoderFacts:
    decoder: str
    name: str
    params: str
    weights: list[tuple[str, str]]  # (file, sha256)
    facts: str
    load_status: str
    load_message: str = ""


@dataclass
class RunFacts:
    title: str
    run_dir: str
    created: str
    status: str
    summary: list[tuple[str, str]]  # (fact, value)
    warnings: list[str] = field(default_factory=list)
    decoders: list[DecoderFacts] = field(default_factory=list)
    metrics: list[tuple[str, str, str, str]] = field(default_factory=list)  # name, version, protocol, sha
    suite_texts: dict[str, str] = field(default_factory=dict)
    environment: str = ""


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def environment_summary(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    env = manifest.get("environment") or {}
    timing = ((manifest.get("suite") or {}).get("resolved") or {}).get("timing") or {}
    gpus = ", ".join(f"{g.get('name')} (driver {g.get('driver')})" for g in env.get("gpus") or []) or "none"
    git = env.get("git") or {}
    phases = manifest.get("phases") or []
    missing = "not recorded"
    facts = [
        ("device · dtype", f"{timing.get('device', missing)} · {timing.get('dtype', missing)}"),
        ("GPUs", gpus),
        ("CPU", f"{env.get('cpu', missing)} ({env.get('cpu_count', missing)} logical cores)"),
        ("python · torch · CUDA", f"{env.get('python', missing)} · {env.get('torch', missing)} · "
                                  f"{env.get('torch_cuda') or 'none'}"),
        ("platform", str(env.get("platform", missing))),
        ("decoderbench · git", f"{manifest.get('decoderbench', missing)} · "
                               f"{git.get('sha', 'not a checkout')[:12]}"
                               f"{' (dirty)' if git.get('dirty') else ''}"),
    ]
    facts += energy_facts(manifest)
    if phases:
        last = phases[-1]
        facts.append(("phases (s)", " · ".join(f"{k.removesuffix('_s')} {v:.1f}" for k, v in last.items()
                                               if k.endswith("_s") and isinstance(v, int | float))))
    return facts


def _gpu_state(state: dict[str, Any]) -> str:
    parts = [("power limit", state.get("power_limit_w"), "W"), ("SM clock", state.get("sm_clock_mhz"), "MHz"),
             ("memory clock", state.get("memory_clock_mhz"), "MHz"), ("", state.get("temperature_c"), "°C")]
    return " · ".join(f"{name} {value:g} {unit}".strip() for name, value, unit in parts if value is not None)


def energy_facts(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """What the runner read of the GPUs (NVML): idle power once per GPU, state at start and end."""
    energy = manifest.get("energy") or {}
    facts = []
    for uuid, idle in (energy.get("idle") or {}).items():
        facts.append((f"idle power · {idle.get('gpu_name') or 'GPU'} {uuid}",
                      f"{idle['power_w']:.1f} W over {idle['seconds']:.1f} s before the first decoder "
                      f"(utilization {idle.get('state', {}).get('utilization_percent', '?')} %)"))
    for number, invocation in enumerate(energy.get("invocations") or [], start=1):
        start, end = invocation.get("state_start") or {}, invocation.get("state_end") or {}
        for uuid in dict.fromkeys([*start, *end]):
            label = f"GPU {uuid} at start → end" + (f" (invocation {number})" if number > 1 else "")
            facts.append((label, f"{_gpu_state(start.get(uuid) or {}) or 'not read'} → "
                                 f"{_gpu_state(end.get(uuid) or {}) or 'not read'}"))
    for key in ("reason", "idle_reason"):
        if energy.get(key):
            facts.append(("GPU energy facts", f"not measured: {energy[key]}"))
    return facts


def run_facts(view: RunView) -> RunFacts:
    manifest = view.manifest
    suite = manifest["suite"]
    facts = RunFacts(
        title=suite["name"], run_dir=str(view.run_dir), created=str(manifest.get("created", "")),
        status=str(manifest.get("status", "")), summary=environment_summary(manifest),
        warnings=list(view.warnings), suite_texts=dict(suite.get("texts") or {}),
        environment=_json(manifest.get("environment")),
    )
    facts.summary.insert(0, ("suite sha256", suite["sha256"]))
    for entry in suite["resolved"]["decoder"]:
        decoder = entry.get("label") or entry["name"]
        load = view.loads.get(decoder) or view.load_failures.get(decoder) or {}
        facts.decoders.append(DecoderFacts(
            decoder=decoder, name=entry["name"], params=_json(entry.get("params") or {}),
            weights=sorted((load.get("weights") or {}).items()),
            facts=_json({"facts": load.get("facts"), "device": load.get("device"),
                         "torch_state": load.get("torch_state")}) if load.get("status") == "ok" else "",
            load_status=str(load.get("status", "not loaded")), load_message=str(load.get("message") or ""),
        ))
        if load.get("status") not in (None, "ok"):
            facts.warnings.append(f"{decoder} did not load ({load['status']}): {load.get('message', '')}")
    for name, info in sorted(view.metric_info.items()):
        facts.metrics.append((name, str(info.get("version", "")), _json(info.get("protocol")),
                              str(info.get("protocol_sha256", ""))))
    return facts


def sweep_facts(view: SweepView) -> RunFacts:
    return RunFacts(
        title=f"{view.title} (memory-wall sweep)", run_dir=str(view.run_dir),
        created=str(view.manifest.get("created", "")), status=str(view.manifest.get("status", "")),
        summary=environment_summary(view.manifest), warnings=list(view.warnings),
        environment=_json(view.manifest.get("environment")),
    )
