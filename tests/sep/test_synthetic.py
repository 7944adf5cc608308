"""The synthetic market: deterministic, Sharadar-shaped, realistic enough to filter, and carrying its planted signal."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from sepflow.io import write_panel
from sepflow.sep.synthetic import CATEGORIES, HORIZONS, SyntheticParams, generate_market

SMALL = SyntheticParams(n_tickers=40, n_days=600)
SEP_DTYPES = {
    "ticker": "str", "date": "datetime64[ns]", "open": "float64", "high": "float64", "low": "float64",
    "close": "float64", "volume": "float64", "closeadj": "float64", "closeunadj": "float64",
    "lastupdated": "datetime64[ns]",
}
TICKERS_COLUMNS = [
    "table", "permaticker", "ticker", "name", "exchange", "isdelisted", "category", "sector", "industry",
    "firstpricedate", "lastpricedate", "currency", "location",
]


@pytest.fixture(scope="module")
def market():
    return generate_market(SMALL)


@pytest.fixture(scope="module")
def signal_pair():
    """The same shocks with and without the planted alpha."""
    params = SyntheticParams(n_tickers=120, n_days=1000, seed=7)
    return generate_market(params), generate_market(params.model_copy(update={"signal_strength": 0.0}))


def _grid(sep: pd.DataFrame, column: str) -> pd.DataFrame:
    """date x ticker on the full business-day calendar, missing rows as NaN."""
    calendar = pd.bdate_range(sep["date"].min(), sep["date"].max())
    return sep.pivot(index="date", columns="ticker", values=column).reindex(calendar)


def _mean_rank_ic(market, h: int, truth: pd.DataFrame | None = None) -> float:
    """Mean per-date Spearman IC of the true expected h-day log return vs the realised one, common stocks."""
    truth = market.truth if truth is None else truth
    common = market.tickers.loc[market.tickers["category"].str.startswith("Domestic Common Stock"), "ticker"]
    log_price = np.log(_grid(market.sep, "closeadj"))[common]
    realised = log_price.shift(-h) - log_price
    expected = _grid(truth, f"expected_return_{h}d")[common]
    both = realised.notna() & expected.notna()
    ranks_x = expected.where(both).rank(axis=1)
    ranks_y = realised.where(both).rank(axis=1)
    return float(ranks_x.corrwith(ranks_y, axis=1).dropna().mean())


def _per_ticker_log_diff(sep: pd.DataFrame, values: pd.Series) -> pd.Series:
    return np.log(values).groupby(sep["ticker"]).diff()


def test_same_seed_same_market_and_same_parquet_bytes(market, tmp_path) -> None:
    again = generate_market(SMALL)
    for name in ("sep", "tickers", "truth"):
        pd.testing.assert_frame_equal(getattr(market, name), getattr(again, name))
    for name in ("sep", "tickers", "truth"):
        write_panel(getattr(market, name), tmp_path / f"{name}_1.parquet")
        write_panel(getattr(again, name), tmp_path / f"{name}_2.parquet")
        assert (tmp_path / f"{name}_1.parquet").read_bytes() == (tmp_path / f"{name}_2.parquet").read_bytes()


def test_different_seed_different_market(market) -> None:
    other = generate_market(SMALL.model_copy(update={"seed": SMALL.seed + 1}))
    assert not other.tickers["ticker"].equals(market.tickers["ticker"])
    assert not np.array_equal(other.sep["close"].to_numpy()[:100], market.sep["close"].to_numpy()[:100])


def test_sep_schema_order_and_keys(market) -> None:
    sep = market.sep
    assert {c: str(t) for c, t in sep.dtypes.items()} == SEP_DTYPES
    assert isinstance(sep["ticker"].dtype, pd.StringDtype)
    assert isinstance(sep.index, pd.RangeIndex)
    assert not sep.duplicated(["ticker", "date"]).any()
    keys = sep[["ticker", "date"]]
    pd.testing.assert_frame_equal(keys, keys.sort_values(["ticker", "date"]).reset_index(drop=True))
    assert not sep.isna().any().any()
    assert (sep["lastupdated"] == sep["date"].max()).all()


def test_prices_are_consistent(market) -> None:
    sep = market.sep
    prices = sep[["open", "high", "low", "close", "closeadj", "closeunadj"]]
    assert (prices > 0).all().all()
    assert (sep["volume"] >= 0).all()
    assert (sep["low"] <= sep[["open", "close"]].min(axis=1)).all()
    assert (sep["high"] >= sep[["open", "close"]].max(axis=1)).all()
    last_rows = sep.groupby("ticker").tail(1)
    assert (last_rows["close"] == last_rows["closeadj"]).all()
    assert (last_rows["close"] == last_rows["closeunadj"]).all()


def test_splits_jump_unadjusted_but_not_adjusted_prices(market) -> None:
    sep = market.sep
    ratio_jump = _per_ticker_log_diff(sep, sep["closeunadj"] / sep["close"])
    split_rows = ratio_jump.abs() > 0.05
    assert sep.loc[split_rows, "ticker"].nunique() >= 3
    # closeunadj falls by the split ratio (2:1, 3:1) or rises tenfold (1:10 reverse).
    jumps = -ratio_jump[split_rows].to_numpy()
    nearest = np.abs(jumps[:, None] - np.log([2.0, 3.0, 0.1])).min(axis=1)
    assert (nearest < 0.01).all()
    assert set(np.round(np.exp(jumps), 1)) == {2.0, 3.0, 0.1}
    for column in ("close", "closeadj"):
        assert (_per_ticker_log_diff(sep, sep[column])[split_rows].abs() < 0.5).all()


def test_dividends_only_ever_lower_earlier_closeadj(market) -> None:
    sep = market.sep
    adjustment = sep["closeadj"] / sep["close"]
    assert (adjustment <= 1 + 1e-3).all()
    first_rows = adjustment.groupby(sep["ticker"]).head(1)
    assert (first_rows < 0.99).sum() >= 5
    # The factor only accumulates toward the present: each ex-date lifts it by one quarterly yield.
    step = _per_ticker_log_diff(sep, adjustment)[sep["close"] > 1.0].dropna()
    assert step.min() > -1e-3
    assert step.max() < 0.03
    preferreds = market.tickers.loc[market.tickers["category"] == "Domestic Preferred Stock", "ticker"]
    assert (adjustment[sep["ticker"].isin(preferreds)].groupby(sep["ticker"]).min() < 0.95).all()


def test_tickers_table(market) -> None:
    tickers, sep = market.tickers, market.sep
    assert list(tickers.columns) == TICKERS_COLUMNS
    assert tickers["permaticker"].dtype == np.int64 and tickers["permaticker"].is_unique
    assert tickers["ticker"].is_unique and tickers["ticker"].is_monotonic_increasing
    assert (tickers[["table", "currency"]] == ["SEP", "USD"]).all().all()
    span = sep.groupby("ticker")["date"].agg(["min", "max"])
    indexed = tickers.set_index("ticker")
    pd.testing.assert_series_equal(indexed["firstpricedate"], span["min"], check_names=False)
    pd.testing.assert_series_equal(indexed["lastpricedate"], span["max"], check_names=False)
    delisted = indexed["lastpricedate"] < sep["date"].max()
    assert ((indexed["isdelisted"] == "Y") == delisted).all()
    etf = tickers["category"] == "ETF"
    assert (tickers.loc[etf, "exchange"] == "NYSEARCA").all() and tickers.loc[etf, "sector"].isna().all()
    assert tickers.loc[~etf, "sector"].notna().all()


def test_realistic_universe(market) -> None:
    tickers, sep = market.tickers, market.sep
    assert set(tickers["category"]) == set(CATEGORIES)
    share_common = tickers["category"].str.startswith("Domestic Common Stock").mean()
    assert 0.6 < share_common < 0.85
    assert "OTC" in set(tickers["exchange"])
    assert (tickers["firstpricedate"] > sep["date"].min()).any()
    assert (tickers["isdelisted"] == "Y").any()
    rows = sep.groupby("ticker").size()
    listed_days = tickers.set_index("ticker").apply(
        lambda t: len(pd.bdate_range(t["firstpricedate"], t["lastpricedate"])), axis=1
    )
    assert (rows < listed_days).any()
    common = sep["ticker"].isin(tickers.loc[tickers["category"] == "Domestic Common Stock", "ticker"])
    per_ticker = sep[common].assign(dollar_volume=sep["close"] * sep["volume"]).groupby("ticker")
    assert (per_ticker["closeunadj"].median() < 5).any()
    assert (per_ticker["dollar_volume"].median() < 1e5).any()
    assert (per_ticker["dollar_volume"].median() > 1e7).any()


def test_truth_rows_match_sep_rows(market) -> None:
    truth = market.truth
    assert list(truth.columns) == ["ticker", "date"] + [f"expected_return_{h}d" for h in HORIZONS]
    pd.testing.assert_frame_equal(truth[["ticker", "date"]], market.sep[["ticker", "date"]])
    assert (truth.drop(columns=["ticker", "date"]).dtypes == "float64").all()
    assert truth.notna().all().all()


@pytest.mark.parametrize("h", [1, 5])
def test_planted_signal_is_found(signal_pair, h: int) -> None:
    planted, _ = signal_pair
    assert _mean_rank_ic(planted, h) > 0.04


def test_truth_has_the_right_scale(signal_pair) -> None:
    """Realised 1-day returns regress on the truth with slope ~1 once the date mean is removed."""
    planted, _ = signal_pair
    log_price = np.log(_grid(planted.sep, "closeadj"))
    realised = log_price.shift(-1) - log_price
    expected = _grid(planted.truth, "expected_return_1d")
    both = realised.notna() & expected.notna()
    x = expected.where(both).sub(expected.where(both).mean(axis=1), axis=0)
    y = realised.where(both).sub(realised.where(both).mean(axis=1), axis=0)
    slope = (x * y).sum().sum() / (x * x).sum().sum()
    assert 0.75 < slope < 1.25


@pytest.mark.parametrize("h", [1, 5])
def test_null_market_has_no_signal(signal_pair, h: int) -> None:
    planted, null = signal_pair
    # With no alpha, every ticker has the same expected return: nothing to rank.
    column = f"expected_return_{h}d"
    assert np.allclose(null.truth[column], h * SMALL.market_drift)
    # The latent states that predict the planted market say nothing about the null one.
    assert abs(_mean_rank_ic(null, h, truth=planted.truth)) < 0.02


def test_params_refuse_unknown_keys_and_impossible_universes() -> None:
    with pytest.raises(ValidationError):
        SyntheticParams(n_ticker=10)
    with pytest.raises(ValidationError):
        SyntheticParams(n_tickers=30, frac_etf=0.5, frac_adr=0.4)
    with pytest.raises(ValidationError):
        SyntheticParams(signal_strength=-1.0)


def test_default_market_is_quick_to_generate() -> None:
    started = time.perf_counter()
    market = generate_market(SyntheticParams())
    assert time.perf_counter() - started < 3.0
    assert 200_000 < len(market.sep) < 300_000
