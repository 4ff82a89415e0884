"""The metric benchmark: both sides on the same inputs, their agreement, ratios and memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import bench_script

bench = bench_script("metrics")


def test_benchmark_rows_for_the_pixel_and_spectral_metrics(tmp_path: Path, capsys) -> None:
    out = tmp_path / "rows.json"
    bench.main(["--metrics", "psnr", "ssim", "spectral_distance", "hf_energy_ratio", "--sizes", "64",
                "--memory-size", "96", "--repeats", "1", "--device", "cpu", "--json", str(out)])
    rows = {(r["metric"], r["size"]): r for r in json.loads(out.read_text())}
    assert set(rows) == {(m, s) for m in ("psnr", "ssim", "spectral_distance", "hf_energy_ratio")
                         for s in (64, 96)}
    for name, tolerance in (("psnr", 1e-10), ("ssim", 1e-12), ("spectral_distance", 1e-9),
                            ("hf_energy_ratio", 1e-9)):
        row = rows[(name, 64)]
        assert row["images"] == 1 and row["max_abs_diff"] <= tolerance, row
        assert row["ratio"] == pytest.approx(row["ours_per_s"] / row["library_per_s"])
        assert row["library"] in ("scikit-image", "numpy.fft")
        memory = rows[(name, 96)]
        assert memory["library_per_s"] is None and memory["ours_per_s"] > 0 and memory["library"] == "—"
    printed = capsys.readouterr().out
    assert "| ssim | 64² | cpu | 1 |" in printed and "not run: clipscore" in printed


@pytest.mark.slow
def test_legibility_row_reads_the_same_crops_as_the_library() -> None:
    pytest.importorskip("rapidocr_onnxruntime")
    row = bench.measure("legibility_cer", bench.photo_inputs(128, 1, bench.torch.device("cpu")), repeats=1)
    assert row.library == "rapidocr" and row.max_abs_diff == 0.0 and row.ratio is not None
