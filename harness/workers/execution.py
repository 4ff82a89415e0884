"""Where a run executes: the executor (local slots or Ray), the evaluation device, and what the
manifest says about it (GPU state and idle power, units that ran side by side or on other GPUs)."""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import torch

from decoders.registry import DECODERS
from harness.progress import Reporter
from harness.store import RunStore
from harness.suite import Suite, Timing
from harness.workers.energy import IDLE_SECONDS, gpu_run_facts
from harness.workers.executor import Executor, ExecutorError, Slot
from harness.workers.forkserver import start_forkserver, start_method_problem
from harness.workers.local import LocalExecutor, local_slots
from harness.workers.process import visible_devices


def make_executor(suite: Suite, executor: str = "local", address: str | None = None) -> Executor:
    """The local executor (the suite's device, or one slot per GPU of `timing.gpus`) or Ray."""
    timing = suite.model.timing
    check_execution(executor, address, timing.gpus)
    if executor == "ray":
        from harness.workers.ray_executor import RayExecutor

        return RayExecutor(address, timing.device, timing.threads)
    slots = local_slots(timing.gpus, timing.device)
    start_forkserver(preload_modules(suite))  # local workers fork from it: imports start now
    return LocalExecutor(slots)


def check_execution(executor: str, address: str | None, gpus: Any) -> None:
    """Options of where a run executes that contradict each other (ExecutorError, one line)."""
    problem = start_method_problem()
    if problem is not None:
        raise ExecutorError(problem)
    if executor not in ("local", "ray"):
        raise ExecutorError(f"unknown executor {executor!r}; known: local, ray")
    if executor == "ray" and gpus is not None:
        raise ExecutorError("--gpus is for the local executor: Ray places units on the cluster's GPUs")
    if executor == "local" and address is not None:
        raise ExecutorError("--address is for --executor ray")


def preload_modules(suite: Suite) -> list[str]:
    """What the forkserver imports ahead: the suite's decoder modules and the libraries they name."""
    modules: list[str] = []
    for entry in suite.model.decoder:
        with contextlib.suppress(Exception):  # an unknown plug-in fails later, with its message
            cls = DECODERS.get(entry.name)
            modules.extend([cls.__module__, *cls.preload])
    return modules


def evaluation_device(suite: Suite, slots: list[Slot]) -> torch.device:
    """Metrics run on `evaluation.device`, else the timing device; with GPU slots, on the first
    slot's GPU (every decoder worker has exited by then)."""
    model = suite.model
    device = torch.device(model.evaluation.device or model.timing.device)
    gpu = slots[0].gpu_index if slots else None
    if device.type != "cuda" or device.index is not None or gpu is None:
        return device
    visible = visible_devices() or []
    return torch.device("cuda", visible.index(str(gpu)) if str(gpu) in visible else gpu)


def run_gpu_entries(slots: list[Slot], device: str) -> list[str]:
    """The GPUs the slots decode on, as CUDA_VISIBLE_DEVICES names them (physical index or UUID)."""
    entries = []
    for slot in slots:
        pinned = slot.env.get("CUDA_VISIBLE_DEVICES")
        if pinned is None:
            index = int(device.split(":")[1]) if ":" in device else 0
            visible = visible_devices()
            pinned = visible[index] if visible is not None and index < len(visible) else str(index)
        entries.append(pinned)
    return list(dict.fromkeys(entries))


def ran_concurrently(units: list[dict[str, Any]]) -> bool:
    spans = sorted((u["started_s"], u.get("finished_s", u["started_s"])) for u in units)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def concurrency_notes(units: list[dict[str, Any]], device: str) -> list[str]:
    """Say when latencies were measured side by side, or on different GPUs (never hidden)."""
    notes = []
    if ran_concurrently(units):
        slots = sorted({u["slot"] for u in units})
        shared = ("other workers ran at the same time and may have shared its CPU cores: latencies are "
                  "not those of a run alone" if not device.startswith("cuda")
                  else "other units ran on the node's other GPUs")
        notes.append(f"decode units ran concurrently on {len(slots)} slots ({', '.join(slots)}): "
                     f"while a decoder was timed, {shared}")
    where: dict[str, set[str]] = {}
    for unit in units:
        if unit.get("gpu_index") is not None:
            host = f"{unit['host']}:" if unit.get("host") else ""
            label = f"{host}GPU {unit['gpu_index']} ({unit['gpu_name']})"
            where.setdefault(unit["decoder"], set()).add(label)
    if len({frozenset(v) for v in where.values()}) > 1:
        placed = "; ".join(f"{decoder} on {', '.join(sorted(gpus))}" for decoder, gpus in where.items())
        notes.append(f"decoders were measured on different GPUs: {placed}")
    return notes


def gpu_energy_start(store: RunStore, timing: Timing, slots: list[Slot], reporter: Reporter) -> Any:
    """Before the first decoder: the state (power limit, clocks, temperature) of the GPUs this
    invocation decodes on and, once per GPU of the run, their idle power (NVML, no CUDA context).
    Returns what reads their state again at the end; None where there is nothing to read."""
    if not timing.device.startswith("cuda") or not timing.energy:
        return None
    recorded = dict(store.manifest().get("energy") or {})
    if any(slot.remote for slot in slots):
        recorded.setdefault("idle_reason", "workers run where Ray places them: idle power and GPU "
                            "state are read by the local executor only")
        store.update_manifest(energy=recorded)
        return None
    entries = run_gpu_entries(slots, timing.device)
    first = not recorded.get("idle")  # once per run, before its first decoder (not on resume)
    if first:
        reporter.note(f"measuring idle GPU power ({IDLE_SECONDS:g} s) before the first decoder")
    facts, states = gpu_run_facts(entries, measure_idle=first)
    if facts.get("idle"):
        recorded["idle"] = facts["idle"]
    if facts.get("reason"):
        recorded["reason"] = facts["reason"]
    invocation = {"gpus": entries, "state_start": facts.get("state_start", {})}
    recorded["invocations"] = [*recorded.get("invocations", []), invocation]
    store.update_manifest(energy=recorded)
    return states

def gpu_energy_end(store: RunStore, states: Any) -> None:
    """After the last decoder: the GPUs' state again, beside the state at the start."""
    if states is None:
        return
    recorded = dict(store.manifest().get("energy") or {})
    invocations = list(recorded.get("invocations") or [{}])
    invocations[-1] = {**invocations[-1], "state_end": states()}
    store.update_manifest(energy={**recorded, "invocations": invocations})
