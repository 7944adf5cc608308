"""Predictions → daily positions → gross and net portfolio returns, and their summary statistics.

Conventions (they decide what a number means, so they live here once):

- **Returns.** Each panel row (ticker, date t) carries the realised *forward* return earned by
  holding the name from t to t+1; the caller computes it (e.g. ``close[t+1] / close[t] - 1``).
  Weights on date t depend only on the signals of date t, so sizing uses no later information
  as long as the signal itself is built from data at or before t.
- **Horizon.** Positions are rebalanced every panel date. For a model with an h-day label,
  still pass the 1-day forward return: passing h-day returns while rebalancing daily would
  count each day's move h times. (Alternatively keep every h-th date, pass h-day returns and
  set ``periods_per_year=252 / h``.)
- **Weights.** Target weights on each date; drift between rebalances is ignored. Long/flat
  holds the names whose signal exceeds a threshold at ``1 / n_held`` each (gross exposure 1,
  or 0 when nothing qualifies). Long-short holds the top ``quantile`` at ``+1 / n_long`` and
  the bottom ``quantile`` at ``-1 / n_short``: dollar neutral, gross exposure 2, so its return
  is the top-minus-bottom spread.
- **Turnover and costs.** ``turnover_t = sum_i |w_i,t - w_i,t-1|`` over the union of names
  held on either date (a name entering or leaving trades its full weight); the first date
  pays to open the book, closing it after the last date is not charged.
  ``cost_t = turnover_t * (fee_bps + slippage_bps) / 1e4`` and ``net_t = gross_t - cost_t``.
- **Staggered books** (``staggered_book``, for a model with an h-day label). The weights of
  every signal date s are held by their own sub-book with ``1 / h`` of the capital, from the
  close of the calendar date ``execution_lag`` trading dates after s for h trading dates
  (Jegadeesh & Titman 1993 overlapping portfolios), so each day's combined book holds up to h
  sub-books and its *daily* returns, Sharpe annualised with 252, use every test date once.
  There the return rows are per-day ``daily_returns`` (date to next trading date) rather than
  a panel column, the calendar is their dates, and turnover is that of the combined weights
  (trades between sub-books net out). A name's weight after its last return row (delisting)
  is cash: it earns 0, is not exposure, and is not charged when its sub-book expires.
- **Statistics.** Risk-free rate 0; ``periods_per_year`` (default 252) annualises; drawdown
  is measured on compounded equity starting at 1 and reported as a negative fraction.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from sepflow.errors import ConfigError, DataValidationError

__all__ = [
    "BacktestResult",
    "annualized_return",
    "annualized_volatility",
    "backtest",
    "equity_curve",
    "long_flat_weights",
    "long_short_weights",
    "max_drawdown",
    "performance_summary",
    "portfolio_returns",
    "sharpe_ratio",
    "sortino_ratio",
    "staggered_book",
]

TRADING_DAYS = 252


def _require_columns(frame: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataValidationError(f"trading: frame lacks columns {missing}; it has {list(frame.columns)}")


def long_flat_weights(frame: pd.DataFrame, *, signal_col: str = "signal", threshold: float = 0.5) -> pd.Series:
    """Weight per row: ``1 / n_held`` on its date where ``signal > threshold``, else 0.

    The signal may be a predicted class (1 is long with the default threshold 0.5) or the
    probability of the up class. Missing signals are flat.
    """
    _require_columns(frame, ["date", signal_col])
    held = (frame[signal_col] > threshold).astype(float)
    n_held = held.groupby(frame["date"]).transform("sum")
    return (held / n_held.where(n_held > 0, 1.0)).rename("weight")


def long_short_weights(frame: pd.DataFrame, *, signal_col: str = "signal", quantile: float = 0.2) -> pd.Series:
    """Weight per row: ``+1/k`` for the top k signals of its date, ``-1/k`` for the bottom k.

    ``k = floor(quantile * n)`` with n the names with a signal that date; dates with k = 0, or
    whose signals are all equal, are flat. Ties are broken by ticker so the result does not depend on row order.
    """
    if not 0 < quantile <= 0.5:
        raise ConfigError(f"trading: quantile must be in (0, 0.5], got {quantile}")
    _require_columns(frame, ["date", "ticker", signal_col])
    # Positional work (RangeIndex) so a frame with repeated index labels is handled too.
    rows = frame[["date", signal_col, "ticker"]].reset_index(drop=True)
    ordered = rows[rows[signal_col].notna()].sort_values(["date", signal_col, "ticker"], kind="mergesort")
    by_date = ordered.groupby("date", sort=False)
    ascending = by_date.cumcount().to_numpy()
    n = by_date[signal_col].transform("size").to_numpy()
    spread = (by_date[signal_col].transform("max") - by_date[signal_col].transform("min")).to_numpy()
    # A date whose signals are all equal ranks nothing: the tie-break alone would pick the book.
    k = np.where(spread > 0, np.floor(quantile * n), 0).astype(int)
    side = np.where((k > 0) & (ascending >= n - k), 1.0, 0.0) - np.where((k > 0) & (ascending < k), 1.0, 0.0)
    weight = np.zeros(len(frame))
    weight[ordered.index.to_numpy()] = side / np.maximum(k, 1)
    return pd.Series(weight, index=frame.index, name="weight")


def portfolio_returns(
    frame: pd.DataFrame, weights: Any, *, return_col: str = "forward_return",
    fee_bps: float = 0.0, slippage_bps: float = 0.0,
) -> pd.DataFrame:
    """Daily book: gross, turnover, cost, net, exposure, n_long, n_short, trades (index: every panel date).

    ``weights`` holds one weight per row of ``frame``, in the same order (as the ``*_weights``
    functions return them; missing weights are flat). A held row without a forward return is an
    error: its outcome is unknown.
    """
    _require_columns(frame, ["date", "ticker", return_col])
    if fee_bps < 0 or slippage_bps < 0:
        raise ConfigError(f"trading: fee_bps and slippage_bps must be >= 0, got {fee_bps}, {slippage_bps}")
    weight = np.nan_to_num(np.asarray(weights, dtype=float))
    if len(weight) != len(frame):
        raise DataValidationError(f"trading: {len(weight)} weights for {len(frame)} rows")
    if frame.duplicated(["ticker", "date"]).any():
        raise DataValidationError("trading: frame has duplicate (ticker, date) rows")
    is_held = weight != 0
    held = frame.loc[is_held, ["date", "ticker", return_col]].reset_index(drop=True).assign(weight=weight[is_held])
    unknown = held[return_col].isna()
    if unknown.any():
        examples = held.loc[unknown, ["ticker", "date"]].head(3).to_dict("records")
        raise DataValidationError(
            f"trading: {int(unknown.sum())} held rows have no {return_col!r} (e.g. {examples})"
        )
    dates = pd.Index(np.unique(frame["date"]), name="date")

    # Last date's weights enter the next date with a minus sign, so grouped sums are w_t - w_{t-1}.
    following = pd.Series(dates[1:].append(pd.Index([pd.NaT])), index=dates)
    previous = held.assign(date=following.reindex(held["date"]).to_numpy(), weight=-held["weight"])
    change = (
        pd.concat([held[["date", "ticker", "weight"]], previous[["date", "ticker", "weight"]].dropna()])
        .groupby(["date", "ticker"])["weight"].sum()
    )
    held_date = held["date"]
    book = pd.DataFrame({
        "gross": (held["weight"] * held[return_col]).groupby(held_date).sum(),
        "turnover": change.abs().groupby(level="date").sum(),
        "exposure": held["weight"].abs().groupby(held_date).sum(),
        "n_long": (held["weight"] > 0).groupby(held_date).sum(),
        "n_short": (held["weight"] < 0).groupby(held_date).sum(),
        "trades": (change != 0).groupby(level="date").sum(),
    }).reindex(dates).fillna(0.0)
    book["cost"] = book["turnover"] * (fee_bps + slippage_bps) / 1e4
    book["net"] = book["gross"] - book["cost"]
    book = book.astype({"n_long": int, "n_short": int, "trades": int})
    return book[["gross", "turnover", "cost", "net", "exposure", "n_long", "n_short", "trades"]]


def equity_curve(returns: pd.Series) -> pd.Series:
    """Compounded equity starting from 1 before the first period: ``cumprod(1 + r)``."""
    return (1.0 + pd.Series(returns, dtype=float)).cumprod()


def sharpe_ratio(returns: Any, periods_per_year: float = TRADING_DAYS) -> float:
    """Annualised mean / sample std of per-period returns; NaN with < 2 periods or zero volatility."""
    r = np.asarray(returns, dtype=float)
    if len(r) < 2:
        return np.nan
    std = r.std(ddof=1)
    return float(r.mean() / std * np.sqrt(periods_per_year)) if std > 0 else np.nan


def sortino_ratio(returns: Any, periods_per_year: float = TRADING_DAYS) -> float:
    """Annualised mean / downside deviation, ``sqrt(mean(min(r, 0)^2))`` over all periods; NaN without losses."""
    r = np.asarray(returns, dtype=float)
    if len(r) == 0:
        return np.nan
    downside = np.sqrt(np.mean(np.minimum(r, 0.0) ** 2))
    return float(r.mean() / downside * np.sqrt(periods_per_year)) if downside > 0 else np.nan


def max_drawdown(returns: Any) -> float:
    """Largest fall of compounded equity from its running peak (starting equity 1 counts), as -fraction."""
    equity = np.cumprod(1.0 + np.asarray(returns, dtype=float))
    if len(equity) == 0:
        return np.nan
    peak = np.maximum.accumulate(np.maximum(equity, 1.0))
    return float(np.min(equity / peak - 1.0))


def annualized_return(returns: Any, periods_per_year: float = TRADING_DAYS) -> float:
    """Geometric annual return of the compounded equity; -1 once equity is wiped out."""
    r = np.asarray(returns, dtype=float)
    if len(r) == 0:
        return np.nan
    final = np.prod(1.0 + r)
    return float(final ** (periods_per_year / len(r)) - 1.0) if final > 0 else -1.0


def annualized_volatility(returns: Any, periods_per_year: float = TRADING_DAYS) -> float:
    """Sample std of per-period returns times ``sqrt(periods_per_year)``."""
    r = np.asarray(returns, dtype=float)
    return float(r.std(ddof=1) * np.sqrt(periods_per_year)) if len(r) >= 2 else np.nan


def performance_summary(book: pd.DataFrame, *, periods_per_year: float = TRADING_DAYS) -> dict[str, float]:
    """Statistics of a ``portfolio_returns`` book, on net returns unless named ``gross_``.

    ``hit_rate`` is the share of invested dates (non-zero exposure) with a positive net return;
    ``trade_count`` counts (ticker, date) weight changes; ``avg_turnover`` is per date.
    """
    net = book["net"].to_numpy(dtype=float)
    invested = book["exposure"].to_numpy() > 0
    return {
        "sharpe": sharpe_ratio(net, periods_per_year),
        "gross_sharpe": sharpe_ratio(book["gross"], periods_per_year),
        "sortino": sortino_ratio(net, periods_per_year),
        "max_drawdown": max_drawdown(net),
        "annual_return": annualized_return(net, periods_per_year),
        "annual_vol": annualized_volatility(net, periods_per_year),
        "avg_turnover": float(book["turnover"].mean()) if len(book) else np.nan,
        "trade_count": float(book["trades"].sum()),
        "hit_rate": float((net[invested] > 0).mean()) if invested.any() else np.nan,
        "n_periods": float(len(book)),
    }


class BacktestResult(NamedTuple):
    """``book``: one row per date (see ``portfolio_returns``); ``summary``: ``performance_summary``."""

    book: pd.DataFrame
    summary: dict[str, float]


def backtest(
    frame: pd.DataFrame, *, scheme: Literal["long_flat", "long_short"] = "long_flat",
    signal_col: str = "signal", return_col: str = "forward_return", threshold: float = 0.5,
    quantile: float = 0.2, fee_bps: float = 0.0, slippage_bps: float = 0.0,
    periods_per_year: float = TRADING_DAYS,
) -> BacktestResult:
    """Size positions with ``scheme``, then book returns, costs and summary statistics."""
    if scheme == "long_flat":
        weights = long_flat_weights(frame, signal_col=signal_col, threshold=threshold)
    elif scheme == "long_short":
        weights = long_short_weights(frame, signal_col=signal_col, quantile=quantile)
    else:
        raise ConfigError(f"trading: scheme must be 'long_flat' or 'long_short', got {scheme!r}")
    book = portfolio_returns(frame, weights, return_col=return_col, fee_bps=fee_bps, slippage_bps=slippage_bps)
    return BacktestResult(book, performance_summary(book, periods_per_year=periods_per_year))


def staggered_book(
    signals: pd.DataFrame, daily_returns: pd.DataFrame, *, horizon: int, execution_lag: int = 1,
    scheme: Literal["long_short", "long_flat"] = "long_short", quantile: float = 0.2,
    threshold: float = 0.5, fee_bps: float = 0.0, slippage_bps: float = 0.0,
) -> pd.DataFrame:
    """Daily book of ``horizon`` staggered sub-books (overlapping portfolios) for an h-day signal.

    ``signals`` (ticker, date, signal) holds one row per name per signal date, sized per date by
    ``scheme`` exactly as ``backtest`` does. ``daily_returns`` (ticker, date, return) holds each
    name's realised return from ``date`` to its next trading date; its dates (rows with a NaN
    return dropped) are the trading calendar. A name's delisting return sits on its last row.

    The weights of signal date s are held by a sub-book with ``1 / horizon`` of the capital from
    the close of calendar date ``s + execution_lag`` (in trading dates) for ``horizon`` dates, so
    the combined weight on day d is ``W_d = (1 / h) * sum of w(s)`` over the signal dates whose
    window covers d, and ``gross_d = sum_i W_i,d * r_i,d``. With ``horizon=1, execution_lag=0``
    this is ``backtest``'s book. Conventions at the edges:

    - The book runs from the first day a sub-book holds (the first signal date plus the lag)
      to the last day one still holds, a flat sub-book (nothing qualified) counting as held in
      cash; the first ``h - 1`` days ramp up (fewer live sub-books,
      so lower exposure) and, if signals stop before the calendar does, the last ones ramp down.
      A calendar date without signals opens no sub-book: its slice of capital sits in cash.
    - A signal date whose entry day falls after the last calendar date is not held (with lag 1
      that is always the last one); a window running past the calendar is cut there. Signal
      dates after the calendar are ignored; any other date missing from it is an error.
    - A held name without a return row on a day earns 0 that day. After its last row
      (delisting) its weight is cash: no return, no exposure, and no cost when it leaves.
    - ``turnover_d = sum_i |W_i,d - W_i,d-1|`` over names still trading on d, with W = 0 before
      the first day: opening each sub-book is charged, trades between sub-books net out, and
      closing the book after its last day is not charged. ``net = gross - turnover *
      (fee_bps + slippage_bps) / 1e4``.

    Returns a frame indexed by ``date`` with ``gross``, ``net``, ``turnover``, ``gross_exposure``
    (``sum_i |W_i,d|``) and ``n_names`` (names with a non-zero weight), one row per calendar day.
    """
    _require_columns(signals, ["ticker", "date", "signal"])
    _require_columns(daily_returns, ["ticker", "date", "return"])
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ConfigError(f"trading: horizon must be an integer >= 1, got {horizon!r}")
    if isinstance(execution_lag, bool) or not isinstance(execution_lag, (int, np.integer)) or execution_lag < 0:
        raise ConfigError(f"trading: execution_lag must be an integer >= 0, got {execution_lag!r}")
    if fee_bps < 0 or slippage_bps < 0:
        raise ConfigError(f"trading: fee_bps and slippage_bps must be >= 0, got {fee_bps}, {slippage_bps}")
    for name, frame in (("signals", signals), ("daily_returns", daily_returns)):
        if frame.duplicated(["ticker", "date"]).any():
            raise DataValidationError(f"trading: {name} has duplicate (ticker, date) rows")
    sized = signals[["ticker", "date", "signal"]].reset_index(drop=True)
    if scheme == "long_short":
        weight = long_short_weights(sized, quantile=quantile).to_numpy()
    elif scheme == "long_flat":
        weight = long_flat_weights(sized, threshold=threshold).to_numpy()
    else:
        raise ConfigError(f"trading: scheme must be 'long_flat' or 'long_short', got {scheme!r}")

    rets = daily_returns.loc[daily_returns["return"].notna(), ["ticker", "date", "return"]]
    calendar = pd.Index(pd.unique(rets["date"])).sort_values()
    n_days = len(calendar)
    columns = ["gross", "net", "turnover", "gross_exposure", "n_names"]
    empty = pd.DataFrame({c: pd.Series(dtype=int if c == "n_names" else float) for c in columns})
    empty.index = pd.Index(calendar[:0], name="date")
    if n_days == 0:
        return empty
    position = calendar.get_indexer(pd.Index(sized["date"]))
    unknown = (position < 0) & ~(sized["date"] > calendar[-1]).to_numpy()
    if unknown.any():
        examples = sized.loc[unknown, ["ticker", "date"]].head(3).to_dict("records")
        raise DataValidationError(
            f"trading: {int(unknown.sum())} signal rows are dated inside the calendar of daily_returns "
            f"but on no date of it (e.g. {examples})"
        )
    entry = position + execution_lag
    placed = (position >= 0) & (entry < n_days)
    if not placed.any():
        return empty
    first = int(entry[placed].min())
    last = min(int(entry[placed].max()) + horizon - 1, n_days - 1)

    # Dense days x names matrices over the names ever held only: a sparse panel stays small.
    held = placed & (weight != 0)
    col, names = pd.factorize(sized["ticker"][held], use_na_sentinel=False)  # hashes, not sorts, 10^7 strings
    opened = np.zeros((n_days, len(names)))
    opened[entry[held], col] = weight[held] / horizon
    # Rolling sum over the h sub-books: one vectorised add per horizon offset, never per row or
    # name; every full day sums the same offsets in the same order, so an unchanged book is
    # bit-for-bit unchanged (no cumsum drift posing as turnover).
    book = opened.copy()
    for offset in range(1, horizon):
        book[offset:] += opened[:-offset]
    # Adding and cancelling sub-book weights can leave rounding dust (~1e-17); real weights are
    # at least 1 / (n_names * h), far above the cut.
    book[np.abs(book) < 1e-12] = 0.0

    ret_col = pd.Index(names).get_indexer(rets["ticker"])
    known = ret_col >= 0
    ret_row = calendar.get_indexer(rets["date"])[known]
    returns = np.zeros_like(book)
    returns[ret_row, ret_col[known]] = rets["return"].to_numpy(dtype=float)[known]
    last_row = np.full(len(names), -1)
    np.maximum.at(last_row, ret_col[known], ret_row)
    # After a name's last return row (delisting) its weight is cash: 0 from then on.
    trading = np.arange(n_days)[:, None] <= last_row[None, :]
    book *= trading

    change = np.abs(np.diff(book, axis=0, prepend=0.0))
    change[~trading] = 0.0  # a delisted name's weight left as cash, not by trading
    turnover = change.sum(axis=1)
    del change, opened
    gross = np.einsum("ij,ij->i", book, returns)
    result = pd.DataFrame({
        "gross": gross,
        "net": gross - turnover * (fee_bps + slippage_bps) / 1e4,
        "turnover": turnover,
        "gross_exposure": np.abs(book).sum(axis=1),
        "n_names": (book != 0).sum(axis=1),
    }, index=pd.Index(calendar, name="date"))
    return result.iloc[first:last + 1]
