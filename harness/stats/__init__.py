"""Statistics behind every verdict: paired tests, multiplicity, bounds, power and timing stability.

One place, so that the leaderboard's marks (reports/decisions.py), the gates (harness/gates) and
the timing loop (harness/workers/measure.py) make their decisions the same way, each with an error
rate that holds at the n people actually use (3–20 cases). The methods and their simulated error
rates are in docs/statistics.md. NumPy only: no SciPy at run time.
"""

from harness.stats.bounds import (
    binomial_upper_bound,
    cases_for_fraction,
    min_detectable,
    pass_probability,
    t_upper_bound,
)
from harness.stats.distributions import t_cdf, t_quantile
from harness.stats.paired import (
    ALPHA,
    cases_needed,
    holm,
    min_pvalue,
    sign_flip_pvalue,
    sign_flip_pvalues,
    sign_test_pvalue,
)
from harness.stats.stability import UNSTABLE_SPREAD, median_interval, relative_spread

__all__ = [
    "ALPHA",
    "UNSTABLE_SPREAD",
    "binomial_upper_bound",
    "cases_for_fraction",
    "cases_needed",
    "holm",
    "median_interval",
    "min_detectable",
    "min_pvalue",
    "pass_probability",
    "relative_spread",
    "sign_flip_pvalue",
    "sign_flip_pvalues",
    "sign_test_pvalue",
    "t_cdf",
    "t_quantile",
    "t_upper_bound",
]
