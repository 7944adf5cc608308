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
    staggered_book,
)
from sepflow.evaluation.statistics import sharpe_ratio_stats

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


# --- staggered_book: h overlapping sub-books, each rebalanced every h days -------------------

BOOK_COLUMNS = ["gross", "net", "turnover", "gross_exposure", "n_names"]


def _frames(rows: list[tuple[str, int, float, float]], days: pd.DatetimeIndex) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ticker, day number, signal, return) rows → signals and daily_returns frames."""
    frame = pd.DataFrame(rows, columns=["ticker", "day", "signal", "return"]).assign(date=lambda f: days[f["day"]])
    return frame[["ticker", "date", "signal"]], frame[["ticker", "date", "return"]]


def _random_panel(n_days: int, n_names: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2024-03-01", periods=n_days)
    panel = pd.DataFrame({
        "ticker": np.tile([f"T{i:02d}" for i in range(n_names)], n_days),
        "date": np.repeat(dates, n_names),
        "signal": rng.random(n_days * n_names),
        "forward_return": rng.normal(0.0, 0.02, n_days * n_names),
    })
    # Gaps (a name missing for a day), but every name present on the last date.
    gap = (rng.random(len(panel)) < 0.1) & (panel["date"] < dates[-1])
    return panel[~gap].reset_index(drop=True)


@pytest.mark.parametrize("scheme", ["long_flat", "long_short"])
def test_staggered_book_with_one_day_horizon_is_the_daily_backtest(scheme):
    panel = _random_panel(30, 15, seed=10)
    expected = backtest(panel, scheme=scheme, quantile=0.2, fee_bps=7, slippage_bps=3).book
    got = staggered_book(
        panel[["ticker", "date", "signal"]], panel.rename(columns={"forward_return": "return"}),
        horizon=1, execution_lag=0, scheme=scheme, quantile=0.2, fee_bps=7, slippage_bps=3,
    )
    assert list(got.columns) == BOOK_COLUMNS and got.index.name == "date"
    assert got.index.equals(expected.index)
    for ours, theirs in (("gross", "gross"), ("net", "net"), ("turnover", "turnover"), ("gross_exposure", "exposure")):
        np.testing.assert_allclose(got[ours].to_numpy(), expected[theirs].to_numpy(), rtol=1e-12, atol=1e-15)
    assert got["n_names"].tolist() == (expected["n_long"] + expected["n_short"]).tolist()


def test_staggered_book_constant_spread_only_ramp_up_depends_on_horizon():
    days = pd.bdate_range("2024-01-02", periods=8)
    # A always ranks first, B last; A earns +1% and B -1% every day: a 2% spread per full book.
    signals, returns = _frames([(t, d, s, r) for d in range(8) for t, s, r in (("A", 1.0, 0.01), ("B", 0.0, -0.01))], days)
    books = {h: staggered_book(signals, returns, horizon=h, execution_lag=0, quantile=0.5) for h in (1, 3, 5)}
    assert books[1]["gross"].tolist() == pytest.approx([0.02] * 8)
    assert books[3]["gross"].tolist() == pytest.approx([0.02 / 3, 0.04 / 3] + [0.02] * 6)
    assert books[5]["gross"].tolist() == pytest.approx([0.004, 0.008, 0.012, 0.016] + [0.02] * 4)
    assert books[3]["gross_exposure"].tolist() == pytest.approx([2 / 3, 4 / 3] + [2.0] * 6)
    # The entry lag shifts the book by a day and drops the last signal (its entry is off the calendar).
    lagged = staggered_book(signals, returns, horizon=3, execution_lag=1, quantile=0.5)
    assert lagged.index.equals(days[1:]) and lagged["gross"].tolist() == pytest.approx([0.02 / 3, 0.04 / 3] + [0.02] * 5)


def test_staggered_book_hand_worked_book_and_its_sharpe():
    days = pd.bdate_range("2024-01-02", periods=6)
    # Long/flat signals (A, B) by day: (1,0) (1,1) (0,1) (0,0) (1,0) (1,1); returns by day below.
    signal = [(1, 0), (1, 1), (0, 1), (0, 0), (1, 0), (1, 1)]
    ret = [(0.05, 0.05), (0.02, -0.01), (-0.01, 0.03), (0.04, 0.00), (0.01, -0.02), (-0.03, 0.02)]
    rows = [(t, d, float(signal[d][i]), ret[d][i]) for d in range(6) for i, t in enumerate("AB")]
    signals, returns = _frames(rows, days)
    book = staggered_book(signals, returns, horizon=2, execution_lag=1, scheme="long_flat", fee_bps=6, slippage_bps=4)
    # Day k+1 and k+2 hold half of day k's weights: W(d1) = (.5, 0), W(d2) = (.75, .25),
    # W(d3) = (.25, .75), W(d4) = (0, .5), W(d5) = (.5, 0); day 5's signal would enter on day 6.
    assert book.index.equals(days[1:])
    assert book["gross"].tolist() == pytest.approx([0.01, 0.0, 0.01, -0.01, -0.015])
    assert book["turnover"].tolist() == pytest.approx([0.5, 0.5, 1.0, 0.5, 1.0])
    assert book["gross_exposure"].tolist() == pytest.approx([0.5, 1.0, 1.0, 0.5, 0.5])
    assert book["n_names"].tolist() == [1, 2, 2, 1, 1]
    net = [0.0095, -0.0005, 0.009, -0.0105, -0.016]
    assert book["net"].tolist() == pytest.approx(net)
    mean = sum(net) / 5
    std = math.sqrt(sum((x - mean) ** 2 for x in net) / 4)
    assert sharpe_ratio_stats(book["net"], periods_per_year=252).sharpe == pytest.approx(mean / std * math.sqrt(252))


def test_staggered_book_execution_lag_shifts_entry():
    days = pd.bdate_range("2024-01-02", periods=5)
    moves = {2: (0.05, -0.05)}  # only day 2 moves: A +5%, B -5%

    def frames(sees_day: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        # A signal on day d that knows the return of day d + sees_day; other days all tie (flat).
        rows = [(t, d, moves.get(d + sees_day, (0.0, 0.0))[i], moves.get(d, (0.0, 0.0))[i])
                for d in range(5) for i, t in enumerate("AB")]
        return _frames(rows, days)

    same_day = frames(0)
    assert staggered_book(*same_day, horizon=1, execution_lag=0, quantile=0.5)["gross"].sum() == pytest.approx(0.10)
    assert staggered_book(*same_day, horizon=1, execution_lag=1, quantile=0.5)["gross"].abs().sum() == 0.0
    assert staggered_book(*same_day, horizon=3, execution_lag=1, quantile=0.5)["gross"].abs().sum() == 0.0
    next_day = staggered_book(*frames(1), horizon=1, execution_lag=1, quantile=0.5)
    assert next_day["gross"].sum() == pytest.approx(0.10) and next_day.loc[days[2], "gross"] == pytest.approx(0.10)


def test_staggered_book_delisted_name_sits_in_cash():
    days = pd.bdate_range("2024-01-02", periods=6)
    rows = [(t, d, 1.0 if d == 0 else 0.0, 0.01) for d in range(6) for t in "AB"]
    # C earns 2% on days 0 and 1, then its delisting return of -50% on day 2, then has no rows.
    rows += [("C", 0, 1.0, 0.02), ("C", 1, 0.0, 0.02), ("C", 2, 0.0, -0.5)]
    signals, returns = _frames(rows, days)
    book = staggered_book(signals, returns, horizon=4, execution_lag=0, scheme="long_flat", fee_bps=10)
    # Day 0's sub-book holds a quarter of the capital, 1/12 in each of A, B, C, on days 0-3;
    # the later (flat) sub-books keep the book running, in cash, to the last day.
    assert book.index.equals(days)
    assert book["gross"].tolist() == pytest.approx([0.04 / 12, 0.04 / 12, (0.02 - 0.5) / 12, 0.02 / 12, 0.0, 0.0])
    assert book["gross_exposure"].tolist() == pytest.approx([0.25, 0.25, 0.25, 2 / 12, 0.0, 0.0])
    assert book["n_names"].tolist() == [3, 3, 3, 2, 0, 0]
    # C's delisting is no trade; A and B are sold when the sub-book expires on day 4.
    assert book["turnover"].tolist() == pytest.approx([0.25, 0.0, 0.0, 0.0, 2 / 12, 0.0])
    assert not book.isna().any().any()


@pytest.mark.parametrize(("horizon", "lag"), [(1, 0), (3, 0), (3, 1), (5, 2)])
def test_staggered_book_has_no_lookahead(horizon, lag):
    panel = _random_panel(40, 12, seed=20 + horizon + lag)
    signals = panel[["ticker", "date", "signal"]]
    returns = panel.rename(columns={"forward_return": "return"})[["ticker", "date", "return"]]
    dates = np.sort(panel["date"].unique())
    cut = dates[20]
    later = returns["date"] > cut
    rng = np.random.default_rng(0)
    scrambled = returns.copy()
    scrambled.loc[later, "return"] = rng.permutation(scrambled.loc[later, "return"].to_numpy()) * 3.0
    rescored = signals.copy()
    rescored.loc[signals["date"] > cut, "signal"] = rng.random(int((signals["date"] > cut).sum()))
    kwargs = {"horizon": horizon, "execution_lag": lag, "scheme": "long_short", "fee_bps": 5}
    base = staggered_book(signals, returns, **kwargs)
    future_returns = staggered_book(signals, scrambled, **kwargs)
    future_both = staggered_book(rescored, scrambled, **kwargs)
    pd.testing.assert_frame_equal(future_returns.loc[:cut], base.loc[:cut])
    pd.testing.assert_frame_equal(future_both.loc[:cut], base.loc[:cut])
    assert not future_returns.loc[cut:].iloc[1:]["gross"].equals(base.loc[cut:].iloc[1:]["gross"])


def test_staggered_book_constant_signal_pays_turnover_only_while_ramping_up():
    days = pd.bdate_range("2024-01-02", periods=15)
    rows = [(t, d, float(i), 0.001 * i) for d in range(15) for i, t in enumerate("ABCDE")]
    signals, returns = _frames(rows, days)
    book = staggered_book(signals, returns, horizon=4, execution_lag=1, quantile=0.2, fee_bps=10)
    # Each of the 4 sub-books opens E long, A short with a quarter of the capital: 2/4 per day.
    assert book["turnover"].tolist() == pytest.approx([0.5] * 4 + [0.0] * 10)
    assert (book["turnover"].iloc[4:] == 0).all()  # exactly: an unchanged book does not trade
    assert book["turnover"].sum() == pytest.approx(2.0)  # one full long-short book opened once
    assert book["gross_exposure"].tolist() == pytest.approx([0.5, 1.0, 1.5] + [2.0] * 11)
    assert book["net"].tolist() == pytest.approx((book["gross"] - book["turnover"] * 1e-3).tolist())


def test_staggered_book_edges_and_errors():
    days = pd.bdate_range("2024-01-02", periods=4)
    signals, returns = _frames([(t, d, float(i), 0.01) for d in range(4) for i, t in enumerate("AB")], days)
    # A signal date after the calendar is not held; NaN returns do not make calendar days.
    late = pd.DataFrame({"ticker": ["A", "B"], "date": [days[-1] + pd.offsets.BDay()] * 2, "signal": [1.0, 0.0]})
    tail = returns.assign(date=late["date"].iloc[0], **{"return": np.nan}).iloc[:2]
    base = staggered_book(signals, returns, horizon=2, quantile=0.5)
    pd.testing.assert_frame_equal(staggered_book(pd.concat([signals, late]), pd.concat([returns, tail]),
                                                 horizon=2, quantile=0.5), base)
    empty = staggered_book(signals[signals["date"] == days[-1]], returns, horizon=2, execution_lag=1, quantile=0.5)
    assert empty.empty and list(empty.columns) == BOOK_COLUMNS and empty.index.name == "date"
    assert staggered_book(signals, returns.iloc[:0], horizon=2).empty
    with pytest.raises(DataValidationError, match="no date"):
        staggered_book(signals.assign(date=signals["date"] + pd.Timedelta(hours=1)), returns, horizon=2)
    with pytest.raises(DataValidationError, match="duplicate"):
        staggered_book(pd.concat([signals, signals]), returns, horizon=2)
    with pytest.raises(ConfigError, match="horizon"):
        staggered_book(signals, returns, horizon=0)
    with pytest.raises(ConfigError, match="execution_lag"):
        staggered_book(signals, returns, horizon=2, execution_lag=-1)
    with pytest.raises(ConfigError, match="scheme"):
        staggered_book(signals, returns, horizon=2, scheme="momentum")  # type: ignore[arg-type]
