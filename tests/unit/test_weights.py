"""The weight lock table, cache locations, verification, explicit fetch, and fail-fast loading."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from harness.cli import app
from harness.metrics import METRICS, weights
from harness.metrics.base import MetricUnavailable

WEIGHT_FREE = {"psnr", "ssim", "ms_ssim", "piqe", "spectral_distance", "hf_energy_ratio", "seam_score",
               "legibility_cer", "invention_std"}


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point torch hub, the HF cache and decoderbench's cache at empty folders."""
    from huggingface_hub import constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("DECODERBENCH_CACHE_DIR", str(tmp_path / "db"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


def _unlocked(monkeypatch: pytest.MonkeyPatch, filename: str, **changes: object) -> weights.WeightFile:
    """Replace one lock entry (e.g. to accept a random-weight test file)."""
    entries = list(weights.LOCK)
    index = next(i for i, e in enumerate(entries) if e.filename == filename)
    entries[index] = dataclasses.replace(entries[index], **changes)
    monkeypatch.setattr(weights, "LOCK", tuple(entries))
    return entries[index]


def test_lock_table_covers_every_builtin_metric_with_weights() -> None:
    keys = [entry.key for entry in weights.LOCK]
    assert len(keys) == len(set(keys))
    for entry in weights.LOCK:
        assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
        assert entry.sha256_prefix is None or re.fullmatch(r"[0-9a-f]{8}", entry.sha256_prefix)
        assert entry.url.startswith("https://") and entry.licence and entry.description
        assert (entry.store == weights.Store.HF) == (entry.hf_repo is not None)
        assert set(entry.used_by) <= set(METRICS.names())
    needing = set(METRICS.names()) - WEIGHT_FREE
    assert needing == set(weights.users())


def test_lpips_linear_layers_are_found_in_the_lpips_package_and_verify(empty_caches: Path) -> None:
    pytest.importorskip("lpips")
    entry = next(e for e in weights.LOCK if e.filename == "LPIPS_v0.1_alex-df73285e.pth")
    result = weights.verify(entry)
    assert result.status == "ok" and result.path is not None
    assert result.path.as_posix().endswith("lpips/weights/v0.1/alex.pth")
    assert result.sha256 == hashlib.sha256(result.path.read_bytes()).hexdigest() == entry.sha256


def test_missing_file_fails_fast_naming_file_path_and_command(empty_caches: Path) -> None:
    began = time.perf_counter()
    with pytest.raises(weights.WeightsMissing) as caught:
        weights.require("musiq")
    assert time.perf_counter() - began < 1.0
    message = str(caught.value)
    assert "musiq_koniq_ckpt-e95806b9.pth" in message
    assert str(empty_caches / "torch" / "hub" / "pyiqa" / "musiq_koniq_ckpt-e95806b9.pth") in message
    assert "decoderbench weights fetch musiq" in message


@pytest.mark.parametrize("name", ["lpips", "lpips_vgg", "dists", "musiq", "clipiqa", "maniqa", "niqe",
                                  "brisque", "topiq_nr", "fid", "kid", "patch_fid", "clipscore",
                                  "invention_lpips"])
def test_metric_load_is_unavailable_in_under_a_second_offline(name: str, empty_caches: Path) -> None:
    metric = METRICS.get(name)()
    began = time.perf_counter()
    with pytest.raises(MetricUnavailable, match="decoderbench weights fetch"):
        metric.load(torch.device("cpu"))
    assert time.perf_counter() - began < 1.0


def test_verify_reports_mismatch_and_unverified_files(empty_caches: Path) -> None:
    alexnet = next(e for e in weights.LOCK if e.filename == "alexnet-owt-7be5be79.pth")
    niqe = next(e for e in weights.LOCK if e.filename == "niqe_modelparameters.mat")
    for entry in (alexnet, niqe):
        path = weights.expected_path(entry)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not the real file")
    assert weights.verify(alexnet).status == "mismatch"  # sha256 does not start with 7be5be79
    unverified = weights.verify(niqe)
    assert unverified.status == "unverified"
    assert unverified.sha256 == hashlib.sha256(b"not the real file").hexdigest()
    with pytest.raises(weights.WeightsMissing, match="does not match the lock table"):
        weights.checked_sha256("lpips", {alexnet.key: weights.expected_path(alexnet)})


def test_sha256_memo_rehashes_a_changed_file(empty_caches: Path) -> None:
    path = empty_caches / "file.bin"
    path.write_bytes(b"one")
    assert weights.file_sha256(path) == hashlib.sha256(b"one").hexdigest()
    path.write_bytes(b"two!")  # different size → different stamp
    assert weights.file_sha256(path) == hashlib.sha256(b"two!").hexdigest()


def test_fetch_downloads_into_the_cache_and_verifies(empty_caches: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    source = empty_caches / "served.bin"
    source.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    entry = _unlocked(monkeypatch, "brisque_svm_weights.pth", url=source.as_uri(), sha256=digest)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(weights.WeightsMissing, match="HF_HUB_OFFLINE is set"):
        weights.fetch(entry)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    path = weights.fetch(entry)
    assert path == empty_caches / "torch" / "hub" / "pyiqa" / "brisque_svm_weights.pth"
    assert weights.verify(entry).status == "ok"
    bad = _unlocked(monkeypatch, "niqe_modelparameters.mat", url=source.as_uri(), sha256="0" * 64)
    with pytest.raises(weights.WeightsMissing, match="does not match"):
        weights.fetch(bad)
    assert weights.locate(bad) is None


def test_weights_cli_list_where_verify(empty_caches: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["weights", "list", "lpips"], env={"COLUMNS": "300"})
    assert listed.exit_code == 0, listed.output
    assert "alexnet-owt-7be5be79.pth" in listed.output and "musiq" not in listed.output
    where = runner.invoke(app, ["weights", "where", "fid"], env={"COLUMNS": "300"})
    assert where.exit_code == 0
    assert "missing" in where.output and "inception-2015-12-05.pt" in where.output
    assert runner.invoke(app, ["weights", "verify", "lpips"]).exit_code == 0
    assert runner.invoke(app, ["weights", "verify", "--strict", "lpips"]).exit_code == 1
    assert runner.invoke(app, ["weights", "list", "psnr"]).exit_code == 2
