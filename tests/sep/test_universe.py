"""Universe filter: static rules, point-in-time membership, counts by reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sepflow.errors import DataValidationError
from sepflow.sep.universe import (
    UniverseParams,
    filter_universe,
    point_in_time_membership,
)

DATES = pd.bdate_range("2022-01-03", periods=300)


def panel(spec: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """One row per business day for each ticker with a constant (price, volume)."""
    frames = []
    for ticker, (price, volume) in spec.items():
        price, volume = float(price), float(volume)
        frames.append(pd.DataFrame({
            "ticker": ticker, "date": DATES, "open": float(price), "high": price, "low": price, "close": float(price),
            "volume": volume, "closeadj": price, "closeunadj": price, "lastupdated": DATES[-1],
        }))
    df = pd.concat(frames, ignore_index=True)
    return df.assign(ticker=df["ticker"].astype("category"))


def tickers(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["ticker", "category", "exchange"])


PARAMS = UniverseParams(min_price=5, min_median_dollar_volume=1e6, liquidity_window=20, min_history_days=40)


def test_static_rules_and_counts() -> None:
    sep = panel({"AAA": (20, 1e6), "ETF1": (20, 1e6), "OTC1": (20, 1e6), "ADR1": (20, 1e6), "PENNY": (1, 1e8),
                 "NOMETA": (20, 1e6)})
    meta = tickers([
        ("AAA", "Domestic Common Stock", "NYSE"), ("ETF1", "ETF", "NYSEARCA"),
        ("OTC1", "Domestic Common Stock", "OTC"), ("ADR1", "ADR Common Stock", "NASDAQ"),
        ("PENNY", "Domestic Common Stock Primary Class", "NASDAQ"),
    ])
    result = filter_universe(sep, meta, PARAMS)
    assert list(result.sep["ticker"].cat.categories) == ["AAA"]
    assert result.tickers_dropped == {
        "category": 2, "exchange": 1, "never_eligible": 1, "no_tickers_metadata": 1,
    }
    assert result.rows_dropped == {"category": 600, "exchange": 300, "never_eligible": 300, "no_tickers_metadata": 300}
    assert len(result.sep) == 300 and result.sep["in_universe"].dtype == bool


def test_unknown_metadata_kept_unless_told_otherwise() -> None:
    sep = panel({"AAA": (20, 1e6)})
    meta = tickers([("AAA", "Unknown", "Unknown")])
    assert len(filter_universe(sep, meta, PARAMS).sep) == 300
    with pytest.raises(DataValidationError, match="universe filter left no rows"):
        filter_universe(sep, meta, PARAMS.model_copy(update={"keep_unknown": False}))


def test_symbols_list() -> None:
    sep = panel({"AAA": (20, 1e6), "BBB": (20, 1e6)})
    meta = tickers([("AAA", "Domestic Common Stock", "NYSE"), ("BBB", "Domestic Common Stock", "NYSE")])
    result = filter_universe(sep, meta, PARAMS.model_copy(update={"symbols": ["BBB"]}))
    assert list(result.sep["ticker"].cat.categories) == ["BBB"] and result.tickers_dropped == {"not_in_symbols": 1}


def test_membership_is_monthly_and_point_in_time() -> None:
    sep = panel({"AAA": (20, 1e6)})
    excluded = point_in_time_membership(sep, PARAMS)
    in_universe = ~np.logical_or.reduce(list(excluded.values()))
    dates = sep["date"]
    # History reaches 40 rows in late February; the February review passes, so March onwards is in.
    assert not in_universe[dates < "2022-03-01"].any()
    assert in_universe[dates >= "2022-03-01"].all()
    assert excluded["not_reviewed_yet"].sum() == (dates < "2022-02-01").sum()


def test_membership_never_uses_the_future() -> None:
    """Changing prices and volumes after a date moves no membership decision at or before it."""
    sep = panel({"AAA": (20, 1e6), "BBB": (3, 1e7)})
    cut = pd.Timestamp("2022-06-15")
    before = point_in_time_membership(sep, PARAMS)
    changed = sep.copy()
    late = changed["date"] > cut
    changed.loc[late, ["close", "closeunadj"]] = 0.01
    changed.loc[late, "volume"] = 1.0
    after = point_in_time_membership(changed, PARAMS)
    early = ~late.to_numpy()
    for reason in before:
        assert np.array_equal(before[reason][early], after[reason][early]), reason


def test_penny_and_illiquid_excluded_by_reason() -> None:
    sep = panel({"PENNY": (2, 1e8), "THIN": (20, 10)})
    meta = tickers([("PENNY", "Domestic Common Stock", "NYSE"), ("THIN", "Domestic Common Stock", "NYSE")])
    excluded = point_in_time_membership(sep, PARAMS)
    penny = (sep["ticker"] == "PENNY").to_numpy()
    reviewed = ~excluded["not_reviewed_yet"]
    assert excluded["price"][penny & reviewed].all() and not excluded["liquidity"][penny & reviewed].any()
    assert excluded["liquidity"][~penny & reviewed].all()
    with pytest.raises(DataValidationError, match="never_eligible"):
        filter_universe(sep, meta, PARAMS)
