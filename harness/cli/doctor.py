"""`decoderbench doctor [SUITE]`: what can actually run on this machine, and how to fix the rest.

The machine (Python, torch and its CUDA build, the GPUs), then — for every decoder, encoder,
source pipeline, metric and judge of SUITE (without one: every registered decoder and metric
with its default parameters) — whether its packages, checkout, weight files and benchmark data
are here and whether it can run on the suite's device, with the exact command for each gap.
Every check is the component's own (`Decoder.check()`, `Metric.check()`, the weight lock
table, the judge backends' key and model checks), asked without loading a model, hashing a
file or touching the network. Exit 1 when something SUITE needs is missing, else 0.
"""

from __future__ import annotations

import importlib.util
import platform
import sys
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from harness.cli.console import EXIT_FAILED, console, fail, out
from harness.cli.tables import Column, Grid, print_checks, print_grid, print_note


@dataclass(frozen=True)
class Machine:
    torch: str | None
    cuda_build: str | None  # the CUDA version torch was built with (None: a CPU build)
    gpus: list[str]
    problem: str = ""  # why torch itself cannot be used

    @property
    def cuda(self) -> bool:
        return bool(self.gpus)


def machine() -> Machine:
    try:
        import torch
    except Exception as exc:  # not installed, or a broken build
        return Machine(None, None, [], f"torch cannot be imported: {exc}")
    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append(f"cuda:{index} {props.name}, {props.total_memory / 2**30:.0f} GiB")
    return Machine(torch.__version__, torch.version.cuda, gpus)


def _cuda_gap(m: Machine) -> str:
    if m.torch is None:
        return m.problem
    if m.cuda_build is None:
        return (f"torch {m.torch} is a CPU build: install a CUDA build of torch (constraints.txt pins the "
                "version) on a machine with an NVIDIA GPU")
    return "no CUDA device is visible (torch.cuda.is_available() is False): check the NVIDIA driver " \
           "(`nvidia-smi`) and CUDA_VISIBLE_DEVICES"


def _machine_grid(m: Machine) -> Grid:
    grid = Grid("machine", Column("what"), [Column("found", text=True)], field_name="fact")
    grid.add("python", [f"{platform.python_version()} ({sys.executable})"])
    grid.add("platform", [platform.platform()])
    grid.add("torch", [m.problem or f"{m.torch} (CUDA build {m.cuda_build or 'none: CPU only'})"])
    grid.add("CUDA devices", ["; ".join(m.gpus) if m.gpus else f"none — {_cuda_gap(m)}"])
    return grid


def _device_problem(device: str, m: Machine) -> str:
    """The device gap, said once per row (the machine table says how to close it)."""
    return "" if not device.startswith("cuda") or m.cuda else f"needs {device}, and there is none here"


def _problems(*found: str) -> str:
    return "; ".join(dict.fromkeys(p for p in found if p))


def _decoder_problem(cls: Any, params: Any, device: str, m: Machine) -> str:
    from harness.cli.listing import decoder_availability

    cuda_only = "runs on CUDA only" + ("" if m.cuda else ", and there is none here") \
        if cls.spec.requires_cuda and not device.startswith("cuda") else ""
    return _problems(_device_problem(device, m), cuda_only, decoder_availability(cls, params, cuda=True)[1])


def _metric_problem(cls: Any, params: Any) -> str:
    from harness.metrics.base import MetricUnavailable

    try:
        cls(params).check() if params is not None else cls().check()
    except (MetricUnavailable, ValueError, OSError) as exc:
        return str(exc)
    return ""


def doctor(
    suite: Annotated[str | None, typer.Argument(
        help="Suite file or built-in name (default: every registered decoder and metric).")] = None,
) -> None:
    """What can run here, and how to fix each gap.

    Device, CUDA, each decoder's and metric's packages and weight files, the benchmarks' data."""
    from harness.suite import SuiteError, load_suite

    try:
        loaded = load_suite(suite) if suite is not None else None
    except SuiteError as exc:
        raise fail(str(exc), prefix="invalid suite: ") from None
    m = machine()
    print_grid(_machine_grid(m), out)
    ok = _check_suite(loaded, m) if loaded is not None else _check_registries(m)
    if loaded is None:
        print_note(console, "give a suite (`decoderbench doctor pid-paper`) to check its decoders with their "
                   "parameters, its source, metrics and judge on its device", label="hint", style="cyan")
    elif ok:
        print_note(console, f"everything {loaded.name} needs is here", label="ok", style="green")
    else:
        print_note(console, f"{loaded.name} cannot run completely here: see `what to do` above; a run "
                   "records the missing parts as unavailable", label="result", style="red")
        raise typer.Exit(EXIT_FAILED)


