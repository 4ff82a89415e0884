"""The HTML report from constructed run directories: leaderboard cells that never lie,
the viewer's crops, judge, sweeps, history, escaping, and a folder that needs no network."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from helpers import invoke
from synthetic_runs import SynthDecoder, write_judge, write_run, write_sweep

from harness.metrics.direction import HIGHER, LOWER, Direction
from harness.view import load_run
from reports import viewer
from reports.crops import choose_crops, crop_side
from reports.html import render_reports
from reports.judge import load_judge
from reports.leaderboard import build_leaderboards
from reports.plots import pareto_front

EVIL = "<script>alert(1)</script>"


def _decoders() -> list[SynthDecoder]:
    return [
        SynthDecoder(
            "vae",
            latency_ms=40,
            peak_bytes=3 * 2**30,
            weights={"vae.safetensors": "ab" * 32},
            metrics={"lpips": lambda i: 0.20 + 0.01 * (i % 3), "psnr": lambda i: 28.0 + i % 2},
        ),
        SynthDecoder(
            "pid",
            latency_ms=120,
            peak_bytes=9 * 2**30,
            artifacts=("lpips",),
            metrics={"lpips": lambda i: 0.15 + 0.01 * (i % 3), "psnr": lambda i: 25.0},
            failures={3: ("oom", "CUDA out of memory. Tried to allocate 2.00 GiB")},
        ),
        SynthDecoder(
            "l2p", latency_ms=900, failures={i: ("oom", "CUDA out of memory at 4096px") for i in range(12)}
        ),
        SynthDecoder(
            "random",
            latency_ms=35,
            metrics={"lpips": lambda i: 0.9, "psnr": lambda i: 5.0},
            quality_not_applicable="random weights: performance only",
        ),
        SynthDecoder(
            "nometric", latency_ms=20, metrics={"lpips": lambda i: "unavailable", "psnr": lambda i: 20.0}
        ),
    ]


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return write_run(
        tmp_path / "run",
        _decoders(),
        12,  # 5 decoders make 10 pairs: a decision needs ≥ 9 cases
        {"lpips": False, "psnr": True},
        suite="paper",
        size=(64, 64),
        prompts=[f"{EVIL} a red fox", None],
        created="2026-01-02T00:00:00",
    )


def _cells(board) -> dict[tuple[str, str], object]:
    return {
        (row.decoder, column.key): cell
        for row, cells in board.rows
        for column, cell in zip(board.columns, cells, strict=True)
    }


def test_leaderboard_cells_say_why_and_mark_the_best(run: Path) -> None:
    (board,) = build_leaderboards(load_run(run))
    cells = _cells(board)
    # Numbers with their interval; the best per column by the column's direction.
    assert cells[("pid", "metric:lpips")].text == "0.1609" and cells[("pid", "metric:lpips")].best
    assert cells[("vae", "metric:psnr")].best and not cells[("pid", "metric:psnr")].best
    assert cells[("vae", "metric:lpips")].ci.startswith("± 0.00")
    assert cells[("nometric", "latency")].best  # 20 ms per image, lower is better
    assert not cells[("random", "latency")].best  # 35 ms: slower beyond noise
    # Partial failure: the mean is over 5 of 6 cases, and the hover says why.
    assert cells[("pid", "metric:lpips")].note == "11/12"
    assert "1 OOM" in cells[("pid", "metric:lpips")].title
    # A decoder that never decoded: every cell names the failure with the reason, never 0 or blank.
    for key in ("latency", "batch", "throughput", "memory:peak_rss_bytes", "first_call", "cold_start",
                "metric:lpips", "metric:psnr"):
        cell = cells[("l2p", key)]
        assert cell.text == "OOM" and cell.state == "failed" and "CUDA out of memory at 4096px" in cell.title
        assert cell.sort is None
    assert cells[("random", "metric:lpips")].text == "not applicable"
    assert "random weights" in cells[("random", "metric:lpips")].title
    assert cells[("nometric", "metric:lpips")].text == "unavailable"
    assert "weights not found" in cells[("nometric", "metric:lpips")].title
    assert all(cell.text.strip() for cell in cells.values())


def test_not_measured_when_the_run_holds_nothing(tmp_path: Path) -> None:
    decoders = [SynthDecoder("a", metrics={"ssim": lambda i: 0.5}), SynthDecoder("b")]
    (board,) = build_leaderboards(load_run(write_run(tmp_path / "r", decoders, 2, {"ssim": True})))
    cell = _cells(board)[("b", "metric:ssim")]
    assert cell.text == "not measured" and cell.state == "missing" and cell.sort is None


def test_pareto_front_respects_direction() -> None:
    points = [
        ("cheap-bad", 1.0, 0.30),
        ("mid", 2.0, 0.20),
        ("dominated", 3.0, 0.25),
        ("slow-good", 9.0, 0.10),
    ]
    assert pareto_front(points, LOWER) == ["cheap-bad", "mid", "slow-good"]
    assert pareto_front(points, HIGHER) == ["cheap-bad"]
    # Closest to a target: 0.25 (3.0) is dominated by 0.20 (2.0) for a target of 0.2, not of 0.3.
    assert pareto_front(points, Direction("target", 0.2)) == ["cheap-bad", "mid"]
    assert pareto_front(points, Direction("target", 0.3)) == ["cheap-bad"]


@pytest.mark.parametrize("where", [(160, 32), (0, 0), (100, 150)])
def test_detail_crop_lands_on_texture_and_texture_is_not_text(where: tuple[int, int]) -> None:
    import skimage.data

    image = np.full((256, 256), 128, dtype=np.uint8)
    y, x = where
    image[y : y + 64, x : x + 64] = skimage.data.gravel()[100:164, 100:164]
    (detail,) = choose_crops(image)
    assert detail.reason == "detail" and detail.size == crop_side(256, 256) == 64
    assert abs(detail.y - y) <= 16 and abs(detail.x - x) <= 16


def test_text_crop_lands_on_text_in_a_photo() -> None:
    import skimage.data

    from harness.sources.textchart import render_chart

    photo = skimage.data.camera().copy()  # 512×512, no text: no text crop
    assert [c.reason for c in choose_crops(photo)] == ["detail"]
    chart, _ = render_chart(0, (512, 512))
    sign = chart.mean(axis=2).astype(np.uint8)[:160, :320]  # the smallest lines of the chart
    photo[300:460, 150:470] = sign
    crops = {c.reason: c for c in choose_crops(photo)}
    text = crops["text"]
    assert 300 - text.size // 2 <= text.y <= 460 - text.size // 2
    assert 150 - text.size // 2 <= text.x <= 470 - text.size // 2
    assert crops["detail"] != text


def test_judge_matrix_is_complementary(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "r", _decoders()[:2], 2, {"lpips": False})
    write_judge(run_dir, ["pid", "vae"], ["x"])
    (criterion,) = load_judge(run_dir)
    assert criterion.decoders == ["pid", "vae"] and criterion.consistency_rate == 0.9
    forward, backward = criterion.matrix[("pid", "vae")], criterion.matrix[("vae", "pid")]
    assert forward.rate == 1.0 and backward.rate == 0.0
    assert (backward.low, backward.high) == pytest.approx((0.0, 0.2))
    assert (forward.wins, backward.wins, forward.n) == (1, 0, 1)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.links.append(value)
        if tag == "script":
            self.scripts.append(dict(attrs).get("src") or "inline")


@pytest.mark.e2e
def test_report_folder_is_static_escaped_and_complete(run: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(viewer, "PARALLEL_FROM_CASES", 2)  # crops and thumbnails in worker processes
    write_judge(run, ["pid", "vae"], list(load_run(run).cases)[:1], reason=f"{EVIL} sharper")
    older = write_run(
        tmp_path / "older",
        _decoders()[:2],
        6,
        {"lpips": False, "psnr": True},
        suite="paper",
        size=(64, 64),
        created="2026-01-01T00:00:00",
    )
    sweep = write_sweep(tmp_path / "sweep", "flux-vae", [512, 1024, 2048, 3072], oom_from=3072)
    out = tmp_path / "report"
    index = render_reports([run, older, sweep], out)
    pages = sorted(out.rglob("*.html"))
    assert len(pages) == 1 + 1 + 12  # overview, case index, one page per case
    for page in pages:
        html = page.read_text()
        assert "<script>alert" not in html, page
        parser = _Links()
        parser.feed(html)
        assert parser.scripts == ["../../assets/report.js"] or parser.scripts == ["assets/report.js"]
        for link in parser.links:
            assert not re.match(r"^(https?:)?//", link), f"{page}: network link {link}"
            target = link.split("#")[0]
            if target and not target.startswith("data:"):
                assert (page.parent / target).resolve().is_file(), f"{page}: broken link {link}"
    html = index.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; sharper" not in html  # reasons live on case pages
    case_pages = [p for p in pages if p.parent.name == "paper" and p.name != "index.html"]
    assert any("&lt;script&gt;alert(1)&lt;/script&gt; sharper" in p.read_text() for p in case_pages)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; a red fox" in (out / "cases/paper/index.html").read_text()
    # Every section is there, with what the runs hold and "not measured" for the rest.
    for text in (
        "Leaderboard · 64×64",
        "Pareto",
        "Bradley–Terry",
        "order consistency 90.0%",
        "2 runs of paper",
        "vae</span> <small>@ ",
        "Memory wall",
        "OOM at 3072×3072",
        "vae.safetensors: abababababababab",
        "Run facts",
    ):
        assert text in html, text
    figures = sorted(p.name.split("-")[0] for p in (out / "figures").glob("*.svg"))
    assert set(figures) == {"cost", "history", "judge", "sweep"}  # cost–quality: one per metric
    assert list((out / "artifacts").rglob("*.png")), "invention heat-maps are in the folder"
    assert len(list((out / "thumbs").rglob("*.jpg"))) == 12
    assert all('class="zoomrow"' in p.read_text() for p in case_pages)  # the same crops on every decoder


def test_cli_report_of_several_runs_needs_out(run: Path, tmp_path: Path) -> None:
    result = invoke("report", str(run), str(run))
    assert result.exit_code == 2 and "--out" in result.output
    result = invoke("report", str(run), "--out", str(tmp_path / "r"), "--metric", "psnr")
    assert result.exit_code == 0, result.output
    assert "psnr against latency" in (tmp_path / "r" / "index.html").read_text()


def test_failed_outputs_stay_out_of_costs_and_set_values_show_their_coverage(tmp_path: Path) -> None:
    """An invalid output keeps its timings in its record, but they are no measurement; a set-level
    value computed from 10 of 12 cases says so."""
    import json

    decoder = SynthDecoder("d", latency_ms=10, metrics={"fid": lambda i: 0.0},
                           failures={0: ("invalid_output", "NaN in output"), 1: ("oom", "out of memory")})
    run = write_run(tmp_path / "r", [decoder], 12, {"fid": False})
    results = run / "results.jsonl"
    records = [json.loads(line) for line in results.read_text().splitlines()]
    for record in records:  # the invalid output was timed (the worker keeps measurements) ...
        if record["kind"] == "decode" and record["status"] == "invalid_output":
            record["latency"] = {"samples_ms": [500.0] * 3, "median_ms": 500.0}
            record["memory"] = {"method": "linux_vmhwm_reset", "peak_rss_bytes": 50 * 2**30}
    records = [r for r in records if r.get("metric") != "fid"]
    records.append({"kind": "metric", "decoder": "d", "case": None, "metric": "fid", "size": [48, 48],
                    "status": "ok", "value": 12.5, "n": 10, "version": "1", "protocol_sha256": "f"})
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    (row,) = load_run(run).rows
    assert sorted(row.calls_ms) == [1] and len(row.calls_ms[1]) == 3 * 10  # ... but is not pooled
    assert row.call_latency(1.0) < 20 and row.memory["peak_rss_bytes"] < 2**30
    (board,) = build_leaderboards(load_run(run))
    cell = _cells(board)[("d", "metric:fid")]
    assert cell.text == "12.50" and cell.note == "10/12" and "10 of 12 cases" in cell.title
