"""Every verdict's error rate at the n people use, by seeded simulation (harness/stats/simulate.py),
and the statistics it rests on checked against SciPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from harness.stats import (
    binomial_upper_bound,
    cases_for_fraction,
    cases_needed,
    holm,
    median_interval,
    min_detectable,
    min_pvalue,
    relative_spread,
    sign_flip_pvalue,
    sign_flip_pvalues,
    sign_test_pvalue,
    t_cdf,
    t_quantile,
    t_upper_bound,
)
from harness.stats.simulate import (
    NOISES,
    NS,
    TRIALS,
    false_decision_rate,
    family_error_rate,
    gate_pass_rate,
    mc_margin,
    normal,
    power,
    tables,
)

ALPHA = 0.05
LIMIT = ALPHA + mc_margin(ALPHA, TRIALS)  # 5 % plus three Monte Carlo standard errors


@pytest.mark.parametrize("noise", list(NOISES))
def test_decoders_that_do_not_differ_are_separated_at_most_5_percent_of_the_time(noise: str) -> None:
    for n in NS:
        assert false_decision_rate(n, TRIALS, NOISES[noise]) <= LIMIT, n


@pytest.mark.e2e
def test_a_family_of_pairs_is_held_to_5_percent_by_holm() -> None:
    """4 decoders make 6 comparisons per criterion: without Holm ~20 % of leaderboards would mark a
    difference between equal decoders; with it, at most 5 %."""
    for n in NS:
        assert family_error_rate(n, 4) <= LIMIT, n


def test_nothing_is_decided_below_the_n_a_decision_needs() -> None:
    """At n = 2..5 no sign pattern is rare enough: 'too few cases', never a coin flip."""
    for n in (1, 2, 3, 4, 5):
        assert min_pvalue(n) > ALPHA and false_decision_rate(n) == 0.0 and power(n, 2.0) == 0.0
    assert [cases_needed(m) for m in (1, 3, 6, 10)] == [6, 7, 8, 9]


def test_a_mean_delta_gate_passes_a_worsening_equal_to_its_tolerance_at_most_5_percent() -> None:
    for n in NS:
        assert gate_pass_rate(n, 1.0, TRIALS, normal) <= LIMIT, n
    # and an unchanged decoder passes more often the more cases there are (its power)
    rates = [gate_pass_rate(n, 0.0) for n in NS]
    assert rates == sorted(rates) and rates[-1] > 0.99


@pytest.mark.e2e
def test_power_grows_with_n_and_effect_and_the_tables_print(capsys) -> None:
    assert power(8, 1.0) < power(13, 1.0) < power(30, 1.0)
    assert power(13, 0.5) < power(13, 1.0) < power(13, 2.0)
    print(tables(trials=200))  # the docs' tables (docs/statistics.md holds the 2,000-trial run)
    assert "| D = 4 |" in capsys.readouterr().out


def test_sign_flip_p_values_are_exact() -> None:
    assert sign_flip_pvalue([1.0, 2.0]) == 0.5  # 2 of 4 patterns are as extreme
    assert sign_flip_pvalue([1.0] * 6) == pytest.approx(2 / 64)
    assert sign_flip_pvalue([0.0] * 5) == 1.0  # no difference at all
    # the enumeration against a brute force over the 2^n patterns
    rng = np.random.default_rng(3)
    diffs = rng.normal(size=7)
    patterns = np.array(np.meshgrid(*[[-1, 1]] * 7)).reshape(7, -1).T
    expected = np.mean(np.abs(patterns @ diffs) >= abs(diffs.sum()) - 1e-12)
    assert sign_flip_pvalue(diffs) == pytest.approx(expected)
    # above 16 cases a fixed Monte Carlo sample stands in, valid and close to the normal limit
    big = sign_flip_pvalues(rng.normal(0.5, 1, size=(40, 3)))
    assert np.all((big > 0) & (big <= 1))


def test_holm_and_the_sign_test() -> None:
    assert holm([0.01, 0.04, 0.03]) == [True, False, False]
    assert holm([0.001, 0.02, 0.04]) == [True, True, True]
    assert holm([]) == []
    assert sign_test_pvalue(9, 1) == pytest.approx(scipy_stats.binomtest(9, 10).pvalue)
    assert sign_test_pvalue(0, 0) == 1.0


def test_distributions_match_scipy() -> None:
    for df in (1, 2, 5, 12, 29, 300):
        for q in (0.6, 0.8, 0.95, 0.995):
            assert t_quantile(q, df) == pytest.approx(scipy_stats.t.ppf(q, df), rel=1e-9)
        assert t_cdf(1.7, df) == pytest.approx(scipy_stats.t.cdf(1.7, df), rel=1e-9)
    for k, n in ((0, 13), (1, 13), (5, 20), (0, 149)):
        assert binomial_upper_bound(k, n, 0.95) == pytest.approx(scipy_stats.beta.ppf(0.95, k + 1, n - k))
    assert cases_for_fraction(0.02, 0.95) == 149


def test_bounds_and_detectable_worsening() -> None:
    values = [0.01, 0.02, 0.015, 0.012, 0.018]
    expected = np.mean(values) + scipy_stats.t.ppf(0.95, 4) * np.std(values, ddof=1) / math.sqrt(5)
    assert t_upper_bound(values, 0.95) == pytest.approx(expected)
    assert t_upper_bound([0.0, 0.0, 0.0], 0.95) == 0.0  # an unchanged deterministic decoder
    assert math.isinf(t_upper_bound([0.1], 0.95))
    assert min_detectable(1.0, 13) == pytest.approx(
        (scipy_stats.t.ppf(0.95, 12) + scipy_stats.t.ppf(0.8, 12)) / math.sqrt(13))


def test_timing_spread_and_the_median_interval() -> None:
    assert relative_spread([10.0, 10.0, 10.0, 10.0]) == 0.0
    assert relative_spread([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(2.0 / 3.0)
    assert median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) is None  # 5 samples cannot cover 95 %
    low, high = median_interval(list(range(1, 101)))
    assert (low, high) == (40.0, 61.0)  # the binomial order statistics
