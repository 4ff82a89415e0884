"""The command line as a user runs it: a subprocess per call where the process matters (exit
codes of real runs, `python -m harness`), in-process where only the text does."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from helpers import cli, decoder_tables, invoke, suite_text

VERBS = ["run", "validate", "list", "show", "report", "export", "judge", "sweep", "gate",
         "gate calibrate", "gate check", "baseline save", "weights list", "weights verify",
         "weights where", "weights fetch"]


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb: str) -> None:
    result = invoke(*verb.split(), "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_python_dash_m_harness_is_the_same_program() -> None:
    result = cli("--help")
    assert result.returncode == 0
    assert all(verb.split()[0] in result.stdout for verb in VERBS)


def test_list_decoders_metrics_suites() -> None:
    decoders = invoke("list", "decoders")
    assert decoders.exit_code == 0
    for name in ("nearest", "bilinear", "bicubic", "lanczos", "fault", "decoderbench-testplugins"):
        assert name in decoders.output
    metrics = invoke("list", "metrics")
    assert all(name in metrics.output for name in ("psnr", "ssim", "ms_ssim", "full_reference"))
    suites = invoke("list", "suites")
    assert "smoke" in suites.output and "Offline demo" in suites.output
    assert invoke("list", "nothing").exit_code == 2


@pytest.mark.e2e
def test_validate_exit_codes(write_suite, image_folder) -> None:
    good = write_suite(suite_text(image_folder, decoder_tables('name = "nearest"')), "good.toml")
    result = cli("validate", str(good), "smoke")
    assert result.returncode == 0, result.stderr
    assert "3 case(s) × 1 decoder(s)" in result.stdout and "13 item(s)" in result.stdout
    bad = write_suite("name = 'x'\n[[decoder]]\nname = 'nope'\n", "bad.toml")
    result = cli("validate", str(bad))
    assert result.returncode == 2
    assert f"{bad}: decoder[0].name: unknown decoder 'nope'" in result.stderr
    assert f"{bad}: source: required key is missing" in result.stderr


@pytest.mark.e2e
def test_run_show_report_export(write_suite, tmp_path: Path, image_folder) -> None:
    (image_folder / "img0.txt").write_text("<script>alert(1)</script>")
    suite = write_suite(suite_text(image_folder, decoder_tables('name = "nearest"', 'name = "lanczos"')))
    run_dir = tmp_path / "run"
    result = cli("run", str(suite), "--out", str(run_dir), "--cache-dir", str(tmp_path / "c"), "-q",
                 columns=80)
    assert result.returncode == 0, result.stderr
    assert "lanczos" in result.stdout and "psnr" in result.stdout  # `run | cat`: the log layout at 80
    assert "…" not in result.stdout + result.stderr and "│" not in result.stdout
    html = (run_dir / "report" / "index.html").read_text()
    assert 'data-decoder="lanczos"' in html
    cases = (run_dir / "report" / "cases" / "t" / "index.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in cases and "<script>" not in cases

    shown = cli("show", str(run_dir))
    assert shown.returncode == 0 and "32×32" in shown.stdout and "nearest" in shown.stdout

    exported = cli("export", str(run_dir), "--csv")
    assert exported.returncode == 0, exported.stderr
    with (run_dir / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    variables = {row["variable"] for row in rows}
    assert {"latency_median_ms", "latency_per_image_median_ms", "peak_rss_bytes", "rss_increment_bytes",
            "psnr", "ssim", "win_rate:fidelity", "win_rate:overall"} <= variables
    assert {row["decoder"] for row in rows} == {"nearest", "lanczos"}
    assert len([r for r in rows if r["variable"] == "psnr"]) == 6
    assert rows[0]["scope"] == "summary"  # the summary comes first
    better = {row["variable"]: row["better"] for row in rows}
    assert better["psnr"] == "higher" and better["latency_per_image_median_ms"] == "lower"
    assert better["win_rate:overall"] == "higher"

    pytest.importorskip("pyarrow")
    exported = cli("export", str(run_dir), "--parquet")
    assert exported.returncode == 0, exported.stderr
    import pyarrow.parquet as pq

    table = pq.read_table(run_dir / "results.parquet")
    assert table.num_rows == len(rows)
    assert cli("export", str(run_dir)).returncode == 2


@pytest.mark.e2e
def test_run_exit_codes(write_suite, tmp_path: Path, image_folder) -> None:
    failing = write_suite(suite_text(image_folder, decoder_tables(
        'name = "nearest"', 'name = "fault"\nparams = {mode = "raise"}')))
    result = cli("run", str(failing), "--out", str(tmp_path / "r1"), "--cache-dir",
                 str(tmp_path / "c"), "-q", "--no-report")
    assert result.returncode == 1
    assert "decoder exploded on purpose" in result.stderr
    assert "3 decode unit(s) did not succeed" in result.stderr
    bad = write_suite("name = 'x'\n", "bad.toml")
    result = cli("run", str(bad), "--out", str(tmp_path / "r2"), "-q")
    assert result.returncode == 2 and "invalid suite" in result.stderr
    result = cli("run", "--resume", str(tmp_path / "nowhere"), "-q")
    assert result.returncode == 2 and "not a decoderbench run directory" in result.stderr
    result = cli("show", str(tmp_path))
    assert result.returncode == 2


@pytest.mark.e2e
def test_device_override_is_recorded(write_suite, tmp_path: Path, image_folder) -> None:
    suite = write_suite(suite_text(image_folder, decoder_tables('name = "nearest"')))
    result = cli("run", str(suite), "--out", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"),
                 "--dtype", "bfloat16", "-q", "--no-report")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["suite"]["resolved"]["timing"]["dtype"] == "bfloat16"


def test_list_suggests_the_verb_and_h_is_help() -> None:
    result = invoke("list", "decoder")
    assert result.exit_code == 2 and "did you mean `decoderbench list decoders`?" in result.output
    for args in (["-h"], ["run", "-h"], ["weights", "fetch", "-h"], ["list", "-h"]):
        shown = invoke(*args)
        assert shown.exit_code == 0 and "Usage" in shown.output, args


def test_list_decoders_tells_a_decoder_that_needs_parameters_from_a_missing_one() -> None:
    lines = invoke("list", "decoders").output.splitlines()
    cascade = next(line for line in lines if line.startswith("cascade "))
    vae = next(line for line in lines if line.startswith("vae "))
    assert "with params" in cascade  # nothing is missing: a suite gives its upscaler
    assert "with params" not in vae


def test_resuming_a_finished_run_says_there_is_nothing_to_do(write_suite, tmp_path: Path,
                                                             image_folder) -> None:
    suite = write_suite(suite_text(image_folder, decoder_tables('name = "nearest"')))
    run_dir = tmp_path / "run"
    assert invoke("run", str(suite), "--out", str(run_dir), "--no-report").exit_code == 0
    before = json.loads((run_dir / "manifest.json").read_text())
    for _ in range(2):
        resumed = invoke("run", "--resume", str(run_dir), "--no-report")
        assert resumed.exit_code == 0, resumed.output
        assert f"resume: nothing to do: every decode, metric and judge record of {run_dir} is there" in \
            " ".join(resumed.output.split())
    after = json.loads((run_dir / "manifest.json").read_text())
    assert len(after["phases"]) == len(before["phases"]) == 1  # no invocation of its own, no time line
    assert after.get("resumed", []) == before.get("resumed", [])
    assert "invocations" not in invoke("show", str(run_dir)).output
