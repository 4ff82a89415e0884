"""Regression gates with constructed runs: perceptual, not pixel-exact; budgets; environment;
calibrated noise; unavailable metrics; JUnit XML that CI tools accept; the CLI's exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from helpers import decoder_tables, invoke, started, suite_text
from pydantic import ValidationError
from synthetic_runs import ENVIRONMENT, SynthDecoder, write_run

from harness.gates.baselines import BaselineError, load_baseline, save_baseline, snapshot
from harness.gates.calibrate import calibrate
from harness.gates.checks import evaluate_gates
from harness.gates.outcomes import FAIL, PASS, SKIP, UNDECIDED, GateReport
from harness.gates.report import junit_xml, markdown_summary
from harness.gates.spec import GateSpec
from harness.suite import SuiteError, load_suite, validate_raw
from harness.view import load_run

METRICS = {"lpips": False, "psnr": True, "musiq": True}  # name → higher is better
N = 12


def lpips_base(i: int) -> float:
    return 0.20 + 0.02 * np.sin(i)


def pid(**changes) -> SynthDecoder:
    """A generative decoder: LPIPS, PSNR and an NR-IQA score (MUSIQ) per case."""
    fields = {
        "latency_ms": 100.0,
        "peak_bytes": 8 * 2**30,
        "metrics": {"lpips": lpips_base, "psnr": lambda i: 25 + np.cos(i), "musiq": lambda i: 60 + i % 3},
    }
    fields.update(changes)
    return SynthDecoder("pid", **fields)


def _run(path: Path, *decoders: SynthDecoder, **kwargs) -> Path:
    return write_run(path, list(decoders), N, METRICS, **kwargs)


def _gate(run_dir: Path, baseline_dir: Path, gates: list[dict], **kwargs) -> GateReport:
    baseline = load_baseline(save_baseline(baseline_dir, "golden", baseline_dir.parent / "baselines"))
    specs = [GateSpec.model_validate(g) for g in gates]
    return evaluate_gates(snapshot(load_run(run_dir)), run_dir, baseline, specs, **kwargs)


LPIPS_GATE = {"metric": "lpips", "tolerance": 0.01}


def test_lpips_worsening_beyond_tolerance_fails(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", pid())
    worse = _run(tmp_path / "worse", pid(metrics={"lpips": lambda i: lpips_base(i) + 0.03}))
    (check,) = _gate(worse, base, [LPIPS_GATE]).checks
    assert check.status == FAIL
    assert check.details["mean_delta"] == pytest.approx(0.03)
    assert check.details["bound"] == pytest.approx(0.03)  # a constant shift has no spread
    slightly = _run(tmp_path / "slightly", pid(metrics={"lpips": lambda i: lpips_base(i) + 0.004 * (i % 2)}))
    (check,) = _gate(slightly, base, [LPIPS_GATE]).checks
    assert check.status == PASS
    assert 0.002 <= check.details["bound"] <= 0.01  # the bound sits above the mean worsening (0.002)


def test_a_target_metric_worsens_when_it_moves_away_from_its_target(tmp_path: Path) -> None:
    """hf_energy_ratio is best at 1: 1.0 → 3.0 (ringing, noise) and 1.0 → 0.6 (blur) both regress;
    1.3 → 1.0 is an improvement although the value went down."""
    info = {"hf_energy_ratio": {"better": "target", "target": 1.0}}
    gate = [{"metric": "hf_energy_ratio", "tolerance": 0.01}]

    def run(name: str, value) -> Path:
        return write_run(tmp_path / name, [SynthDecoder("d", metrics={"hf_energy_ratio": value})], N, info)

    base = run("base", lambda i: 1.0 + 0.002 * (i % 2))
    (check,) = _gate(run("ringing", lambda i: 3.0), base, gate).checks
    assert check.status == FAIL
    assert check.details["mean_worsening"] == pytest.approx(2.0 - 0.001, abs=1e-9)
    (check,) = _gate(run("blur", lambda i: 0.6), tmp_path / "base", gate).checks
    assert check.status == FAIL and check.details["mean_worsening"] == pytest.approx(0.399, abs=1e-9)
    over = run("over", lambda i: 1.3)
    (check,) = _gate(run("back", lambda i: 1.0), over, gate).checks
    assert check.status == PASS and check.details["mean_worsening"] == pytest.approx(-0.3)


def test_psnr_drops_but_lpips_and_nr_iqa_hold_passes(tmp_path: Path) -> None:
    """The mission's case: a generative decoder invents detail, pixels move, perception holds."""
    base = _run(tmp_path / "base", pid())
    invented = _run(
        tmp_path / "invented",
        pid(
            metrics={
                "lpips": lambda i: lpips_base(i) + 0.002 * ((i % 3) - 1),  # noise, no trend
                "psnr": lambda i: 25 + np.cos(i) - 3.0,  # 3 dB lower
                "musiq": lambda i: 60 + i % 3 + 0.5,  # slightly better
            }
        ),
    )
    report = _gate(invented, base, [LPIPS_GATE, {"metric": "musiq", "tolerance_relative": 0.02}])
    assert [c.status for c in report.checks] == [PASS, PASS] and report.passed
    snap = snapshot(load_run(invented))
    assert snap["decoders"]["pid"]["metrics"]["psnr"]["mean"] < 23  # PSNR did drop
    with pytest.raises(ValidationError, match="pixel-exact gate and is refused: generative decoders"):
        GateSpec(metric="psnr", tolerance=0.5)


