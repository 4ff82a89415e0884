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

from harness.view import load_run
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


# --------------------------------------------------------------------------- issue 20: reading it


def _ranked_run(tmp_path: Path) -> Path:
    """Three decoders over 10 cases: 'good' beats the others on lpips and psnr on every case."""
    decoders = [SynthDecoder("weak", latency_ms=10, metrics={"lpips": lambda i: 0.40 + 0.001 * i,
                                                             "psnr": lambda i: 20.0 + 0.01 * i}),
                SynthDecoder("good", latency_ms=30, metrics={"lpips": lambda i: 0.10 + 0.001 * i,
                                                             "psnr": lambda i: 30.0 + 0.01 * i}),
                SynthDecoder("mid", latency_ms=20, metrics={"lpips": lambda i: 0.25 + 0.001 * i,
                                                            "psnr": lambda i: 25.0 + 0.01 * i})]
    return write_run(tmp_path / "run", decoders, 10, {"lpips": False, "psnr": True})


def test_rows_follow_the_summary_and_perceptual_columns_come_first(tmp_path: Path) -> None:
    (board,) = build_leaderboards(load_run(_ranked_run(tmp_path)))
    assert [row.decoder for row, _ in board.rows] == ["good", "mid", "weak"]  # overall win rate, best first
    keys = [column.key for column in board.columns]
    assert keys[0] == "summary:overall" and keys.index("metric:lpips") < keys.index("metric:psnr")
    assert keys.index("metric:psnr") < keys.index("latency")
    assert board.parts[:3] == ["summary", "cost", "perceptual"] or board.parts[0] == "summary"
    shown = {column.key for column in board.columns if column.shown}
    assert {"summary:overall", "metric:lpips", "metric:psnr", "latency"} <= shown
    assert "cold_start" not in shown and "batch" not in shown  # behind the chooser


def test_the_report_has_a_column_chooser_and_headers_that_wrap_only_between_words(tmp_path: Path) -> None:
    out = tmp_path / "report"
    render_reports([_ranked_run(tmp_path)], out)
    html = (out / "index.html").read_text()
    assert 'details class="chooser"' in html and "<legend>perceptual</legend>" in html
    assert html.index("<legend>perceptual</legend>") < html.index("<legend>fidelity</legend>")
    assert 'data-col="1" checked' in html  # overall, shown before the reader chooses
    css = (out / "assets" / "report.css").read_text()
    header_rule = css[css.index("\nthead th {"):].split("}", 1)[0]
    assert "break-word" not in header_rule and "overflow-wrap: normal" in header_rule


def test_pareto_front_counts_undecided_differences_as_ties() -> None:
    from harness.metrics.direction import HIGHER
    from reports.plots import pareto_front

    points = [("a", 1.0, 0.50), ("b", 2.0, 0.51), ("c", 3.0, 0.90)]
    assert pareto_front(points, HIGHER) == ["a", "b", "c"]  # numbers alone: b is better than a
    # The paired tests separate c from a and b on quality, nothing else: a and b tie on both axes,
    # so neither dominates the other, and c (no cost decided) is dominated by nobody.
    quality = {("c", "a"): 1, ("c", "b"): 1, ("a", "c"): -1, ("b", "c"): -1}
    front = pareto_front(points, HIGHER, cost_outcome=lambda x, y: 0,
                         quality_outcome=lambda x, y: quality.get((x, y), 0))
    assert front == ["c"]  # c is at least as cheap (a tie) and better: it dominates a and b
    costs = {("a", "c"): 1, ("c", "a"): -1, ("b", "c"): 1, ("c", "b"): -1}  # a, b decided cheaper than c
    front = pareto_front(points, HIGHER, cost_outcome=lambda x, y: costs.get((x, y), 0),
                         quality_outcome=lambda x, y: quality.get((x, y), 0))
    assert front == ["a", "b", "c"]  # a and b tie with each other: both stay on the front


def test_labels_never_overlap_each_other_their_markers_or_leave_the_axes() -> None:
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    from reports.plots import place_labels, prepare_for_labels

    figure = Figure(figsize=(4.8, 3.9), layout="constrained")
    axes = figure.add_subplot(1, 1, 1)
    points = [(1.0 + 0.02 * i, 0.5 + 0.003 * (i % 3)) for i in range(8)]  # a tight cluster
    axes.scatter(*zip(*points, strict=True))
    axes.set_xlim(0.5, 1.8)
    axes.set_ylim(0.4, 0.6)
    prepare_for_labels(figure)
    texts = place_labels(axes, [(x, y, f"decoder-{i}", "black") for i, (x, y) in enumerate(points)])
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    for text in texts:
        text.update_positions(renderer)  # type: ignore[attr-defined]
    boxes = [Text.get_window_extent(text, renderer) for text in texts]  # the text, not its leader
    frame = axes.get_window_extent(renderer)
    for index, box in enumerate(boxes):
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        assert not any(box.overlaps(other) for other in boxes[index + 1:]), index
        for x, y in points:
            mx, my = axes.transData.transform((x, y))
            assert not (box.x0 < mx < box.x1 and box.y0 < my < box.y1)  # no label over a marker
    assert [text.get_gid() for text in texts] == [f"label-{i}" for i in range(8)]


def test_crops_are_at_least_192_px_and_the_case_index_switches_metric(tmp_path: Path) -> None:
    from reports.crops import Crop
    from reports.viewer import CaseCrop

    assert CaseCrop(Crop(0, 0, 64, "detail")).scales == (3, 6)  # a 256² output's 64-px window
    assert CaseCrop(Crop(0, 0, 128, "detail")).scales == (2, 4)
    assert CaseCrop(Crop(0, 0, 192, "detail")).scales == (1, 2)  # 768² and larger: native pixels
    out = tmp_path / "report"
    render_reports([_ranked_run(tmp_path)], out)
    index = (out / "cases" / "synth" / "index.html").read_text()
    assert '<select class="metric-choice" data-table="cases-table">' in index
    assert '<option value="lpips">lpips ↓</option>' in index
    assert '<option value="psnr">psnr ↑</option>' in index
    assert index.count('data-metric="psnr"') == index.count('data-metric="lpips"') > 3
    page = next(p for p in (out / "cases" / "synth").glob("*.html") if p.name != "index.html")
    text = page.read_text()
    assert 'class="badge"' not in text and '<span class="scale">' in text  # under the crop, not over it
