"""What the report shows beyond the leaderboard's numbers: the fidelity–plausibility dial, the
disagreement crop, per-case marks and reference values, output sizes that follow the
resolution, reasons readable without hover, and no Pareto plot of a single point."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
from synthetic_runs import SynthDecoder, write_judge, write_run

from reports.aggregate import load_run
from reports.crops import crop_side, disagreement_crop
from reports.dial import sigma_dial, stop_step_dial
from reports.html import render_reports
from reports.leaderboard import build_leaderboards
from reports.viewer import Tile, _per_case_metrics


def _set_sigmas(run: Path, sigmas: list[float]) -> None:
    lines = (run / "cases.jsonl").read_text().splitlines()
    cases = [json.loads(line) for line in lines]
    for index, case in enumerate(cases):
        case["sigma"] = sigmas[index % len(sigmas)]
    (run / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))


def _noref(run: Path, metric: str) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["metrics"][metric]["family"] = "no_reference"
    (run / "manifest.json").write_text(json.dumps(manifest))


def test_the_dial_plots_each_decoder_against_sigma_with_intervals(tmp_path: Path) -> None:
    decoders = [SynthDecoder("pid", metrics={"psnr": lambda i: 30 - 10 * (i % 2) + 0.1 * i,
                                             "musiq": lambda i: 60 + i % 2}),
                SynthDecoder("vae", metrics={"psnr": lambda i: 28 - 2 * (i % 2), "musiq": lambda i: 50.0})]
    run = write_run(tmp_path / "r", decoders, 8, {"psnr": True, "musiq": True})
    _set_sigmas(run, [0.0, 0.5])
    _noref(run, "musiq")
    cases = [json.loads(line)["id"] for line in (run / "cases.jsonl").read_text().splitlines()]
    write_judge(run, ["pid", "vae"], cases)
    dial = sigma_dial(load_run(run))
    assert dial is not None and dial.axis.startswith("σ")
    kinds = {panel.metric: panel.kind for panel in dial.panels}
    assert kinds == {"psnr": "fidelity", "musiq": "plausibility", "judge win rate · overall": "plausibility"}
    psnr = next(p for p in dial.panels if p.metric == "psnr")
    low, high = psnr.series["pid"]  # σ = 0 (cases 0, 2, 4, 6), σ = 0.5 (1, 3, 5, 7)
    values = [30 + 0.1 * i for i in (0, 2, 4, 6)]
    half = 1.96 * statistics.stdev(values) / math.sqrt(4)
    assert (low.x, low.n) == (0.0, 4) and low.mean == pytest.approx(statistics.fmean(values))
    assert (low.low, low.high) == pytest.approx((low.mean - half, low.mean + half))
    assert high.x == 0.5
    assert high.mean == pytest.approx(statistics.fmean([20 + 0.1 * i for i in (1, 3, 5, 7)]))
    judge = next(p for p in dial.panels if p.metric.startswith("judge"))
    assert [p.mean for p in judge.series["pid"]] == [1.0, 1.0]  # the synthetic judge always picks a
    assert judge.series["vae"][0].high < 0.5  # Wilson: 4 losses of 4
    assert sigma_dial(load_run(write_run(tmp_path / "one", decoders, 4, {"psnr": True}))) is None


def test_the_dial_against_the_pipelines_stop_step_takes_runs_of_one_suite(tmp_path: Path) -> None:
    views = []
    for step in (4, 12):
        decoder = SynthDecoder("pid", metrics={"psnr": lambda i, s=step: 10.0 + s})
        run = write_run(tmp_path / f"s{step}", [decoder], 3, {"psnr": True},
                        created=f"2026-01-0{step % 9}T00:00:00")
        manifest = json.loads((run / "manifest.json").read_text())
        manifest["suite"]["resolved"]["source"] = {"kind": "prompts", "pipeline": {"stop_at_step": step}}
        (run / "manifest.json").write_text(json.dumps(manifest))
        views.append(load_run(run))
    dial = stop_step_dial(views)
    assert dial is not None and "stops" in dial.axis
    (panel,) = dial.panels
    assert [(p.x, p.mean) for p in panel.series["pid"]] == [(4.0, 14.0), (12.0, 22.0)]
    assert stop_step_dial(views[:1]) is None


def test_the_disagreement_crop_lands_where_the_decoders_differ() -> None:
    rng = np.random.default_rng(0)
    base = (rng.random((256, 256)) * 255).astype(np.uint8)
    other = base.copy()
    other[160:224, 32:96] = 255 - other[160:224, 32:96]  # one decoder invents something here
    crop = disagreement_crop([base, other], [])
    assert crop is not None and crop.reason == "disagreement" and crop.size == crop_side(256, 256)
    assert abs(crop.x - 32) <= 16 and abs(crop.y - 160) <= 16
    assert disagreement_crop([base, base.copy()], []) is None  # identical outputs: nothing to show
    assert disagreement_crop([base], []) is None
    moved = disagreement_crop([base, other], [crop])  # never on top of a crop already chosen
    assert moved is not None and (moved.x, moved.y) != (crop.x, crop.y)


def test_outputs_show_at_a_size_that_follows_their_resolution() -> None:
    assert Tile("d", "x.png", 512, 512).scale == 1 and Tile("d", "x.png", 256, 128).display_width == 256
    assert Tile("d", "x.png", 32, 32).scale == 8 and Tile("d", "x.png", 100, 100).display_width == 200
    large = Tile("d", "x.png", 4096, 2048)
    assert (large.display_width, large.display_height, large.scale_label) == (512, 256, "0.12×")


def test_case_pages_mark_the_best_with_its_direction_and_show_the_reference_value(tmp_path: Path) -> None:
    decoders = [SynthDecoder("a", metrics={"legibility_cer": lambda i: 0.2, "psnr": lambda i: 30.0,
                                           "lpips": lambda i: "unavailable"}),
                SynthDecoder("b", metrics={"legibility_cer": lambda i: 0.5, "psnr": lambda i: 30.0})]
    run = write_run(tmp_path / "r", decoders, 2, {"legibility_cer": False, "psnr": True, "lpips": False})
    records = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    for record in records:
        if record.get("metric") == "legibility_cer":
            record["details"] = {"reference_cer": 0.05}
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    view = load_run(run)
    scores = _per_case_metrics(view, view.metric_names)
    case = next(iter(view.cases))
    lines = {(d, m.name): m for d in ("a", "b") for m in scores[(d, case)]}
    assert lines[("a", "legibility_cer")].best and not lines[("b", "legibility_cer")].best
    cer = lines[("a", "legibility_cer")]
    assert cer.arrow == "↓" and cer.reference == "0.0500"  # what the OCR reads on the reference
    assert lines[("a", "psnr")].best and lines[("b", "psnr")].best  # a tie shares the mark
    assert "weights not found" in lines[("a", "lpips")].reason  # numbered under the outputs


def test_reasons_are_footnotes_and_one_decoder_gets_no_pareto_plot(tmp_path: Path) -> None:
    decoders = [SynthDecoder("ok", metrics={"psnr": lambda i: 30.0}),
                SynthDecoder("gone", failures={0: ("oom", "out of memory at 4096²"), 1: ("oom", "oom")})]
    run = write_run(tmp_path / "r", decoders, 2, {"psnr": True})
    (board,) = build_leaderboards(load_run(run))
    failed = [c for _, cells in board.rows for c in cells if c.state == "failed"]
    assert failed and all(c.footnote and "out of memory at 4096²" in board.reasons[c.footnote - 1]
                          for c in failed)
    assert len(board.reasons) == len(set(board.reasons))  # one note per distinct reason
    out = tmp_path / "report"
    html = render_reports([run], out).read_text()
    assert "No cost–quality plot of psnr at this size: fewer than two decoders" in html
    assert not list((out / "figures").glob("cost-*")) and "1 decoders" not in html
    assert '<ol class="reasons"' in html
