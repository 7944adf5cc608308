"""build_targets: hand-checked values, ticker ends, label consistency, causality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sepflow.errors import DataValidationError
from sepflow.features.spec import TargetParams
from sepflow.features.targets import LABEL3_CLASSES, build_targets

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
    t = build_targets(
        two_tickers(), TargetParams(horizons=[1, 2], label3_threshold=0.15, label3_scaling="constant")
    )
    np.testing.assert_allclose(t["return_1d"], [0.1, 0.1, -0.5, np.nan, -0.1, np.nan], rtol=1e-6)
    np.testing.assert_allclose(t["return_2d"], [0.21, -0.45, np.nan, np.nan, np.nan, np.nan], rtol=1e-6)
    np.testing.assert_array_equal(t["dir_1d"], [1, 1, 0, np.nan, 0, np.nan])
    assert t["label3_2d"].tolist()[:2] == ["BULLISH", "BEARISH"] and t["label3_2d"].isna().sum() == 4
    assert t["label3_1d"].tolist()[:3] == ["NEUTRAL", "NEUTRAL", "BEARISH"]
    assert t["label_end_1d"].tolist()[:3] == list(pd.to_datetime(["2024-01-03", "2024-01-05", "2024-01-08"]))
    assert t["label_end_1d"].isna().tolist() == [False, False, False, True, False, True]


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
    sep = make_panel()
    t = build_targets(sep, PARAMS)
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
