"""Benchmark ``build_features`` against a naive ``groupby('ticker').apply`` implementation.

Run:
    .venv/bin/python benchmarks/bench_features.py --rows 10000000   # 2000 tickers x 5000 days
    .venv/bin/python benchmarks/bench_features.py --rows 1000000    # quick: 200 tickers x 5000 days

A synthetic random-walk panel (numpy, seeded) goes through ``build_features`` with the default
params. The naive version computes the same features ticker by ticker with pandas rolling/ewm
inside ``groupby('ticker').apply`` and is far too slow for the whole panel, so it runs on the
first tickers (about ``--naive-rows`` rows) and is compared per row; ``build_features`` also runs
on that subsample so the two outputs can be checked against each other. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import resource
import threading
import time
from collections.abc import Callable
from typing import Any, Self

import numpy as np
import pandas as pd
import psutil

from sepflow.features.indicators import build_features
from sepflow.features.spec import FeatureParams, feature_names

MiB = 1024 * 1024


def synthetic_panel(rows: int, days: int, seed: int) -> pd.DataFrame:
    """Random-walk OHLCV panel sorted by ticker then date, ``rows // days`` tickers."""
    tickers = max(1, rows // days)
    days = min(days, rows)
    rng = np.random.default_rng(seed)
    log_close = np.log(rng.uniform(5.0, 200.0, (tickers, 1))) + np.cumsum(
        rng.normal(0.0, 0.02, (tickers, days)), axis=1
    )
    close = np.exp(log_close).ravel()
    del log_close
    n = close.size
    open_ = close * np.exp(rng.normal(0.0, 0.01, n))
    spread = 1.0 + 0.02 * rng.random(n)
    dates = pd.bdate_range("2000-01-03", periods=days).to_numpy().astype("datetime64[ns]")
    names = np.array([f"T{i:05d}" for i in range(tickers)])
    return pd.DataFrame(
        {
            "ticker": pd.Categorical.from_codes(np.repeat(np.arange(tickers), days), names).astype("str"),
            "date": np.tile(dates, tickers),
            "open": open_,
            "high": np.maximum(open_, close) * spread,
            "low": np.minimum(open_, close) / spread,
            "close": close,
            "closeadj": close * 0.98,
            "closeunadj": close,
            "volume": np.round(rng.lognormal(11.0, 1.0, n)),
            "lastupdated": np.tile(dates, tickers),
        }
    )


class PeakRss:
    """Samples this process's RSS every few milliseconds while active (ru_maxrss is process-wide)."""

    def __init__(self, interval: float = 0.005) -> None:
        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.peak = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self._interval)

    def __enter__(self) -> Self:
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


# --- naive reference: one ticker at a time, pandas rolling / ewm ---------------------------------


def _ema_seeded(s: pd.Series, span: int, alpha: float) -> pd.Series:
    valid = s.dropna()
    if len(valid) < span:
        return pd.Series(np.nan, index=s.index)
    seeded = valid.copy()
    seeded.iloc[: span - 1] = np.nan
    seeded.iloc[span - 1] = valid.iloc[:span].mean()
    return seeded.ewm(alpha=alpha, adjust=False).mean().reindex(s.index)


def _rsi(p: pd.Series, n: int) -> pd.Series:
    change = p.diff()
    gain = _ema_seeded(change.clip(lower=0), n, 1 / n)
    loss = _ema_seeded((-change).clip(lower=0), n, 1 / n)
    return 100 * gain / (gain + loss)


