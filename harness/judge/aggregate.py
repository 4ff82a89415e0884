"""Judge records → per-pair win/tie/loss with Wilson intervals, Bradley–Terry strengths, consistency.

A (case, pair) counts once both of its orders have an `ok` verdict. The two
verdicts (already in decoder terms) agree → that verdict; they disagree →
a tie, counted as inconsistent (the judge followed the screen position, not
the images). Win rates are the share of complete cases in which `a` is
preferred in both orders, with a Wilson score interval.

Bradley–Terry: P(i preferred to j) = 1 / (1 + exp(θj − θi)); ties count as
half a win for each side; maximum likelihood (Newton's method) with a weak
prior (one virtual tie per decoder against a player of strength θ = 0) that
keeps strengths finite when a decoder wins or loses every comparison.
Strengths are natural-log units centred on their mean; 95% intervals are
percentiles of a bootstrap over cases (all pairs of a case move together).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

Z95 = 1.959963984540054
PRIOR_GAMES = 1.0


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    if n <= 0:
        raise ValueError("the Wilson interval needs at least one trial")
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


def combine_orders(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(case, a, b) → {"verdict": a|b|tie|None, "inconsistent": bool, "complete": bool}."""
    orders: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for record in records:
        orders.setdefault((record["case"], record["a"], record["b"]), {})[record["order"]] = record
    combined = {}
    for key, by_order in orders.items():
        ab, ba = by_order.get("ab"), by_order.get("ba")
        complete = bool(ab and ba and ab["status"] == "ok" and ba["status"] == "ok")
        verdict, inconsistent = None, False
        if complete:
            assert ab is not None and ba is not None
            inconsistent = ab["verdict"] != ba["verdict"]
            verdict = "tie" if inconsistent else ab["verdict"]
        combined[key] = {"verdict": verdict, "inconsistent": inconsistent, "complete": complete}
    return combined


def pair_summary(a: str, b: str, outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    complete = [o for o in outcomes if o["complete"]]
    n = len(complete)
    wins_a = sum(o["verdict"] == "a" for o in complete)
    wins_b = sum(o["verdict"] == "b" for o in complete)
    return {
        "a": a, "b": b, "n": n, "wins_a": wins_a, "wins_b": wins_b, "ties": n - wins_a - wins_b,
        "inconsistent": sum(o["inconsistent"] for o in complete),
        "incomplete": len(outcomes) - n,
        "win_rate_a": wins_a / n if n else None,
        "wilson95_a": list(wilson_interval(wins_a, n)) if n else None,
    }


def bradley_terry(wins: np.ndarray, prior_games: float = PRIOR_GAMES, tol: float = 1e-10,
                  max_iter: int = 100) -> np.ndarray:
    """wins[..., i, j] = times i was preferred to j (ties as 0.5 each way) → centred log-strengths.

    Maximises the (strictly concave) log-likelihood with the prior by Newton's method, batched over
    leading dimensions; steps longer than 1 are shortened (same direction) for robustness."""
    wins = np.asarray(wins, dtype=np.float64)
    games = wins + np.swapaxes(wins, -1, -2)
    theta = np.zeros(wins.shape[:-1])
    eye = np.eye(wins.shape[-1])
    for _ in range(max_iter):
        p = _sigmoid(theta[..., :, None] - theta[..., None, :])  # P(i preferred to j)
        p0 = _sigmoid(theta)  # against the prior's virtual player at θ = 0
        gradient = (wins - games * p).sum(axis=-1) + prior_games / 2 * (1 - 2 * p0)
        weight = games * p * (1 - p)
        hessian = weight - eye * (weight.sum(axis=-1) + prior_games * p0 * (1 - p0))[..., None]
        step = np.linalg.solve(hessian, gradient[..., None])[..., 0]
        longest = np.abs(step).max(axis=-1, keepdims=True)
        theta = theta - step / np.maximum(longest, 1.0)
        if longest.max() < tol:
            break
    return theta - theta.mean(axis=-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(x / 2))


def case_win_matrices(combined: dict[tuple[str, str, str], dict[str, Any]],
                      decoders: list[str]) -> tuple[list[str], np.ndarray]:
    """Complete outcomes → (case ids, [cases, K, K] win matrices)."""
    index = {d: i for i, d in enumerate(decoders)}
    cases = sorted({case for (case, _, _), o in combined.items() if o["complete"]})
    row = {case: i for i, case in enumerate(cases)}
    matrices = np.zeros((len(cases), len(decoders), len(decoders)))
    for (case, a, b), outcome in combined.items():
        if not outcome["complete"]:
            continue
        i, j, c = index[a], index[b], row[case]
        share_a = {"a": 1.0, "b": 0.0, "tie": 0.5}[outcome["verdict"]]
        matrices[c, i, j] += share_a
        matrices[c, j, i] += 1 - share_a
    return cases, matrices


def bootstrap_intervals(matrices: np.ndarray, samples: int, seed: int) -> np.ndarray | None:
    """[2, K] percentile 95% interval of the strengths, resampling cases with replacement."""
    n_cases = matrices.shape[0]
    if samples < 1 or n_cases < 2:
        return None
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_cases, np.full(n_cases, 1 / n_cases), size=samples)
    thetas = bradley_terry(np.einsum("bc,cij->bij", counts, matrices))
    return np.percentile(thetas, [2.5, 97.5], axis=0)


def summarize(records: Sequence[dict[str, Any]], pairs: list[tuple[str, str]], bootstrap: int,
              seed: int) -> dict[str, Any]:
    """One criterion's records (latest per request) → its judge.json entry (less model and version)."""
    combined = combine_orders(records)
    decoders = list(dict.fromkeys(d for pair in pairs for d in pair))
    summaries = [pair_summary(a, b, [o for (_, pa, pb), o in combined.items() if (pa, pb) == (a, b)])
                 for a, b in pairs]
    _, matrices = case_win_matrices(combined, decoders)
    theta = bradley_terry(matrices.sum(axis=0))
    intervals = bootstrap_intervals(matrices, bootstrap, seed)
    complete = [o for o in combined.values() if o["complete"]]
    statuses = [r["status"] for r in records]
    return {
        "pairs": summaries,
        "bradley_terry": [
            {"decoder": d, "strength": float(theta[k]),
             "ci95": [float(intervals[0, k]), float(intervals[1, k])] if intervals is not None else None}
            for k, d in enumerate(decoders)
        ],
        "consistency_rate": (sum(not o["inconsistent"] for o in complete) / len(complete)
                             if complete else None),
        "requests": {s: statuses.count(s) for s in ("ok", "invalid", "failed")},
    }
