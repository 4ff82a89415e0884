"""`decoderbench doctor [SUITE...]`: what can actually run on this machine, and how to fix the rest.

Every component's own check, asked without loading a model, hashing a file or touching the
network; `--device cuda` is the preflight of a GPU run (docs/command-line.md, `doctor`).
"""

from __future__ import annotations

import importlib.util
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from harness.cli.console import EXIT_FAILED, console, fail, out
from harness.cli.tables import Column, Grid, print_checks, print_grid, print_note
from harness.hardware.cuda import DOCS


@dataclass(frozen=True)
class Machine:
    torch: str | None
    cuda_build: str | None  # the CUDA version torch was built with (None: a CPU build)
    gpus: list[str]
    problem: str = ""  # why torch itself cannot be used
    gap: str = ""  # the first CUDA check that failed (harness/hardware/cuda.py), if any

    @property
    def cuda(self) -> bool:
        return bool(self.gpus)


def machine() -> Machine:
    from harness.hardware.cuda import checks, probe

    facts = probe()
    gap = next((check.text for check in checks(facts) if not check.ok), "")
    gpus = [f"cuda:{gpu.index} {gpu.name}, {gpu.memory_bytes / 2**30:.0f} GiB" for gpu in facts.gpus]
    return Machine(facts.torch, facts.cuda_build, gpus, gap if facts.torch is None else "", gap)


def _cuda_gap(m: Machine) -> str:
    if m.gap or m.torch is None:
        return m.gap or m.problem
    if m.cuda_build is None:
        return f"torch {m.torch} is a CPU build (torch.version.cuda is None): install a CUDA build ({DOCS})"
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
    suites: Annotated[list[str] | None, typer.Argument(
        help="Suite files or built-in names (default: every registered decoder and metric).")] = None,
    device: Annotated[str | None, typer.Option(
        help="cuda: the preflight of a GPU run — torch's CUDA build, the GPUs, kernels for them, then "
        "what each SUITE (run on cuda) lacks, one line per problem; exit 1 on any.")] = None,
    gpu_family: Annotated[str | None, typer.Option(
        "--gpu-family", help="With --device cuda: require the GPUs of a bench session (h100: compute "
        "capability 9.0; gb200: Blackwell, 10.x).")] = None,
    allow_missing: Annotated[bool, typer.Option(
        "--allow-missing", help="With --device cuda: list missing weights, checkouts, data and keys "
        "instead of failing on them (a suite that could decode nothing still fails).")] = False,
    record: Annotated[Path | None, typer.Option(
        "--record", help="With --device cuda: also write the machine and every check to this JSON "
        "file.")] = None,
) -> None:
    """What can run here, and how to fix each gap.

    Device, CUDA, each decoder's and metric's packages and weight files, the benchmarks' data."""
    from harness.suite import SuiteError, load_suite

    if device is None and (gpu_family or allow_missing or record):
        raise fail("--gpu-family, --allow-missing and --record go with --device cuda")
    if device is not None and device != "cuda":
        raise fail(f"--device {device}: the preflight is for cuda (`doctor SUITE` checks a suite on its own "
                   "device)")
    try:
        loaded = [load_suite(name) for name in suites or []]
    except SuiteError as exc:
        raise fail(str(exc), prefix="invalid suite: ") from None
    if device is not None:
        on_cuda = [suite.with_overrides(device="cuda") for suite in loaded]
        _preflight(on_cuda, gpu_family, allow_missing, record)
        return
    m = machine()
    print_grid(_machine_grid(m), out)
    if not loaded:
        _check_registries(m)
        print_note(console, "give a suite (`decoderbench doctor pid-paper`) to check its decoders with their "
                   "parameters, its source, metrics and judge on its device", label="hint", style="cyan")
        return
    failed = False
    for suite in loaded:
        blocking, metrics = _check_suite(suite, m)
        if blocking:
            failed = True
            print_note(console, f"{suite.name} cannot run completely here: {', '.join(blocking)} "
                       f"{'lacks' if len(blocking) == 1 else 'lack'} what the ✗ lines above name (each with "
                       "the command that gets it); a run records what they would have made as unavailable",
                       label="result", style="red")
        elif metrics:
            print_note(console, f"{suite.name} runs here; {', '.join(metrics)} will be unavailable until "
                       "what the ✗ lines above name is here (a run fetches missing metric weights itself "
                       "where the network is reachable)", label="result", style="yellow")
        else:
            print_note(console, f"everything {suite.name} needs is here", label="ok", style="green")
    if failed:
        raise typer.Exit(EXIT_FAILED)


def _check_registries(m: Machine) -> bool:
    from decoders.registry import DECODERS
    from harness.metrics import METRICS

    print_checks(out, "decoders (default parameters)",
                 [(name, _decoder_problem(DECODERS.get(name), None, "cpu", m)) for name in DECODERS.names()])
    print_checks(out, "metrics (default parameters)",
                 [(name, _metric_problem(METRICS.get(name), None)) for name in METRICS.names()])
    return True


def _check_suite(loaded: Any, m: Machine) -> tuple[list[str], list[str]]:
    """Print every section's checks; return (the decoders, source parts and judge that lack
    something — their cases cannot be made —, the metrics that lack something — a run skips them)."""
    blocking, metrics = [], []
    for title, checks in _suite_sections(loaded, m):
        print_checks(out, f"suite {loaded.name} · {title}", checks)
        gaps = [what for what, problem in checks if problem]
        (metrics if title.startswith("metrics") else blocking).extend(gaps)
    return blocking, metrics