def _naive_one_ticker(g: pd.DataFrame, p: FeatureParams) -> pd.DataFrame:
    out: dict[str, pd.Series] = {}
    adj, close, high, low, vol = g["closeadj"], g["close"], g["high"], g["low"], g["volume"]
    for w in p.return_windows:
        out[f"ret_{w}d"] = adj / adj.shift(w) - 1
    for w in p.sma_windows:
        out[f"sma_ratio_{w}"] = adj / adj.rolling(w).mean() - 1
    out[f"rsi_{p.rsi_window}"] = _rsi(adj, p.rsi_window)
    m = p.macd
    line = _ema_seeded(adj, m.fast, 2 / (m.fast + 1)) - _ema_seeded(adj, m.slow, 2 / (m.slow + 1))
    signal = _ema_seeded(line, m.signal, 2 / (m.signal + 1))
    out["macd"], out["macd_signal"] = line / adj, signal / adj
    out["macd_hist"] = out["macd"] - out["macd_signal"]
    b = p.bollinger
    mid, sd = adj.rolling(b.window).mean(), adj.rolling(b.window).std(ddof=0)
    out[f"bb_pctb_{b.window}"] = (adj - (mid - b.num_std * sd)) / (2 * b.num_std * sd)
    prev = close.shift(1)
    tr = pd.concat([high - low, (high - prev).abs(), (low - prev).abs()], axis=1).max(axis=1, skipna=False)
    out[f"atr_norm_{p.atr_window}"] = _ema_seeded(tr, p.atr_window, 1 / p.atr_window) / close
    log_ret = np.log(adj / adj.shift(1))
    for w in p.vol_windows:
        out[f"rvol_{w}"] = log_ret.rolling(w).std()
    w = p.volume_z_window
    out[f"volume_z_{w}"] = (vol - vol.rolling(w).mean()) / vol.rolling(w).std()
    w = p.dollar_volume_window
    out[f"log_dollar_volume_{w}"] = np.log1p((close * vol).rolling(w).mean())
    out["dist_52w_high"] = close / high.rolling(p.lookback_52w).max() - 1
    out["dist_52w_low"] = close / low.rolling(p.lookback_52w).min() - 1
    out["gap_overnight"] = g["open"] / prev - 1
    if p.weekly.enabled:
        wk = p.weekly
        bars = adj.set_axis(g["date"]).resample("W-FRI").last().dropna()
        weekly: dict[str, pd.Series] = {}
        for w in wk.return_windows:
            weekly[f"w1_ret_{w}w"] = bars / bars.shift(w) - 1
        for w in wk.sma_windows:
            weekly[f"w1_sma_ratio_{w}w"] = bars / bars.rolling(w).mean() - 1
        weekly[f"w1_rsi_{wk.rsi_window}w"] = _rsi(bars, wk.rsi_window)
        weekly[f"w1_rvol_{wk.vol_window}w"] = np.log(bars / bars.shift(1)).rolling(wk.vol_window).std()
        # bar labelled Friday F is visible to rows dated >= F
        seen = np.searchsorted(bars.index.to_numpy(), g["date"].to_numpy(), side="right") - 1
        for name, values in weekly.items():
            v = values.to_numpy()
            out[name] = pd.Series(np.where(seen >= 0, v[np.maximum(seen, 0)], np.nan), index=g.index)
    return pd.DataFrame(out, index=g.index)


def naive_features(sep: pd.DataFrame, p: FeatureParams) -> pd.DataFrame:
    feats = sep.groupby("ticker", sort=False, group_keys=False)[list(sep.columns)].apply(
        lambda g: _naive_one_ticker(g, p)
    )
    feats = feats.replace([np.inf, -np.inf], np.nan)
    xs = p.cross_sectional
    for name in xs.features:
        by_date = feats[name].astype(np.float32).groupby(sep["date"])
        if xs.method == "rank":
            feats[f"{name}_xs"] = by_date.rank(pct=True)
        else:
            feats[f"{name}_xs"] = (feats[name] - by_date.transform("mean")) / by_date.transform("std", ddof=0)
    return pd.concat([sep[["ticker", "date"]], feats[feature_names(p)].astype(np.float32)], axis=1)


