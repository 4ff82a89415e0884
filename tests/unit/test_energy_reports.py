"""Energy and price wherever the other costs go: the summary's cost group, leaderboards, show
(every format), exports, the energy_ratio gate, the sweep table; [cost] in suites."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import decoder_tables, invoke, suite_text
from synthetic_runs import SynthDecoder, write_run, write_sweep

from harness.gates.baselines import load_baseline, save_baseline, snapshot
from harness.gates.checks import evaluate_gates
from harness.gates.outcomes import FAIL, PASS
from harness.gates.spec import GateSpec
from harness.suite import SuiteError, load_suite
from harness.view import load_run
from reports.export import tidy_rows
from reports.leaderboard import build_leaderboards
from reports.summary import decide_size
from reports.sweep import load_sweep

N = 8
METRICS = {"psnr": True}
START = {"GPU-test": {"power_limit_w": 700.0, "sm_clock_mhz": 1980, "temperature_c": 35}}
END = {"GPU-test": {"power_limit_w": 700.0, "sm_clock_mhz": 1755, "temperature_c": 71}}
IDLE = {"idle": {"GPU-test": {"status": "ok", "power_w": 100.0, "seconds": 3.0, "gpu_name": "H100",
                              "state": {"utilization_percent": 0}}},
        "invocations": [{"gpus": ["0"], "state_start": START, "state_end": END}]}
COST = {"gpu_hour": 2.5, "currency": "USD", "kwh": 0.15}


def _decoders(**changes: dict) -> list[SynthDecoder]:
    frugal = {"latency_ms": 100.0, "energy_j": 40.0, "metrics": {"psnr": lambda i: 25.0 + i % 2}}
    hungry = {"latency_ms": 100.0, "energy_j": 80.0, "metrics": {"psnr": lambda i: 25.5 + i % 2}}
    return [SynthDecoder("frugal", **{**frugal, **changes.get("frugal", {})}),
            SynthDecoder("hungry", **{**hungry, **changes.get("hungry", {})})]


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run", _decoders(), N, METRICS, cost=COST, energy=IDLE)


def _column(board, key: str) -> list:
    """The column's cells in the decoders' order of `_decoders()` (frugal, hungry), whatever the
    leaderboard's row order (the summary's)."""
    index = next(i for i, c in enumerate(board.columns) if c.key == key)
    cells = {row.decoder: cells[index] for row, cells in board.rows}
    return [cells[decoder] for decoder in ("frugal", "hungry")]


def test_energy_and_prices_in_the_leaderboard_and_the_cost_group(run: Path) -> None:
    view = load_run(run)
    (board,) = build_leaderboards(view)
    keys = [c.key for c in board.columns]
    assert {"energy", "energy_above_idle", "power", "price_time", "price_energy"} <= set(keys)
    energy, above = _column(board, "energy"), _column(board, "energy_above_idle")
    power = _column(board, "power")
    assert [c.raw for c in energy] == [pytest.approx(40.0, rel=0.01), pytest.approx(80.0, rel=0.01)]
    assert [c.best for c in energy] == [True, False]  # 40 J against 80 J: beyond the 10 % margin
    # 3 calls of 100 ms per block: idle 100 W × 0.3 s = 30 J per block of 3 images, 10 J per image
    assert [c.raw for c in above] == [pytest.approx(30.0, rel=0.02), pytest.approx(70.0, rel=0.01)]
    assert power[0].raw == pytest.approx(400.0, rel=0.01) and power[0].best is False  # power has no direction
    time_price, electricity = _column(board, "price_time"), _column(board, "price_energy")
    # 100 ms per image at 2.50 per hour: 100 s per 1,000 images = 0.0694
    assert time_price[0].raw == pytest.approx(2.5 * 100 / 3600) and time_price[0].text == "0.0694"
    assert electricity[1].raw == pytest.approx(0.15 * 80 * 1000 / 3.6e6, rel=0.01)
    assert "2.5 USD per CPU hour" in time_price[0].title
    decided = decide_size(view, board.size)
    assert [c.key for c in decided.groups["cost"].criteria] == ["cost:latency", "cost:memory", "cost:energy"]
    assert decided.decisions["cost:energy"].marked == {"frugal"}
    assert decided.win_rates["cost"]["frugal"] > decided.win_rates["cost"]["hungry"]


def test_energy_not_measured_is_named_with_its_reason(tmp_path: Path) -> None:
    reason = "nvidia-ml-py is not installed (pip install 'decoderbench[energy]')"
    decoders = _decoders(frugal={"energy_j": None, "energy_reason": reason},
                         hungry={"energy_j": None, "energy_reason": reason})
    run = write_run(tmp_path / "run", decoders, N, METRICS)
    (board,) = build_leaderboards(load_run(run))
    keys = [c.key for c in board.columns]
    assert "energy" in keys and "power" not in keys and "energy_above_idle" not in keys
    assert "price_energy" not in keys  # no kwh price: no electricity column
    cells = _column(board, "energy")
    assert [(c.text, c.state) for c in cells] == [("not measured", "missing")] * 2
    assert cells[0].title == f"GPU energy: {reason}"
    assert _column(board, "price_time")[0].text == "not priced"
    decided = decide_size(load_run(run), board.size)
    assert "energy per image" not in board.columns[0].description  # not a member of the cost group
    assert decided.decisions["cost:energy"].values == {}
    result = invoke("show", str(run))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"cost: energy / image (J): not measured — GPU energy: {reason}" in text
    assert "cost: price / 1k images (USD): not priced — the suite has no [cost] table" in text


def test_show_in_every_format_and_repriced(run: Path) -> None:
    document = json.loads(invoke("show", str(run), "--format", "json").output)
    energy = {r["decoder"]: r for r in document["records"] if r["column"] == "energy"}
    assert energy["frugal"]["unit"] == "J" and energy["frugal"]["value"] == pytest.approx(40.0, rel=0.01)
    assert energy["frugal"]["better"] == "lower"
    price = [r for r in document["records"] if r["column"] == "price_time"]
    assert price[0]["unit"] == "USD per 1,000 images"
    repriced = json.loads(invoke("show", str(run), "--format", "json", "--gpu-hour-price", "5").output)
    price = [r for r in repriced["records"] if r["column"] == "price_time"]
    assert price[0]["value"] == pytest.approx(5 * 100 / 3600)
    csv_text = invoke("show", str(run), "--format", "csv").output
    assert ",energy,energy / image (J),lower,J," in csv_text
    markdown = invoke("show", str(run), "--format", "markdown").output
    assert "energy / image (J)" in markdown and "electricity / 1k images (USD)" in markdown
    bad = invoke("show", str(run), "--gpu-hour-price", "inf")
    assert bad.exit_code != 0 and "--gpu-hour-price: expected a finite price > 0, got inf" in bad.output


def test_export_has_energy_per_block_and_pooled_with_units(run: Path) -> None:
    rows = tidy_rows(run)
    call = [r for r in rows if r["variable"] == "gpu_energy_per_image_j" and r["scope"] == "call"]
    assert len(call) == 2 * N and call[0]["unit"] == "J" and call[0]["n"] == 3
    pooled = {(r["decoder"], r["variable"]): r for r in rows if r["scope"] == "set"}
    assert pooled[("frugal", "gpu_energy_per_image_j")]["value"] == pytest.approx(40.0, rel=0.01)
    assert pooled[("frugal", "gpu_energy_above_idle_per_image_j")]["value"] == pytest.approx(30.0, rel=0.02)
    assert pooled[("frugal", "gpu_mean_power_w")]["unit"] == "W"
    assert pooled[("frugal", "gpu_mean_power_w")]["better"] is None
    assert pooled[("hungry", "price_per_1k_images_electricity")]["unit"] == "USD per 1,000 images"
    assert pooled[("hungry", "price_per_1k_images_device_time")]["value"] == pytest.approx(2.5 * 100 / 3600)


def _gate(run_dir: Path, baseline_dir: Path, gate: dict) -> list:
    baseline = load_baseline(save_baseline(baseline_dir, "golden", baseline_dir.parent / "baselines"))
    report = evaluate_gates(snapshot(load_run(run_dir)), run_dir, baseline, [GateSpec.model_validate(gate)])
    return report.checks


def test_energy_ratio_gate(tmp_path: Path) -> None:
    gate = {"statistic": "energy_ratio", "max_ratio": 1.1, "decoders": ["frugal"]}
    base = write_run(tmp_path / "base", _decoders(), N, METRICS)
    same = write_run(tmp_path / "same", _decoders(frugal={"energy_j": 42.0}), N, METRICS)
    (check,) = _gate(same, base, gate)
    assert check.status == PASS
    assert check.observed == "energy per image 1.050× (baseline 39.95 J → run 41.95 J)"
    worse = write_run(tmp_path / "worse", _decoders(frugal={"energy_j": 60.0}), N, METRICS)
    (check,) = _gate(worse, base, gate)
    assert check.status == FAIL and check.details["ratio"] == pytest.approx(1.5)
    blind = _decoders(frugal={"energy_j": None, "energy_reason": "NVML cannot start"})
    blind = write_run(tmp_path / "blind", blind, N, METRICS)
    (check,) = _gate(blind, base, gate)
    assert check.status == FAIL
    assert check.message == "energy was not measured at 48x48 in this run: NVML cannot start"
    (check,) = _gate(blind, base, {**gate, "optional": True})
    assert check.status == "skip"
    with pytest.raises(ValueError, match="energy_ratio gate needs max_ratio"):
        GateSpec(statistic="energy_ratio")


def test_sweep_table_shows_energy(tmp_path: Path) -> None:
    root = write_sweep(tmp_path / "sweep", "vae", [512, 1024, 2048], oom_from=2048)
    lines = (root / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    records[0]["energy"] = {"gpu": {"status": "ok", "per_image_j": 12.5, "mean_power_w": 410.0}}
    records[1]["energy"] = {"gpu": {"status": "not_measured", "reason": "NVML cannot start"}}
    (root / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    view = load_sweep(root)
    assert view.has_energy and view.of("vae")[0].energy_per_image_j == 12.5
    assert view.of("vae")[1].energy_reason == "NVML cannot start"


def test_cost_table_in_suites(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    base = suite_text(tmp_path / "images", decoder_tables('name = "bilinear"'))

    def load(extra: str) -> object:
        path = tmp_path / "suite.toml"
        path.write_text(base + extra)
        return load_suite(path)

    plain = load("")
    same = load("")
    priced = load("\n[cost]\ngpu_hour = 2.50\ncurrency = \"EUR\"\nkwh = 0.15\n")
    assert plain.sha256 == same.sha256 != priced.sha256
    assert priced.model.cost.gpu_hour == 2.5 and priced.model.cost.kwh == 0.15  # type: ignore[attr-defined]
    assert load("\n[cost]\ngpu_hour = 3\n").model.cost.gpu_hour == 3.0  # type: ignore[attr-defined]
    bad = {"gpu_hour = inf": "cost.gpu_hour: expected a finite number, got inf",
           "gpu_hour = -1.0": "cost.gpu_hour: expected greater than 0, got -1.0",
           "kwh = nan": "cost.kwh: expected a finite number, got nan",
           'gpu_hour = 2.5\ncurrency = "dollars"': "cost.currency: expected a string matching pattern",
           'gpu_hour = "2.50"': "cost.gpu_hour: expected a valid number, got '2.50'",
           'gpu_hour = 2.5\neuro = 1': "cost.euro: unknown key 'euro'",
           'currency = "USD"': "cost: a [cost] table needs gpu_hour (price of a device hour) and/or kwh"}
    for text, message in bad.items():
        with pytest.raises(SuiteError) as info:
            load(f"\n[cost]\n{text}\n")
        assert str(info.value).startswith(f"{tmp_path / 'suite.toml'}: {message}"), str(info.value)
    assert plain.with_price(2.0).model.cost.gpu_hour == 2.0  # type: ignore[union-attr]
    with pytest.raises(SuiteError, match=r"^--gpu-hour-price: expected greater than 0, got 0.0"):
        plain.with_price(0.0)


def test_timing_energy_keys_keep_the_hash_at_their_defaults(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    decoders = decoder_tables('name = "bilinear"')
    path = tmp_path / "suite.toml"
    path.write_text(suite_text(tmp_path / "images", decoders))
    plain = load_suite(path)
    text = suite_text(tmp_path / "images", decoders).replace("repeats = 2", "repeats = 2\nenergy = true\n"
                                                             "energy_min_block_s = 1.0")
    path.write_text(text)
    assert load_suite(path).sha256 == plain.sha256
    path.write_text(text.replace("energy_min_block_s = 1.0", "energy_min_block_s = 2.0"))
    assert load_suite(path).sha256 != plain.sha256
    path.write_text(text.replace("energy_min_block_s = 1.0", "energy_min_block_s = 0"))
    with pytest.raises(SuiteError, match=r"timing\.energy_min_block_s: expected greater than 0"):
        load_suite(path)


def test_a_cpu_run_records_energy_or_why_not_and_show_names_it(write_suite, tmp_path: Path,
                                                                 image_folder: Path) -> None:
    """Real workers on the CPU: every decode record says what the CPU counter gave; `energy =
    false` records none."""
    from harness.runner import Runner
    from harness.sources.cache import TensorCache
    from harness.store import RunStore

    text = suite_text(image_folder, decoder_tables('name = "bilinear"'))
    for energy_on in (True, False):
        timing = text.replace("repeats = 2", "repeats = 2\nenergy = false") if not energy_on else text
        suite = load_suite(write_suite(timing))
        outcome = Runner.new(suite, tmp_path / f"run-{energy_on}", TensorCache(tmp_path / "cache")).run()
        records, _ = RunStore.open(outcome.run_dir).records()
        decodes = [r for r in records if r["kind"] == "decode"]
        assert decodes and all(r["status"] == "ok" for r in decodes)
        if not energy_on:
            assert all("energy" not in r for r in decodes)
            continue
        for record in decodes:
            cpu = record["energy"]["cpu"]
            assert set(record["energy"]) == {"cpu"}  # a CPU run: no GPU counter applies
            if cpu["status"] == "not_measured":
                assert cpu["reason"]
            else:  # a machine whose RAPL counters this user can read
                assert cpu["calls"] >= 2 and cpu["block_s"] >= 1.0 and cpu["per_image_j"] > 0
        result = invoke("show", str(outcome.run_dir))
        text_out = " ".join(result.output.split())
        if decodes[0]["energy"]["cpu"]["status"] == "not_measured":
            assert f"energy / image (J): not measured — CPU energy: {decodes[0]['energy']['cpu']['reason']}" \
                in text_out


def test_energy_axis_of_the_cost_quality_plot_and_the_run_facts(run: Path, tmp_path: Path) -> None:
    from reports.facts import run_facts
    from reports.html import _cost_quality_points, render_report

    view = load_run(run)
    (board,) = build_leaderboards(view)
    column = next(i for i, c in enumerate(board.columns) if c.key == "metric:psnr")
    panels, left_out = _cost_quality_points(board, "psnr", column)
    assert [label for _, label, _ in panels][-1] == "GPU energy per image (J)" and not left_out
    assert sorted(round(p.cost) for p in panels[-1][2]) == [40, 80]
    facts = dict(run_facts(view).summary)
    assert facts["idle power · H100 GPU-test"].startswith("100.0 W over 3.0 s before the first decoder")
    assert facts["GPU GPU-test at start → end"] == ("power limit 700 W · SM clock 1980 MHz · 35 °C → "
                                                   "power limit 700 W · SM clock 1755 MHz · 71 °C")
    html = render_report(run, tmp_path / "report").read_text()
    assert "energy / image (J)" in html and "electricity / 1k images (USD)" in html
    assert "GPU energy per image (J)" in "".join(p.read_text() for p in (tmp_path / "report").rglob("*.svg"))
