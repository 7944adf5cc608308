"""SEP/TICKERS coercion, validation and policies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sepflow.errors import DataValidationError
from sepflow.sep.schema import (
    SEP_COLUMNS,
    ValidationPolicy,
    clean_sep,
    coerce_sep_dtypes,
    infer_date_from_sep,
    validate_sep,
)


def sep_frame(n_per_ticker: int = 5, tickers: tuple[str, ...] = ("AAA", "BBB")) -> pd.DataFrame:
    dates = pd.bdate_range("2024-01-01", periods=n_per_ticker)
    rows = []
    for i, ticker in enumerate(tickers):
        close = 10.0 * (i + 1) + np.arange(n_per_ticker)
        rows.append(pd.DataFrame({
            "ticker": ticker, "date": dates, "open": close, "high": close + 1, "low": close - 1,
            "close": close, "volume": 1000.0, "closeadj": close, "closeunadj": close,
            "lastupdated": pd.Timestamp("2024-02-01"),
        }))
    return pd.concat(rows, ignore_index=True)


def test_valid_frame_has_no_violations() -> None:
    report = validate_sep(sep_frame())
    assert report.ok and report.n_rows == 10


def test_coerce_gives_contract_dtypes_from_strings() -> None:
    raw = sep_frame().astype(str)
    typed = coerce_sep_dtypes(raw)
    assert list(typed.columns) == list(SEP_COLUMNS)
    assert isinstance(typed["ticker"].dtype, pd.CategoricalDtype)
    assert typed["date"].dtype == "datetime64[ns]" and typed["lastupdated"].dtype == "datetime64[ns]"
    assert all(typed[c].dtype == np.float64 for c in ("open", "high", "low", "close", "volume"))


def test_every_violation_is_collected_not_just_the_first() -> None:
    df = sep_frame()
    df.loc[1, "high"] = 0.5          # high < low, and open/close outside range
    df.loc[2, "volume"] = -1
    df.loc[3, "close"] = -3          # non-positive, and outside range
    df.loc[7, "ticker"] = "../etc"
    report = validate_sep(df, source="x.csv")
    checks = {(v.check, v.column) for v in report.violations}
    assert {("high_below_low", "high"), ("negative_volume", "volume"), ("non_positive_price", "close"),
            ("invalid_ticker", "ticker"), ("open_outside_range", "open")} <= checks
    message = report.message()
    assert message.startswith("x.csv: invalid SEP data,") and "\n" not in message


def test_examples_are_capped_at_five() -> None:
    df = sep_frame(n_per_ticker=20)
    df["volume"] = -1.0
    (violation,) = validate_sep(df).violations
    assert violation.count == 40 and len(violation.examples) == 5


def test_duplicates_found_in_unsorted_input() -> None:
    df = sep_frame()
    df = pd.concat([df.iloc[[7]], df], ignore_index=True)
    (violation,) = validate_sep(df).violations
    assert violation.check == "duplicate_key" and violation.count == 1


def test_drop_policy_counts_rows_by_reason_and_sorts() -> None:
    df = sep_frame().iloc[::-1].reset_index(drop=True)
    df.loc[0, "volume"] = -1
    df.loc[1, "high"] = df.loc[1, "low"] - 1
    result = clean_sep(df, ValidationPolicy())
    assert result.dropped["negative_volume"] == 1 and result.dropped["high_below_low"] == 1
    assert len(result.frame) == 8
    assert result.frame["ticker"].astype(str).is_monotonic_increasing
    assert result.frame.groupby("ticker", observed=True)["date"].apply(lambda d: d.is_monotonic_increasing).all()


def test_error_policy_raises_with_one_line() -> None:
    df = sep_frame()
    df.loc[0, "volume"] = -1
    with pytest.raises(DataValidationError, match=r"column 'volume': 1 row\(s\) with negative volume"):
        clean_sep(df, ValidationPolicy(negative_volume="error"), source="f.parquet")


def test_everything_dropped_is_an_error() -> None:
    df = sep_frame()
    df["volume"] = -1.0
    with pytest.raises(DataValidationError, match="every SEP row was dropped"):
        clean_sep(df, ValidationPolicy())


def test_rounding_slack_is_not_an_error() -> None:
    df = sep_frame()
    df.loc[0, "close"] = df.loc[0, "high"] * (1 + 1e-9)
    assert validate_sep(df).ok


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("SHARADAR_SEP_common_2024-01-31.parquet", "2024-01-31"),
        ("/data/SHARADAR_SEP_2023-12-29.csv.gz", "2023-12-29"),
        ("sep_2020-01-01_to_2024-02-29.csv", "2024-02-29"),
    ],
)
def test_infer_date_from_sep(name: str, expected: str) -> None:
    assert infer_date_from_sep(name) == expected


@pytest.mark.parametrize("name", ["SHARADAR_SEP.parquet", "sep_2024-02-30.csv"])
def test_infer_date_from_sep_without_a_date(name: str) -> None:
    with pytest.raises(DataValidationError, match="no YYYY-MM-DD date in the file name"):
        infer_date_from_sep(name)
