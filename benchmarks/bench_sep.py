"""Benchmark: ingest, validate and filter a large SEP parquet, end to end.

    .venv/bin/python benchmarks/bench_sep.py --rows 10000000

Makes (once, cached under benchmarks/.data/) a Sharadar-shaped SEP parquet and TICKERS file of
``--rows`` rows, then in a fresh child process times the same calls the ``ingest`` and
``filter_sep`` stages make: read + coerce + validate + sort check (``ingest_source``), write
``sep.parquet``, read it back, ``filter_universe``, write ``sep_common.parquet``. Prints rows per
second per step and end to end, and the child's peak RSS against the table's in-memory size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).parent / ".data"


def make_sep(rows: int, path: Path) -> None:
    """A random-walk SEP panel of about ``rows`` rows (2,500 days per ticker), plus TICKERS."""
    days = 2500
    n_tickers = max(1, rows // days)
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2014-01-02", periods=days).to_numpy()
    log_ret = rng.normal(0, 0.02, (n_tickers, days)).astype(np.float64)
    # Cents, as vendors store them: realistic compression, so I/O is timed as it would be on real data.
    close = np.round(30.0 * np.exp(np.cumsum(log_ret, axis=1)), 2)
    spread = np.abs(rng.normal(0, 0.01, (n_tickers, days)))
    names = np.array([f"T{i:05d}" for i in range(n_tickers)])
    frame = pd.DataFrame({
        "ticker": pd.Categorical(np.repeat(names, days)),
        "date": np.tile(dates, n_tickers),
        "open": close.ravel(), "high": np.round(close * (1 + spread), 2).ravel(),
        "low": np.round(close * (1 - spread), 2).ravel(),
        "close": close.ravel(), "volume": rng.integers(1e4, 1e7, n_tickers * days).astype(np.float64),
        "closeadj": close.ravel(), "closeunadj": close.ravel(), "lastupdated": dates[-1],
    })
    from sepflow.io import write_panel

    write_panel(frame, path / f"SHARADAR_SEP_{pd.Timestamp(dates[-1]):%Y-%m-%d}.parquet")
    write_panel(pd.DataFrame({
        "table": "SEP", "permaticker": np.arange(n_tickers), "ticker": names, "name": names,
        "exchange": "NYSE", "isdelisted": "N", "category": "Domestic Common Stock", "sector": "X",
        "industry": "X", "firstpricedate": dates[0], "lastpricedate": dates[-1],
    }), path / "SHARADAR_TICKERS.parquet")


def _peak_rss() -> int:
    """This process's peak resident set (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(source: Path) -> dict[str, float]:
    """Run in a fresh process so peak RSS belongs to the measured work alone."""
    from sepflow.io import read_panel, write_panel
    from sepflow.sep.ingest import ingest_source
    from sepflow.sep.universe import UniverseParams, filter_universe

    baseline = _peak_rss()
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        result = ingest_source(source)
        timings["ingest_validate_s"] = time.perf_counter() - t0
        t = time.perf_counter()
        write_panel(result.sep, out / "sep.parquet")
        timings["write_sep_s"] = time.perf_counter() - t
        table_bytes = int(result.sep.memory_usage(deep=True).sum())
        rows = len(result.sep)
        tickers = result.tickers
        del result
        t = time.perf_counter()
        sep = read_panel(out / "sep.parquet", categorical=("ticker",))
        filtered = filter_universe(sep, tickers, UniverseParams())
        timings["read_filter_s"] = time.perf_counter() - t
        t = time.perf_counter()
        write_panel(filtered.sep, out / "sep_common.parquet")
        timings["write_common_s"] = time.perf_counter() - t
        timings["end_to_end_s"] = time.perf_counter() - t0
    peak = _peak_rss()
    return {**timings, "rows": rows, "table_bytes": table_bytes, "peak_rss_bytes": peak,
            "baseline_rss_bytes": baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # child-process mode
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    source = DATA / f"sep_{args.rows}"
    if not source.exists():
        source.mkdir(parents=True)
        make_sep(args.rows, source)
    child = subprocess.run([sys.executable, __file__, "--measure", str(source)], capture_output=True, text=True,
                           check=True)
    m = json.loads(child.stdout.strip().splitlines()[-1])
    rows = m["rows"]
    work_rss = m["peak_rss_bytes"] - m["baseline_rss_bytes"]
    print("| step | seconds | rows/s |\n|---|---:|---:|")
    for step in ("ingest_validate_s", "write_sep_s", "read_filter_s", "write_common_s", "end_to_end_s"):
        print(f"| {step[:-2]} | {m[step]:.2f} | {rows / m[step]:,.0f} |")
    gib = 1024**3
    print(f"\nrows: {rows:,}; table in memory: {m['table_bytes'] / gib:.2f} GiB; "
          f"peak RSS: {m['peak_rss_bytes'] / gib:.2f} GiB ({m['peak_rss_bytes'] / m['table_bytes']:.2f}x the table; "
          f"{work_rss / gib:.2f} GiB above the interpreter's baseline, {work_rss / m['table_bytes']:.2f}x)")


if __name__ == "__main__":
    main()
