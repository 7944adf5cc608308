"""build_targets and daily_returns: hand-checked values, ticker ends, delistings, label consistency, causality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sepflow.errors import DataValidationError
from sepflow.features.spec import TargetParams
from sepflow.features.targets import LABEL3_CLASSES, build_targets, daily_returns

PARAMS = TargetParams(horizons=[1, 2, 5])


def make_panel(n_tickers: int = 5, n_days: int = 120, seed: int = 0) -> pd.DataFrame:
    """Ragged random-walk panel with missing days; only the columns targets read."""
    rng = np.random.default_rng(seed)
    calendar = pd.bdate_range("2020-01-01", periods=n_days)
    frames = []
    for i in range(n_tickers):
        listed = calendar[rng.integers(0, n_days // 3) :]
        dates = listed[rng.random(len(listed)) > 0.05]
        n = len(dates)
        close = 30.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
        frames.append(
            pd.DataFrame(
                {
                    "ticker": pd.array([f"T{i}"] * n, dtype="str"),
                    "date": dates.astype("datetime64[ns]"),
                    "close": close,
                    "closeadj": close * np.linspace(0.95, 1.0, n),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def two_tickers() -> pd.DataFrame:
    dates = pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-05", "2024-01-08"])
    return pd.DataFrame(
        {
            "ticker": pd.array(["A"] * 4 + ["B"] * 2, dtype="str"),
            "date": list(dates) + list(dates[:2]),
            "close": [1.0] * 6,
            "closeadj": [10.0, 11.0, 12.1, 6.05, 100.0, 90.0],
        }
    )


def test_values_by_hand() -> None:
    # B's last price (2024-01-03) comes before the data's last date: delisted at 90, at the
    # default delisting return 0.0. A still trades on the last date: its last rows stay NaN.
    t = build_targets(
        two_tickers(), TargetParams(horizons=[1, 2], label3_threshold=0.15, label3_scaling="constant")
    )
    np.testing.assert_allclose(t["return_1d"], [0.1, 0.1, -0.5, np.nan, -0.1, 0.0], rtol=1e-6)
    np.testing.assert_allclose(t["return_2d"], [0.21, -0.45, np.nan, np.nan, -0.1, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(t["dir_1d"], [1, 1, 0, np.nan, 0, 0])
    assert t["label3_2d"].tolist()[:2] == ["BULLISH", "BEARISH"] and t["label3_2d"].isna().sum() == 2
    assert t["label3_2d"].tolist()[4:] == ["NEUTRAL", "NEUTRAL"]
    assert t["label3_1d"].tolist()[:3] == ["NEUTRAL", "NEUTRAL", "BEARISH"]
    assert t["label_end_1d"].tolist()[:3] == list(pd.to_datetime(["2024-01-03", "2024-01-05", "2024-01-08"]))
    assert t["label_end_1d"].isna().tolist() == [False, False, False, True, False, False]
    assert t["label_end_2d"].tolist()[4:] == list(pd.to_datetime(["2024-01-03", "2024-01-03"]))


def delisting_panel() -> pd.DataFrame:
    """A and Z trade to the data's last date (2024-01-09); D is delisted after 2024-01-04."""
    live = pd.bdate_range("2024-01-02", "2024-01-09")
    return pd.DataFrame(
        {
            "ticker": pd.array(["A"] * 6 + ["D"] * 4 + ["Z"] * 6, dtype="str"),
            "date": [*live, *live[:4], *live],
            "close": 1.0,
            "closeadj": [*np.linspace(20, 25, 6), 10.0, 12.0, 15.0, 12.0, *np.linspace(50, 40, 6)],
        }
    )


def test_delisted_names_get_the_delisting_return_and_live_names_stay_unknown() -> None:
    params = TargetParams(horizons=[1, 2, 3], label3_threshold=0.1, label3_scaling="constant",
                          delisting_return=-0.3)
    sep = delisting_panel()
    t = build_targets(sep, params)
    d = (sep["ticker"] == "D").to_numpy()
    last_d = pd.Timestamp("2024-01-05")
    # Rows reaching past D's last price: (12 / price) * (1 - 0.3) - 1; its last row: exactly -0.3.
    expected = {
        1: [0.2, 0.25, -0.2, -0.3],
        2: [0.5, 0.0, 12 / 15 * 0.7 - 1, -0.3],
        3: [0.2, 12 / 12 * 0.7 - 1, 12 / 15 * 0.7 - 1, -0.3],
    }
    for h, values in expected.items():
        ret = t[f"return_{h}d"].to_numpy()[d]
        np.testing.assert_allclose(ret, values, rtol=1e-6, atol=1e-7)
        settled_by_delisting = np.arange(4) + h >= 4
        ends = t[f"label_end_{h}d"].to_numpy()[d]
        assert (ends[settled_by_delisting] == last_d).all()
        assert (ends[~settled_by_delisting] == sep["date"].to_numpy()[d][h:]).all()
        np.testing.assert_array_equal(t[f"dir_{h}d"].to_numpy()[d], (ret > 0).astype(np.float32))
        labels = np.where(ret > 0.1, "BULLISH", np.where(ret < -0.1, "BEARISH", "NEUTRAL"))
        assert t[f"label3_{h}d"][d].tolist() == labels.tolist()
        # Live names: the future after the data's last date is unknown.
        for ticker in ("A", "Z"):
            rows = t.loc[(sep["ticker"] == ticker).to_numpy()]
            assert rows[f"return_{h}d"].isna().tolist() == [False] * (6 - h) + [True] * h
            assert rows[f"dir_{h}d"].isna().sum() == h and rows[f"label3_{h}d"].isna().sum() == h
            assert rows[f"label_end_{h}d"].isna().sum() == h
    # The last row's return_1d is the delisting return itself: what a daily backtest books.
    assert t["return_1d"].to_numpy()[d][-1] == np.float32(-0.3)
    assert t.loc[d, "label3_1d"].iloc[-1] == "BEARISH" and t.loc[d, "dir_1d"].iloc[-1] == 0.0


