"""Readers that turn a price source into SEP columns.

Supported sources (detected from the path and the header, not from params):

* **Sharadar SEP** — a CSV, CSV.gz or parquet file with the SEP columns, optionally
  with a TICKERS file; or a folder holding ``*SEP*`` and ``*TICKERS*`` files (what the
  ``synthesize`` stage writes). Taken as is.
* **Long OHLCV CSV** — ``date,open,high,low,close,volume`` plus a ticker column
  (``ticker``, ``Name`` or ``symbol``), one row per ticker and date. If it also carries
  ``split_ratio`` and ``ex-dividend`` (the Quandl WIKI layout), its prices are taken as
  unadjusted and adjusted here.
* **A folder of per-ticker CSVs** in the Yahoo layout (``Date,Open,High,Low,Close,Adj Close,Volume``),
  the file stem being the ticker.

How ``close``, ``closeadj`` and ``closeunadj`` are filled (SEP semantics: ``close`` and
OHLC/volume split-adjusted, ``closeadj`` split- and dividend-adjusted, ``closeunadj`` neither):

============================  ==================  ==========================  ==================
source                        close               closeadj                    closeunadj
============================  ==================  ==========================  ==================
Sharadar                      as given            as given                    as given
long CSV with split/dividend  raw / later splits  close x dividend factor     raw close
Yahoo folder                  ``Close``           ``Adj Close``               ``Close`` (no split history)
plain long CSV                ``close``           ``close`` (dividends unknown)  ``close``
============================  ==================  ==========================  ==================

The dividend factor is the CRSP/Sharadar one: every price before an ex-date is multiplied
by ``1 - dividend / previous unadjusted close``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from sepflow.errors import DataValidationError, SourceFormatError
from sepflow.io import read_panel
from sepflow.sep.schema import (
    SEP_COLUMNS,
    ValidationPolicy,
    clean_sep,
    clean_tickers,
    infer_date_from_sep,
)

TICKER_ALIASES = ("ticker", "name", "symbol")
OHLCV = ("date", "open", "high", "low", "close", "volume")
YAHOO_COLUMNS = ("Date", "Open", "High", "Low", "Close", "Adj Close", "Volume")
UNKNOWN = "Unknown"
SEP_ONLY_COLUMNS = {"closeadj", "closeunadj", "lastupdated"}
_NA_STRINGS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]


@dataclass(frozen=True)
class IngestResult:
    """A validated SEP table, its TICKERS table, and how they were obtained."""

    sep: pd.DataFrame
    tickers: pd.DataFrame
    source_kind: str
    asof: str
    asof_source: str
    dropped: dict[str, int]

    def summary(self) -> dict[str, object]:
        dates = self.sep["date"]
        return {
            "source_kind": self.source_kind,
            "rows": len(self.sep),
            "tickers": int(self.sep["ticker"].nunique()),
            "date_min": dates.min().strftime("%Y-%m-%d"),
            "date_max": dates.max().strftime("%Y-%m-%d"),
            "asof": self.asof,
            "asof_source": self.asof_source,
            "rows_dropped": dict(sorted(self.dropped.items())),
            "rows_dropped_total": int(sum(self.dropped.values())),
        }


# --------------------------------------------------------------------------- file readers


def _header(path: Path) -> list[str]:
    if _is_parquet(path):
        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:  # pyarrow raises several unrelated types for a broken file
            raise SourceFormatError(f"{path}: not a readable parquet file ({exc})") from exc
    try:
        return list(pd.read_csv(path, nrows=0).columns)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SourceFormatError(f"{path}: not a readable CSV ({exc})") from exc


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def read_table(path: Path, text_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a CSV/CSV.gz/parquet file; ``text_columns`` keep their strings (a ticker named NA stays NA)."""
    if _is_parquet(path):
        try:
            return read_panel(path, categorical=tuple(c for c in text_columns if c in pq.read_schema(path).names))
        except Exception as exc:  # pyarrow raises several unrelated types for a broken file
            raise SourceFormatError(f"{path}: not a readable parquet file ({exc})") from exc
    header = _header(path)
    text = set(text_columns) & set(header)
    if (table := _read_csv_arrow(path, text)) is not None:
        return table
    try:
        return pd.read_csv(
            path,
            dtype={c: "str" for c in text},
            keep_default_na=False,
            na_values={c: _NA_STRINGS for c in header if c not in text},
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise SourceFormatError(f"{path}: not a readable CSV ({exc})") from exc


def _read_csv_arrow(path: Path, text: set[str]) -> pd.DataFrame | None:
    """pyarrow's multithreaded CSV reader (2x pandas' on two cores), or None where it cannot type the file.

    Same result as the pandas reader below: text columns stay strings (as categoricals, like
    parquet's), ``_NA_STRINGS`` are missing elsewhere, other strings stay raw for the validation's
    examples. A file pyarrow rejects (ragged rows, bad UTF-8, a column typed from its first block
    that a later block contradicts, a repeated column name) returns None: the pandas reader then
    reads it or says why not.
    """
    options = pacsv.ConvertOptions(
        column_types={c: pa.dictionary(pa.int32(), pa.string()) for c in text},
        null_values=_NA_STRINGS, strings_can_be_null=False,  # a ticker named NA stays NA
    )
    try:
        table = pacsv.read_csv(path, read_options=pacsv.ReadOptions(block_size=16 << 20), convert_options=options)
    except pa.ArrowInvalid:
        return None
    if len(set(table.column_names)) != table.num_columns:  # pandas renames repeated names; arrow keeps both
        return None
    for index, field in enumerate(table.schema):
        if field.name not in text and pa.types.is_string(field.type):  # raw text: its NA strings are missing
            column = table.column(index)
            missing = pc.is_in(column, value_set=pa.array(_NA_STRINGS))
            table = table.set_column(index, field.name, pc.if_else(missing, pa.scalar(None, pa.string()), column))
    return table.to_pandas(split_blocks=True, self_destruct=True, date_as_object=False,
                           coerce_temporal_nanoseconds=True)


def _find(folder: Path, token: str) -> Path | None:
    matches = sorted(
        p for p in folder.iterdir()
        if token in p.name.upper() and p.name.lower().endswith((".parquet", ".csv", ".csv.gz"))
    )
    if len(matches) > 1:
        raise SourceFormatError(f"{folder}: more than one {token} file ({', '.join(p.name for p in matches)})")
    return matches[0] if matches else None


# --------------------------------------------------------------------------- shape adapters


def _lower_columns(df: pd.DataFrame) -> pd.DataFrame:
    return df.rename(columns={c: c.strip().lower() for c in df.columns})


def _ticker_column(columns: list[str]) -> str | None:
    lowered = [c.lower() for c in columns]
    return next((c for c in TICKER_ALIASES if c in lowered), None)


def adjust_for_corporate_actions(raw: pd.DataFrame) -> pd.DataFrame:
    """Unadjusted prices + ``split_ratio`` + ``ex-dividend`` → SEP's three closes (see module docstring).

    ``raw`` must be sorted by ticker then date. Split-adjusting divides every price before a split
    by the product of all later split ratios (and multiplies volume by it), so the last price is
    on today's share basis, as in Sharadar.
    """
    ticker = raw["ticker"].to_numpy()
    split = pd.to_numeric(raw["split_ratio"], errors="coerce").fillna(1.0).replace(0.0, 1.0).to_numpy(float)
    dividend = pd.to_numeric(raw["ex-dividend"], errors="coerce").fillna(0.0).to_numpy(float)
    closeunadj = pd.to_numeric(raw["close"], errors="coerce").to_numpy(float)

    prev_close = np.roll(closeunadj, 1)
    first = np.r_[True, ticker[1:] != ticker[:-1]]
    prev_close[first] = np.nan
    # Factor applied to prices strictly before the action's row: shift the action one row back.
    div_ratio = np.where((dividend > 0) & ~first, 1.0 - dividend / prev_close, 1.0)

    def later_product(ratio: np.ndarray) -> np.ndarray:
        # product over rows after t within the ticker = reverse cumulative product, excluding t itself
        out = pd.Series(ratio[::-1]).groupby(ticker[::-1], sort=False).cumprod().to_numpy()[::-1]
        return out / ratio

    split_factor = later_product(split)
    div_factor = later_product(div_ratio)

    out = raw[["ticker", "date"]].copy()
    for column in ("open", "high", "low", "close"):
        out[column] = pd.to_numeric(raw[column], errors="coerce").to_numpy(float) / split_factor
    out["volume"] = pd.to_numeric(raw["volume"], errors="coerce").to_numpy(float) * split_factor
    out["closeadj"] = out["close"].to_numpy() * div_factor
    out["closeunadj"] = closeunadj
    return out


def _from_long(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    df = _lower_columns(df)
    ticker = _ticker_column(list(df.columns))
    df = df.rename(columns={ticker: "ticker"})
    missing = [c for c in OHLCV if c not in df.columns]
    if missing:
        raise SourceFormatError(f"long OHLCV source lacks column(s) {', '.join(missing)}")
    if {"split_ratio", "ex-dividend"} <= set(df.columns):
        df = df.assign(date=pd.to_datetime(df["date"], errors="coerce", format="ISO8601"))
        df = df.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)
        return adjust_for_corporate_actions(df), "long_csv_with_corporate_actions"
    out = df[["ticker", *OHLCV]].copy()
    out["closeadj"] = out["close"]
    out["closeunadj"] = out["close"]
    return out, "long_csv"


def _from_yahoo_folder(folder: Path) -> pd.DataFrame:
    frames = []
    for path in sorted(folder.glob("*.csv")):
        df = read_table(path)
        missing = [c for c in YAHOO_COLUMNS if c not in df.columns]
        if missing:
            raise SourceFormatError(f"{path}: Yahoo-style CSV lacks column(s) {', '.join(missing)}")
        frames.append(pd.DataFrame({
            "ticker": path.stem, "date": df["Date"], "open": df["Open"], "high": df["High"],
            "low": df["Low"], "close": df["Close"], "volume": df["Volume"],
            "closeadj": df["Adj Close"], "closeunadj": df["Close"],
        }))
    if not frames:
        raise SourceFormatError(f"{folder}: no SEP/TICKERS files and no per-ticker *.csv files")
    return pd.concat(frames, ignore_index=True)


def derive_tickers(sep: pd.DataFrame) -> pd.DataFrame:
    """A TICKERS table for sources without one: category and exchange ``Unknown`` (see universe filter)."""
    grouped = sep.groupby("ticker", observed=True, sort=True)["date"]
    span = pd.DataFrame({"firstpricedate": grouped.min(), "lastpricedate": grouped.max()}).reset_index()
    n = len(span)
    return pd.DataFrame({
        "table": "SEP", "permaticker": np.arange(1, n + 1, dtype=np.int64),
        "ticker": span["ticker"].astype("str"), "name": span["ticker"].astype("str"),
        "exchange": UNKNOWN, "isdelisted": "N", "category": UNKNOWN, "sector": UNKNOWN,
        "industry": UNKNOWN, "firstpricedate": span["firstpricedate"], "lastpricedate": span["lastpricedate"],
    })


# --------------------------------------------------------------------------- entry point


def _resolve(source: Path, tickers: Path | None) -> tuple[str, Path, Path | None]:
    """Decide the source kind and the SEP/TICKERS files behind ``source``."""
    if not source.exists():
        raise SourceFormatError(f"{source}: source not found (set ingest.source in params.yaml)")
    if source.is_dir():
        sep_file = _find(source, "SEP")
        if sep_file is None:
            return "yahoo_folder", source, None
        return "sharadar", sep_file, tickers or _find(source, "TICKERS")
    header = [c.strip().lower() for c in _header(source)]
    # Any SEP-only column means the file means to be SEP: validation then names what is missing.
    if set(SEP_COLUMNS) <= set(header) or set(header) & SEP_ONLY_COLUMNS:
        return "sharadar", source, tickers
    if set(OHLCV) <= set(header) and _ticker_column(header):
        return "long", source, tickers
    raise SourceFormatError(
        f"{source}: unrecognised columns {header[:12]}; expected the SEP columns "
        f"({', '.join(SEP_COLUMNS)}) or date,open,high,low,close,volume plus a ticker/Name/symbol column"
    )


def ingest_source(
    source: str | Path,
    *,
    tickers: str | Path | None = None,
    policy: ValidationPolicy | None = None,
    asof: str | None = None,
) -> IngestResult:
    """Read, map, coerce and validate a price source into SEP + TICKERS tables."""
    policy = policy or ValidationPolicy()
    source = Path(source)
    kind, sep_path, tickers_path = _resolve(source, Path(tickers) if tickers else None)
    if kind == "sharadar":
        raw = _lower_columns(read_table(sep_path, text_columns=("ticker",)))
        source_kind = "sharadar"
    elif kind == "long":
        header = _header(sep_path)
        ticker_col = next(c for c in header if c.strip().lower() == _ticker_column(header))
        raw, source_kind = _from_long(read_table(sep_path, text_columns=(ticker_col,)))
    else:
        raw, source_kind = _from_yahoo_folder(sep_path), "yahoo_folder"

    asof_value, asof_source = _resolve_asof(asof, sep_path)
    if "lastupdated" not in raw.columns:
        raw["lastupdated"] = asof_value or pd.NaT
    cleaned = clean_sep(raw, policy, source=str(sep_path))
    sep = cleaned.frame
    if asof_value is None:
        asof_value, asof_source = sep["date"].max().strftime("%Y-%m-%d"), "last price date"
        if sep["lastupdated"].isna().all():
            sep["lastupdated"] = np.datetime64(asof_value, "ns")

    if tickers_path is not None:
        raw_tickers = read_table(tickers_path, text_columns=("ticker",))
        tickers_frame = clean_tickers(_lower_columns(raw_tickers), policy, source=str(tickers_path)).frame
    else:
        tickers_frame = derive_tickers(sep)
    return IngestResult(sep, tickers_frame, source_kind, asof_value, asof_source, cleaned.dropped)


def _resolve_asof(asof: str | None, sep_path: Path) -> tuple[str | None, str]:
    if asof:
        return pd.Timestamp(asof).strftime("%Y-%m-%d"), "params"
    try:
        return infer_date_from_sep(sep_path), "file name"
    except DataValidationError:  # no date in the name: the caller falls back to the data
        return None, ""

