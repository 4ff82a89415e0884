"""The memory-wall sweep: bisection on output size, a fresh worker per size, a declared budget."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import cli

from harness.store import read_jsonl
from harness.suite import load_suite
from harness.sweep import Sweep, SweepError, parse_bytes

SUITE = """
name = "wall"
[source]
kind = "latents"
space = "{space}"
synthetic = 1
[resolution]
input = 64
output_scale = {scale}
[[decoder]]
name = "{name}"
label = "subject"
params = {params}
[timing]
warmup = 0
repeats = 1
timeout_s = 120
"""


def _sweep(write_suite, tmp_path: Path, budget: int | None = None, space: str = "pixels",
           name: str = "fault", params: str = "{}", scale: int = 4) -> Sweep:
    suite = load_suite(write_suite(SUITE.format(space=space, name=name, params=params, scale=scale)))
    return Sweep(suite, "subject", tmp_path / "sweep", budget)


def test_bisection_finds_the_largest_size_in_the_decoder_steps(write_suite, tmp_path, monkeypatch) -> None:
    """A decoder whose peak is 1 kB per output pixel against a 3 MB budget: the wall is at 1732 px."""
    sweep = _sweep(write_suite, tmp_path, budget=3_000_000, space="flux1", name="vae",
                   params='{space = "flux1", weights = "random"}', scale=1)
    assert sweep.step == 8  # the flux1 latent factor × native scale 1
    tried: list[int] = []

    def attempt(side: int) -> dict:
        tried.append(side)
        record = {"kind": "sweep", "size": [side, side], "status": "ok", "message": None,
                  "latency": {"median_ms": side / 100}, "memory": {"peak_rss_bytes": side * side}}
        return sweep._apply_budget(record)

    monkeypatch.setattr(sweep, "_attempt", attempt)
    outcome = sweep.run(500, 4000)
    assert (outcome.largest_ok, outcome.smallest_failed) == (1728, 1736)  # 1728² ≤ 3e6 < 1736²
    assert tried[:2] == [504, 4000] and all(side % 8 == 0 for side in tried)
    assert len(tried) <= 12
    records = read_jsonl(tmp_path / "sweep" / "results.jsonl")[0]
    assert [r["size"][0] for r in records] == tried
    over = [r for r in records if r["status"] == "oom"]
    assert over and all(r["peak_bytes"] > 3_000_000 for r in over)
    assert all("> budget" in r["message"] and "counted as out of memory" in r["message"] for r in over)
    assert all(r["peak_bytes"] <= 3_000_000 for r in records if r["status"] == "ok")
    manifest = json.loads((tmp_path / "sweep" / "manifest.json").read_text())
    assert manifest["kind"] == "sweep" and manifest["result"]["largest_ok"] == 1728
    assert manifest["sweep"]["memory_budget_bytes"] == 3_000_000
    assert (tmp_path / "sweep" / "memory_wall.png").stat().st_size > 10_000


def test_sweep_refusals(write_suite, tmp_path) -> None:
    assert parse_bytes("24GiB") == 24 * 2**30 and parse_bytes("512 MB") == 512_000_000
    assert parse_bytes("1e9") == 10**9
    with pytest.raises(ValueError, match="cannot read '24 parsecs'"):
        parse_bytes("24 parsecs")
    suite = load_suite(write_suite(SUITE.format(space="pixels", name="fault", params="{}", scale=4)))
    with pytest.raises(SweepError, match="decoder 'nope' is not in suite 'wall'; its decoders: subject"):
        Sweep(suite, "nope", tmp_path / "x")
    with pytest.raises(SweepError, match="no size between 10 and 12 is a multiple of 8"):
        _sweep(write_suite, tmp_path, space="flux1", name="vae",
               params='{space = "flux1", weights = "random"}', scale=1).run(10, 12)


def test_sweep_command_with_a_cpu_memory_budget(write_suite, tmp_path) -> None:
    """Real workers: a decoder that touches 1000 bytes per output pixel, a 1 GiB budget."""
    path = write_suite(SUITE.format(space="pixels", name="fault", params="{hog_bytes_per_pixel = 1000}",
                                    scale=4))
    out = tmp_path / "wall"
    result = cli("sweep", str(path), "--decoder", "subject", "--from", "512", "--to", "1024",
                 "--step", "512", "--memory-budget", "800MB", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "largest size that decodes: 512×512; smallest that failed: 1024" in result.stderr
    records = read_jsonl(out / "results.jsonl")[0]
    assert [r["size"] for r in records] == [[512, 512], [1024, 1024]]
    assert [r["status"] for r in records] == ["ok", "oom"]
    assert len({r["worker_pid"] for r in records}) == 2  # a fresh worker per size
    assert all(r["kind"] == "sweep" and r["latency"]["n"] == 1 for r in records)
    assert records[0]["memory"]["method"] == "linux_vmhwm_reset"
    assert records[1]["peak_bytes"] > 2**30 >= records[0]["peak_bytes"]
    assert not list((out / "images").rglob("*.png"))  # outputs are hashed, not kept
    assert (out / "memory_wall.png").exists()


def test_sweep_steps_follow_the_decoders_own_size_rule(write_suite, tmp_path) -> None:
    """L2P 1K: patch 16, but (side/16)² must be a multiple of 32, so its square sides step by 128."""
    text = ('name = "l2p"\n[source]\nkind = "prompts"\nprompts = ["a cat"]\n[resolution]\n'
            'input = 1024\noutput_scale = 1\n[[decoder]]\nname = "l2p"\nlabel = "subject"\n'
            'params = {variant = "VARIANT"}\n')
    one_k = Sweep(load_suite(write_suite(text.replace("VARIANT", "1k"))), "subject", tmp_path / "a")
    assert one_k.step == 128
    four_k = load_suite(write_suite(text.replace("VARIANT", "4k"), "b.toml"))
    four_k = Sweep(four_k, "subject", tmp_path / "b")
    assert four_k.step == 64


def test_the_cpu_wall_is_the_rss_increment_in_human_units_and_exit_0(write_suite, tmp_path) -> None:
    """A CPU budget is compared with the RSS increment (what the summary and the gates use, not the
    ~330 MiB of interpreter and torch in the peak RSS); the default step is 64 px; finding the wall
    is no error."""
    path = write_suite(SUITE.format(space="pixels", name="fault", params="{hog_bytes_per_pixel = 1000}",
                                    scale=4))
    out = tmp_path / "wall"
    result = cli("sweep", str(path), "--decoder", "subject", "--from", "256", "--to", "1024",
                 "--memory-budget", "400MB", "--out", str(out), columns=100)
    assert result.returncode == 0, result.stderr
    records = read_jsonl(out / "results.jsonl")[0]
    assert all(r["size"][0] % 64 == 0 for r in records) and len(records) <= 6  # a coarser default step
    assert all(r["peak_kind"] == "rss_increment_bytes" for r in records)
    assert all(r["peak_bytes"] == r["memory"]["rss_increment_bytes"] for r in records)
    oom = [r for r in records if r["status"] == "oom"]
    wall = re.compile(r"RSS increment [\d.]+ [MG]iB > budget 381\.5 MiB")
    assert oom and all(wall.search(r["message"]) for r in oom)
    assert "a size fits when its RSS increment does (budget 381.5 MiB)" in " ".join(result.stdout.split())
    assert "bytes" not in result.stdout  # human units only


def test_a_size_that_fails_for_another_reason_than_memory_is_exit_1(write_suite, tmp_path) -> None:
    path = write_suite(SUITE.format(space="pixels", name="fault", params='{mode = "raise"}', scale=4))
    result = cli("sweep", str(path), "--decoder", "subject", "--from", "256", "--to", "512",
                 "--out", str(tmp_path / "w"))
    assert result.returncode == 1
    assert "failed for another reason than memory (error)" in " ".join(result.stderr.split())