def test_delisting_return_is_configurable() -> None:
    sep = delisting_panel()
    d = (sep["ticker"] == "D").to_numpy()
    takeover = build_targets(sep, TargetParams(horizons=[1, 3], delisting_return=0.25))
    assert takeover["return_1d"].to_numpy()[d][-1] == np.float32(0.25) and takeover["dir_1d"].to_numpy()[d][-1] == 1
    np.testing.assert_allclose(takeover["return_3d"].to_numpy()[d], [0.2, 0.25, 0.0, 0.25], rtol=1e-6, atol=1e-7)
    off = build_targets(sep, TargetParams(horizons=[1, 3], delisting_return=None))
    assert off["return_3d"].isna().to_numpy()[d].tolist() == [False, True, True, True]
    assert off["label_end_1d"].isna().to_numpy()[d].tolist() == [False, False, False, True]
    with pytest.raises(ValueError):
        TargetParams(delisting_return=-1.0)


def test_columns_and_dtypes() -> None:
    t = build_targets(make_panel(), PARAMS)
    expected = ["ticker", "date"]
    for h in PARAMS.horizons:
        expected += [f"return_{h}d", f"dir_{h}d", f"label3_{h}d", f"label_end_{h}d"]
    assert list(t.columns) == expected
    assert t["return_5d"].dtype == np.float32 and t["dir_5d"].dtype == np.float32
    assert list(t["label3_5d"].cat.categories) == list(LABEL3_CLASSES) and t["label3_5d"].cat.ordered
    assert t["label_end_5d"].dtype == t["date"].dtype


def test_last_h_rows_of_each_ticker_are_missing_and_never_borrow_the_next_ticker() -> None:
    # Without delisting returns; every ticker of make_panel() also trades on the last date.
    sep = make_panel()
    assert (sep.groupby("ticker")["date"].max() == sep["date"].max()).all()
    t = build_targets(sep, PARAMS.model_copy(update={"delisting_return": None}))
    rows_left = sep.groupby("ticker").cumcount(ascending=False).to_numpy()
    for h in PARAMS.horizons:
        incomplete = rows_left < h
        assert t[f"return_{h}d"].isna().to_numpy()[incomplete].all()
        assert t[f"label_end_{h}d"].isna().to_numpy()[incomplete].all()
        assert t[f"return_{h}d"].notna().to_numpy()[~incomplete].all()
        ahead = sep.groupby("ticker")["closeadj"].shift(-h)
        np.testing.assert_allclose(
            t[f"return_{h}d"], (ahead / sep["closeadj"] - 1).astype(np.float32), rtol=1e-6
        )
        assert t[f"label_end_{h}d"].equals(sep.groupby("ticker")["date"].shift(-h).rename(f"label_end_{h}d"))


def test_labels_follow_the_stored_return_and_sqrt_threshold() -> None:
    params = PARAMS.model_copy(update={"label3_threshold": 0.01, "label3_scaling": "sqrt"})
    t = build_targets(make_panel(n_tickers=10, n_days=300), params)
    for h in params.horizons:
        ret = t[f"return_{h}d"].astype(np.float64)
        threshold = 0.01 * np.sqrt(h)
        assert params.threshold(h) == pytest.approx(threshold)
        labels = np.where(ret > threshold, "BULLISH", np.where(ret < -threshold, "BEARISH", "NEUTRAL"))
        expected = pd.Series(labels, dtype=object).where(ret.notna())
        assert t[f"label3_{h}d"].astype(object).equals(expected)
        np.testing.assert_array_equal(t[f"dir_{h}d"], np.where(ret.isna(), np.nan, ret > 0))
        assert set(t[f"label3_{h}d"].dropna().unique()) == set(LABEL3_CLASSES)


def test_missing_price_keeps_label_end_but_no_target() -> None:
    sep = two_tickers()
    sep.loc[1, "closeadj"] = np.nan
    t = build_targets(sep, TargetParams(horizons=[1]))
    assert t["return_1d"].isna().tolist()[:3] == [True, True, False]
    assert t["label_end_1d"].notna().tolist()[:3] == [True, True, True]
    assert t["label3_1d"].isna().tolist()[:2] == [True, True] and np.isnan(t["dir_1d"].iloc[0])


