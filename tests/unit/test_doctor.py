"""`decoderbench doctor`: what can run here, each gap with the command that closes it, from the
components' own checks (nothing loaded, hashed or downloaded)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from harness.cli import app, doctor
from harness.cli.listing import decoder_availability


def _doctor(*args: str):
    return CliRunner().invoke(app, ["doctor", *args], env={"COLUMNS": "100"})


def test_the_demo_suite_on_this_machine(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """The offline demo runs here: exit 0, the metrics that lack weights named with their command."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))  # no metric weights here
    result = _doctor("smoke")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "✓ nearest" in text and "✓ lanczos" in text and "✓ psnr" in text and "✓ items (13)" in text
    assert "✗ lpips: missing weight file alexnet-owt-7be5be79.pth" in text
    assert "decoderbench weights fetch lpips" in text
    assert "result: smoke runs here; lpips, fid will be unavailable until what the ✗ lines above name" in text
    assert "what to do" not in text  # no pointer to a section that does not exist


def test_a_suite_whose_decoder_cannot_run_here_fails(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(doctor, "machine", lambda: doctor.Machine("2.14.1", None, []))
    result = _doctor("pid-rae-siglip")
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "result: pid-rae-siglip cannot run completely here:" in text and "lack" in text


def test_geneval_and_dpg_bench_name_their_weights_and_data(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """geneval needs CLIP and Mask2Former and its prompt data, as clipscore needs CLIP; each
    problem of dpg_bench on a line of its own."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("DECODERBENCH_BENCHMARKS_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    result = _doctor()
    lines = result.output.splitlines()
    geneval = next(i for i, line in enumerate(lines) if "geneval" in line and "✗" in line)
    block = " ".join(" ".join(lines[geneval:geneval + 12]).split())
    assert "geneval benchmark data missing" in block and "decoderbench weights fetch geneval" in block
    dpg = [line for line in lines if "dpg-bench benchmark data missing" in line]
    assert len(dpg) == 2 and all(line.lstrip().startswith(("✗ dpg_bench: ", "dpg-bench")) for line in dpg)
    assert not any("the data folder dpg-bench" in line for line in lines)  # never run together


def test_a_gpu_suite_on_a_cpu_machine_names_every_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DECODERBENCH_PID_ROOT", raising=False)
    monkeypatch.setattr(doctor, "machine", lambda: doctor.Machine("2.14.1", None, []))
    text = " ".join(_doctor("pid-paper").output.split())
    assert ("CUDA devices none — torch 2.14.1 is a CPU build (torch.version.cuda is None): install a CUDA "
            "build (docs/hardware-runners.md)") in text
    assert "✗ pid-v1-2k-4step: needs cuda, and there is none here; PiD checkout not found" in text
    assert "git clone https://github.com/nv-tlabs/PiD" in text
    assert "✗ encoder vae:" in text and "hf download black-forest-labs/FLUX.1-dev" in text


def test_with_a_gpu_only_the_missing_files_remain(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    root = tmp_path / "PiD"
    (root / "pid").mkdir(parents=True)
    monkeypatch.setenv("DECODERBENCH_PID_ROOT", str(root))
    monkeypatch.setattr(doctor, "machine", lambda: doctor.Machine("2.14.1", "13.0", ["cuda:0 NVIDIA H200"]))
    text = " ".join(_doctor("pid-paper").output.split())
    assert "needs cuda" not in text and "CUDA only" not in text
    assert f"✗ pid-v1-2k-4step: PiD file missing: {root}/checkpoints/ae.safetensors" in text
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "ae.safetensors").write_bytes(b"")
    text = " ".join(_doctor("pid-paper").output.split())
    # What PiD downloads at load time is the next gap: its Gemma-2-2B text encoder, offline.
    assert "✗ pid-v1-2k-4step: PiD's text encoder (Gemma-2-2B)" in text
    assert "Efficient-Large-Model/gemma-2-2b-it" in text


def test_list_decoders_says_what_is_available_here() -> None:
    from decoders.registry import DECODERS

    assert decoder_availability(DECODERS.get("nearest")) == (True, "")
    ok, why = decoder_availability(DECODERS.get("pid"), cuda=False)
    assert not ok and "CUDA only" in why
    ok, why = decoder_availability(DECODERS.get("cascade"))
    assert not ok and "needs parameters (upscaler)" in why


def test_validate_says_when_a_valid_suite_cannot_run_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harness.cli.listing.cuda_driver_present", lambda: False)
    result = CliRunner().invoke(app, ["validate", "pid-paper"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output  # valid: the schema and registries hold
    text = " ".join(result.output.split())
    assert "valid, but 10 of 10 decoder(s) cannot run on this machine" in text
    assert "`decoderbench doctor pid-paper` says what to install or fetch" in text
