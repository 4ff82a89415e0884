"""How stable a timing is: the spread of repeated calls, and an interval of their median.

A row of timings whose interquartile range exceeds 10 % of its median is unstable (pyperf warns
above a 10 % standard deviation; torch.utils.benchmark's adaptive_autorange stops once IQR/median
is under 0.1): its median moves between runs by more than the differences worth ranking, so it
takes no cost mark. The median's interval is distribution-free (order statistics of a binomial),
which `repeats = "auto"` narrows to 2 % of the median before it stops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

UNSTABLE_SPREAD = 0.10  # IQR / median above this: unstable


def relative_spread(samples: Sequence[float]) -> float | None:
    """Interquartile range ÷ median of timed calls (None under two samples or a zero median)."""
    values = np.asarray(samples, dtype=np.float64)
    if values.size < 2:
        return None
    q25, median, q75 = np.percentile(values, [25, 50, 75])
    return float((q75 - q25) / median) if median > 0 else None


def median_interval(samples: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """An interval holding the true median with probability ≥ `confidence`, from order statistics;
    None when there are too few samples for one (fewer than 6 at 95 %)."""
    values = np.sort(np.asarray(samples, dtype=np.float64))
    n = values.size
    tail = (1 - confidence) / 2
    # The interval is [x_(k), x_(n−k+1)] (1-based) for the largest k with P(X ≤ k − 1) ≤ tail,
    # X ~ Binomial(n, ½): the cumulative probabilities in one pass, in log space.
    k, cumulative, log_pmf = 0, 0.0, -n * math.log(2.0)
    while k < n // 2:
        cumulative += math.exp(log_pmf)
        if cumulative > tail:
            break
        k += 1
        log_pmf += math.log(n - k + 1) - math.log(k)
    if k == 0:
        return None
    return float(values[k - 1]), float(values[n - k])