def _suite_sections(loaded: Any, m: Machine) -> list[tuple[str, list[tuple[str, str]]]]:
    """(title, [(what, problem or "")]) for the decoders, the source, the metrics and the judge."""
    from decoders.registry import DECODERS
    from harness.metrics import METRICS

    model = loaded.model
    device = model.timing.device
    evaluation = model.evaluation.device or device
    params = loaded.decoder_params
    sections = [
        (f"decoders on {device}", [
            (entry.id, _decoder_problem(DECODERS.get(entry.name), params.get(entry.id), device, m))
            for entry in model.decoder]),
        (f"source ({model.source.kind})", _source_problems(loaded, m)),
        (f"metrics on {evaluation}", [
            (entry.name, _problems(_device_problem(evaluation, m), _metric_problem(
                METRICS.get(entry.name), loaded.metric_params.get(entry.name)))) for entry in model.metrics]),
    ]
    if model.judge is not None:
        judge = model.judge
        sections.append(("judge", [(f"{judge.backend} {judge.model}", _judge_problem(judge, m))]))
    return sections


# --------------------------------------------------------------------------- --device cuda


def _preflight(suites: list[Any], gpu_family: str | None, allow_missing: bool, record: Path | None) -> None:
    """The CUDA lines, then every suite's gaps (one line per distinct gap, naming who needs it)."""
    from harness.hardware.cuda import FAMILIES, checks, probe

    if gpu_family is not None and gpu_family not in FAMILIES:
        raise fail(f"--gpu-family {gpu_family}: expected one of {', '.join(FAMILIES)}")
    family = FAMILIES[gpu_family] if gpu_family else None
    facts = probe()
    _line(f"preflight · cuda{f' · {family.session}' if family else ''} · Python {facts.python} on "
          f"{facts.machine} ({sys.executable})", "", "bold")
    device = checks(facts, family)
    for check in device:
        _line(check.text, "✓" if check.ok else "✗", "green" if check.ok else "red")
    problems = [check.text for check in device if not check.ok]
    assumed_gpu = Machine(facts.torch, facts.cuda_build, ["(the CUDA lines above)"])
    missing, empty, complete = _suite_gaps(suites, assumed_gpu)
    if suites:
        _line(f"suites on cuda: {', '.join(suite.name for suite in suites)}", "", "bold")
    if complete:
        _line(f"{', '.join(complete)}: everything needed is here", "✓", "green")
    for users, problem in missing:
        _line(f"{users}: {problem}", "!" if allow_missing else "✗", "yellow" if allow_missing else "red")
    for name in empty:
        _line(f"{name}: can decode nothing here (every row, or its source, lacks something above); a "
              "suite that decodes nothing fails a session", "✗", "red")
    problems += [f"{name}: can decode nothing here" for name in empty]
    missing_lines = [f"{users}: {problem}" for users, problem in missing]
    green = not problems and (allow_missing or not missing)
    if record is not None:
        _write_record(record, {"machine": facts.to_json(), "gpu_family": gpu_family,
                               "checks": [{"ok": c.ok, "text": c.text} for c in device],
                               "suites": [suite.name for suite in suites], "problems": problems,
                               "missing": missing_lines, "allow_missing": allow_missing, "green": green})
    if green:
        allowed = f"; {len(missing)} missing part(s) allowed by --allow-missing: their rows, metrics or " \
                  "judge are recorded as unavailable" if missing else ""
        print_note(console, f"preflight passed{allowed}", label="ok", style="green")
        return
    hint = "" if allow_missing or not missing else \
        " (`--allow-missing`, in a session `-- --allow-missing`, lists missing files instead of failing)"
    print_note(console, f"preflight failed: {len(problems) + (0 if allow_missing else len(missing))} "
               f"problem(s){hint}", label="result", style="red")
    raise typer.Exit(EXIT_FAILED)


def _line(text: str, mark: str, style: str) -> None:
    """One physical line however long (a log greps one problem per line)."""
    line = Text(f"  {mark} " if mark else "", style=style)
    line.append(text, style="bold" if not mark else "")
    out.print(line, soft_wrap=True, highlight=False)


def _suite_gaps(suites: list[Any],
                assumed_gpu: Machine) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """(missing: [(who needs it, the gap)] — each distinct gap once —, suites that could decode
    nothing, suites that lack nothing). Device gaps are left to the CUDA lines: `assumed_gpu`."""
    users: dict[str, dict[str, list[str]]] = {}  # gap → suite → who
    empty, complete = [], []
    for suite in suites:
        sections = _suite_sections(suite, assumed_gpu)
        decoders, source = sections[0][1], sections[1][1]
        if any(problem for _, problem in source) or all(problem for _, problem in decoders):
            empty.append(suite.name)
        gaps = [(what, problem) for title, found in sections for what, problem in found if problem]
        for what, problem in gaps:
            users.setdefault(problem, {}).setdefault(suite.name, []).append(what)
        if not gaps:
            complete.append(suite.name)
    missing = [("; ".join(f"{suite} ({', '.join(whats)})" for suite, whats in by_suite.items()), problem)
               for problem, by_suite in users.items()]
    return missing, empty, complete


def _write_record(path: Path, data: dict[str, Any]) -> None:
    import json

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        raise fail(f"--record {path}: cannot write: {exc.strerror or exc}") from None


def _source_problems(loaded: Any, m: Machine) -> list[tuple[str, str]]:
    """The items (folders, manifests, benchmark files), the encoder and the text-to-image pipeline."""
    from decoders.base import DecoderUnavailable
    from decoders.registry import ENCODERS
    from decoders.weights import cache_only, require, resolve_pretrained
    from harness.sources.listing import list_items
    from harness.sources.prepare import SourceError

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
