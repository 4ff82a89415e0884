"""The CUDA preflight of a bench session: can this Python measure decoders on these GPUs?

One line per check (a CUDA build of torch, usable GPUs, kernels for their compute capability, the
GPU family of the session), each problem with its cause and fix; the queries are in `probe()` and
the checks read its `CudaFacts`, so tests give stand-ins (docs/hardware-runners.md).
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

# The versions constraints.txt pins (tests/unit/test_preflight.py keeps the two equal), and PyTorch's
# CUDA 13.0 wheel index: where aarch64 CUDA builds come from (see docs/hardware-runners.md).
TORCH_PINS = "torch==2.14.1 torchvision==0.29.1"
CUDA_INDEX = "https://download.pytorch.org/whl/cu130"
DOCS = "docs/hardware-runners.md"
DRIVER_FILE = Path("/proc/driver/nvidia/version")


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    capability: tuple[int, int]
    memory_bytes: int

    @property
    def cc(self) -> str:
        return f"{self.capability[0]}.{self.capability[1]}"


@dataclass(frozen=True)
class Family:
    session: str
    name: str  # the GPUs it is for, in words
    major: int
    minor: int | None  # None: any minor version of `major`

    def matches(self, capability: tuple[int, int]) -> bool:
        return capability[0] == self.major and self.minor in (None, capability[1])

    @property
    def cc(self) -> str:
        return f"{self.major}.{'x' if self.minor is None else self.minor}"


FAMILIES = {
    "h100": Family("bench-h100", "Hopper GPUs (H100, H200)", 9, 0),
    "gb200": Family("bench-gb200", "Blackwell data-centre GPUs (GB200, B200)", 10, None),
}


@dataclass(frozen=True)
class CudaFacts:
    machine: str  # platform.machine(): x86_64, aarch64
    python: str
    prefix: str  # sys.prefix, and sys.base_prefix: they differ inside a venv
    base_prefix: str
    torch: str | None = None  # its version; None where it cannot be imported
    import_error: str = ""
    cuda_build: str | None = None  # torch.version.cuda; None: a CPU build
    arch_list: tuple[str, ...] = ()  # torch.cuda.get_arch_list()
    gpus: tuple[Gpu, ...] = ()  # the GPUs torch can use
    cuda_error: str = ""  # why torch can use none (its warning), where it said
    driver: str | None = None  # the NVIDIA driver version; None: no driver here
    driver_gpus: tuple[str, ...] = ()  # the GPUs the driver lists (nvidia-smi)

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine, "python": self.python, "torch": self.torch,
            "torch_cuda": self.cuda_build, "arch_list": list(self.arch_list), "driver": self.driver,
            "gpus": [{"index": g.index, "name": g.name, "capability": g.cc, "memory_bytes": g.memory_bytes}
                     for g in self.gpus],
        }


@dataclass(frozen=True)
class Check:
    ok: bool
    text: str


# --------------------------------------------------------------------------- the queries


def nvidia_smi_gpus() -> list[dict[str, str]]:
    """Name, driver version and memory of each GPU as nvidia-smi lists them ([] without it)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 3:
            gpus.append(dict(zip(("name", "driver", "memory"), parts, strict=True)))
    return gpus


def _driver(listed: list[dict[str, str]]) -> str | None:
    if listed:
        return listed[0]["driver"]
    try:
        text = DRIVER_FILE.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    match = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", text)
    return match.group(1) if match else "unknown version"


def probe() -> CudaFacts:
    """The facts, asked of the driver and of torch (imported here, and only here)."""
    listed = nvidia_smi_gpus()
    base: dict[str, Any] = {
        "machine": platform.machine(), "python": platform.python_version(), "prefix": sys.prefix,
        "base_prefix": sys.base_prefix, "driver": _driver(listed),
        "driver_gpus": tuple(gpu["name"] for gpu in listed)}
    try:
        import torch
    except Exception as exc:  # not installed, or a build whose libraries cannot load
        return CudaFacts(**base, import_error=f"{type(exc).__name__}: {exc}".splitlines()[0])
    facts = CudaFacts(**base, torch=torch.__version__, cuda_build=torch.version.cuda)
    if facts.cuda_build is None:
        return facts
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            available = torch.cuda.is_available()
        if not available:
            said = [str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip()]
            return replace(facts, cuda_error=said[0] if said else "")
        gpus = []
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append(Gpu(index, props.name, (props.major, props.minor), props.total_memory))
        arch = tuple(torch.cuda.get_arch_list())
    except Exception as exc:  # a driver/runtime mismatch can raise here rather than warn
        return replace(facts, cuda_error=f"{type(exc).__name__}: {exc}".splitlines()[0])
    return replace(facts, gpus=tuple(gpus), arch_list=arch)


# --------------------------------------------------------------------------- the rules


def kernels_for(arch_list: tuple[str, ...] | list[str], capability: tuple[int, int]) -> str | None:
    """The entry of a torch build's arch list that runs on a GPU of `capability` (a cubin before
    PTX), or None where nothing does."""
    fitting = []
    for arch in arch_list:
        match = re.fullmatch(r"(sm|compute)_(\d+)(\d)([af]?)", arch)
        if match is None:
            continue
        kind, built, suffix = match.group(1), (int(match.group(2)), int(match.group(3))), match.group(4)
        if suffix == "a":  # architecture-specific: that compute capability only
            fits = built == capability
        elif kind == "sm" or suffix == "f":  # a cubin (or a family): same major, same or newer minor
            fits = built[0] == capability[0] and built[1] <= capability[1]
        else:  # PTX: compiled just in time for this GPU or any newer one
            fits = built <= capability
        if fits:
            fitting.append((kind != "sm", arch))
    return min(fitting)[1] if fitting else None