# --- report ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=5000, help="trading days per ticker")
    parser.add_argument("--naive-rows", type=int, default=250_000, help="rows given to the naive version")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=2, help="build_features runs on the full panel")
    args = parser.parse_args()

    params = FeatureParams()
    n_features = len(feature_names(params))
    sep, gen_s = timed(lambda: synthetic_panel(args.rows, args.days, args.seed))
    rows = len(sep)
    input_bytes = int(sep.memory_usage(deep=True).sum())

    rss_before = psutil.Process().memory_info().rss
    runs: list[tuple[float, float, float]] = []  # (wall, user, system) seconds
    with PeakRss() as peak:
        for _ in range(args.repeat):
            cpu = psutil.Process().cpu_times()
            features, wall = timed(lambda: build_features(sep, params))
            after = psutil.Process().cpu_times()
            runs.append((wall, after.user - cpu.user, after.system - cpu.system))
            output_bytes = int(features.memory_usage(deep=True).sum())
            del features
    ru_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    fast_s = runs[0][0]

    n_tickers = sep["ticker"].nunique()
    per_ticker = rows // n_tickers
    sub = sep.iloc[: max(1, args.naive_rows // per_ticker) * per_ticker].reset_index(drop=True)
    fast_sub, fast_sub_s = timed(lambda: build_features(sub, params))
    naive_sub, naive_s = timed(lambda: naive_features(sub, params))
    names = feature_names(params)
    a, b = fast_sub[names].to_numpy(), naive_sub[names].to_numpy()
    same_nan = np.isnan(a) == np.isnan(b)
    both = ~np.isnan(a) & ~np.isnan(b)
    rel = np.abs(a[both] - b[both]) / np.maximum(np.abs(b[both]), 1e-3)

    def ns(seconds: float, n_rows: int) -> float:
        return seconds / (n_rows * n_features) * 1e9

    fast_ns, fast_sub_ns, naive_ns = ns(fast_s, rows), ns(fast_sub_s, len(sub)), ns(naive_s, len(sub))
    print(f"# build_features benchmark ({psutil.cpu_count()} CPUs)\n")
    print(
        f"{rows:,} rows = {n_tickers:,} tickers x {per_ticker:,} days, {n_features} features; "
        f"panel generated in {gen_s:.1f} s, input frame {input_bytes / MiB:,.0f} MiB.\n"
    )
    print("| measure | value |")
    print("|---|---|")
    print(f"| rows | {rows:,} |")
    print(f"| features | {n_features} |")
    for i, (wall, user, system) in enumerate(runs):
        label = "first run" if i == 0 else f"run {i + 1}"
        print(
            f"| build_features, {label}: wall (user + system CPU) | {wall:.2f} s ({user:.2f} + {system:.2f} s) |"
        )
        print(f"| ns / row / feature, {label} | {ns(wall, rows):.1f} |")
    print(f"| output in memory | {output_bytes / MiB:,.0f} MiB |")
    print(f"| RSS before build (input held) | {rss_before / MiB:,.0f} MiB |")
    print(f"| peak RSS during the builds (sampled every 5 ms) | {peak.peak / MiB:,.0f} MiB |")
    print(f"| peak RSS of the process (ru_maxrss) | {ru_maxrss / MiB:,.0f} MiB |")
    print(f"| peak RSS / output size | {peak.peak / output_bytes:.2f} |")
    print(f"| (peak RSS - RSS before) / output size | {(peak.peak - rss_before) / output_bytes:.2f} |")
    print(
        f"| naive groupby.apply, on a {len(sub):,}-row subsample | {naive_s:.2f} s = {naive_ns:.1f} ns / row / feature |"
    )
    print(
        f"| build_features on the same subsample | {fast_sub_s:.2f} s = {fast_sub_ns:.1f} ns / row / feature |"
    )
    print(f"| naive / build_features (subsample, like for like) | {naive_ns / fast_sub_ns:.0f}x |")
    print(
        f"| naive (subsample, per row) / build_features (full panel, first run) | {naive_ns / fast_ns:.0f}x |"
    )
    print(f"| naive vs fast: cells with a different NaN pattern | {int((~same_nan).sum())} of {a.size:,} |")
    print(f"| naive vs fast: max relative difference | {rel.max():.1e} |")
    print(
        f"\nThe naive version ran on the first {len(sub) // per_ticker} tickers ({len(sub):,} rows) only; "
        "its cost is compared per row and feature. Relative differences use max(|naive|, 1e-3) as "
        "denominator. System CPU time is mostly first-touch page faults of fresh allocations."
    )


if __name__ == "__main__":
    main()
