"""Universe filter: static rules, point-in-time membership, counts by reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sepflow.errors import DataValidationError
from sepflow.sep.synthetic import SyntheticParams, generate_market
from sepflow.sep.universe import (
    UniverseParams,
    filter_universe,
    point_in_time_membership,
)

DATES = pd.bdate_range("2022-01-03", periods=300)


def panel(spec: dict[str, tuple[float, float] | tuple[np.ndarray, float]]) -> pd.DataFrame:
    """One row per business day for each ticker with a (price, volume); a price may be a per-day array."""
    frames = []
    for ticker, (price, volume) in spec.items():
        price, volume = np.broadcast_to(np.asarray(price, dtype=float), len(DATES)), float(volume)
        frames.append(pd.DataFrame({
            "ticker": ticker, "date": DATES, "open": price, "high": price, "low": price, "close": price,
            "volume": volume, "closeadj": price, "closeunadj": price, "lastupdated": DATES[-1],
        }))
    df = pd.concat(frames, ignore_index=True)
    return df.assign(ticker=df["ticker"].astype("category"))


def tickers(rows: list[tuple[str, ...]]) -> pd.DataFrame:
    """TICKERS rows (ticker, category, exchange[, isdelisted])."""
    columns = ["ticker", "category", "exchange", "isdelisted"][: len(rows[0])]
    return pd.DataFrame(rows, columns=columns)


def members(result_sep: pd.DataFrame, ticker: str) -> np.ndarray:
    return result_sep.loc[result_sep["ticker"] == ticker, "in_universe"].to_numpy()


PARAMS = UniverseParams(min_price=5, min_median_dollar_volume=1e6, liquidity_window=20, min_history_days=40)


def test_static_rules_and_counts() -> None:
    sep = panel({"AAA": (20, 1e6), "ETF1": (20, 1e6), "OTC1": (20, 1e6), "ADR1": (20, 1e6), "PENNY": (1, 1e8),
                 "NOMETA": (20, 1e6), "ARCA1": (20, 1e6)})
    meta = tickers([
        ("AAA", "Domestic Common Stock", "NYSE"), ("ETF1", "ETF", "NYSEARCA"),
        ("OTC1", "Domestic Common Stock", "OTC"), ("ADR1", "ADR Common Stock", "NASDAQ"),
        ("PENNY", "Domestic Common Stock Primary Class", "NASDAQ"),
        ("ARCA1", "Domestic Common Stock", "NYSEARCA"),
    ])
    result = filter_universe(sep, meta, PARAMS)
    # OTC1 is judged point in time (today's OTC says nothing about its past); PENNY is never in
    # the universe but stays, marked out on every row.
    assert list(result.sep["ticker"].cat.categories) == ["AAA", "OTC1", "PENNY"]
    assert result.tickers_dropped == {"category": 2, "exchange": 1, "no_tickers_metadata": 1}
    assert result.rows_dropped == {"category": 600, "exchange": 300, "no_tickers_metadata": 300}
    assert len(result.sep) == 900 and result.sep["in_universe"].dtype == bool
    assert not members(result.sep, "PENNY").any()
    np.testing.assert_array_equal(members(result.sep, "OTC1"), members(result.sep, "AAA"))
    summary = result.summary()
    assert summary["tickers_never_in_universe"] == 1 and "never_eligible" not in summary["tickers_dropped"]


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
    with pytest.raises(DataValidationError, match="none is in the universe on any date"):
        filter_universe(sep, meta, PARAMS)


def test_never_eligible_tickers_stay_and_change_no_other_membership() -> None:
    """Whether a name will ever qualify is future information: it is no reason to drop it."""
    fading = np.r_[np.full(150, 20.0), np.full(150, 2.0)]
    spec = {"AAA": (20, 1e6), "FADE": (fading, 1e7), "PENNY": (2, 1e8), "THIN": (20, 10)}
    meta = tickers([(t, "Domestic Common Stock", "NYSE") for t in spec])
    full = filter_universe(panel(spec), meta, PARAMS)
    assert list(full.sep["ticker"].cat.categories) == sorted(spec)
    assert not members(full.sep, "PENNY").any() and not members(full.sep, "THIN").any()
    assert full.tickers_never_in_universe == 2 and full.tickers_dropped == {}
    without = filter_universe(panel({t: v for t, v in spec.items() if t not in ("PENNY", "THIN")}), meta, PARAMS)
    for ticker in ("AAA", "FADE"):
        np.testing.assert_array_equal(members(without.sep, ticker), members(full.sep, ticker))


def test_exchange_rule_keeps_the_listed_history_of_names_now_otc_or_delisted() -> None:
    """TICKERS says where a name ended: a fall to OTC or a delisting erases none of its listed years."""
    fell = np.r_[np.full(200, 20.0), np.full(100, 1.0)]  # traded at 20 on NYSE, then fell to OTC pennies
    spec = {"AAA": (20, 1e6), "FELL": (fell, 1e7), "GONE": (20, 1e6), "LAST": (20, 1e6),
            "ARCA": (20, 1e6), "OLDETF": (20, 1e6)}
    meta = tickers([
        ("AAA", "Domestic Common Stock", "NYSE", "N"),
        ("FELL", "Domestic Common Stock", "OTC", "N"),  # still trades, on OTC
        ("GONE", "Domestic Common Stock", "DELISTED", "Y"),
        ("LAST", "Domestic Common Stock", "NYSEARCA", "Y"),  # delisted: its last venue says nothing earlier
        ("ARCA", "Domestic Common Stock", "NYSEARCA", "N"),  # listed today outside `exchanges`
        ("OLDETF", "ETF", "OTC", "Y"),  # the category still applies
    ])
    result = filter_universe(panel(spec), meta, PARAMS)
    assert list(result.sep["ticker"].cat.categories) == ["AAA", "FELL", "GONE", "LAST"]
    assert result.tickers_dropped == {"category": 1, "exchange": 1}
    listed = members(result.sep, "AAA")
    for ticker in ("GONE", "LAST"):
        np.testing.assert_array_equal(members(result.sep, ticker), listed)
    # FELL is in the universe while it traded above min_price, out from the review after its fall.
    fell_members = members(result.sep, "FELL")
    after_fall_review = DATES >= "2022-11-01"  # fell on 2022-10-10 (row 200): October's review fails
    np.testing.assert_array_equal(fell_members[~after_fall_review], listed[~after_fall_review])
    assert fell_members[~after_fall_review].any() and not fell_members[after_fall_review].any()
    # Exempt exchanges are configurable: without them FELL and GONE lose their whole history.
    strict = PARAMS.model_copy(update={"exempt_exchanges": []})
    strict = filter_universe(panel(spec), meta.assign(isdelisted="N"), strict)
    assert list(strict.sep["ticker"].cat.categories) == ["AAA"]


@pytest.fixture(scope="module")
def market():
    return generate_market(SyntheticParams(n_tickers=40, n_days=320, seed=7))


def cut_dates(dates: pd.Series) -> list[pd.Timestamp]:
    """Month ends, the first trading day of a month, mid-months, and the last date."""
    calendar = pd.DatetimeIndex(np.sort(dates.unique()))
    month = calendar.to_numpy().astype("datetime64[M]")
    month_end = calendar[np.r_[month[1:] != month[:-1], True]]
    month_start = calendar[np.r_[True, month[1:] != month[:-1]]]
    return [month_end[3], month_start[5], calendar[100], calendar[163], month_end[-2], calendar[-2], calendar[-1]]


def test_membership_on_data_cut_at_any_date_equals_the_full_run(market) -> None:
    """Train/serve parity of the universe: who is in at t is decided by rows up to t only,
    also when the data ends mid-month or on a review day."""
    params = UniverseParams(min_history_days=60, liquidity_window=20)
    full = filter_universe(market.sep, market.tickers, params).sep
    assert 0 < full["in_universe"].mean() < 1
    keys = ["ticker", "date", "in_universe"]
    for cut in cut_dates(market.sep["date"]):
        part = market.sep.loc[market.sep["date"] <= cut].reset_index(drop=True)
        got = filter_universe(part, market.tickers, params).sep
        expected = full.loc[full["date"] <= cut, keys].reset_index(drop=True)
        pd.testing.assert_frame_equal(
            got[keys].astype({"ticker": str}), expected.astype({"ticker": str}), check_exact=True, obj=str(cut)
        )