def test_price_column_is_configurable() -> None:
    t = build_targets(two_tickers(), TargetParams(horizons=[1], price_column="close"))
    assert (t["return_1d"].dropna() == 0).all()


def perturb_after(sep: pd.DataFrame, cutoff: pd.Timestamp, seed: int) -> pd.DataFrame:
    out = sep.copy()
    later = (out["date"] > cutoff).to_numpy()
    factors = np.random.default_rng(seed).uniform(0.5, 1.5, later.sum())
    out.loc[later, ["close", "closeadj"]] = out.loc[later, ["close", "closeadj"]].mul(factors, axis=0)
    return out


def assert_targets_at_or_before_cutoff_unchanged(sep: pd.DataFrame, cutoff: pd.Timestamp, seed: int) -> None:
    before = build_targets(sep, PARAMS)
    after = build_targets(perturb_after(sep, cutoff, seed), PARAMS)
    for h in PARAMS.horizons:
        ended = (before[f"label_end_{h}d"] <= cutoff).to_numpy()  # NaT compares False
        columns = [f"return_{h}d", f"dir_{h}d"]
        np.testing.assert_array_equal(
            after.loc[ended, columns].to_numpy().view(np.uint32),
            before.loc[ended, columns].to_numpy().view(np.uint32),
        )
        assert after.loc[ended, f"label3_{h}d"].equals(before.loc[ended, f"label3_{h}d"])
        assert after[f"label_end_{h}d"].equals(before[f"label_end_{h}d"])


def test_future_perturbation_leaves_ended_targets_unchanged() -> None:
    sep = make_panel(n_tickers=8, n_days=200, seed=4)
    dates = np.sort(sep["date"].unique())
    for cutoff in dates[[10, 60, 150, -3]]:
        assert_targets_at_or_before_cutoff_unchanged(sep, pd.Timestamp(cutoff), seed=5)
    # and the perturbation does reach targets whose label ends after the cutoff
    cutoff = pd.Timestamp(dates[60])
    changed = build_targets(perturb_after(sep, cutoff, 5), PARAMS)["return_5d"]
    later = (build_targets(sep, PARAMS)["label_end_5d"] > cutoff).to_numpy()
    assert not changed[later].equals(build_targets(sep, PARAMS)["return_5d"][later])


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_tickers=st.integers(1, 4),
    n_days=st.integers(4, 60),
    cut=st.floats(0, 1),
)
def test_future_perturbation_property(seed: int, n_tickers: int, n_days: int, cut: float) -> None:
    sep = make_panel(n_tickers=n_tickers, n_days=n_days, seed=seed)
    dates = np.sort(sep["date"].unique())
    assert_targets_at_or_before_cutoff_unchanged(sep, pd.Timestamp(dates[int(cut * (len(dates) - 1))]), seed)


def test_rejects_unsorted_panel() -> None:
    with pytest.raises(DataValidationError, match="sorted"):
        build_targets(make_panel().iloc[::-1].reset_index(drop=True), PARAMS)


def test_volatility_band_uses_trailing_volatility_only() -> None:
    """Default label3: band = threshold × std of the last 20 daily log returns up to t × sqrt(h)."""
    sep = make_panel(n_tickers=6, n_days=200)
    t = build_targets(sep, PARAMS)
    log_ret = np.log(sep["closeadj"]).groupby(sep["ticker"]).diff()
    vol = log_ret.groupby(sep["ticker"]).transform(lambda r: r.rolling(20).std())
    for h in PARAMS.horizons:
        ret = t[f"return_{h}d"].astype(np.float64)
        band = 0.5 * vol * np.sqrt(h)
        labels = np.where(ret > band, "BULLISH", np.where(ret < -band, "BEARISH", "NEUTRAL"))
        expected = pd.Series(labels, dtype=object).where(ret.notna() & band.notna())
        decided = (ret - band).abs().gt(1e-9) & (ret + band).abs().gt(1e-9)  # away from float ties
        assert t[f"label3_{h}d"].astype(object)[decided].equals(expected[decided])
        assert t[f"label3_{h}d"].isna()[vol.isna()].all()  # no full window yet: no label


def test_daily_returns_are_return_1d_with_the_delisting_return_on_the_last_row() -> None:
    sep = delisting_panel()
    params = TargetParams(horizons=[5], delisting_return=-0.3)
    daily = daily_returns(sep, params)
    assert list(daily.columns) == ["ticker", "date", "return"]
    assert daily[["ticker", "date"]].equals(sep[["ticker", "date"]])
    one_day = build_targets(sep, params.model_copy(update={"horizons": [1]}))["return_1d"]
    np.testing.assert_array_equal(daily["return"].to_numpy().view(np.uint32), one_day.to_numpy().view(np.uint32))
    last = sep.groupby("ticker").cumcount(ascending=False).to_numpy() == 0
    assert daily.loc[last, "return"].tolist()[1] == np.float32(-0.3)  # D's last row
    assert daily.loc[last, "return"].isna().tolist() == [True, False, True]  # A and Z trade on
