"""The timed region holds the decode call and nothing else; calls of different batch sizes are
never pooled. A test decoder whose decode time is known (a sleep per image) and whose facts() —
called by the worker after the timed calls — is slow makes both checkable."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import bench_script, decoder_tables, suite_text

from harness.runner import Runner
from harness.sources.cache import TensorCache
from harness.suite import load_suite
from harness.view import load_run, time_budget
from reports.leaderboard import build_leaderboards

check = bench_script("timing_check").check  # bench/timing_check.py
SLEEP_S = 0.04
SLOW_FACTS_S = 0.25  # outside the timed region: it would add 250 ms per call if it were inside
TOLERANCE_MS = 15.0  # sleep overshoot and the 16² bilinear of the test decoder, on a busy 2-core machine


def _run(write_suite, tmp_path: Path, image_folder: Path, batch_size: int, repeats: int = 4) -> Path:
    params = f"{{sleep_per_image_s = {SLEEP_S}, slow_facts_s = {SLOW_FACTS_S}}}"
    text = suite_text(image_folder, decoder_tables(f'name = "fault"\nparams = {params}'))
    text = text.replace("repeats = 2", f"repeats = {repeats}\nbatch_size = {batch_size}")
    return _execute(write_suite(text), tmp_path)


def _execute(suite: Path, tmp_path: Path) -> Path:
    return Runner.new(load_suite(suite), tmp_path / "run", TensorCache(tmp_path / "c")).run().run_dir


def test_the_harness_times_the_decode_call_and_nothing_else(write_suite, tmp_path, image_folder) -> None:
    (row,) = load_run(_run(write_suite, tmp_path, image_folder, batch_size=1)).rows
    assert row.batch_size == 1 and row.other_batches == {}
    known_ms = SLEEP_S * 1e3
    for quantile in (0.1, 0.5, 0.9):
        measured = row.call_latency(quantile)
        assert known_ms <= measured <= known_ms + TOLERANCE_MS, (quantile, measured)
    assert row.image_latency(0.5) == row.call_latency(0.5)
    assert row.images_per_s == pytest.approx(1e3 / row.call_latency(0.5))


def test_calls_of_different_batch_sizes_are_never_pooled(write_suite, tmp_path, image_folder) -> None:
    """3 cases in batches of 2: one call of 2 images (80 ms), one of 1 image (40 ms). The old pooled
    median (60 ms) was neither per call nor per image."""
    run_dir = _run(write_suite, tmp_path, image_folder, batch_size=2)
    (row,) = load_run(run_dir).rows
    assert row.batch_size == 2 and row.other_batches == {1: 4}
    per_call, per_image = row.call_latency(0.5), row.image_latency(0.5)
    assert 2 * SLEEP_S * 1e3 <= per_call <= 2 * SLEEP_S * 1e3 + TOLERANCE_MS
    assert per_image == pytest.approx(per_call / 2)
    assert row.images_per_s == pytest.approx(2e3 / per_call)
    assert row.megapixels_per_s == pytest.approx(row.images_per_s * 32 * 32 / 1e6)
    (board,) = build_leaderboards(load_run(run_dir))
    cells = dict(zip([c.key for c in board.columns], board.rows[0][1], strict=True))
    assert cells["batch"].text == "2" and "batch 1" in cells["batch"].note
    assert cells["latency"].value == pytest.approx(per_image)


def test_timing_check_matches_a_bare_loop_on_a_known_decode_time(tmp_path) -> None:
    params = {"mode": "ok", "sleep_per_image_s": SLEEP_S, "slow_facts_s": SLOW_FACTS_S}
    result = check("fault", 8, 2, "cpu", "float32", warmup=1, repeats=4, work_dir=tmp_path, params=params)
    assert result["timer"] == "perf_counter_ns" and result["repeats"] == 4
    for key in ("harness_median_ms", "bare_median_ms"):
        assert SLEEP_S * 1e3 <= result[key] <= SLEEP_S * 1e3 + TOLERANCE_MS, (key, result)
    assert 0.75 <= result["ratio"] <= 1.33


def test_cold_start_belongs_to_the_worker_s_first_call_only(write_suite, tmp_path, image_folder) -> None:
    """One worker serves two comparison sizes: the first size it serves carries its start-up + first
    call (a cold start); the other size only its own first call, served warm."""
    text = suite_text(image_folder, decoder_tables('name = "bilinear"'))
    run_dir = _execute(write_suite(text.replace("input = 16", "input = [[16, 16], [24, 24]]")), tmp_path)
    view = load_run(run_dir)
    (load,) = [r for r in view.load_records if r["status"] == "ok"]
    first, second = sorted(view.rows, key=lambda r: min(
        view.decodes[(r.decoder, c)]["time"] for call in r.calls for c in call.cases))
    for row in (first, second):
        assert row.first_call_ms is not None and row.worker_startup_ms == load["spawn_to_ready_ms"]
    assert first.cold_start_ms == pytest.approx(load["spawn_to_ready_ms"] + first.first_call_ms)
    assert second.cold_start_ms is None


def test_cpu_memory_shows_the_decoder_s_increment_beside_the_whole_worker(
        write_suite, tmp_path, image_folder) -> None:
    """A bilinear resize of 32² images needs almost nothing; the worker (interpreter, torch) holds
    hundreds of MiB. Both are reported, by name; the headline is the increment."""
    run_dir = _execute(write_suite(suite_text(image_folder, decoder_tables('name = "bilinear"'))), tmp_path)
    (row,) = load_run(run_dir).rows
    assert row.memory["peak_rss_bytes"] > 100 * 2**20
    assert 0 <= row.memory["rss_increment_bytes"] < 64 * 2**20
    assert row.memory_headline_kind == "rss_increment_bytes"
    assert row.peak_memory_bytes == row.memory["rss_increment_bytes"]
    (board,) = build_leaderboards(load_run(run_dir))
    labels = [c.label for c in board.columns]
    assert "peak RSS" in labels and "RSS increment" in labels


def test_cold_start_does_not_depend_on_the_decoder_s_place_in_the_suite(
        write_suite, tmp_path, image_folder) -> None:
    """The worker server imports a module that takes 3 s (a decoder's preload). Before, the first
    decoder's worker start-up waited for those imports — whichever decoder was listed first paid
    them (demo: nearest 952–1,685 ms against 121–358 ms); now the server is ready before any
    decoder's clock starts, and the wait is accounted as the server's."""
    from decoderbench_slowimport import IMPORT_S

    startups = {}
    for order in (("slow-import", "bilinear"), ("bilinear", "slow-import")):
        text = suite_text(image_folder, decoder_tables(*(f'name = "{name}"' for name in order)))
        run_dir = _execute(write_suite(text, f"{order[0]}.toml"), tmp_path / order[0])
        view = load_run(run_dir)
        loads = {r["decoder"]: r["spawn_to_ready_ms"] for r in view.load_records if r["status"] == "ok"}
        startups[order] = loads
        assert all(ms < IMPORT_S * 1e3 / 2 for ms in loads.values()), (order, loads)
        (phase,) = view.manifest["phases"]
        assert phase["server_s"] >= 0.0  # the wait for the server, counted as start-up in the time line
        assert time_budget(view).startup_wall_s >= phase["server_s"]
