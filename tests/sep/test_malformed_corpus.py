"""Every malformed file in tests/fixtures/malformed gives one clear line, exit 2, and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from sepflow.cli import main

CORPUS = Path(__file__).parents[1] / "fixtures" / "malformed"

# file → fragments its error line must contain (the column, the problem, an example row)
SEP_CASES = {
    "sep_missing_column.csv": ["column 'closeadj'", "required column(s) missing"],
    "sep_empty.csv": ["no data rows"],
    "sep_bad_date.csv": ["column 'date'", "1 row(s) with an unparseable date", "date='2024-13-45'"],
    "sep_non_numeric_price.csv": ["column 'close'", "non-numeric", "close='abc'"],
    "sep_negative_price.csv": ["column 'closeadj'", "price <= 0", "row 3"],
    "sep_zero_price.csv": ["column 'open'", "price <= 0", "open=0"],
    "sep_high_below_low.csv": ["column 'high'", "high < low", "high=10, low=11.5"],
    "sep_open_outside_range.csv": ["column 'open'", "open outside [low, high]", "open=12.5"],
    "sep_close_outside_range.csv": ["column 'close'", "close outside [low, high]", "close=9.5"],
    "sep_negative_volume.csv": ["column 'volume'", "negative volume", "volume=-5"],
    "sep_duplicate_key.csv": ["column 'ticker, date'", "1 row(s) repeating a key", "row 4: ticker='BBB', date=2024-01-03"],
    "sep_path_traversal_ticker.csv": ["column 'ticker'", "2 row(s) whose ticker is empty or unusable", "'../x'"],
    "sep_slash_ticker.csv": ["column 'ticker'", "unusable as a path component", "ticker='/'"],
    "sep_empty_ticker.csv": ["column 'ticker'", "2 row(s) whose ticker is empty"],
    "sep_missing_value.csv": ["column 'close'", "missing value", "close=<missing>"],
    "sep_many_problems.csv": ["6 problems", "negative volume", "unparseable date", "high < low", "repeating a key"],
    "not_a_price_table.csv": ["unrecognised columns", "name", "age"],
    "sep_corrupt.parquet": ["not a readable parquet file"],
    "long_missing_volume.csv": ["unrecognised columns"],
    "yahoo_missing_adj_close": ["AAA.csv", "lacks column(s) Adj Close"],
}
TICKERS_CASES = {
    "tickers_missing_column.csv": ["invalid TICKERS data", "column 'category'", "required column(s) missing"],
    "tickers_duplicate_ticker.csv": ["invalid TICKERS data", "column 'ticker'", "repeating a key", "Beta Again"],
    "tickers_bad_flag.csv": ["column 'isdelisted'", "flag other than Y/N", "isdelisted='maybe'"],
    "tickers_bad_date.csv": ["column 'lastpricedate'", "unparseable date", "someday"],
}


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["validate", "--strict", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", sorted(SEP_CASES))
def test_malformed_sep_file_gives_one_clear_line(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, str(CORPUS / name))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert name in err  # names the file
    for fragment in SEP_CASES[name]:
        assert fragment in err, f"{fragment!r} not in {err!r}"


@pytest.mark.parametrize("name", sorted(TICKERS_CASES))
def test_malformed_tickers_file_gives_one_clear_line(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, str(CORPUS / "sep_valid.csv"), "--tickers", str(CORPUS / name))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and name in err
    for fragment in TICKERS_CASES[name]:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def test_corpus_is_large_enough() -> None:
    assert len(SEP_CASES) + len(TICKERS_CASES) >= 15


def test_valid_file_prints_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, str(CORPUS / "sep_valid.csv"), "--tickers", str(CORPUS / "tickers_valid.csv"))
    assert code == 0 and err == ""
    assert out.strip() == (
        f"OK {CORPUS / 'sep_valid.csv'}: 4 rows, 2 tickers, 2024-01-02 to 2024-01-03 (sharadar); TICKERS ok (2 rows)"
    )


def test_debug_shows_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--debug", "validate", str(CORPUS / "sep_empty.csv")]) == 2
    assert "Traceback" in capsys.readouterr().err
