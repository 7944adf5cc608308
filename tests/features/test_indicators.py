"""build_features: hand-checked values, a slow per-ticker reference, windows, boundaries, causality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sepflow.errors import DataValidationError
from sepflow.features import indicators
from sepflow.features.indicators import PanelLayout, add_cross_sectional, build_features, history_buckets
from sepflow.features.spec import (
    BollingerParams,
    CrossSectionalParams,
    FeatureParams,
    MACDParams,
    WeeklyParams,
    feature_names,
)
from sepflow.io import file_md5, write_panel

PRICES = ["open", "high", "low", "close", "closeadj", "volume"]

# Short windows so a few hundred rows exercise every feature past its warm-up.
SMALL = FeatureParams(
    return_windows=[1, 3],
    sma_windows=[2, 5],
    rsi_window=4,
    macd=MACDParams(fast=3, slow=6, signal=3),
    bollinger=BollingerParams(window=5, num_std=2.0),
    atr_window=4,
    vol_windows=[5],
    volume_z_window=5,
    dollar_volume_window=3,
    lookback_52w=10,
    cross_sectional=CrossSectionalParams(method="rank", features=["ret_3d", "rvol_5"]),
    weekly=WeeklyParams(return_windows=[1, 2], sma_windows=[3], rsi_window=3, vol_window=3),
)


def small(**update: object) -> FeatureParams:
    """SMALL with some fields replaced, validated again (model_copy would skip validation)."""
    return FeatureParams.model_validate({**SMALL.model_dump(), **update})


def make_panel(n_tickers: int = 6, n_days: int = 260, seed: int = 0, holes: bool = True) -> pd.DataFrame:
    """Random-walk SEP panel: ragged starts/ends, missing days (some Fridays), a few NaN prices."""
    rng = np.random.default_rng(seed)
    calendar = pd.bdate_range("2019-01-01", periods=n_days)
    frames = []
    for i in range(n_tickers):
        start, stop = rng.integers(0, n_days // 4), n_days - rng.integers(0, n_days // 4)
        dates = calendar[start:stop][rng.random(stop - start) > 0.05]
        n = len(dates)
        close = 20.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
        open_ = close * np.exp(rng.normal(0.0, 0.01, n))
        frame = pd.DataFrame(
            {
                "ticker": pd.array([f"T{i:02d}"] * n, dtype="str"),
                "date": dates.astype("datetime64[ns]"),
                "open": open_,
                "high": np.maximum(open_, close) * (1.0 + 0.02 * rng.random(n)),
                "low": np.minimum(open_, close) * (1.0 - 0.02 * rng.random(n)),
                "close": close,
                "closeadj": close * np.linspace(0.9, 1.0, n),
                "closeunadj": close * 2.0,
                "volume": rng.integers(1_000, 50_000, n).astype(np.float64),
                "lastupdated": dates.astype("datetime64[ns]"),
            }
        )
        if holes and i == 1 and n > 8:
            frame.loc[[n // 8, n // 8 + 1, n // 2], "closeadj"] = np.nan
            frame.loc[[n // 3], "volume"] = np.nan
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def one_ticker(closeadj: list[float], **columns: list[float]) -> pd.DataFrame:
    n = len(closeadj)
    base = {c: columns.get(c, closeadj) for c in PRICES if c != "volume"}
    return pd.DataFrame(
        {
            "ticker": pd.array(["AAA"] * n, dtype="str"),
            "date": pd.bdate_range("2024-01-01", periods=n).astype("datetime64[ns]"),
            **base,
            "closeadj": closeadj,
            "volume": columns.get("volume", [1000.0] * n),
        }
    )


# --- slow references: per ticker, Python loops and plain pandas --------------------------------


def ref_ema(x: np.ndarray, span: int, alpha: float) -> np.ndarray:
    """SMA-seeded EMA that skips NaN inputs, one value at a time."""
    out = np.full(len(x), np.nan)
    seen: list[float] = []
    state = np.nan
    for i, v in enumerate(x):
        if np.isnan(v):
            continue
        if len(seen) < span:
            seen.append(v)
            if len(seen) == span:
                state = float(np.mean(seen))
                out[i] = state
            continue
        state = (1.0 - alpha) * state + alpha * v
        out[i] = state
    return out


def ref_rsi(price: np.ndarray, n: int) -> np.ndarray:
    change = np.full(len(price), np.nan)
    for i in range(1, len(price)):
        change[i] = price[i] - price[i - 1]
    gain = ref_ema(np.where(np.isnan(change), np.nan, np.maximum(change, 0.0)), n, 1.0 / n)
    loss = ref_ema(np.where(np.isnan(change), np.nan, np.maximum(-change, 0.0)), n, 1.0 / n)
    return 100.0 * gain / (gain + loss)


def ref_close_features(close: pd.Series, prefix: str, rets, smas, rsi_n, vol_n, unit: str = "") -> dict:
    out = {}
    for w in rets:
        out[f"{prefix}ret_{w}{unit or 'd'}"] = close / close.shift(w) - 1
    for w in smas:
        out[f"{prefix}sma_ratio_{w}{unit}"] = close / close.rolling(w).mean() - 1
    out[f"{prefix}rsi_{rsi_n}{unit}"] = ref_rsi(close.to_numpy(), rsi_n)
    log_ret = np.log(close / close.shift(1))
    for w in vol_n:
        out[f"{prefix}rvol_{w}{unit}"] = log_ret.rolling(w).std(ddof=1)
    return out


def reference_features(sep: pd.DataFrame, p: FeatureParams) -> pd.DataFrame:
    """Every per-ticker feature of build_features, one ticker at a time."""
    parts = []
    for _, g in sep.groupby("ticker", sort=True):
        g = g.reset_index(drop=True)
        adj, close, high, low, vol = g.closeadj, g.close, g.high, g.low, g.volume
        ref = ref_close_features(adj, "", p.return_windows, p.sma_windows, p.rsi_window, p.vol_windows)
        m = p.macd
        line = ref_ema(adj.to_numpy(), m.fast, 2 / (m.fast + 1)) - ref_ema(
            adj.to_numpy(), m.slow, 2 / (m.slow + 1)
        )
        signal = ref_ema(line, m.signal, 2 / (m.signal + 1))
        ref["macd"], ref["macd_signal"] = line / adj, signal / adj
        ref["macd_hist"] = ref["macd"] - ref["macd_signal"]
        b = p.bollinger
        mid, sd = adj.rolling(b.window).mean(), adj.rolling(b.window).std(ddof=0)
        ref[f"bb_pctb_{b.window}"] = (adj - (mid - b.num_std * sd)) / (2 * b.num_std * sd)
        prev = close.shift(1)
        tr = np.maximum(high - low, np.maximum((high - prev).abs(), (low - prev).abs()))
        ref[f"atr_norm_{p.atr_window}"] = ref_ema(tr.to_numpy(), p.atr_window, 1 / p.atr_window) / close
        w = p.volume_z_window
        ref[f"volume_z_{w}"] = (vol - vol.rolling(w).mean()) / vol.rolling(w).std(ddof=1)
        w = p.dollar_volume_window
        ref[f"log_dollar_volume_{w}"] = np.log1p((close * vol).rolling(w).mean())
        ref["dist_52w_high"] = close / high.rolling(p.lookback_52w).max() - 1
        ref["dist_52w_low"] = close / low.rolling(p.lookback_52w).min() - 1
        ref["gap_overnight"] = g.open / prev - 1
        # weekly bars: last row of each W-FRI week; a row sees the last bar ended on or before it
        week_end = g.date + pd.to_timedelta((4 - g.date.dt.day_of_week) % 7, unit="D")
        bars = g.assign(week_end=week_end).groupby("week_end").tail(1).reset_index(drop=True)
        wk = p.weekly
        weekly = ref_close_features(
            bars.closeadj, "w1_", wk.return_windows, wk.sma_windows, wk.rsi_window, [wk.vol_window], "w"
        )
        seen = np.searchsorted(bars.week_end.to_numpy(), g.date.to_numpy(), side="right") - 1
        for name, values in weekly.items():
            values = np.asarray(values, dtype=np.float64)
            ref[name] = np.where(seen >= 0, values[np.maximum(seen, 0)], np.nan)
        parts.append(pd.DataFrame({k: np.asarray(v, dtype=np.float64) for k, v in ref.items()}))
    return pd.concat(parts, ignore_index=True)


def assert_close(actual: pd.Series, expected: np.ndarray, name: str) -> None:
    expected32 = np.asarray(expected, dtype=np.float64).astype(np.float32)
    expected32[~np.isfinite(expected32)] = np.nan
    a = actual.to_numpy()
    np.testing.assert_array_equal(np.isnan(a), np.isnan(expected32), err_msg=f"NaN pattern of {name}")
    np.testing.assert_allclose(a, expected32, rtol=2e-5, atol=1e-6, err_msg=name)


def bits(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    """Features as raw uint32 words: equality is bitwise (NaNs are canonical in the output)."""
    return np.ascontiguousarray(frame[names].to_numpy(dtype=np.float32)).view(np.uint32)


# --- hand-checked values -----------------------------------------------------------------------


def test_returns_and_sma_ratio_by_hand() -> None:
    p = small(return_windows=[1, 2], sma_windows=[2], cross_sectional=CrossSectionalParams(features=[]))
    f = build_features(one_ticker([10.0, 11.0, 12.1, 6.05]), p)
    np.testing.assert_allclose(f["ret_1d"], [np.nan, 0.1, 0.1, -0.5], rtol=1e-6)
    np.testing.assert_allclose(f["ret_2d"], [np.nan, np.nan, 0.21, -0.45], rtol=1e-6)
    f = build_features(one_ticker([1.0, 2.0, 3.0, 4.0]), p)
    np.testing.assert_allclose(f["sma_ratio_2"], [np.nan, 1 / 3, 0.2, 1 / 7], rtol=1e-6)


def test_rsi_by_hand_and_against_a_loop() -> None:
    p = small(rsi_window=2)
    # changes +1, +1, -1: seed (1, 0) → 100, then gain 0.5, loss 0.5 → 50
    f = build_features(one_ticker([1.0, 2.0, 3.0, 2.0]), p)
    np.testing.assert_allclose(f["rsi_2"], [np.nan, np.nan, 100.0, 50.0])

    prices = 50 + np.cumsum(np.random.default_rng(3).normal(0, 1, 120))
    f = build_features(one_ticker(list(prices)), small(rsi_window=14))
    assert f["rsi_14"].isna().sum() == 14  # 14 changes need 15 prices
    assert_close(f["rsi_14"], ref_rsi(prices, 14), "rsi_14")


def test_bollinger_flat_window_is_nan_not_noise() -> None:
    f = build_features(one_ticker([10.0, 11.0] + [12.3] * 8), SMALL)
    assert f["bb_pctb_5"].iloc[6:].isna().all()
    assert (f["rvol_5"].iloc[7:] == 0).all()


def test_infinite_values_become_nan() -> None:
    f = build_features(one_ticker([10.0, 10.0, 10.0], close=[10.0, 0.0, 10.0]), SMALL)
    assert np.isnan(f["gap_overnight"].iloc[2])  # open / previous close of 0
    assert not np.isinf(f.iloc[:, 2:].to_numpy()).any()


# --- whole-panel checks --------------------------------------------------------------------------


def test_columns_dtypes_and_keys() -> None:
    sep = make_panel()
    f = build_features(sep, SMALL)
    assert list(f.columns) == ["ticker", "date", *feature_names(SMALL)]
    assert (f.dtypes.iloc[2:] == np.float32).all()
    assert f["ticker"].equals(sep["ticker"]) and f["date"].equals(sep["date"])
    default = build_features(sep, FeatureParams())
    assert list(default.columns[2:]) == feature_names(FeatureParams())


def test_matches_slow_per_ticker_reference() -> None:
    sep = make_panel()
    f = build_features(sep, SMALL)
    ref = reference_features(sep, SMALL)
    for name in ref.columns:
        assert_close(f[name], ref[name].to_numpy(), name)


def test_no_partial_windows() -> None:
    sep = make_panel(holes=False)
    f = build_features(sep, SMALL)
    position = sep.groupby("ticker").cumcount().to_numpy()
    first_valid = {
        "ret_3d": 3, "sma_ratio_5": 4, "rsi_4": 4, "macd": 5, "macd_signal": 7, "bb_pctb_5": 4,
        "atr_norm_4": 4, "rvol_5": 5, "volume_z_5": 4, "log_dollar_volume_3": 2,
        "dist_52w_high": 9, "gap_overnight": 1,
    }  # fmt: skip
    for name, first in first_valid.items():
        valid = f[name].notna().to_numpy()
        assert not valid[position < first].any(), name
        assert valid[position >= first].all(), name
    short = make_panel(n_tickers=1, n_days=8, holes=False)
    assert (
        build_features(short, SMALL)[["dist_52w_high", "dist_52w_low", "w1_sma_ratio_3w"]].isna().all().all()
    )


def test_each_ticker_equals_the_ticker_alone() -> None:
    sep = make_panel()
    names = [n for n in feature_names(SMALL) if not n.endswith("_xs")]
    together = build_features(sep, SMALL)
    for ticker, rows in sep.groupby("ticker").groups.items():
        alone = build_features(sep.loc[rows].reset_index(drop=True), SMALL)
        np.testing.assert_array_equal(
            bits(alone, names), bits(together.loc[rows], names), err_msg=f"{ticker} differs"
        )


def test_weekly_block_uses_completed_weeks_only() -> None:
    # Mon 2024-01-01 .. Fri 2024-01-19, Friday 2024-01-12 a holiday: weekly closes are
    # Fri 01-05 → 5, Thu 01-11 → 9, Fri 01-19 → 14 (closeadj = 1..14 on the trading days).
    dates = pd.bdate_range("2024-01-01", "2024-01-19").drop(pd.Timestamp("2024-01-12"))
    sep = one_ticker([float(i) for i in range(1, 15)])
    sep["date"] = dates.astype("datetime64[ns]")
    f = build_features(sep, SMALL).set_index("date")["w1_ret_1w"]
    wk1_to_wk2 = 9 / 5 - 1
    assert f.loc[:"2024-01-11"].isna().all()  # week 2 ends on the Friday holiday, not Thursday
    np.testing.assert_allclose(f.loc["2024-01-15":"2024-01-18"], wk1_to_wk2, rtol=1e-6)
    np.testing.assert_allclose(f.loc["2024-01-19"], 14 / 9 - 1, rtol=1e-6)  # Friday sees its own week


def test_cross_sectional_rank_and_zscore() -> None:
    sep = make_panel()
    ranked = build_features(sep, SMALL)
    expected = ranked.groupby("date")["ret_3d"].rank(pct=True)
    np.testing.assert_allclose(ranked["ret_3d_xs"], expected.astype(np.float32), rtol=1e-6)

    p = small(cross_sectional=CrossSectionalParams(method="zscore", features=["ret_3d"]))
    z = build_features(sep, p)
    by_date = z["ret_3d"].astype("float64").groupby(z["date"])
    expected = (z["ret_3d"] - by_date.transform("mean")) / by_date.transform("std", ddof=0)
    assert_close(z["ret_3d_xs"], expected.to_numpy(), "ret_3d_xs")


def test_cross_sectional_rank_matches_pandas_with_many_ties() -> None:
    sep = make_panel(n_tickers=12)
    sep["closeadj"] = sep["closeadj"].round(0)  # coarse prices: many equal and zero returns
    p = small(cross_sectional=CrossSectionalParams(features=["ret_1d", "ret_3d"]))
    f = build_features(sep, p)
    for name in ["ret_1d", "ret_3d"]:
        expected = f.groupby("date")[name].rank(pct=True).astype(np.float32)
        assert f[name].duplicated().mean() > 0.5
        np.testing.assert_allclose(f[f"{name}_xs"], expected, rtol=1e-6)


def test_cross_sectional_rank_ties_by_hand() -> None:
    sep = pd.concat(
        [one_ticker([1.0, v]).assign(ticker=t) for t, v in zip("ABCD", [1.1, 1.1, 1.3, np.nan], strict=True)],
        ignore_index=True,
    )
    p = small(cross_sectional=CrossSectionalParams(features=["ret_1d"]))
    f = build_features(sep, p)
    np.testing.assert_allclose(f["ret_1d_xs"].iloc[1::2], [0.5, 0.5, 1.0, np.nan])


def with_universe(sep: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """``sep`` with a random point-in-time ``in_universe`` flag, and one ticker never in it."""
    flags = np.random.default_rng(seed).random(len(sep)) > 0.3
    flags[(sep["ticker"] == sep["ticker"].iloc[-1]).to_numpy()] = False
    return sep.assign(in_universe=flags)


@pytest.mark.parametrize("method", ["rank", "zscore"])
def test_cross_sectional_features_use_in_universe_rows_only(method: str) -> None:
    sep = with_universe(make_panel(n_tickers=8))
    p = small(cross_sectional=CrossSectionalParams(method=method, features=["ret_3d", "rvol_5"]))
    f = build_features(sep, p)
    members = sep["in_universe"].to_numpy()
    for name in ["ret_3d", "rvol_5"]:
        xs = f[f"{name}_xs"].to_numpy()
        assert np.isnan(xs[~members]).all(), f"{name}_xs is set outside the universe"
        inside = f.loc[members, ["date", name]]
        by_date = inside[name].astype("float64").groupby(inside["date"])
        if method == "rank":
            expected = by_date.rank(pct=True).astype(np.float32).to_numpy()
            np.testing.assert_allclose(xs[members], expected, rtol=1e-6)
        else:
            expected = (inside[name] - by_date.transform("mean")) / by_date.transform("std", ddof=0)
            assert_close(pd.Series(xs[members]), expected.to_numpy(), f"{name}_xs")
        assert np.isfinite(xs[members]).sum() > 0.5 * members.sum()
    # Per-ticker features ignore the flag.
    unflagged = build_features(sep.drop(columns=["in_universe"]), p)
    names = [n for n in feature_names(p) if not n.endswith("_xs")]
    np.testing.assert_array_equal(bits(f, names), bits(unflagged, names))


def test_rows_outside_the_universe_move_no_cross_sectional_value() -> None:
    """Values on rows outside the universe, or a ticker never in it, change no ``_xs`` value."""
    sep = with_universe(make_panel(n_tickers=8, seed=5), seed=6)
    names = [n for n in feature_names(SMALL) if n.endswith("_xs")]
    before = build_features(sep, SMALL)
    members = sep["in_universe"].to_numpy()
    # Whatever the per-ticker features are on out-of-universe rows, the ranks stay.
    scrambled = build_features(sep, SMALL, cross_sectional=False)
    for name in SMALL.cross_sectional.features:
        scrambled.loc[~members, name] = np.random.default_rng(8).normal(size=int((~members).sum())).astype(np.float32)
    after = add_cross_sectional(scrambled, SMALL, members)
    np.testing.assert_array_equal(bits(after, names), bits(before, names))
    # Removing the ticker that is never in the universe changes no other ticker's features.
    kept = (sep["ticker"] != sep["ticker"].iloc[-1]).to_numpy()
    without = build_features(sep.loc[kept].reset_index(drop=True), SMALL)
    every = feature_names(SMALL)
    np.testing.assert_array_equal(bits(without, every), bits(before.loc[kept], every))


def test_disabled_blocks_drop_their_columns() -> None:
    p = small(weekly=WeeklyParams(enabled=False), cross_sectional=CrossSectionalParams(features=[]))
    f = build_features(make_panel(n_tickers=2), p)
    assert not any(c.startswith("w1_") or c.endswith("_xs") for c in f.columns)


# --- causality and determinism -------------------------------------------------------------------


def perturb_after(sep: pd.DataFrame, cutoff: pd.Timestamp, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = sep.copy()
    later = (out["date"] > cutoff).to_numpy()
    for column in PRICES:
        out.loc[later, column] = out.loc[later, column] * rng.uniform(0.5, 1.5, later.sum())
    return out


def test_future_perturbation_leaves_past_features_unchanged() -> None:
    sep = make_panel(n_tickers=8, n_days=300, seed=1)
    names = feature_names(SMALL)
    before = build_features(sep, SMALL)
    dates = np.sort(sep["date"].unique())[20:-20]
    for cutoff in np.random.default_rng(2).choice(dates, 6, replace=False):
        after = build_features(perturb_after(sep, cutoff, seed=3), SMALL)
        past = (sep["date"] <= cutoff).to_numpy()
        np.testing.assert_array_equal(bits(after[past], names), bits(before[past], names))
        assert not np.array_equal(bits(after[~past], names), bits(before[~past], names))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_tickers=st.integers(1, 4),
    n_days=st.integers(5, 90),
    cut=st.floats(0.0, 1.0),
)
def test_future_perturbation_property(seed: int, n_tickers: int, n_days: int, cut: float) -> None:
    sep = make_panel(n_tickers=n_tickers, n_days=n_days, seed=seed, holes=seed % 2 == 0)
    dates = np.sort(sep["date"].unique())
    cutoff = pd.Timestamp(dates[int(cut * (len(dates) - 1))])
    names = feature_names(SMALL)
    before = build_features(sep, SMALL)
    after = build_features(perturb_after(sep, cutoff, seed), SMALL)
    past = (sep["date"] <= cutoff).to_numpy()
    np.testing.assert_array_equal(bits(after[past], names), bits(before[past], names))


def test_same_input_gives_identical_bytes(tmp_path) -> None:
    sep = make_panel()
    write_panel(build_features(sep, FeatureParams()), tmp_path / "a.parquet")
    write_panel(build_features(sep.copy(), FeatureParams()), tmp_path / "b.parquet")
    assert file_md5(tmp_path / "a.parquet") == file_md5(tmp_path / "b.parquet")


# --- input contract and layout ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda s: s.drop(columns=["high"]), "lacks columns"),
        (lambda s: s.iloc[::-1].reset_index(drop=True), "sorted"),
        (lambda s: pd.concat([s, s.iloc[:1]], ignore_index=True), "sorted"),
        (lambda s: s.assign(date=s["date"].astype(str)), "datetime64"),
    ],
)
def test_rejects_broken_panels(breakage, message) -> None:
    with pytest.raises(DataValidationError, match=message):
        build_features(breakage(make_panel(n_tickers=2, n_days=20)), SMALL)


def test_empty_panel_gives_empty_frame() -> None:
    f = build_features(make_panel(n_tickers=1).iloc[:0], SMALL)
    assert len(f) == 0 and list(f.columns[2:]) == feature_names(SMALL)


def test_layout_round_trips_ragged_and_unsorted_groups() -> None:
    codes = np.array([0, 0, 0, 1, 2, 2])
    layout = PanelLayout.from_codes(codes)
    values = np.arange(6.0)
    matrix = layout.to_matrix(values)
    np.testing.assert_array_equal(matrix, [[0, 1, 2], [3, np.nan, np.nan], [4, 5, np.nan]])
    np.testing.assert_array_equal(layout.to_rows(matrix), values)
    shuffled = PanelLayout.from_codes(np.array([1, 0, 1, 0]))
    np.testing.assert_array_equal(shuffled.to_matrix(np.arange(4.0)), [[1, 3], [0, 2]])


def test_bucketed_histories_equal_one_padded_matrix_cell_for_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    """IPOs and delistings: histories from 3 rows to 1,200. Bucketing tickers by history length
    (each bucket its own matrix) gives exactly the single padded matrix's features."""
    rng = np.random.default_rng(3)
    frames = []
    for i, rows in enumerate([1200, 1180, 700, 650, 300, 90, 40, 12, 2, 1200, 25, 500]):
        panel = make_panel(n_tickers=1, n_days=2 * rows + 20, seed=int(rng.integers(1 << 30))).head(rows)
        if i == 4:  # gaps: the EMAs then pack each ticker's valid values
            panel.loc[[10, 11, 150], "closeadj"] = np.nan
            panel.loc[[40], "volume"] = np.nan
        frames.append(panel.assign(ticker=f"T{i:02d}"))
    sep = pd.concat(frames, ignore_index=True).sort_values(["ticker", "date"], ignore_index=True)
    sep["ticker"] = sep["ticker"].astype("str")
    lengths = sep.groupby("ticker").size().to_numpy()
    assert len(history_buckets(lengths)) > 3  # the default bound really cuts this panel
    names = feature_names(SMALL)
    bucketed = build_features(sep, SMALL)
    monkeypatch.setattr(indicators, "MAX_PADDING", np.inf)  # one bucket: one (tickers × 1,200) matrix
    padded = build_features(sep, SMALL)
    np.testing.assert_array_equal(bits(bucketed, names), bits(padded, names))


@pytest.mark.parametrize("max_padding", [0.0, 0.1, 0.25, 1.0])
def test_history_buckets_bound_padding_and_cover_every_ticker(max_padding: float) -> None:
    lengths = np.random.default_rng(0).integers(1, 6_000, 3_000)
    buckets = history_buckets(lengths, max_padding)
    assert np.array_equal(np.sort(np.concatenate(buckets)), np.arange(lengths.size))
    for tickers in buckets:
        rows = lengths[tickers].sum()
        assert len(tickers) == 1 or lengths[tickers].max() * len(tickers) - rows <= max_padding * rows
