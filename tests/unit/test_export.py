"""The tidy export carries its context: every row names its run, device, dtype, git sha and
decoder weights; each value its unit, direction, scope, sample count and, without a value, the
reason; set-level values their comparison size; integer columns stay integers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from synthetic_runs import ENVIRONMENT, SynthDecoder, write_run

from reports.export import COLUMNS, tidy_rows, write_csv, write_parquet


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    environment = {**ENVIRONMENT, "gpus": [{"name": "NVIDIA H100 80GB HBM3", "memory_bytes": 85e9}]}
    decoders = [
        SynthDecoder("pid-4step", name="pid", weights={"checkpoints/model.pth": "ab" * 32},
                     metrics={"psnr": lambda i: 30.0 + i, "lpips": lambda i: "unavailable"}),
        SynthDecoder("lanczos", name="lanczos", failures={1: ("oom", "CUDA out of memory")},
                     metrics={"psnr": lambda i: 25.0 + i, "lpips": lambda i: "unavailable"}),
    ]
    root = write_run(tmp_path / "run-1", decoders, 3, {"psnr": True, "lpips": False}, size=(64, 48),
                     environment=environment, dtype="bfloat16")
    with (root / "results.jsonl").open("a") as handle:  # a set value, as FID writes it
        handle.write(json.dumps({"kind": "metric", "decoder": "lanczos", "case": None, "metric": "psnr",
                                 "size": [64, 48], "status": "ok", "value": 26.5, "n": 2,
                                 "protocol_sha256": "0" * 64, "version": "1"}) + "\n")
    return root


def test_every_row_carries_the_run_context(run_dir: Path) -> None:
    rows = tidy_rows(run_dir)
    assert rows and all(list(row) == list(COLUMNS) for row in rows)
    for row in rows:
        assert row["run_id"] == "run-1" and row["created"] == "2026-01-01T00:00:00.000+00:00"
        assert row["device"] == "cpu" and row["dtype"] == "bfloat16" and row["gpu"] == "NVIDIA H100 80GB HBM3"
        assert row["git_sha"] == ENVIRONMENT["git"]["sha"] and row["suite"] == "synth"
    digests = {row["decoder"]: row["weights_digest"] for row in rows}
    assert digests["lanczos"] == "no weights" and len(digests["pid-4step"]) == 12
    assert {row["decoder_name"] for row in rows if row["decoder"] == "pid-4step"} == {"pid"}


def test_units_directions_scopes_reasons_and_counts(run_dir: Path) -> None:
    rows = tidy_rows(run_dir)
    assert rows[0]["scope"] == "summary" and rows[0]["unit"].startswith("share")
    psnr = [r for r in rows if r["variable"] == "psnr" and r["scope"] == "image"]
    assert {r["unit"] for r in psnr} == {"dB"} and {r["better"] for r in psnr} == {"higher"}
    assert all(r["n"] == 1 and r["image"].startswith("images/") for r in psnr)
    lpips = [r for r in rows if r["variable"] == "lpips"]
    assert {r["status"] for r in lpips} == {"unavailable"}
    assert all("weights not found" in r["reason"] for r in lpips)
    assert all(r["value"] is None for r in lpips)
    (pooled,) = [r for r in rows if r["scope"] == "set" and r["variable"] == "psnr"]
    assert (pooled["output_width"], pooled["output_height"], pooled["n"], pooled["case"]) == (64, 48, 2, None)
    oom = [r for r in rows if r["decode_status"] == "oom"]
    assert oom and oom[0]["reason"] == "CUDA out of memory" and oom[0]["scope"] == "call"
    latency = next(r for r in rows if r["variable"] == "latency_per_image_median_ms")
    assert latency["unit"] == "ms" and latency["n"] == 3 and latency["batch_size"] == 1
    first = [r for r in rows if r["variable"] == "first_call_ms"]
    assert {r["decoder"] for r in first} == {"pid-4step", "lanczos"}
    assert all(r["scope"] == "set" for r in first)


def test_integer_columns_stay_integers(run_dir: Path, tmp_path: Path) -> None:
    rows = tidy_rows(run_dir)
    write_csv(rows, tmp_path / "r.csv")
    with (tmp_path / "r.csv").open() as handle:
        written = list(csv.DictReader(handle))
    assert {row["output_width"] for row in written} == {"64"}
    assert all("." not in row["seed"] for row in written)
    pq = pytest.importorskip("pyarrow.parquet")
    write_parquet(rows, tmp_path / "r.parquet")
    schema = pq.read_table(tmp_path / "r.parquet").schema
    for column in ("seed", "output_width", "batch_size", "n"):
        assert str(schema.field(column).type) == "int64", column