def test_latency_regression_beyond_budget_fails(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", pid())
    slow = _run(tmp_path / "slow", pid(latency_ms=150.0))
    (check,) = _gate(slow, base, [{"statistic": "latency_ratio", "max_ratio": 1.2}]).checks
    assert check.status == FAIL and check.details["ratio"] == pytest.approx(1.5) and check.size == "48x48"
    ok = _run(tmp_path / "ok", pid(latency_ms=110.0, peak_bytes=8 * 2**30 + 2**20))
    checks = _gate(
        ok,
        base,
        [{"statistic": "latency_ratio", "max_ratio": 1.2}, {"statistic": "memory_ratio", "max_ratio": 1.01}],
    ).checks
    assert [c.status for c in checks] == [PASS, PASS]


def test_environment_mismatch_fails_cost_gates_unless_allowed(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", pid())
    moved = _run(
        tmp_path / "moved",
        pid(),
        environment={
            **ENVIRONMENT,
            "cpu": "Other CPU",
            "packages": {**ENVIRONMENT["packages"], "torch": "2.15.0"},
        },
        dtype="bfloat16",
    )
    gates = [LPIPS_GATE, {"statistic": "latency_ratio", "max_ratio": 1.2}]
    report = _gate(moved, base, gates)
    facts = {m.fact: (m.baseline, m.run) for m in report.mismatches}
    assert facts == {
        "cpu": ("Test CPU", "Other CPU"),
        "dtype": ("float32", "bfloat16"),
        "package torch": ("2.14.1", "2.15.0"),
    }
    quality, latency = report.checks
    assert quality.status == PASS
    assert latency.status == FAIL and "environment differs" in latency.message and "dtype" in latency.message
    allowed = _gate(moved, base, [*gates[:1], {**gates[1], "allow_environment_mismatch": True}])
    assert allowed.passed and "(allowed)" in allowed.checks[1].message
    assert _gate(moved, base, gates, allow_environment_mismatch=True).passed


def test_noise_within_calibrated_tolerance_passes(tmp_path: Path) -> None:
    """Tolerances from the spread of repeats; a fresh repeat passes, a real regression fails."""

    def repeat(index: int, shift: float = 0.0) -> Path:
        rng = np.random.default_rng(index)
        noise = rng.normal(0, 0.004, N)
        jitter = 1 + rng.uniform(-0.03, 0.03)
        return _run(
            tmp_path / f"repeat-{index}",
            pid(
                latency_ms=100.0 * jitter,
                metrics={
                    "lpips": lambda i: lpips_base(i) + noise[i] + shift,
                    "psnr": lambda i: 25.0,
                    "musiq": lambda i: 60.0,
                },
            ),
        )

    repeats = [repeat(i) for i in range(4)]
    gates = [GateSpec(metric="lpips", tolerance=0.0), GateSpec(statistic="latency_ratio", max_ratio=1.0)]
    lpips, latency = calibrate(repeats, gates, k=2.0)
    assert lpips.pairs == latency.pairs == 12  # every ordered pair of 4 repeats
    assert 0.0 < lpips.spread < 0.01 and lpips.value == pytest.approx(2 * lpips.spread)
    assert 1.0 < latency.value < 1.13
    calibrated = [lpips.proposed_gate(), latency.proposed_gate()]
    assert calibrated[0] == {"metric": "lpips", "tolerance": lpips.value, "statistic": "mean_delta"}
    fresh = repeat(9)
    assert _gate(fresh, repeats[0], calibrated).passed
    regressed = repeat(10, shift=3 * lpips.value)
    statuses = [c.status for c in _gate(regressed, repeats[0], calibrated).checks]
    assert statuses == [FAIL, PASS]


def test_unavailable_metric_fails_with_its_reason_unless_optional(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", pid())
    missing = _run(
        tmp_path / "missing",
        pid(metrics={"lpips": lambda i: "unavailable", "psnr": lambda i: 25.0, "musiq": lambda i: 60.0}),
    )
    (check,) = _gate(missing, base, [LPIPS_GATE]).checks
    assert check.status == FAIL and "lpips has no values in the run (12 unavailable)" in check.message
    assert "weights not found" in check.message
    (check,) = _gate(missing, base, [{**LPIPS_GATE, "optional": True}]).checks
    assert check.status == SKIP and "optional, skipped" in check.message


def test_a_decoder_that_stopped_decoding_fails_even_when_optional(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", pid())
    ooms = _run(
        tmp_path / "ooms", pid(failures={2: ("oom", "CUDA out of memory"), 5: ("oom", "CUDA out of memory")})
    )
    (check,) = _gate(ooms, base, [{**LPIPS_GATE, "optional": True}]).checks
    assert check.status == FAIL
    assert (
        "2 of 12 baseline cases have no lpips in this run (decode 10 ok, 2 oom; lpips 10 ok)" in check.message
    )
    gone = _run(tmp_path / "gone", SynthDecoder("other", metrics={"lpips": lpips_base}))
    report = _gate(gone, base, [LPIPS_GATE])
    assert {(c.decoder, c.status) for c in report.checks} == {("pid", FAIL), ("other", SKIP)}


def test_fraction_exceeding_measures_outputs_against_the_baseline_images(tmp_path: Path) -> None:
    """The distance goes through the metric registry by name (here spectral_distance; LPIPS by
    default); the gate passes on the share's 95 % upper bound, not the share itself."""
    base = _run(tmp_path / "base", pid(noise=0.02))
    gate = {"statistic": "fraction_exceeding", "metric": "spectral_distance", "tau": 1.0,
            "max_fraction": 0.25}
    (same,) = _gate(base, base, [gate]).checks
    assert same.status == PASS and same.details["worst"] == pytest.approx(0.0)
    assert same.details["bound"] == pytest.approx(1 - 0.05 ** (1 / N))  # 0 of 12 still allows 22 %
    drifted = _run(tmp_path / "drifted", pid(noise=0.2))
    (check,) = _gate(drifted, base, [gate]).checks
    assert check.status == FAIL and check.details["cases"] == N and len(check.details["beyond"]) == N
    assert all(d > 1.0 for d in check.details["distances"].values())
    save_baseline(base, "no-images", tmp_path / "b2", images="none")
    baseline = load_baseline(tmp_path / "b2" / "no-images.json")
    report = evaluate_gates(snapshot(load_run(drifted)), drifted, baseline, [GateSpec.model_validate(gate)])
    assert report.checks[0].status == FAIL and "holds no output images" in report.checks[0].message


def test_fraction_exceeding_with_too_few_cases_is_undecided_not_passed(tmp_path: Path) -> None:
    """0 of 12 cases beyond tau cannot show a share ≤ 2 %: the 95 % bound is 22 %, so the old rule
    (observed share ≤ max_fraction) passed a decoder that moves 10 % of its outputs 28 % of the time."""
    base = _run(tmp_path / "base", pid(noise=0.02))
    gate = {"statistic": "fraction_exceeding", "metric": "spectral_distance", "tau": 1.0,
            "max_fraction": 0.02}
    report = _gate(base, base, [gate])
    (check,) = report.checks
    assert check.status == UNDECIDED and not report.passed and not report.failed
    assert "needs ≥ 149 cases" in check.message and "cannot go below 22.1%" in check.message


def test_fraction_exceeding_on_a_similarity_is_refused(write_suite, image_folder) -> None:
    """ssim with tau = 0.05 counts cases whose SSIM is below 0.05: such a gate could never fail."""
    text = suite_text(image_folder, decoder_tables('name = "nearest"'))
    gate = '\n[[gate]]\nstatistic = "fraction_exceeding"\nmetric = "ssim"\ntau = 0.05\nmax_fraction = 0.1\n'
    with pytest.raises(SuiteError, match=r"needs a distance \(lower is better"):
        load_suite(write_suite(text + gate))
    with pytest.raises(ValidationError, match="greater than 0"):
        GateSpec(statistic="fraction_exceeding", metric="lpips", tau=0.05, max_fraction=0.0)


def test_pixel_exact_gates_are_refused_unless_marked(tmp_path: Path, write_suite, image_folder) -> None:
    with pytest.raises(ValidationError, match="hash_equal is a pixel-exact gate and is refused"):
        GateSpec(statistic="hash_equal")
    with pytest.raises(ValidationError, match="pixel_exact = true marks a pixel-exact gate"):
        GateSpec(metric="lpips", tolerance=0.01, pixel_exact=True)
    text = suite_text(image_folder, decoder_tables('name = "nearest"'))
    with pytest.raises(SuiteError) as error:
        load_suite(
            write_suite(
                text + '\n[[gate]]\nmetric = "psnr"\ntolerance = 0.5\n'
                '\n[[gate]]\nmetric = "lpips"\ntolerance = 0.1\n'
                '\n[[gate]]\nstatistic = "latency_ratio"\ntolerance = 0.1\nmax_ratio = 1.1\n'
            )
        )
    message = str(error.value)
    assert "gate[0]: psnr mean_delta is a pixel-exact gate and is refused" in message
    assert "gate[1].metric: metric 'lpips' is not measured by this suite (metrics: psnr, ssim)" in message
    assert "gate[2]: 'tolerance' applies to mean_delta gates, not to a latency_ratio gate" in message
    suite = load_suite(
        write_suite(text + '\n[[gate]]\nstatistic = "hash_equal"\npixel_exact = true\n', "ok.toml")
    )
    assert suite.model.gate[0].is_pixel_exact
    # Deterministic outputs: identical hashes pass, different ones fail.
    base = _run(tmp_path / "base", pid())
    (check,) = _gate(base, base, [{"statistic": "hash_equal", "pixel_exact": True}]).checks
    assert check.status == PASS
    other = _run(tmp_path / "other", pid(noise=0.05))
    (check,) = _gate(other, base, [{"statistic": "hash_equal", "pixel_exact": True}]).checks
    assert check.status == FAIL and check.observed == f"{N}/{N} outputs differ from the baseline"


def test_gates_survive_the_run_manifest(write_suite, image_folder) -> None:
    """The manifest stores the resolved suite; `run --resume` and `gate` validate it again."""
    gates = '\n[[gate]]\nstatistic = "latency_ratio"\nmax_ratio = 1.1\n'
    gates += '\n[[gate]]\nmetric = "ssim"\ntolerance = 0.01\n'
    suite = load_suite(write_suite(suite_text(image_folder, decoder_tables('name = "nearest"')) + gates))
    again = validate_raw(suite.model.model_dump(mode="json"), suite.path, suite.texts)
    assert again.sha256 == suite.sha256 and again.model.gate == suite.model.gate
    assert [g.label for g in again.model.gate] == ["latency_ratio", "ssim mean_delta"]


# --------------------------------------------------------------------------- JUnit XML

# Structure of Jenkins' JUnit schema, which Jenkins, GitLab and GitHub test reporters accept:
# jenkinsci/xunit-plugin, src/main/resources/org/jenkinsci/plugins/xunit/types/model/xsd/junit-10.xsd
# (commit 031e285ef3b60dee7aaf36e9096d7dcd95ffae83). Encoded here as rules, checked with the stdlib.
SUREFIRE_TIME = re.compile(r"(([0-9]{0,3},)*[0-9]{3}|[0-9]{0,3})*(\.[0-9]*)?")
SCHEMA = {  # element → (allowed attributes, required attributes, allowed children)
    "testsuites": ({"name", "time", "tests", "failures", "errors"}, set(), {"testsuite"}),
    "testsuite": (
        {
            "name",
            "tests",
            "failures",
            "errors",
            "group",
            "time",
            "skipped",
            "timestamp",
            "hostname",
            "id",
            "package",
            "file",
            "log",
            "url",
        },
        {"name", "tests", "failures", "errors"},
        {"testsuite", "properties", "testcase", "system-out", "system-err"},
    ),
    "properties": (set(), set(), {"property"}),
    "property": ({"name", "value"}, {"name", "value"}, set()),
    "testcase": (
        {"name", "time", "classname", "group"},
        {"name"},
        {
            "skipped",
            "error",
            "failure",
            "rerunFailure",
            "rerunError",
            "flakyFailure",
            "flakyError",
            "system-out",
            "system-err",
        },
    ),
    "failure": ({"type", "message"}, set(), set()),
    "error": ({"type", "message"}, set(), set()),
    "skipped": ({"type", "message"}, set(), set()),
    "system-out": (set(), set(), set()),
    "system-err": (set(), set(), set()),
}


def validate_junit(text: str) -> ET.Element:
    root = ET.fromstring(text.encode())
    assert root.tag == "testsuites"

    def check(element: ET.Element) -> None:
        allowed, required, children = SCHEMA[element.tag]
        assert set(element.attrib) <= allowed, (element.tag, set(element.attrib) - allowed)
        assert required <= set(element.attrib), (element.tag, required - set(element.attrib))
        if "time" in element.attrib and element.tag in ("testsuite", "testsuites"):
            assert SUREFIRE_TIME.fullmatch(element.attrib["time"]), element.attrib["time"]
        for child in element:
            assert child.tag in children, (element.tag, child.tag)
            check(child)

    check(root)
    for suite in root.iter("testsuite"):
        cases = suite.findall("testcase")
        assert int(suite.get("tests")) == len(cases)
        assert int(suite.get("failures")) == sum(c.find("failure") is not None for c in cases)
        assert int(suite.get("skipped")) == sum(c.find("skipped") is not None for c in cases)
    return root


def test_junit_xml_validates_against_the_junit_schema(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", pid())
    run = _run(
        tmp_path / "run",
        pid(latency_ms=300.0, metrics={"lpips": lambda i: "unavailable"}),
        environment={**ENVIRONMENT, "cpu": 'CPU <"fast"> & \x1b[1mbold\x1b[0m'},
    )
    gates = [
        LPIPS_GATE,
        {**LPIPS_GATE, "name": "lpips optional", "optional": True},
        {"statistic": "latency_ratio", "max_ratio": 1.2, "allow_environment_mismatch": True},
        {"statistic": "memory_ratio", "max_ratio": 1.2, "allow_environment_mismatch": True},
    ]
    report = _gate(run, base, gates)
    assert [c.status for c in report.checks] == [FAIL, SKIP, FAIL, PASS]
    root = validate_junit(junit_xml(report))
    assert root.get("tests") == "4" and root.get("failures") == "2"
    failure = root.find(".//testsuite[@name='latency_ratio']/testcase/failure")
    assert failure is not None and "latency per image 3.000×" in failure.text
    properties = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert properties["environment cpu"].startswith('Test CPU → CPU <"fast"> & ?[1mbold')
    markdown = markdown_summary(report)
    assert markdown.startswith("## ❌ decoderbench gates failed · baseline `golden`")
    assert 'CPU &lt;"fast"&gt; &amp;' in markdown and "| ⏭️ skip | lpips optional | pid |" in markdown


# --------------------------------------------------------------------------- command line


@pytest.mark.e2e
def test_cli_baseline_and_gate(tmp_path: Path) -> None:
    gates = [LPIPS_GATE, {"statistic": "latency_ratio", "max_ratio": 1.2}]
    base = _run(tmp_path / "base", pid(), gates=gates)
    saved = invoke("baseline", "save", str(base), "--name", "golden", "--dir", str(tmp_path / "baselines"))
    assert saved.exit_code == 0, saved.output
    baseline = tmp_path / "baselines" / "golden.json"
    data = json.loads(baseline.read_text())
    assert data["suite"]["name"] == "synth" and data["environment"]["cpu"] == "Test CPU"
    assert len(data["decoders"]["pid"]["metrics"]["lpips"]["values"]) == N
    assert len(list((tmp_path / "baselines" / "golden" / "images" / "pid").glob("*.png"))) == N

    worse = _run(tmp_path / "worse", pid(metrics={"lpips": lambda i: lpips_base(i) + 0.05}), gates=gates)
    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier step\n")
    result = started(subprocess.run,
        [sys.executable, "-m", "harness", "gate", str(worse), "--baseline", str(baseline)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "80", "GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert result.returncode == 1, result.stderr
    assert "…" not in result.stdout + result.stderr  # the gate table of a CI log, at 80 columns
    assert "gates failed (1 passed, 1 failed, 0 skipped)" in result.stdout
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("decoder"))
    assert header.split() == ["decoder", "result", "gate", "observed", "limit"]  # a grid, not 5 lines a gate
    assert re.search(r"^pid\s+fail\s+lpips mean_delta", result.stdout, re.MULTILINE)
    assert max(map(len, lines)) <= 80
    validate_junit((worse / "gate" / "junit.xml").read_text())
    assert "❌ decoderbench gates failed" in (worse / "gate" / "summary.md").read_text()
    assert summary.read_text().startswith("earlier step\n## ❌ decoderbench gates failed")

    same = invoke("gate", str(base), "--baseline", str(baseline), "--junit", str(tmp_path / "j.xml"))
    assert same.exit_code == 0, same.output
    assert "all gates hold (2 passed" in same.output and (tmp_path / "j.xml").exists()
    ungated = _run(tmp_path / "ungated", pid())
    result = invoke("gate", str(ungated), "--baseline", str(baseline))
    assert result.exit_code == 2 and "declares no [[gate]] tables" in result.output
    with pytest.raises(BaselineError, match=r"nope\.json not found; create it with `decoderbench baseline"):
        load_baseline(tmp_path / "nope.json")


@pytest.mark.e2e
def test_cli_calibrate_runs_the_suite_and_proposes_gates(tmp_path: Path, write_suite, image_folder) -> None:
    text = suite_text(image_folder, decoder_tables('name = "bilinear"'))
    suite = write_suite(
        text + '\n[[gate]]\nmetric = "ssim"\ntolerance = 0.001\n'
        '\n[[gate]]\nstatistic = "latency_ratio"\nmax_ratio = 1.05\n'
    )
    out = tmp_path / "calibration"
    result = invoke(
        "gate",
        "calibrate",
        str(suite),
        "--repeats",
        "2",
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "-q",
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("repeat-*")) == ["repeat-1", "repeat-2"]
    proposed = tomllib.loads((out / "proposed-gates.toml").read_text())["gate"]
    ssim, latency = (GateSpec.model_validate(g) for g in proposed)
    assert ssim.tolerance == 0  # bilinear is deterministic: no quality noise between repeats
    assert latency.max_ratio > 1  # timing always jitters
    calibration = json.loads((out / "calibration.json").read_text())
    assert [g["pairs"] for g in calibration["gates"]] == [2, 2]


# --------------------------------------------------------------------------- coverage, power, stability


def test_mean_delta_says_what_it_can_detect_and_refuses_one_case(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", pid())
    noisy = _run(tmp_path / "noisy", pid(metrics={"lpips": lambda i: lpips_base(i) + 0.004 * ((i % 3) - 1)}))
    (check,) = _gate(noisy, base, [LPIPS_GATE]).checks
    assert check.status == PASS and check.message.startswith(f"n = {N}, spread ")
    found = re.search(r"detects a worsening ≥ ([0-9.e-]+) in lpips at 80 % power", check.message)
    detectable = float(found[1])
    assert detectable == pytest.approx(check.details["min_detectable"], rel=1e-2) and detectable < 0.01
    (tight,) = _gate(noisy, base, [{"metric": "lpips", "tolerance": 0.0005}]).checks
    assert "the tolerance 0.0005 is below that: an unchanged decoder would pass only" in tight.message
    one = write_run(tmp_path / "one", [pid()], 1, METRICS)
    (check,) = _gate(one, one, [LPIPS_GATE]).checks
    assert check.status == UNDECIDED and "too few cases: 1 case gives no spread" in check.message


def test_a_worsening_at_the_tolerance_no_longer_passes_at_small_n(tmp_path: Path) -> None:
    """Two cases, both worse by about the tolerance: the old paired bootstrap's 95 % 'bound' was the
    larger of the two values resampled — here 0.0105 ≤ 0.011 passed; the t bound is far above."""
    base = write_run(tmp_path / "base", [pid()], 2, METRICS)
    shift = (0.0095, 0.0105)
    worse = write_run(tmp_path / "worse", [pid(metrics={"lpips": lambda i: lpips_base(i) + shift[i]})],
                      2, METRICS)
    (check,) = _gate(worse, base, [{"metric": "lpips", "tolerance": 0.011}]).checks
    assert check.status == FAIL  # mean 0.010 + t(0.95, 1) = 6.31 × 0.0007 / √2
    assert check.details["bound"] == pytest.approx(0.01 + 6.3138 * 0.0005, rel=1e-3)


def test_latency_gates_refuse_to_decide_on_unstable_timings(tmp_path: Path) -> None:
    gates = [{"statistic": "latency_ratio", "max_ratio": 1.2}]
    base = _run(tmp_path / "base", pid(), gates=gates)
    shaky = _run(tmp_path / "shaky", pid(jitter=0.3), gates=gates)
    report = _gate(shaky, base, gates)
    (check,) = report.checks
    assert check.status == UNDECIDED and not report.failed and not report.passed
    assert "unstable timings (run 60% IQR / median, above 10%)" in check.message
    assert re.fullmatch(r"baseline 100 ms \(spread 2%\) → run 100 ms \(spread 60%\)", check.observed)
    steady = _run(tmp_path / "steady", pid(latency_ms=105.0), gates=gates)
    (check,) = _gate(steady, base, gates).checks
    assert check.status == PASS and "baseline 100 ms (spread 2%) → run 105 ms (spread 2%)" in check.observed
    junit = validate_junit(junit_xml(report))
    assert junit.get("errors") == "1" and junit.find(".//error").get("type") == "GateUndecided"
    assert markdown_summary(report).startswith("## ❔ decoderbench gates undecided")
    saved = invoke("baseline", "save", str(base), "--name", "steady", "--dir", str(tmp_path / "b"))
    assert saved.exit_code == 0, saved.output
    result = invoke("gate", str(shaky), "--baseline", str(tmp_path / "b" / "steady.json"))
    assert result.exit_code == 3 and "gates undecided" in result.output, result.output


def test_memory_gates_compare_like_batch_sizes_only(tmp_path: Path) -> None:
    gates = [{"statistic": "memory_ratio", "max_ratio": 1.2}]
    base = _run(tmp_path / "base", pid())
    batched = _run(tmp_path / "batched", pid(batch_size=4))
    (check,) = _gate(batched, base, gates).checks
    assert check.status == FAIL and "batch size differs from the baseline's at 48x48 (1 → 4)" in check.message


def test_calibration_proposes_no_ratio_from_unstable_timings(tmp_path: Path) -> None:
    """Two repeats whose timings spread by 60 %: the old calibration proposed 1 + k × |ratio − 1| from
    them (305× seen); now it proposes nothing and says why."""
    runs = [_run(tmp_path / f"r{i}", pid(jitter=0.3, latency_ms=100.0 * (1 + i))) for i in range(2)]
    gate = GateSpec(statistic="latency_ratio", max_ratio=1.0)
    (proposal,) = calibrate(runs, [gate])
    assert proposal.value is None and any("unstable timings" in note for note in proposal.notes)
    steady = [_run(tmp_path / f"s{i}", pid(latency_ms=100.0 + i)) for i in range(2)]
    (proposal,) = calibrate(steady, [gate])
    assert proposal.value == pytest.approx(1 + 2 * 0.01, rel=1e-6)
