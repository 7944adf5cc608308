"""``build_features`` on a realistic-shape market: thousands of tickers over decades, staggered
IPOs and delistings, most names short-lived. Compares the bucketed layout (tickers grouped by
history length, ``indicators.MAX_PADDING``) with one padded (tickers × longest history) matrix,
each in a fresh process so peak RSS is its own.

    .venv/bin/python benchmarks/bench_features_ragged.py --tickers 7000 --years 26
    .venv/bin/python benchmarks/bench_features_ragged.py --tickers 2000 --years 26 --layouts bucketed padded
    .venv/bin/python benchmarks/bench_features_ragged.py --tickers 7000 --write /tmp/realistic_sep.parquet

Not the default market (that is ``sepflow.synthetic``); a benchmark input. Figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd


def realistic_panel(tickers: int, years: float, seed: int) -> pd.DataFrame:
    """SEP-shaped OHLCV panel sorted by ticker then date.

    A tenth of the names trade from the first day; the others list on a uniform date. Lifetimes
    are log-normal (median ≈ 6 years, a long tail to decades), cut at the panel's end: most
    names are short-lived and delisted, a few span the whole history, as in Sharadar's SEP."""
    rng = np.random.default_rng(seed)
    calendar = pd.bdate_range("1998-01-02", periods=int(years * 252)).to_numpy().astype("datetime64[ns]")
    days = calendar.size
    start = np.where(rng.random(tickers) < 0.1, 0, rng.integers(0, days, tickers))
    life = np.maximum(5, rng.lognormal(np.log(1500.0), 1.1, tickers)).astype(np.int64)
    stop = np.minimum(days, start + life)
    lengths = stop - start
    n = int(lengths.sum())
    code = np.repeat(np.arange(tickers), lengths)
    day = np.arange(n) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(start, lengths)
    steps = rng.normal(0.0003, 0.025, n)
    first = np.cumsum(lengths) - lengths
    steps[first] = np.log(rng.uniform(3.0, 150.0, tickers))  # each ticker starts at its own level
    log_close = np.cumsum(steps)
    log_close -= np.repeat(np.concatenate([[0.0], log_close[first[1:] - 1]]), lengths)
    close = np.exp(log_close)
    open_ = close * np.exp(rng.normal(0.0, 0.01, n))
    spread = 1.0 + 0.02 * rng.random(n)
    names = np.array([f"R{i:05d}" for i in range(tickers)])
    return pd.DataFrame({
        "ticker": pd.Categorical.from_codes(code, names).astype("str"),
        "date": calendar[day],
        "open": open_,
        "high": np.maximum(open_, close) * spread,
        "low": np.minimum(open_, close) / spread,
        "close": close,
        "volume": np.round(rng.lognormal(11.0, 1.5, n)),
        "closeadj": close,
        "closeunadj": close,
        "lastupdated": calendar[day],
    })


MEASURE = r"""
import json, sys, time
import psutil, threading
import pandas as pd
from sepflow.features import indicators
from sepflow.features.spec import FeatureParams, feature_names

path, layout = sys.argv[1], sys.argv[2]
if layout == "padded":
    indicators.MAX_PADDING = float("inf")
proc = psutil.Process()
sep = pd.read_parquet(path)
sep["ticker"] = sep["ticker"].astype("str")
before = proc.memory_info().rss
peak = [before]
done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.005)
threading.Thread(target=sample, daemon=True).start()
t = time.perf_counter()
features = indicators.build_features(sep, FeatureParams())
wall = time.perf_counter() - t
done.set()
print(json.dumps({"wall": wall, "peak": max(peak[0], proc.memory_info().rss), "before": before,
                  "rows": len(sep), "features": len(feature_names(FeatureParams()))}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=7000)
    parser.add_argument("--years", type=float, default=26.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layouts", nargs="+", default=["bucketed"], choices=["bucketed", "padded"])
    parser.add_argument("--write", help="where to write the panel (parquet); default a temporary file")
    args = parser.parse_args()

    generated = time.perf_counter()
    sep = realistic_panel(args.tickers, args.years, args.seed)
    generated = time.perf_counter() - generated
    path = args.write or f"/tmp/realistic_sep_{args.tickers}x{args.years:g}y.parquet"
    sep.to_parquet(path, index=False)
    lengths = sep.groupby("ticker", sort=False).size().to_numpy()
    width = int(lengths.max())
    print(f"# realistic-shape market: {len(sep):,} rows, {args.tickers:,} tickers, {args.years:g} years "
          f"(generated in {generated:.1f} s, {path})")
    print(f"history per ticker: median {np.median(lengths):,.0f} rows, max {width:,}; "
          f"{np.mean(lengths < 252 * 3):.0%} of names under 3 years; "
          f"padded matrix {args.tickers * width / len(sep):.1f} cells per row\n")
    del sep
    print("| layout | wall | ns / row / feature | peak RSS | peak RSS − input |")
    print("|---|---:|---:|---:|---:|")
    for layout in args.layouts:
        done = subprocess.run([sys.executable, "-c", MEASURE, path, layout], capture_output=True, text=True,
                              check=True)
        m = json.loads(done.stdout.splitlines()[-1])
        ns = m["wall"] / (m["rows"] * m["features"]) * 1e9
        print(f"| {layout} | {m['wall']:.1f} s | {ns:.1f} | {m['peak'] / 2**30:.2f} GiB | "
              f"{(m['peak'] - m['before']) / 2**30:.2f} GiB |")


if __name__ == "__main__":
    main()
