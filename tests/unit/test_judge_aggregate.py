"""Judge aggregation on synthetic verdicts with known answers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from harness.judge.aggregate import (
    bootstrap_intervals,
    bradley_terry,
    combine_orders,
    summarize,
    wilson_interval,
)


def _record(case: str, a: str, b: str, order: str, verdict: str | None, status: str = "ok") -> dict:
    return {"case": case, "a": a, "b": b, "order": order, "verdict": verdict, "status": status}


def _both(case: str, a: str, b: str, ab: str | None, ba: str | None) -> list[dict]:
    return [_record(case, a, b, "ab", ab, "ok" if ab else "invalid"),
            _record(case, a, b, "ba", ba, "ok" if ba else "failed")]


def test_wilson_interval_matches_hand_computed_values() -> None:
    # 8 of 10: p = 0.8, z = 1.959964: (0.8 + 0.192073 ± 1.959964·sqrt(0.016 + 0.009604)) / 1.384146
    assert wilson_interval(8, 10) == pytest.approx((0.490162, 0.943318), abs=1e-6)
    # 0 of 10: the lower bound is 0 and the upper bound 2·0.1920729 / 1.3841459
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.277533), abs=1e-6)
    assert wilson_interval(10, 10) == pytest.approx((0.722467, 1.0), abs=1e-6)
    assert wilson_interval(50, 100) == pytest.approx((0.403832, 0.596168), abs=1e-6)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


def test_orders_combine_into_debiased_outcomes() -> None:
    records = [*_both("c1", "x", "y", "a", "a"), *_both("c2", "x", "y", "a", "b"),
               *_both("c3", "x", "y", "tie", "tie"), *_both("c4", "x", "y", "b", None),
               _record("c5", "x", "y", "ab", "a")]
    combined = combine_orders(records)
    assert combined[("c1", "x", "y")] == {"verdict": "a", "inconsistent": False, "complete": True}
    assert combined[("c2", "x", "y")] == {"verdict": "tie", "inconsistent": True, "complete": True}
    assert combined[("c3", "x", "y")] == {"verdict": "tie", "inconsistent": False, "complete": True}
    assert combined[("c4", "x", "y")]["complete"] is False  # one order invalid/failed: not counted
    assert combined[("c5", "x", "y")]["complete"] is False  # the other order was never asked


def test_pair_counts_win_rates_and_consistency() -> None:
    verdicts = [("a", "a")] * 6 + [("b", "b")] * 2 + [("tie", "tie")] + [("a", "b")] + [("a", None)]
    records = [r for i, (ab, ba) in enumerate(verdicts) for r in _both(f"c{i}", "pid", "sr", ab, ba)]
    entry = summarize(records, [("pid", "sr")], bootstrap=0, seed=0)
    pair = entry["pairs"][0]
    assert {k: pair[k] for k in ("n", "wins_a", "wins_b", "ties", "inconsistent", "incomplete")} == {
        "n": 10, "wins_a": 6, "wins_b": 2, "ties": 2, "inconsistent": 1, "incomplete": 1}
    assert pair["win_rate_a"] == 0.6
    assert pair["wilson95_a"] == pytest.approx(list(wilson_interval(6, 10)))
    assert entry["consistency_rate"] == 0.9
    assert entry["requests"] == {"ok": 21, "invalid": 0, "failed": 1}
    strengths = {row["decoder"]: row["strength"] for row in entry["bradley_terry"]}
    # 7 of 10 (ties as halves) for pid: θ_pid − θ_sr ≈ log(7/3), shrunk slightly by the prior
    assert 0.6 < strengths["pid"] - strengths["sr"] < np.log(7 / 3)
    assert all(row["ci95"] is None for row in entry["bradley_terry"])  # bootstrap = 0


def _simulate(theta: np.ndarray, n_cases: int, rng: np.random.Generator) -> np.ndarray:
    """[cases, K, K] win matrices: every pair compared once per case under Bradley–Terry."""
    k = len(theta)
    matrices = np.zeros((n_cases, k, k))
    for i, j in itertools.combinations(range(k), 2):
        p_i = 1 / (1 + np.exp(theta[j] - theta[i]))
        wins = rng.random(n_cases) < p_i
        matrices[:, i, j] += wins
        matrices[:, j, i] += ~wins
    return matrices


def test_bradley_terry_recovers_simulated_strengths() -> None:
    theta = np.array([1.0, 0.4, -0.3, -1.1])
    matrices = _simulate(theta, 4000, np.random.default_rng(1))
    fitted = bradley_terry(matrices.sum(axis=0))
    assert fitted.sum() == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(fitted, theta - theta.mean(), atol=0.06)


def _mm_reference(wins: np.ndarray, prior_games: float = 1.0) -> np.ndarray:
    """Hunter's (2004) MM iteration with the same prior (a virtual tie against strength 1), to convergence."""
    games = wins + wins.T
    won = wins.sum(axis=1) + prior_games / 2
    strength = np.ones(len(wins))
    for _ in range(200000):
        updated = won / ((games / (strength[:, None] + strength[None, :])).sum(axis=1)
                         + prior_games / (strength + 1))
        if np.max(np.abs(np.log(updated / strength))) < 1e-13:
            break
        strength = updated
    theta = np.log(updated)
    return theta - theta.mean()


