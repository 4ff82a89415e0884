"""Decisions instead of per-column stars: paired sign-flip tests with Holm's correction, "too few
cases" instead of a coin flip, HELM-style win rates per summary group, criteria that rank nothing
and why — and identical runs give identical marks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import decoder_tables, invoke, suite_text
from synthetic_runs import SynthDecoder, write_run

from harness.runner import Runner
from harness.sources.cache import TensorCache
from harness.suite import SuiteError, load_suite
from harness.view import load_run
from reports.decisions import win_rate
from reports.export import tidy_rows
from reports.leaderboard import build_leaderboards
from reports.summary import decide_size

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


@pytest.mark.e2e
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


@pytest.mark.e2e
def test_latency_marks_move_only_on_real_differences(write_suite, tmp_path: Path, image_folder: Path) -> None:
    """40 ms vs 42 ms per image (5 %, under the margin): never separated; 80 ms: worse in every run
    where both are compared. On a loaded 2-core machine a row's sleeps can overshoot by more than
    10 % — then that row is flagged unstable and compared with nothing, never ranked on noise."""
    rows = [f'name = "fault"\nlabel = "{label}"\nparams = {{sleep_per_image_s = {seconds}}}'
            for label, seconds in (("fast", 0.040), ("close", 0.042), ("slow", 0.080))]
    text = suite_text(image_folder, decoder_tables(*rows)).replace("seeds = [0]", "seeds = [0, 1, 2]")
    suite = load_suite(write_suite(text))  # 9 calls each: 3 decoders (3 pairs) need 7
    for index in range(2):
        run_dir = Runner.new(suite, tmp_path / f"run{index}", TensorCache(tmp_path / "cache")).run().run_dir
        view = load_run(run_dir)
        latency = decide_size(view, view.sizes[0]).decisions["cost:latency"]
        compared = set(latency.values) - set(latency.excluded)
        assert "slow" not in latency.marked
        if {"fast", "close"} <= compared:
            assert latency.outcomes[("fast", "close")] == 0 and {"fast", "close"} <= latency.marked
        if {"fast", "slow"} <= compared:
            assert latency.outcomes[("fast", "slow")] == 1
        assert all(reason.startswith("unstable") for reason in latency.excluded.values())


# --------------------------------------------------------------------------- error rates at small n


def test_three_cases_decide_nothing_and_say_what_a_decision_needs(tmp_path: Path) -> None:
    """The percentile bootstrap separated decoders 23 % of the time at n = 3 when they did not
    differ; no test at 5 % can separate anything on 3 cases: the answer is 'too few cases'."""
    decoders = [SynthDecoder("a", metrics={"lpips": lambda i: 0.20 + 0.001 * i}),
                SynthDecoder("b", metrics={"lpips": lambda i: 0.30 + 0.001 * i})]  # b worse on every case
    run = write_run(tmp_path / "run", decoders, 3, {"lpips": False})
    view = load_run(run)
    decided = decide_size(view, view.sizes[0])
    lpips = decided.decisions["metric:lpips"]
    assert lpips.state == "too_few" and not lpips.marked
    assert lpips.reason == "too few cases to separate: n = 3, a decision needs ≥ 6 (2 decoders: 1 pair, " \
                           "Holm at 5%)"
    assert decided.groups["perceptual"].reason == "lpips too few cases"
    assert decided.overall == {} and decided.overall_reason == "no quality group separates the decoders"
    result = invoke("show", str(run), "--summary")
    assert result.exit_code == 0
    assert "perceptual ranks nothing: lpips too few cases" in result.output
    assert "no overall: no quality group separates the decoders" in result.output
    board = " ".join(invoke("show", str(run)).output.split())  # headers wrap between words
    assert "note: lpips: too few cases: too few cases to separate: n = 3, a decision needs ≥ 6" in board
    assert "latency / image (ms): too few calls: too few calls to separate: n = 3" in board


def test_holm_raises_the_cases_a_decision_needs_with_the_decoders(tmp_path: Path) -> None:
    """Four decoders, 7 cases, one clearly worse: 6 pairs share the 5 % (Holm), so 7 cases (min p
    2/128 > 0.05/6) cannot separate even it; 8 can."""
    def decoders() -> list[SynthDecoder]:
        return [SynthDecoder(d, metrics={"lpips": lambda i, k=k: 0.2 + 0.1 * (k == 3) + 0.001 * i})
                for k, d in enumerate("abcd")]

    for n, state in ((7, "too_few"), (8, None)):
        run = write_run(tmp_path / f"n{n}", decoders(), n, {"lpips": False})
        view = load_run(run)
        lpips = decide_size(view, view.sizes[0]).decisions["metric:lpips"]
        assert lpips.state == state and lpips.pairs == 6 and lpips.needed == 8, n
    assert lpips.marked == {"a", "b", "c"} and lpips.outcomes[("d", "a")] == -1


# --------------------------------------------------------------------------- the summary


def test_every_group_appears_with_its_reason_and_perceptual_leads(tmp_path: Path) -> None:
    """a wins the perceptual distance, b the no-reference score and the costs. Before: groups (cost
    included) weighed equally and b was on top; now overall is quality, perceptual ×2, no-reference
    ×½, cost beside it — a is on top, the legend says so, and a group with nothing measured says so."""
    def metrics(lpips: float, piqe: float) -> dict:
        return {"lpips": lambda i: lpips + 0.001 * i, "piqe": lambda i: piqe + 0.1 * i,
                "fid": lambda i: "unavailable"}

    decoders = [SynthDecoder("a", latency_ms=100.0, metrics=metrics(0.10, 40)),
                SynthDecoder("b", latency_ms=50.0, metrics=metrics(0.30, 20))]
    run = write_run(tmp_path / "run", decoders, 12, {"lpips": False, "piqe": False, "fid": False})
    view = load_run(run)
    decided = decide_size(view, view.sizes[0])
    assert list(decided.groups) == ["perceptual", "distribution", "no_reference", "cost"]
    assert decided.groups["distribution"].reason == "fid not measured"
    assert decided.groups["cost"].rates == {"a": 0.0, "b": 1.0} and decided.groups["cost"].weight == 0
    assert decided.overall == pytest.approx({"a": 0.8, "b": 0.2})  # (2 × 1 + ½ × 0) / 2.5
    assert decided.weighting() == ("overall = weighted mean of perceptual ×2, no_reference ×0.5 "
                                   "(distribution rank nothing here); cost shown beside it, not in overall")
    assert decided.robustness == "top: a; the top changes when one group is left out (without perceptual: b)"
    result = invoke("show", str(run), "--summary")
    assert "distribution ranks nothing: fid not measured" in result.output
    assert "overall = weighted mean of perceptual ×2" in result.output.replace("\n  ", " ")


def test_a_decoder_without_quality_values_gets_no_overall(tmp_path: Path) -> None:
    """Before, a decoder whose quality could not be scored got an overall from cost alone (★ 100 %)."""
    decoders = [SynthDecoder("scored", latency_ms=100.0, metrics={"psnr": lambda i: 30 + 0.1 * i}),
                SynthDecoder("other", latency_ms=100.0, metrics={"psnr": lambda i: 20 + 0.1 * i}),
                SynthDecoder("fast", latency_ms=10.0, metrics={"psnr": lambda i: "unavailable"})]
    run = write_run(tmp_path / "run", decoders, 12, {"psnr": True})
    view = load_run(run)
    decided = decide_size(view, view.sizes[0])
    assert decided.groups["cost"].rates["fast"] == 1.0
    assert set(decided.overall) == {"scored", "other"} and "fast" not in decided.overall
    (board,) = build_leaderboards(view)
    overall = board.columns.index(next(c for c in board.columns if c.key == "summary:overall"))
    cell = next(cells[overall] for row, cells in board.rows if row.decoder == "fast")
    assert cell.text == "—" and cell.state == "missing" and not cell.best


# --------------------------------------------------------------------------- costs per call


def test_latency_is_compared_per_call_within_one_batch_size(tmp_path: Path) -> None:
    """Batches of 4: 12 cases are 3 calls. Before, each call's median was copied to its 4 cases and
    compared as 12 values (n inflated 4×); now n = 3 calls — too few — and a decoder timed at
    another batch size is not compared at all."""
    decoders = [SynthDecoder("a", latency_ms=10.0, batch_size=4),
                SynthDecoder("b", latency_ms=20.0, batch_size=4), SynthDecoder("c", latency_ms=5.0)]
    view = load_run(write_run(tmp_path / "run", decoders, 12, {}))
    latency = decide_size(view, view.sizes[0]).decisions["cost:latency"]
    ab = latency.pairings[("a", "b")]
    assert ab.n == 3 and ab.p == pytest.approx(0.25) and ab.outcome == 0
    assert "different batch sizes (4 vs 1)" in latency.pairings[("a", "c")].reason
    assert latency.state == "too_few" and "n = 3" in latency.reason
    (board,) = build_leaderboards(view)
    cells = {row.decoder: dict(zip([c.key for c in board.columns], cells, strict=True))
             for row, cells in board.rows}
    assert cells["a"]["latency"].n == 3 and cells["c"]["latency"].n == 12


def test_unstable_latency_rows_are_flagged_and_take_no_mark(tmp_path: Path) -> None:
    decoders = [SynthDecoder("steady", latency_ms=10.0), SynthDecoder("shaky", latency_ms=5.0, jitter=0.4),
                SynthDecoder("slow", latency_ms=30.0)]
    run = write_run(tmp_path / "run", decoders, 12, {})
    view = load_run(run)
    latency = decide_size(view, view.sizes[0]).decisions["cost:latency"]
    assert "unstable: its timed calls spread by 80%" in latency.excluded["shaky"]
    assert latency.marked == {"steady"} and latency.outcomes[("steady", "slow")] == 1
    (board,) = build_leaderboards(view)
    cells = {row.decoder: dict(zip([c.key for c in board.columns], cells, strict=True))
             for row, cells in board.rows}
    assert cells["shaky"]["latency"].note == "unstable" and not cells["shaky"]["latency"].best
    assert "spread 80%" in cells["shaky"]["latency"].ci
    shown = invoke("show", str(run))
    assert "(unstable)" in shown.output
    unstable = [r for r in tidy_rows(run) if r["variable"] == "latency_spread"]
    statuses = {r["decoder"]: r["status"] for r in unstable}
    assert statuses == {"steady": "ok", "shaky": "unstable", "slow": "ok"}


def test_a_declared_group_can_weigh_more_in_overall(tmp_path: Path, write_suite, image_folder) -> None:
    def values(psnr: float, lpips: float) -> dict:
        return {"psnr": lambda i: psnr + 0.1 * (i % 3), "lpips": lambda i: lpips + 0.01 * (i % 2)}

    decoders = [SynthDecoder("a", metrics=values(30, 0.30)), SynthDecoder("b", metrics=values(25, 0.10))]
    summary = {"fidelity": {"weight": 3.0, "metrics": [{"metric": "psnr"}]},
               "perceptual": [{"metric": "lpips"}]}
    decided = _decide(tmp_path, decoders, {"psnr": True, "lpips": False}, summary=summary)
    assert decided.overall == pytest.approx({"a": 0.75, "b": 0.25})  # (3 × 1 + 1 × 0) / 4
    assert decided.weighting() == "overall = weighted mean of fidelity ×3, perceptual ×1"
    text = suite_text(image_folder, decoder_tables('name = "bilinear"'))
    with pytest.raises(SuiteError, match="summary group 'overall': 'overall' is the column that averages"):
        load_suite(write_suite(text + '\n[summary]\noverall = ["psnr"]\n'))
    suite = load_suite(write_suite(text + '\n[summary]\nfidelity = {weight = 2, metrics = ["psnr"]}\n'))
    assert suite.model.summary["fidelity"].weight == 2
