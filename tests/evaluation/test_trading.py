"""Positions, turnover, costs and return statistics, checked against hand-worked numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sepflow.errors import ConfigError, DataValidationError
from sepflow.evaluation.trading import (
    annualized_return,
    annualized_volatility,
    backtest,
    equity_curve,
    long_flat_weights,
    long_short_weights,
    max_drawdown,
    sharpe_ratio,
    sortino_ratio,
)

DAYS = pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04"])


def _two_name_panel() -> pd.DataFrame:
    return pd.DataFrame({
        "ticker": ["A"] * 3 + ["B"] * 3,
        "date": list(DAYS) * 2,
        "signal": [0.9, 0.9, 0.1, 0.8, 0.2, 0.7],
        "forward_return": [0.01, 0.02, -0.01, 0.03, 0.00, -0.02],
    })


def test_long_flat_book_hand_worked():
    result = backtest(_two_name_panel(), fee_bps=6, slippage_bps=4)
    book = result.book
    # Day 1: both held at 1/2. Day 2: A only (A +1/2, B -1/2). Day 3: B replaces A (A -1, B +1).
    assert book["gross"].tolist() == pytest.approx([0.02, 0.02, -0.02])
    assert book["turnover"].tolist() == pytest.approx([1.0, 1.0, 2.0])
    assert book["cost"].tolist() == pytest.approx([0.001, 0.001, 0.002])
    assert book["net"].tolist() == pytest.approx([0.019, 0.019, -0.022])
    assert book["trades"].tolist() == [2, 2, 2]
    assert book["n_long"].tolist() == [2, 1, 1] and (book["n_short"] == 0).all()
    summary = result.summary
    net = np.array([0.019, 0.019, -0.022])
    assert summary["sharpe"] == pytest.approx(net.mean() / net.std(ddof=1) * math.sqrt(252))
    assert summary["max_drawdown"] == pytest.approx(-0.022)
    assert summary["avg_turnover"] == pytest.approx(4 / 3)
    assert summary["trade_count"] == 6 and summary["hit_rate"] == pytest.approx(2 / 3)


def test_return_statistics_of_a_known_series():
    r = [0.10, -0.20, 0.05, 0.10]
    # mean 0.0125; squared deviations sum to 0.061875; downside sqrt(0.04 / 4) = 0.1.
    assert sharpe_ratio(r) == pytest.approx(0.0125 / math.sqrt(0.061875 / 3) * math.sqrt(252))
    assert sharpe_ratio(r, periods_per_year=12) == pytest.approx(0.0125 / math.sqrt(0.061875 / 3) * math.sqrt(12))
    assert sortino_ratio(r) == pytest.approx(0.0125 / 0.1 * math.sqrt(252))
    # Equity 1.10, 0.88, 0.924, 1.0164: the fall from 1.10 to 0.88 is -20%.
    assert max_drawdown(r) == pytest.approx(-0.2)
    assert max_drawdown([-0.1, 0.05]) == pytest.approx(-0.1)  # a first-day loss is a drawdown from 1
    assert annualized_return(r) == pytest.approx(1.0164 ** (252 / 4) - 1)
    assert annualized_volatility(r) == pytest.approx(math.sqrt(0.061875 / 3) * math.sqrt(252))
    assert equity_curve(pd.Series(r)).tolist() == pytest.approx([1.1, 0.88, 0.924, 1.0164])
    assert math.isnan(sharpe_ratio([0.01, 0.01])) and math.isnan(sortino_ratio([0.01, 0.02]))


def test_long_short_quantiles_with_names_entering_and_leaving():
    panel = pd.DataFrame({
        "ticker": ["A", "B", "C", "D", "A", "B", "C", "E"],
        "date": [DAYS[0]] * 4 + [DAYS[1]] * 4,
        "signal": [4.0, 3.0, 2.0, 1.0, 1.0, 3.0, 2.0, 4.0],
        "forward_return": [0.04, 0.03, 0.02, 0.01, 0.01, 0.03, 0.02, 0.05],
    })
    result = backtest(panel, scheme="long_short", quantile=0.25)
    weights = long_short_weights(panel, quantile=0.25)
    assert weights.tolist() == [1.0, 0.0, 0.0, -1.0, -1.0, 0.0, 0.0, 1.0]
    # Day 1 opens A long, D short (turnover 2). Day 2: A flips to short (2), D leaves (1), E enters (1).
    assert result.book["turnover"].tolist() == pytest.approx([2.0, 4.0])
    assert result.book["gross"].tolist() == pytest.approx([0.04 - 0.01, 0.05 - 0.01])
    assert result.book["exposure"].tolist() == pytest.approx([2.0, 2.0])
    with pytest.raises(ConfigError):
        long_short_weights(panel, quantile=0.6)


def test_long_short_is_flat_on_a_date_whose_signals_all_tie():
    panel = pd.DataFrame({
        "ticker": ["A", "B", "C", "D"] * 2,
        "date": [DAYS[0]] * 4 + [DAYS[1]] * 4,
        "signal": [0.5] * 4 + [4.0, 3.0, 2.0, 1.0],  # day 1: a constant model ranks nothing
        "forward_return": [0.01, 0.02, 0.03, 0.04] * 2,
    })
    assert long_short_weights(panel, quantile=0.25).tolist() == [0.0] * 4 + [1.0, 0.0, 0.0, -1.0]


def test_long_short_ties_do_not_depend_on_row_order():
    rng = np.random.default_rng(3)
    panel = pd.DataFrame({
        "ticker": [f"T{i:02d}" for i in range(20)] * 2,
        "date": np.repeat(DAYS[:2].to_numpy(), 20),
        "signal": rng.integers(0, 3, 40).astype(float),  # many ties
        "forward_return": rng.normal(0, 0.01, 40),
    })
    weights = long_short_weights(panel, quantile=0.2)
    shuffled = panel.sample(frac=1.0, random_state=0)
    assert long_short_weights(shuffled, quantile=0.2).sort_index().equals(weights)
    assert (weights > 0).sum() == 8 and (weights < 0).sum() == 8


def test_positions_on_a_date_ignore_later_rows():
    rng = np.random.default_rng(4)
    dates = pd.bdate_range("2024-02-01", periods=10)
    panel = pd.DataFrame({
        "ticker": np.tile(list("ABCDE"), 10), "date": np.repeat(dates, 5),
        "signal": rng.random(50), "forward_return": rng.normal(0, 0.01, 50),
    })
    future = panel["date"] > dates[4]
    altered = panel.copy()
    altered.loc[future, "signal"] = rng.random(int(future.sum()))
    for sizing in (long_flat_weights, long_short_weights):
        assert sizing(altered)[~future].equals(sizing(panel)[~future])


def test_costs_scale_with_turnover_and_flat_book_is_free():
    panel = _two_name_panel()
    free = backtest(panel).book
    costly = backtest(panel, fee_bps=20, slippage_bps=5).book
    assert (free["gross"] - costly["net"]).tolist() == pytest.approx((free["turnover"] * 25e-4).tolist())
    flat = backtest(panel.assign(signal=0.0))
    assert (flat.book["net"] == 0).all() and flat.summary["trade_count"] == 0
    assert math.isnan(flat.summary["sharpe"]) and math.isnan(flat.summary["hit_rate"])


def test_unknown_outcome_of_a_held_row_is_an_error():
    panel = _two_name_panel()
    panel.loc[2, "forward_return"] = np.nan  # A on day 3 is not held: fine
    backtest(panel)
    panel.loc[0, "forward_return"] = np.nan  # A on day 1 is held
    with pytest.raises(DataValidationError, match="forward_return"):
        backtest(panel)
    with pytest.raises(DataValidationError, match="duplicate"):
        backtest(pd.concat([_two_name_panel()] * 2))
    with pytest.raises(ConfigError, match="scheme"):
        backtest(_two_name_panel(), scheme="momentum")
