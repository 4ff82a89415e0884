"""Decisions instead of per-column stars: paired sign-flip tests with Holm's correction, "too few
cases" instead of a coin flip, HELM-style win rates per summary group, criteria that rank nothing
and why — and identical runs give identical marks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import decoder_tables, suite_text
from synthetic_runs import SynthDecoder, write_run

from harness.runner import Runner
from harness.sources.cache import TensorCache
from harness.suite import load_suite
from reports.aggregate import load_run
from reports.decisions import decide_size, win_rate

N = 12


def _decide(tmp_path: Path, decoders: list[SynthDecoder], info: dict, summary: dict | None = None):
    run = write_run(tmp_path / "run", decoders, N, info)
    if summary is not None:
        manifest = json.loads((run / "manifest.json").read_text())
        manifest["suite"]["resolved"]["summary"] = summary
        (run / "manifest.json").write_text(json.dumps(manifest))
    view = load_run(run)
    return decide_size(view, view.sizes[0])


def test_ties_within_noise_share_the_best_mark_and_real_differences_do_not(tmp_path: Path) -> None:
    wobble = [0.003 * ((i * 7) % 5 - 2) for i in range(N)]  # ± noise around the same mean
    decoders = [
        SynthDecoder("a", metrics={"lpips": lambda i: 0.200 + wobble[i]}),
        SynthDecoder("b", metrics={"lpips": lambda i: 0.200 + wobble[(i + 3) % N]}),  # same values, shuffled
        SynthDecoder("c", metrics={"lpips": lambda i: 0.230 + wobble[i]}),  # consistently worse
    ]
    decision = _decide(tmp_path, decoders, {"lpips": False}).decisions["metric:lpips"]
    assert decision.marked == {"a", "b"} and decision.informative
    tied, worse = decision.versus_best[({"a", "b"} - {decision.best}).pop()], decision.versus_best["c"]
    assert tied.outcome == 0 and tied.p > 0.05 and tied.n == N
    assert worse.outcome == -1 and worse.delta == pytest.approx(0.03) and worse.p == pytest.approx(2 / 2**N)
    assert "not separated from the best" in decision.note(({"a", "b"} - {decision.best}).pop())
    assert "Holm over 3 pairs" in decision.note("c")


def test_a_target_metric_is_best_closest_to_its_target(tmp_path: Path) -> None:
    decoders = [SynthDecoder("ringing", metrics={"hf": lambda i: 2.0 + 0.01 * (i % 2)}),
                SynthDecoder("faithful", metrics={"hf": lambda i: 1.05 + 0.01 * (i % 2)}),
                SynthDecoder("blurry", metrics={"hf": lambda i: 0.3 + 0.01 * (i % 2)})]
    decision = _decide(tmp_path, decoders, {"hf": {"better": "target", "target": 1.0}}).decisions["metric:hf"]
    assert decision.best == "faithful" and decision.marked == {"faithful"}
    assert decision.outcomes[("blurry", "ringing")] == 1  # |0.3 − 1| < |2.0 − 1|


def test_win_rates_per_group_and_overall(tmp_path: Path) -> None:
    """a beats b and c on psnr; b beats c on lpips, a ties c; costs all tie (same latency)."""
    def values(psnr: float, lpips: float) -> dict:
        return {"psnr": lambda i: psnr + 0.1 * (i % 3), "lpips": lambda i: lpips + 0.01 * (i % 2)}

    decoders = [SynthDecoder("a", metrics=values(30, 0.30)), SynthDecoder("b", metrics=values(25, 0.10)),
                SynthDecoder("c", metrics=values(20, 0.30))]
    decided = _decide(tmp_path, decoders, {"psnr": True, "lpips": False},
                      summary={"fidelity": [{"metric": "psnr", "weight": 1}],
                               "perceptual": [{"metric": "lpips", "weight": 3}]})
    rates = decided.win_rates
    assert rates["fidelity"] == {"a": 1.0, "b": 0.5, "c": 0.0}
    assert rates["perceptual"] == {"a": 0.25, "b": 1.0, "c": 0.25}  # a and c tie: ½ each
    assert rates["overall"] == pytest.approx({"a": 0.625, "b": 0.75, "c": 0.125})
    assert "cost" not in rates  # a declared [summary] ranks only what it names
    assert win_rate(decided.decisions["metric:psnr"], "b") == 0.5


def test_metrics_that_do_not_separate_the_decoders_are_flagged_and_left_out(tmp_path: Path) -> None:
    same = [SynthDecoder(d, metrics={"ssim": lambda i: 0.9 + 0.001 * (i % 3), "psnr": lambda i, k=k: 20 + k})
            for k, d in enumerate("xyz")]
    decided = _decide(tmp_path, same, {"ssim": True, "psnr": True})
    ssim = decided.decisions["metric:ssim"]
    assert ssim.state == "tied" and "does not separate" in ssim.reason and not ssim.marked
    assert decided.decisions["metric:psnr"].informative
    assert decided.win_rates["fidelity"] == {"x": 0.0, "y": 0.5, "z": 1.0}  # psnr alone


def _marks(suite, root: Path) -> list[dict]:
    marks = []
    for index in range(2):
        run_dir = Runner.new(suite, root / f"run{index}", TensorCache(root / "cache")).run().run_dir
        view = load_run(run_dir)
        decided = decide_size(view, view.sizes[0])
        marks.append({key: (sorted(d.marked), d.state) for key, d in decided.decisions.items()})
    return marks


def test_identical_runs_give_identical_marks(write_suite, tmp_path: Path, image_folder: Path) -> None:
    """The demo's decoders twice: quality and memory marks do not move. (Their sub-millisecond
    latencies on a shared 2-core machine move with its load — a worker's calls can all run 30×
    slower while another process holds a core — so latency is checked with known decode times.)"""
    names = ("nearest", "bilinear", "bicubic", "lanczos")
    text = suite_text(image_folder, decoder_tables(*(f'name = "{n}"' for n in names)))
    # 9 cases (4 decoders need 8); ms_ssim cannot score these 32 px outputs: refused
    suite = load_suite(write_suite(text.replace("seeds = [0]", "seeds = [0, 1, 2]")))
    first, second = _marks(suite, tmp_path)
    first.pop("cost:latency"), second.pop("cost:latency")
    assert first == second
    assert first["metric:psnr"][0] and first["metric:psnr"][1] is None  # marked, decided


def test_latency_marks_move_only_on_real_differences(write_suite, tmp_path: Path, image_folder: Path) -> None:
    """40 ms vs 42 ms per image (5 %, under the margin): tied in every run; 80 ms: worse in every run."""
    rows = [f'name = "fault"\nlabel = "{label}"\nparams = {{sleep_per_image_s = {seconds}}}'
            for label, seconds in (("fast", 0.040), ("close", 0.042), ("slow", 0.080))]
    text = suite_text(image_folder, decoder_tables(*rows)).replace("seeds = [0]", "seeds = [0, 1, 2]")
    suite = load_suite(write_suite(text))  # 9 calls each: 3 decoders (3 pairs) need 7
    first, second = _marks(suite, tmp_path)
    assert first["cost:latency"] == second["cost:latency"] == (["close", "fast"], None)
