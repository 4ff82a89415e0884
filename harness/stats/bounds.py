"""One-sided bounds that gates pass or fail on, and the power a gate has at its n.

- The mean worsening: Student's t upper bound, mean + t(c, n−1)·s/√n. Its coverage is exactly c
  at every n ≥ 2 for normal per-case differences (a bootstrap's is not: at n = 2 a percentile
  bootstrap covers 75 %); docs/statistics.md gives its simulated coverage for skewed ones.
  Identical values (a deterministic decoder, unchanged) give s = 0 and a bound equal to the mean.
- A share of cases: the Clopper–Pearson upper bound, exact for a binomial count.
- Power: the smallest true difference a one-sided t test at level α detects with probability
  `power` at this n and spread, (t(1−α, n−1) + t(power, n−1))·s/√n (the usual approximation).
"""

from __future__ import annotations

import math

import numpy as np

from harness.stats.distributions import binomial_cdf, t_cdf, t_quantile

POWER = 0.80


def t_upper_bound(values: np.ndarray | list[float], confidence: float) -> float:
    """The one-sided `confidence` upper bound of the mean; +inf under two values (no spread)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size < 2:
        return math.inf
    se = float(data.std(ddof=1)) / math.sqrt(data.size)
    return float(data.mean()) + t_quantile(confidence, data.size - 1) * se


def min_detectable(sd: float, n: int, alpha: float = 0.05, power: float = POWER) -> float:
    """The smallest shift a one-sided level-α t test on n paired values with spread `sd` detects
    with probability `power`; +inf under two values."""
    if n < 2:
        return math.inf
    return (t_quantile(1 - alpha, n - 1) + t_quantile(power, n - 1)) * sd / math.sqrt(n)


def pass_probability(tolerance: float, true_mean: float, sd: float, n: int, confidence: float) -> float:
    """About how often `mean + t(c)·s/√n ≤ tolerance` holds when the true mean worsening is
    `true_mean` (s taken as the true spread): the chance a gate passes such a decoder."""
    if n < 2:
        return 0.0
    if sd <= 0:
        return 1.0 if true_mean <= tolerance else 0.0
    se = sd / math.sqrt(n)
    return t_cdf((tolerance - true_mean) / se - t_quantile(confidence, n - 1), n - 1)


def binomial_upper_bound(k: int, n: int, confidence: float) -> float:
    """Clopper–Pearson one-sided upper bound of a share from k of n: the p with P(X ≤ k) = 1 − c."""
    if n <= 0:
        return 1.0
    if k >= n:
        return 1.0
    low, high = k / n, 1.0
    for _ in range(100):
        middle = 0.5 * (low + high)
        if binomial_cdf(k, n, middle) > 1 - confidence:
            low = middle
        else:
            high = middle
    return high


def cases_for_fraction(max_fraction: float, confidence: float) -> int:
    """The fewest cases at which a share ≤ max_fraction can be shown at all (none beyond)."""
    if max_fraction <= 0:
        return math.inf  # type: ignore[return-value]
    if max_fraction >= 1:
        return 1
    return math.ceil(math.log(1 - confidence) / math.log1p(-max_fraction) - 1e-12)