def install_hint(facts: CudaFacts) -> str:
    """How to get a CUDA torch on this machine, and into which Python."""
    if facts.machine in ("aarch64", "arm64"):
        line = (f"on aarch64 (GB200, GH200) install a CUDA build from PyTorch's CUDA wheel index: "
                f"`pip install {TORCH_PINS} --index-url {CUDA_INDEX}`")
    else:
        line = (f"on {facts.machine or 'this machine'} install a CUDA build: `pip install {TORCH_PINS}` "
                f"(aarch64 runners: add `--index-url {CUDA_INDEX}`)")
    if facts.prefix != facts.base_prefix:  # a session venv: it sees the base Python's packages
        where = (f"into the Python at {facts.base_prefix} (the session's venv sees its packages), or run "
                 "the session in the environment that has it (`nox --no-venv -s ...`)")
    else:
        where = f"into this environment ({facts.prefix})"
    return f"{line}, {where}; {DOCS}"


def _names(gpus: tuple[Gpu, ...] | list[Gpu]) -> str:
    counts: dict[str, int] = {}
    for gpu in gpus:
        label = f"{gpu.name} (compute capability {gpu.cc}, {gpu.memory_bytes / 2**30:.0f} GiB)"
        counts[label] = counts.get(label, 0) + 1
    return ", ".join(f"{n} × {label}" for label, n in counts.items())


def checks(facts: CudaFacts, family: Family | None = None) -> list[Check]:
    """Every check, in order; the first failure of torch or the GPUs ends the list (what follows
    would only repeat it)."""
    if facts.torch is None:
        return [Check(False, f"torch cannot be imported ({facts.import_error}): the bench sessions use the "
                             f"runner's own CUDA torch and install none; {install_hint(facts)}")]
    if facts.cuda_build is None:
        return [Check(False, f"torch {facts.torch} is a CPU build (torch.version.cuda is None); "
                             f"{install_hint(facts)}")]
    built = f"torch {facts.torch}, a CUDA {facts.cuda_build} build"
    if not facts.gpus:
        return [Check(True, built), Check(False, _no_gpu(facts))]
    kernels = f" with kernels for {' '.join(facts.arch_list)}" if facts.arch_list else ""
    driver = facts.driver or "unknown"
    found = [Check(True, built + kernels),
             Check(True, f"{len(facts.gpus)} GPU(s): {_names(facts.gpus)}; driver {driver}")]
    for capability in sorted({gpu.capability for gpu in facts.gpus}):
        found.append(_kernels_check(facts, capability))
    if family is not None:
        found.append(_family_check(facts, family))
    return found


def _no_gpu(facts: CudaFacts) -> str:
    torch = f"torch {facts.torch} (CUDA {facts.cuda_build} build)"
    if facts.driver is None:
        return (f"no NVIDIA driver on this machine (no nvidia-smi, no {DRIVER_FILE}): {torch} has no GPU "
                "to run on")
    listed = f"lists {len(facts.driver_gpus)} GPU(s) ({', '.join(sorted(set(facts.driver_gpus)))})" \
        if facts.driver_gpus else "lists no GPU"
    why = facts.cuda_error or (f"check CUDA_VISIBLE_DEVICES and that driver {facts.driver} supports "
                               f"CUDA {facts.cuda_build}")
    return f"the NVIDIA driver {facts.driver} {listed}, but {torch} can use none: {why}"


def _kernels_check(facts: CudaFacts, capability: tuple[int, int]) -> Check:
    gpus = [gpu for gpu in facts.gpus if gpu.capability == capability]
    what = f"{gpus[0].name} (compute capability {gpus[0].cc})"
    arch = kernels_for(facts.arch_list, capability)
    if arch is None:
        built = " ".join(facts.arch_list) or "no listed architecture"
        return Check(False, f"torch {facts.torch} has no kernels for {what}: it was built for {built}; "
                            f"install a build with sm_{capability[0]}{capability[1]} "
                            f"(`pip install {TORCH_PINS}`; aarch64: add `--index-url {CUDA_INDEX}`)")
    if arch.startswith("compute_"):
        return Check(True, f"{what}: no cubin in this build; runs PTX {arch} compiled just in time (first "
                           "calls and cold starts are slower than with a build for this GPU)")
    return Check(True, f"{what}: kernels {arch}")


def _family_check(facts: CudaFacts, family: Family) -> Check:
    other = [gpu for gpu in facts.gpus if not family.matches(gpu.capability)]
    if not other:
        return Check(True, f"the GPUs are what {family.session} is for: {family.name}")
    return Check(False, f"{family.session} is for {family.name}, compute capability {family.cc}; this "
                        f"machine has {_names(other)}: run the session for this GPU, or pass `-- --any-gpu` "
                        "to measure here anyway")


# --------------------------------------------------------------------------- stand-alone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.hardware.cuda",
        description="CUDA preflight with the standard library and torch only (no install needed).")
    parser.add_argument("--gpu-family", choices=sorted(FAMILIES),
                        help="Also require the GPUs a bench session is for.")
    args = parser.parse_args(argv)
    facts = probe()
    family = FAMILIES[args.gpu_family] if args.gpu_family else None
    print(f"preflight · cuda{f' · {family.session}' if family else ''} · Python {facts.python} on "
          f"{facts.machine} ({sys.executable})", flush=True)
    found = checks(facts, family)
    for check in found:
        print(f"  {'✓' if check.ok else '✗'} {check.text}", flush=True)
    problems = sum(not check.ok for check in found)
    if problems:
        print(f"preflight failed: {problems} problem(s); nothing was installed or run", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