def _check_registries(m: Machine) -> bool:
    from decoders.registry import DECODERS
    from harness.metrics import METRICS

    print_checks(out, "decoders (default parameters)",
                 [(name, _decoder_problem(DECODERS.get(name), None, "cpu", m)) for name in DECODERS.names()])
    print_checks(out, "metrics (default parameters)",
                 [(name, _metric_problem(METRICS.get(name), None)) for name in METRICS.names()])
    return True


def _check_suite(loaded: Any, m: Machine) -> bool:
    from decoders.registry import DECODERS
    from harness.metrics import METRICS

    model = loaded.model
    device = model.timing.device
    evaluation = model.evaluation.device or device
    ok = print_checks(out, f"suite {loaded.name} · decoders on {device}", [
        (entry.id, _decoder_problem(DECODERS.get(entry.name), loaded.decoder_params.get(entry.id), device, m))
        for entry in model.decoder])
    ok &= print_checks(out, f"suite {loaded.name} · source ({model.source.kind})",
                       _source_problems(loaded, m))
    ok &= print_checks(out, f"suite {loaded.name} · metrics on {evaluation}", [
        (entry.name, _problems(_device_problem(evaluation, m), _metric_problem(
            METRICS.get(entry.name), loaded.metric_params.get(entry.name)))) for entry in model.metrics])
    if model.judge is not None:
        ok &= print_checks(out, f"suite {loaded.name} · judge", [
            (f"{model.judge.backend} {model.judge.model}", _judge_problem(model.judge, m))])
    return ok


def _source_problems(loaded: Any, m: Machine) -> list[tuple[str, str]]:
    """The items (folders, manifests, benchmark files), the encoder and the text-to-image pipeline."""
    from decoders.base import DecoderUnavailable
    from decoders.registry import ENCODERS
    from decoders.weights import cache_only, require, resolve_pretrained
    from harness.sources.prepare import SourceError, list_items

    source, found = loaded.model.source, []
    try:
        found.append((f"items ({len(list_items(loaded))})", ""))
    except (SourceError, OSError, ValueError) as exc:
        found.append(("items", str(exc)))
    if source.kind == "images":
        cls = ENCODERS.get(source.encoder.name)
        try:
            with cache_only():
                cls(loaded.encoder_params).check()
            problem = ""
        except (DecoderUnavailable, ValueError, OSError) as exc:
            problem = str(exc)
        if not cls.spec.in_process:
            problem = _problems(_device_problem(loaded.model.timing.device, m), problem)
        found.append((f"encoder {source.encoder.name}", problem))
    pipeline = getattr(source, "pipeline", None)
    if pipeline is not None:
        try:
            require("diffusers")
            require("transformers")
            with cache_only():
                resolve_pretrained(pipeline.reference, None, f"{pipeline.family} pipeline")
            problem = ""
        except DecoderUnavailable as exc:
            problem = str(exc)
        problem = _problems(_device_problem(loaded.model.timing.device, m), problem)
        found.append((f"pipeline {pipeline.family}", problem))
    return found


def _judge_problem(config: Any, m: Machine) -> str:
    from harness.judge.protocol import BackendUnavailable, api_key_from_env

    try:
        if config.backend == "gemini":
            if importlib.util.find_spec("google.genai") is None:
                return "the gemini judge needs the google-genai package: pip install 'decoderbench[judge]'"
            api_key_from_env()
            return ""
        from harness.judge.local_vlm import _check_weights  # the local backend's own fast check

        if importlib.util.find_spec("transformers") is None:
            return "the local judge needs transformers: pip install transformers"
        _check_weights(config.model)
    except BackendUnavailable as exc:
        return str(exc)
    return _device_problem(config.device, m) if config.backend == "local" else ""
