"""Paired comparisons with a known false-decision rate, and Holm's correction over a family of them.

Two decoders are compared on the cases both have values for. Under "they do not differ" the two
values of a case are exchangeable, so each paired difference is as likely to have either sign:
the exact sign-flip (randomization) test counts, over all 2^n sign patterns, how often the
flipped mean is at least as far from zero as the observed one. Its false-decision rate is at most
α at every n (no normal approximation, no resampling of too few cases), and it says plainly when
n is too small: with n pairs the smallest two-sided p-value is 2/2^n, so nothing below n = 6 can
be separated at 5 %. Above EXACT_MAX cases a fixed-seed Monte Carlo sample of sign patterns
stands in for the enumeration, with the (1 + k)/(1 + B) p-value that keeps the test valid.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from harness.stats.distributions import binomial_cdf

ALPHA = 0.05  # the level of every decision: a family of pairwise comparisons errs at most this often
EXACT_MAX = 16  # up to 2^16 sign patterns are enumerated
MONTE_CARLO_PATTERNS = 20_000
MONTE_CARLO_SEED = 0
_CELLS = 4_000_000  # patterns × columns evaluated at once


@lru_cache(maxsize=32)
def _signs(n: int) -> np.ndarray:
    """Every sign pattern (n ≤ EXACT_MAX), or a fixed random sample of them, as a [B, n] ±1 matrix."""
    if n <= EXACT_MAX:
        bits = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1
    else:
        bits = np.random.default_rng(MONTE_CARLO_SEED).integers(0, 2, size=(MONTE_CARLO_PATTERNS, n))
    return (1 - 2 * bits).astype(np.float64)


def sign_flip_pvalues(differences: np.ndarray) -> np.ndarray:
    """Two-sided p-values of the sign-flip test, one per column of an [n, P] array of differences."""
    diffs = np.asarray(differences, dtype=np.float64)
    if diffs.ndim != 2 or diffs.shape[0] == 0:
        raise ValueError("expected an [n, P] array with n ≥ 1 paired differences per column")
    n = diffs.shape[0]
    signs = _signs(n)
    observed = np.abs(diffs.sum(axis=0))
    # Sums of the same numbers in another order may differ in the last bits: count them as ties.
    slack = 1e-9 * np.abs(diffs).sum(axis=0)
    counts = np.zeros(diffs.shape[1])
    step = max(1, _CELLS // signs.shape[0])
    for start in range(0, diffs.shape[1], step):
        block = slice(start, start + step)
        flipped = np.abs(signs @ diffs[:, block])
        counts[block] = (flipped >= observed[block] - slack[block]).sum(axis=0)
    if n <= EXACT_MAX:
        return counts / signs.shape[0]
    return (1.0 + counts) / (1.0 + signs.shape[0])


def sign_flip_pvalue(differences: np.ndarray | list[float]) -> float:
    """Two-sided p-value of the sign-flip test on one set of paired differences."""
    return float(sign_flip_pvalues(np.asarray(differences, dtype=np.float64)[:, None])[0])


def min_pvalue(n: int) -> float:
    """The smallest p-value the sign-flip test can give on n paired differences."""
    if n <= 0:
        return 1.0
    return 2.0 / 2**n if n <= EXACT_MAX else 1.0 / (1.0 + MONTE_CARLO_PATTERNS)


def cases_needed(comparisons: int, alpha: float = ALPHA) -> int:
    """The fewest paired cases at which the sign-flip test can reject at all, when `comparisons`
    p-values share α by Holm's method (its first step tests the smallest at α / comparisons)."""
    level = alpha / max(1, comparisons)
    return max(1, math.ceil(math.log2(2.0 / level) - 1e-12))


def holm(pvalues: list[float], alpha: float = ALPHA) -> list[bool]:
    """Holm's step-down rejections: the family-wise error rate is at most α under any dependence."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    rejected = [False] * len(pvalues)
    for rank, index in enumerate(order):
        if pvalues[index] > alpha / (len(pvalues) - rank):
            break
        rejected[index] = True
    return rejected


def sign_test_pvalue(wins: int, losses: int) -> float:
    """Exact two-sided sign test of "neither side is preferred" (ties left out)."""
    n = wins + losses
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * binomial_cdf(min(wins, losses), n, 0.5))