def test_bradley_terry_agrees_with_the_mm_algorithm() -> None:
    rng = np.random.default_rng(2)
    for k in (2, 3, 5):
        wins = rng.integers(0, 12, (k, k)).astype(float) / 2
        np.fill_diagonal(wins, 0)
        np.testing.assert_allclose(bradley_terry(wins), _mm_reference(wins), atol=1e-8)


def test_bradley_terry_ties_halves_and_the_prior() -> None:
    only_ties = np.array([[0.0, 5.0], [5.0, 0.0]])  # ten ties as half wins each way
    np.testing.assert_allclose(bradley_terry(only_ties), [0.0, 0.0], atol=1e-9)
    sweep = np.array([[0.0, 20.0, 20.0], [0.0, 0.0, 10.0], [0.0, 10.0, 0.0]])  # decoder 0 always wins
    theta = bradley_terry(sweep)
    assert np.all(np.isfinite(theta)) and theta[0] > 2 and theta[1] == pytest.approx(theta[2])
    batch = bradley_terry(np.stack([only_ties, only_ties[::-1, ::-1]]))
    assert batch.shape == (2, 2)


def test_bootstrap_intervals_cover_the_truth() -> None:
    """Coverage sanity: 95% intervals from 40 cases cover the true strengths in most of 200 simulations."""
    theta = np.array([0.8, 0.0, -0.8])
    rng = np.random.default_rng(3)
    covered, widths = [], []
    for run in range(200):
        intervals = bootstrap_intervals(_simulate(theta, 40, rng), samples=300, seed=run)
        assert intervals is not None and np.all(intervals[0] <= intervals[1])
        covered.append((intervals[0] <= theta) & (theta <= intervals[1]))
        widths.append(intervals[1] - intervals[0])
    coverage = np.mean(covered, axis=0)
    assert np.all(coverage >= 0.85), coverage
    wide = bootstrap_intervals(_simulate(theta, 40, rng), samples=300, seed=0)
    narrow = bootstrap_intervals(_simulate(theta, 640, rng), samples=300, seed=0)
    assert np.all(narrow[1] - narrow[0] < (wide[1] - wide[0]) / 2)  # ≈ 1/4 with 16× the cases
    assert bootstrap_intervals(_simulate(theta, 1, rng), samples=100, seed=0) is None


def test_summary_strengths_and_intervals_on_a_known_ranking() -> None:
    rng = np.random.default_rng(5)
    theta = {"pid": 1.2, "esrgan": 0.2, "lanczos": -1.4}
    names = list(theta)
    records = []
    for case in range(60):
        for a, b in itertools.combinations(names, 2):
            winner = "a" if rng.random() < 1 / (1 + np.exp(theta[b] - theta[a])) else "b"
            records += _both(f"c{case}", a, b, winner, winner)
    entry = summarize(records, list(itertools.combinations(names, 2)), bootstrap=400, seed=0)
    rows = {row["decoder"]: row for row in entry["bradley_terry"]}
    assert [row["decoder"] for row in sorted(entry["bradley_terry"], key=lambda r: -r["strength"])] == names
    for name, truth in theta.items():
        low, high = rows[name]["ci95"]
        assert low < rows[name]["strength"] < high
        assert abs(rows[name]["strength"] - truth) < 0.5
    assert entry["consistency_rate"] == 1.0 and all(p["n"] == 60 for p in entry["pairs"])
