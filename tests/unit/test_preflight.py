"""The CUDA preflight of the bench sessions (harness/hardware/cuda.py, `doctor --device cuda`):
each gap named by its cause, with stand-ins for every CUDA query."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import started
from typer.testing import CliRunner

from harness.cli import app
from harness.hardware import cuda
from harness.hardware.cuda import FAMILIES, CudaFacts, Gpu, checks, kernels_for

REPO = Path(__file__).resolve().parents[2]
GiB = 2**30
H100 = Gpu(0, "NVIDIA H100 80GB HBM3", (9, 0), 80 * GiB)
GB200 = Gpu(0, "NVIDIA GB200", (10, 0), 185 * GiB)
CU130_ARCH = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120")  # torch 2.14.1+cu130's list


def facts(**fields) -> CudaFacts:
    base = {"machine": "x86_64", "python": "3.12.3", "prefix": "/usr", "base_prefix": "/usr",
            "torch": "2.14.1+cu130", "cuda_build": "13.0", "arch_list": CU130_ARCH, "driver": "580.95.05"}
    return CudaFacts(**{**base, **fields})


def problems(found: CudaFacts, family: str | None = None) -> list[str]:
    return [c.text for c in checks(found, FAMILIES[family] if family else None) if not c.ok]


def test_a_cpu_build_on_aarch64_names_the_cuda_index() -> None:
    found = problems(facts(machine="aarch64", torch="2.14.1", cuda_build=None, arch_list=()), "gb200")
    assert len(found) == 1  # nothing after it: the GPU checks would only repeat it
    assert found[0].startswith("torch 2.14.1 is a CPU build (torch.version.cuda is None); on aarch64")
    assert ("`pip install torch==2.14.1 torchvision==0.29.1 --index-url "
            "https://download.pytorch.org/whl/cu130`") in found[0]
    assert "into this environment (/usr)" in found[0]


def test_a_cpu_build_on_x86_and_in_a_session_venv() -> None:
    found = problems(facts(torch="2.14.1+cpu", cuda_build=None, prefix="/w/.nox/bench-h100",
                           base_prefix="/usr"))
    assert "torch 2.14.1+cpu is a CPU build" in found[0]
    assert "on x86_64 install a CUDA build: `pip install torch==2.14.1 torchvision==0.29.1`" in found[0]
    assert "into the Python at /usr (the session's venv sees its packages)" in found[0]
    assert "`nox --no-venv -s ...`" in found[0]


def test_no_torch_at_all() -> None:
    found = problems(facts(torch=None, cuda_build=None, import_error="ModuleNotFoundError: No module named "
                           "'torch'"))
    assert found == [found[0]] and found[0].startswith(
        "torch cannot be imported (ModuleNotFoundError: No module named 'torch'): the bench sessions use "
        "the runner's own CUDA torch and install none")


def test_no_driver_and_a_driver_torch_cannot_use() -> None:
    assert problems(facts(driver=None)) == [
        "no NVIDIA driver on this machine (no nvidia-smi, no /proc/driver/nvidia/version): torch "
        "2.14.1+cu130 (CUDA 13.0 build) has no GPU to run on"]
    old = "CUDA initialization: The NVIDIA driver on your system is too old (found version 12020)."
    found = problems(facts(driver="535.104.05", driver_gpus=("NVIDIA H100 80GB HBM3",) * 8, cuda_error=old))
    assert found == [f"the NVIDIA driver 535.104.05 lists 8 GPU(s) (NVIDIA H100 80GB HBM3), but torch "
                     f"2.14.1+cu130 (CUDA 13.0 build) can use none: {old}"]


@pytest.mark.parametrize(("arch_list", "capability", "expected"), [
    (("sm_90",), (9, 0), "sm_90"),
    (("sm_90",), (10, 0), None),  # a cubin runs on its own major version only
    (("sm_80",), (8, 6), "sm_80"),  # same major, newer minor: binary compatible
    (("sm_86",), (8, 0), None),  # never on an older minor
    (("compute_80",), (9, 0), "compute_80"),  # PTX is compiled just in time for newer GPUs
    (("compute_100",), (9, 0), None),  # ... never for older ones
    (("sm_90a",), (9, 0), "sm_90a"),
    (("sm_100a",), (10, 3), None),  # architecture-specific: that compute capability only
    (("sm_100f",), (10, 3), "sm_100f"),  # family-specific: the family's newer minors too
    (("sm_100",), (12, 0), None),  # data-centre Blackwell kernels do not run on an RTX 50xx
    (("sm_120",), (12, 1), "sm_120"),
    (("compute_90", "sm_90"), (9, 0), "sm_90"),  # the cubin before the PTX
    (CU130_ARCH, (10, 0), "sm_100"),
    (("sm_75", "garbage", ""), (7, 5), "sm_75"),
])
def test_kernels_follow_cudas_compatibility_rules(arch_list, capability, expected) -> None:
    assert kernels_for(arch_list, capability) == expected


def test_a_build_without_kernels_for_the_gpu() -> None:
    old_build = ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90")
    found = problems(facts(arch_list=old_build, gpus=(GB200,)), "gb200")
    assert found == [
        "torch 2.14.1+cu130 has no kernels for NVIDIA GB200 (compute capability 10.0): it was built for "
        f"{' '.join(old_build)}; install a build with sm_100 (`pip install torch==2.14.1 "
        "torchvision==0.29.1`; aarch64: add `--index-url https://download.pytorch.org/whl/cu130`)"]
    ptx = [c for c in checks(facts(arch_list=(*old_build, "compute_90"), gpus=(GB200,))) if "PTX" in c.text]
    assert ptx and ptx[0].ok and "compiled just in time" in ptx[0].text


def test_the_gpu_family_of_the_session() -> None:
    found = problems(facts(gpus=(H100, Gpu(1, H100.name, (9, 0), 80 * GiB))), "gb200")
    assert found == ["bench-gb200 is for Blackwell data-centre GPUs (GB200, B200), compute capability "
                     "10.x; this machine has 2 × NVIDIA H100 80GB HBM3 (compute capability 9.0, 80 GiB): "
                     "run the session for this GPU, or pass `-- --any-gpu` to measure here anyway"]
    assert problems(facts(gpus=(GB200,)), "h100")[0].startswith("bench-h100 is for Hopper GPUs")
    h200 = Gpu(0, "NVIDIA H200", (9, 0), 140 * GiB)
    gb300 = Gpu(0, "NVIDIA GB300", (10, 3), 268 * GiB)
    rtx = Gpu(0, "NVIDIA GeForce RTX 5090", (12, 0), 32 * GiB)
    assert problems(facts(gpus=(h200,)), "h100") == []
    assert problems(facts(gpus=(gb300,)), "gb200") == []
    assert problems(facts(gpus=(rtx,)), "gb200")[0].startswith("bench-gb200 is for Blackwell data-centre")
    assert problems(facts(gpus=(H100,))) == []  # no family asked: --any-gpu
    every = [c.text for c in checks(facts(gpus=(GB200,)), FAMILIES["gb200"])]
    assert every == ["torch 2.14.1+cu130, a CUDA 13.0 build with kernels for " + " ".join(CU130_ARCH),
                     "1 GPU(s): 1 × NVIDIA GB200 (compute capability 10.0, 185 GiB); driver 580.95.05",
                     "NVIDIA GB200 (compute capability 10.0): kernels sm_100",
                     "the GPUs are what bench-gb200 is for: Blackwell data-centre GPUs (GB200, B200)"]


def test_the_pins_are_constraints_txt() -> None:
    pins = [line for line in (REPO / "constraints.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    assert " ".join(pins) == cuda.TORCH_PINS
    runner = (REPO / "constraints-runner.txt").read_text()
    pinned = {line.split("==")[0] for line in runner.splitlines() if "==" in line}
    assert not pinned & {"torch", "torchvision"} and {"diffusers", "pyiqa", "google-genai"} <= pinned


def test_probe_asks_torch_and_says_when_it_cannot(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    found = cuda.probe()
    assert (found.torch, found.cuda_build) == (torch.__version__, torch.version.cuda)
    assert len(found.gpus) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    broken = cuda.probe()
    assert broken.torch is None and "import of torch halted" in broken.import_error


def test_the_driver_version_from_proc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    version = tmp_path / "version"
    version.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  580.95.05  Release Build\n")
    monkeypatch.setattr(cuda, "DRIVER_FILE", version)
    assert cuda._driver([]) == "580.95.05"
    assert cuda._driver([{"name": "H100", "driver": "570.1", "memory": "81559 MiB"}]) == "570.1"
    monkeypatch.setattr(cuda, "DRIVER_FILE", tmp_path / "absent")
    assert cuda._driver([]) is None


def test_stand_alone_preflight_exit_codes(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(cuda, "probe", lambda: facts(torch="2.14.1", cuda_build=None, machine="aarch64"))
    assert cuda.main(["--gpu-family", "gb200"]) == 1
    text = capsys.readouterr().out
    assert "✗ torch 2.14.1 is a CPU build" in text and "nothing was installed or run" in text
    monkeypatch.setattr(cuda, "probe", lambda: facts(gpus=(GB200,)))
    assert cuda.main(["--gpu-family", "gb200"]) == 0
    assert "✓ the GPUs are what bench-gb200 is for" in capsys.readouterr().out


def test_the_stand_alone_preflight_imports_only_the_standard_library() -> None:
    import subprocess

    code = ("import sys; sys.modules['torch'] = None; import harness.hardware.cuda; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'typer', 'rich', 'pydantic', 'numpy', 'decoders', 'reports'}))")
    out = started(subprocess.run,
                  [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- doctor --device cuda


def _doctor(*args: str):
    return CliRunner().invoke(app, ["doctor", "--device", "cuda", *args], env={"COLUMNS": "100"})


@pytest.fixture
def gb200(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    second = Gpu(1, GB200.name, GB200.capability, GB200.memory_bytes)
    monkeypatch.setattr(cuda, "probe", lambda: facts(machine="aarch64", gpus=(GB200, second)))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))  # no metric weights
    monkeypatch.delenv("DECODERBENCH_PID_ROOT", raising=False)


def test_doctor_device_cuda_with_missing_weights(gb200, tmp_path: Path) -> None:
    result = _doctor("--gpu-family", "gb200", "--record", str(tmp_path / "preflight.json"),
                     "smoke", "flux-vae-wall")
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert "  ✓ the GPUs are what bench-gb200 is for: Blackwell data-centre GPUs (GB200, B200)" in lines
    assert "  ✓ flux-vae-wall: everything needed is here" in lines
    lpips = [line for line in lines if line.startswith("  ✗ smoke (lpips): missing weight file")]
    assert len(lpips) == 1 and "decoderbench weights fetch lpips" in lpips[0]  # one line, unwrapped
    assert "preflight failed: 2 problem(s)" in " ".join(result.output.split())
    record = json.loads((tmp_path / "preflight.json").read_text())
    assert record["green"] is False and record["suites"] == ["smoke", "flux-vae-wall"]
    assert record["machine"]["gpus"][1] == {"index": 1, "name": "NVIDIA GB200", "capability": "10.0",
                                             "memory_bytes": 185 * GiB}
    assert any(line.startswith("smoke (fid): missing weight file") for line in record["missing"])

    allowed = _doctor("--gpu-family", "gb200", "--allow-missing", "smoke", "flux-vae-wall")
    assert allowed.exit_code == 0, allowed.output
    assert "  ! smoke (lpips): missing weight file" in allowed.output
    assert "2 missing part(s) allowed by --allow-missing" in " ".join(allowed.output.split())


def test_doctor_device_cuda_a_suite_that_can_decode_nothing_fails_even_allowed(gb200) -> None:
    result = _doctor("--allow-missing", "pid-rae-siglip")
    assert result.exit_code == 1, result.output
    assert "  ✗ pid-rae-siglip: can decode nothing here" in result.output
    assert "  ! pid-rae-siglip (pid-siglip-4step): PiD checkout not found" in result.output


def test_doctor_device_cuda_wrong_family_and_identical_gaps_once(monkeypatch, gb200) -> None:
    monkeypatch.setattr(cuda, "probe", lambda: facts(gpus=(H100,)))
    result = _doctor("--gpu-family", "gb200", "pid-rae-dinov2", "pid-rae-siglip")
    assert result.exit_code == 1
    assert "✗ bench-gb200 is for Blackwell data-centre GPUs" in result.output
    pid = [line for line in result.output.splitlines() if "PiD checkout not found" in line]
    assert len(pid) == 1 and pid[0].startswith(
        "  ✗ pid-rae-dinov2 (pid-dinov2-4step); pid-rae-siglip (pid-siglip-4step): PiD checkout not found")
    assert "needs cuda" not in result.output  # the CUDA lines say it once


def test_doctor_device_usage_errors() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["doctor", "--device", "cpu"]).exit_code == 2
    assert runner.invoke(app, ["doctor", "--allow-missing", "smoke"]).exit_code == 2
    assert runner.invoke(app, ["doctor", "--device", "cuda", "--gpu-family", "a100"]).exit_code == 2
