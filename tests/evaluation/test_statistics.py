"""HAC means, Sharpe standard errors, PSR and DSR against hand-worked numbers and simulations."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from sepflow.errors import ConfigError, DataValidationError
from sepflow.evaluation.statistics import (
    EULER_GAMMA,
    MeanEstimate,
    SharpeStats,
    expected_max_sharpe,
    newey_west,
    probabilistic_sharpe_ratio,
    sharpe_ratio_stats,
)


def _newey_west_reference(x: list[float], lags: int) -> float:
    """Slow textbook loop: se^2 = [g_0 + 2 sum_k (1 - k/(L+1)) g_k] / (n - 1), g_k with 1/n."""
    n = len(x)
    mean = sum(x) / n
    total = 0.0
    for k in range(0, min(lags, n - 1) + 1):
        g_k = 0.0
        for t in range(k, n):
            g_k += (x[t] - mean) * (x[t - k] - mean)
        g_k /= n
        total += g_k if k == 0 else 2.0 * (1.0 - k / (lags + 1.0)) * g_k
    return math.sqrt(total / (n - 1))


def test_newey_west_hand_worked_tiny_series():
    # x = 1, 3, 2, 6: mean 3, deviations -2, 0, -1, 3.
    # g0 = 14/4 = 3.5; g1 = (0*-2 + -1*0 + 3*-1)/4 = -0.75; g2 = (-1*-2 + 3*0)/4 = 0.5.
    x = [1.0, 3.0, 2.0, 6.0]
    zero = newey_west(x, 0)
    assert zero == MeanEstimate(mean=3.0, se=pytest.approx(math.sqrt(3.5 / 3)), tstat=pytest.approx(3 / math.sqrt(3.5 / 3)), n=4)
    # lags=1: S = 3.5 + 2 * (1/2) * -0.75 = 2.75.
    one = newey_west(x, 1)
    assert one.se == pytest.approx(math.sqrt(2.75 / 3)) and one.tstat == pytest.approx(3 / math.sqrt(2.75 / 3))
    # lags=2: S = 3.5 + 2 * (2/3) * -0.75 + 2 * (1/3) * 0.5 = 17/6.
    two = newey_west(x, 2)
    assert two.se == pytest.approx(math.sqrt(17 / 6 / 3))
    # Lags past n - 1 have no pairs; the weights still use the lags asked for (1 - k/11 here).
    wide = 3.5 + 2 * (10 / 11) * -0.75 + 2 * (9 / 11) * 0.5 + 2 * (8 / 11) * (3 * -2) / 4
    assert newey_west(x, 10).se == pytest.approx(math.sqrt(wide / 3))


@pytest.mark.parametrize("lags", [0, 1, 4, 9, 60])
def test_newey_west_matches_reference_loop(lags):
    rng = np.random.default_rng(lags)
    x = np.cumsum(rng.normal(0.1, 1.0, 50)) * 0.1 + rng.normal(size=50)  # persistent, non-zero mean
    got = newey_west(x, lags)
    expected_se = _newey_west_reference(x.tolist(), lags)
    assert got.n == 50 and got.mean == pytest.approx(x.mean())
    assert got.se == pytest.approx(expected_se, rel=1e-12)
    assert got.tstat == pytest.approx(x.mean() / expected_se, rel=1e-12)


def test_newey_west_without_lags_is_the_one_sample_t_test_and_drops_nans():
    rng = np.random.default_rng(7)
    x = rng.normal(0.2, 1.0, 40)
    got = newey_west(x, 0)
    assert got.tstat == pytest.approx(stats.ttest_1samp(x, 0.0).statistic, rel=1e-12)
    assert got.se == pytest.approx(x.std(ddof=1) / math.sqrt(40), rel=1e-12)
    with_gaps = np.insert(x, [0, 10, 40], np.nan)
    assert newey_west(with_gaps, 3) == newey_west(x, 3)


def test_newey_west_t_stat_of_overlapping_sums_has_honest_spread():
    # Null series of h-day overlapping sums of iid noise (a daily IC of h-day returns looks like
    # this): true long-run variance h^2, iid variance h, so the naive t is sqrt(h) too wide.
    rng = np.random.default_rng(11)
    h, n, reps = 5, 500, 1000
    steps = np.cumsum(np.pad(rng.standard_normal((reps, n + h - 1)), ((0, 0), (1, 0))), axis=1)
    series = steps[:, h:] - steps[:, :-h]
    spread = {lags: np.std([newey_west(row, lags).tstat for row in series]) for lags in (0, h - 1, 3 * h)}
    assert spread[0] > 1.9  # naive: ~sqrt(5) = 2.24
    # Bartlett at h - 1 lags keeps 17 of the 25 units of long-run variance: ~sqrt(25/17) = 1.21.
    assert 1.1 < spread[h - 1] < 1.35
    # More lags close most of the gap (~1.1 here; the rest is the noise of a 500-day HAC se).
    assert 0.95 < spread[3 * h] < 1.16 and spread[3 * h] < spread[h - 1] - 0.08


def test_newey_west_degenerate_inputs_are_nan_not_errors():
    for values in ([], [np.nan, np.nan], [1.0, 2.0], [0.1] * 10, [np.nan, 0.3, 0.3, 0.3]):
        got = newey_west(values, 2)
        assert math.isnan(got.se) and math.isnan(got.tstat)
    assert math.isnan(newey_west([], 0).mean) and newey_west([], 0).n == 0
    assert newey_west([0.1] * 10, 2).mean == pytest.approx(0.1) and newey_west([0.1] * 10, 2).n == 10
    with pytest.raises(ConfigError, match="lags"):
        newey_west([1.0, 2.0, 3.0], -1)
    with pytest.raises(DataValidationError, match="1-D"):
        newey_west(np.ones((3, 2)), 1)


def test_sharpe_se_of_normal_returns_is_the_lo_formula():
    rng = np.random.default_rng(5)
    r = rng.normal(0.0005, 0.01, 20_000)
    got = sharpe_ratio_stats(r, periods_per_year=252)
    sr = r.mean() / r.std(ddof=1)
    assert got.sharpe == pytest.approx(sr * math.sqrt(252), rel=1e-12)
    assert got.sharpe_se == pytest.approx(math.sqrt((1 + sr**2 / 2) / (20_000 - 1)) * math.sqrt(252), rel=2e-3)
    assert got.skew == pytest.approx(stats.skew(r), rel=1e-9)
    assert got.kurtosis == pytest.approx(stats.kurtosis(r, fisher=False), rel=1e-9)
    assert got.n_periods == 20_000 and got.n_trials == 1


def test_sharpe_se_tracks_the_monte_carlo_spread_for_skewed_returns():
    # Exponential noise: skew 2, kurtosis 9; at SR 0.2 the variance factor is 0.68, not 1.02.
    rng = np.random.default_rng(6)
    n, reps = 250, 3000
    samples = rng.exponential(1.0, (reps, n)) - 0.8
    estimates = samples.mean(axis=1) / samples.std(axis=1, ddof=1)
    predicted = np.mean([sharpe_ratio_stats(row, periods_per_year=1).sharpe_se for row in samples[:300]])
    assert predicted == pytest.approx(estimates.std(), rel=0.08)
    assert predicted == pytest.approx(math.sqrt(0.68 / (n - 1)), rel=0.08)
    assert math.sqrt((1 + 0.2**2 / 2) / (n - 1)) > 1.15 * estimates.std()  # the normal formula overstates


def test_probabilistic_sharpe_ratio_hand_worked():
    # SR 0.1 per period, n 101, skew -0.5, kurt 4: factor 1 + 0.05 + 0.75 * 0.01 = 1.0575.
    expected = stats.norm.cdf(0.1 * 10 / math.sqrt(1.0575))
    assert expected == pytest.approx(0.8346, abs=1e-4)  # z = 0.9724
    assert probabilistic_sharpe_ratio(0.1, 101, skew=-0.5, kurtosis=4.0) == pytest.approx(expected, rel=1e-12)
    annual = probabilistic_sharpe_ratio(0.1 * math.sqrt(252), 101, skew=-0.5, kurtosis=4.0, periods_per_year=252)
    assert annual == pytest.approx(expected, rel=1e-12)
    # Against a benchmark of 0.05: factor unchanged (it uses the estimate), distance halves.
    assert probabilistic_sharpe_ratio(0.1, 101, skew=-0.5, kurtosis=4.0, benchmark=0.05) == pytest.approx(
        stats.norm.cdf(0.05 * 10 / math.sqrt(1.0575)), rel=1e-12)
    assert probabilistic_sharpe_ratio(0.0, 50) == pytest.approx(0.5)
    assert math.isnan(probabilistic_sharpe_ratio(0.1, 2))


def test_sharpe_stats_psr_uses_the_sample_moments():
    r = np.array([0.01, 0.02, -0.01, 0.03, 0.0, -0.02, 0.015])
    got = sharpe_ratio_stats(r, periods_per_year=252)
    dev = r - r.mean()
    m2, m3, m4 = (np.mean(dev**p) for p in (2, 3, 4))
    skew, kurt = m3 / m2**1.5, m4 / m2**2
    sr = r.mean() / r.std(ddof=1)
    factor = 1 - skew * sr + (kurt - 1) / 4 * sr**2
    assert got.psr == pytest.approx(stats.norm.cdf(sr * math.sqrt(6) / math.sqrt(factor)), rel=1e-12)
    assert got.sharpe_se == pytest.approx(math.sqrt(factor / 6) * math.sqrt(252), rel=1e-12)
    assert got.dsr == got.psr and got.dsr_benchmark == 0.0


def test_deflated_sharpe_falls_with_more_trials():
    rng = np.random.default_rng(8)
    r = rng.normal(0.001, 0.01, 500)
    psr = sharpe_ratio_stats(r, periods_per_year=252).psr
    dsrs = [sharpe_ratio_stats(r, periods_per_year=252, n_trials=k).dsr for k in (1, 2, 5, 20, 100, 1000)]
    assert dsrs[0] == psr
    assert all(later < earlier for earlier, later in zip(dsrs, dsrs[1:]))
    # The benchmark is E[max] of n_trials null Sharpe estimates, by default with variance 1/(n-1).
    ten = sharpe_ratio_stats(r, periods_per_year=252, n_trials=10)
    assert ten.dsr_benchmark == pytest.approx(expected_max_sharpe(10, 1 / 499) * math.sqrt(252))
    assert ten.dsr == pytest.approx(probabilistic_sharpe_ratio(
        ten.sharpe, 500, skew=ten.skew, kurtosis=ten.kurtosis, benchmark=ten.dsr_benchmark, periods_per_year=252))
    # A caller-supplied cross-trial variance replaces it; a wider spread of trials deflates more.
    wide = sharpe_ratio_stats(r, periods_per_year=252, n_trials=10, trial_sharpe_variance=4 / 499)
    assert wide.dsr_benchmark == pytest.approx(2 * ten.dsr_benchmark) and wide.dsr < ten.dsr
    assert wide.sharpe == ten.sharpe and wide.psr == ten.psr


def test_expected_max_sharpe_formula_and_monte_carlo():
    # The formula itself at N = 10, V = 1.
    q1, q2 = stats.norm.ppf(0.9), stats.norm.ppf(1 - 1 / (10 * math.e))
    assert expected_max_sharpe(10, 1.0) == pytest.approx((1 - EULER_GAMMA) * q1 + EULER_GAMMA * q2)
    assert EULER_GAMMA == pytest.approx(0.5772156649)
    assert expected_max_sharpe(1, 0.3) == 0.0 and expected_max_sharpe(50, 0.0) == 0.0
    rng = np.random.default_rng(9)
    variance = 0.0025
    # The Gumbel approximation is ~2.3% high at N = 10 and under 1% from N = 100; the
    # Monte-Carlo mean's own error is ~0.5% here.
    for n_trials, tolerance in ((10, 0.045), (100, 0.025), (1000, 0.02)):
        draws = rng.standard_normal((5_000, n_trials)).max(axis=1) * math.sqrt(variance)
        assert expected_max_sharpe(n_trials, variance) == pytest.approx(draws.mean(), rel=tolerance)
    with pytest.raises(ConfigError, match="n_trials"):
        expected_max_sharpe(0, 1.0)
    with pytest.raises(ConfigError, match="variance"):
        expected_max_sharpe(5, -1.0)


def test_sharpe_stats_degenerate_inputs_are_nan_not_errors():
    for values in ([], [np.nan] * 5, [0.01, 0.02], [0.01] * 30, [np.nan, 0.01, 0.01, 0.01]):
        got = sharpe_ratio_stats(values, periods_per_year=252, n_trials=5)
        numbers = [got.sharpe, got.sharpe_se, got.psr, got.dsr, got.dsr_benchmark, got.skew, got.kurtosis]
        assert all(math.isnan(v) for v in numbers), values
        assert got.n_trials == 5
    assert sharpe_ratio_stats([np.nan, 0.01, 0.01, 0.01], periods_per_year=252).n_periods == 3
    # NaNs are dropped, not zero-filled.
    r = [0.01, -0.02, 0.03, 0.0, 0.015]
    assert sharpe_ratio_stats([np.nan, *r, np.nan], periods_per_year=12) == sharpe_ratio_stats(r, periods_per_year=12)
    with pytest.raises(ConfigError, match="n_trials"):
        sharpe_ratio_stats(r, periods_per_year=252, n_trials=0)
    with pytest.raises(ConfigError, match="periods_per_year"):
        sharpe_ratio_stats(r, periods_per_year=0)


def test_results_are_frozen():
    got = sharpe_ratio_stats([0.01, -0.02, 0.03, 0.0], periods_per_year=252)
    assert isinstance(got, SharpeStats)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.sharpe = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        newey_west([1.0, 2.0, 4.0], 1).se = 0.0  # type: ignore[misc]
