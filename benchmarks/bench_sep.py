"""Benchmark: ingest, validate, filter and build features on a large SEP file, end to end.

    .venv/bin/python benchmarks/bench_sep.py --rows 10000000                    # parquet, rectangular
    .venv/bin/python benchmarks/bench_sep.py --rows 10000000 --format csv
    .venv/bin/python benchmarks/bench_sep.py --market realistic --format csv parquet --features

Makes (once, cached under benchmarks/.data/) a Sharadar-shaped SEP file and TICKERS file: either
``--rows`` rows of 2,500 days per ticker (``--market rectangular``) or the realistic-shape market
of ``bench_features_ragged.py`` (7,000 tickers over 32 years, staggered listings and delistings).
Then, in a fresh child process per format, times the same calls the ``ingest``, ``filter_sep``
(and with ``--features``, ``build_features``) stages make: read + coerce + validate + sort check
(``ingest_source``), write ``sep.parquet``, read it back, ``filter_universe``, write
``sep_common.parquet``, read it back, ``assemble_features_frame``, write ``features.parquet``.
Prints rows per second per step and end to end, and the child's peak RSS against the table's
in-memory size.
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


def make_realistic(path: Path) -> None:
    """The realistic-shape market (benchmarks/bench_features_ragged.py) as a SEP parquet + TICKERS."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_features_ragged import realistic_panel

    from sepflow.io import write_panel

    frame = realistic_panel(7000, 32, 0)
    frame["ticker"] = frame["ticker"].astype("category")
    # Cents, as vendors store them (a floor of one cent keeps every price positive; rounding keeps
    # low <= open, close <= high): a CSV of realistic width, about 75 bytes a row.
    for column in ("open", "high", "low", "close", "closeadj", "closeunadj"):
        frame[column] = np.maximum(frame[column].round(2), 0.01)
    last = pd.Timestamp(frame["date"].max())
    frame["lastupdated"] = last
    write_panel(frame, path / f"SHARADAR_SEP_{last:%Y-%m-%d}.parquet")
    span = frame.groupby("ticker", observed=True)["date"].agg(["min", "max"])
    names = span.index.astype(str)
    write_panel(pd.DataFrame({
        "table": "SEP", "permaticker": np.arange(len(names)), "ticker": names, "name": names,
        "exchange": "NYSE", "isdelisted": np.where(span["max"] < last, "Y", "N"),
        "category": "Domestic Common Stock", "sector": "X", "industry": "X",
        "firstpricedate": span["min"].to_numpy(), "lastpricedate": span["max"].to_numpy(),
    }), path / "SHARADAR_TICKERS.parquet")


def as_csv(source: Path) -> Path:
    """The same SEP file as CSV (ISO dates), beside the parquet; made once."""
    parquet = next(source.glob("SHARADAR_SEP_*.parquet"))
    csv = parquet.with_suffix(".csv")
    if not csv.exists():
        pd.read_parquet(parquet).to_csv(csv, index=False, date_format="%Y-%m-%d")
    return csv


def _peak_rss() -> int:
    """This process's peak resident set (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(source: Path, tickers: Path, features: bool) -> dict[str, float]:
    """Run in a fresh process so peak RSS belongs to the measured work alone."""
    from sepflow.config import Params
    from sepflow.features.dataset import assemble_features_frame
    from sepflow.io import read_panel, write_panel
    from sepflow.sep.ingest import ingest_source
    from sepflow.sep.universe import UniverseParams, filter_universe

    baseline = _peak_rss()
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        result = ingest_source(source, tickers=tickers)
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
        rows_common = len(filtered.sep)
        del filtered, sep
        n_features = 0
        if features:
            params = Params()
            t = time.perf_counter()
            frame, manifest = assemble_features_frame(read_panel(out / "sep_common.parquet"), params.features,
                                                      params.targets)
            write_panel(frame, out / "features.parquet")
            timings["features_s"] = time.perf_counter() - t
            n_features = len(manifest["feature_names"])
            del frame
        timings["end_to_end_s"] = time.perf_counter() - t0
    peak = _peak_rss()
    return {**timings, "rows": rows, "rows_common": rows_common, "features": n_features,
            "table_bytes": table_bytes, "peak_rss_bytes": peak, "baseline_rss_bytes": baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the rectangular market")
    parser.add_argument("--market", choices=["rectangular", "realistic"], default="rectangular")
    parser.add_argument("--format", nargs="+", choices=["parquet", "csv"], default=["parquet"])
    parser.add_argument("--features", action="store_true", help="also time build_features (read, build, write)")
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)  # child-process mode
    args = parser.parse_args()
    if args.measure:
        source, tickers, features = args.measure
        print(json.dumps(measure(Path(source), Path(tickers), features == "1")))
        return
    source = DATA / (f"sep_{args.rows}" if args.market == "rectangular" else "sep_realistic_7000x32")
    if not source.exists():
        source.mkdir(parents=True)
        (make_sep if args.market == "rectangular" else lambda _, path: make_realistic(path))(args.rows, source)
    for fmt in args.format:
        sep_file = as_csv(source) if fmt == "csv" else next(source.glob("SHARADAR_SEP_*.parquet"))
        child = subprocess.run([sys.executable, __file__, "--measure", str(sep_file),
                                str(source / "SHARADAR_TICKERS.parquet"), str(int(args.features))],
                               capture_output=True, text=True, check=True)
        report(json.loads(child.stdout.strip().splitlines()[-1]), f"{args.market} market, {fmt}")


def report(m: dict[str, float], title: str) -> None:
    """One markdown table of a child's measurements."""
    rows = m["rows"]
    work_rss = m["peak_rss_bytes"] - m["baseline_rss_bytes"]
    print(f"\n{title}\n\n| step | seconds | rows/s |\n|---|---:|---:|")
    steps = ["ingest_validate_s", "write_sep_s", "read_filter_s", "write_common_s"]
    for step in [*steps, *(["features_s"] if "features_s" in m else []), "end_to_end_s"]:
        print(f"| {step[:-2]} | {m[step]:.2f} | {rows / m[step]:,.0f} |")
    gib = 1024**3
    print(f"\nrows: {rows:,} ({m['rows_common']:,} after the universe filter); table in memory: "
          f"{m['table_bytes'] / gib:.2f} GiB; peak RSS: {m['peak_rss_bytes'] / gib:.2f} GiB "
          f"({m['peak_rss_bytes'] / m['table_bytes']:.2f}x the table; "
          f"{work_rss / gib:.2f} GiB above the interpreter's baseline, {work_rss / m['table_bytes']:.2f}x)")
    if m["features"]:
        ns = m["features_s"] / (m["rows_common"] * m["features"]) * 1e9
        print(f"build_features including its I/O: {ns:.1f} ns per row per feature ({m['features']} features)")


if __name__ == "__main__":
    main()
