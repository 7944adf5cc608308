"""The importers, on slices of real files (tests/fixtures, see PROVENANCE.md) and built inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sepflow.errors import DataValidationError
from sepflow.io import write_panel
from sepflow.sep.ingest import ingest_source
from sepflow.sep.schema import SEP_COLUMNS, ValidationPolicy

FIXTURES = Path(__file__).parents[1] / "fixtures"


def test_long_csv_kaggle_layout() -> None:
    result = ingest_source(FIXTURES / "sp500_5yr_slice.csv")
    sep = result.sep
    assert result.source_kind == "long_csv"
    assert list(sep.columns) == list(SEP_COLUMNS)
    assert sorted(sep["ticker"].astype(str).unique()) == ["AAL", "AOS", "BHF"]
    # No dividend information: both other closes are the (split-adjusted) close.
    assert (sep["closeadj"] == sep["close"]).all() and (sep["closeunadj"] == sep["close"]).all()
    # The real quirks: one missing open/high/low row (BHF) and one high < low row (AOS) are dropped.
    assert result.dropped == {"missing_value": 1, "high_below_low": 1}
    assert result.asof == "2017-08-31" and result.asof_source == "last price date"
    assert (sep["lastupdated"] == pd.Timestamp("2017-08-31")).all()


def test_long_csv_strict_policy_reports_the_real_quirks() -> None:
    with pytest.raises(DataValidationError) as info:
        ingest_source(FIXTURES / "sp500_5yr_slice.csv", policy=ValidationPolicy.strict())
    message = str(info.value)
    assert "ticker='BHF', date=2017-07-26, open=<missing>" in message
    assert "high < low" in message and "ticker='AOS', date=2014-05-19" in message


def test_corporate_actions_give_sep_closes() -> None:
    """Quandl WIKI sample: unadjusted prices + split_ratio + ex-dividend → close, closeadj, closeunadj."""
    result = ingest_source(FIXTURES / "quandl_wiki_sample.csv")
    assert result.source_kind == "long_csv_with_corporate_actions"
    raw = pd.read_csv(FIXTURES / "quandl_wiki_sample.csv", parse_dates=["date"])
    merged = result.sep.assign(ticker=result.sep["ticker"].astype(str)).merge(
        raw, on=["ticker", "date"], suffixes=("", "_raw")
    )
    assert len(merged) == len(raw) == 916
    assert np.allclose(merged["closeunadj"], merged["close_raw"])
    aapl = merged[merged["ticker"] == "AAPL"].set_index("date")
    # The 7:1 split of 2014-06-09: unadjusted close jumps, split-adjusted close does not.
    assert aapl.loc["2014-06-06", "closeunadj"] / aapl.loc["2014-06-09", "closeunadj"] > 6.5
    assert abs(aapl.loc["2014-06-06", "close"] / aapl.loc["2014-06-09", "close"] - 1) < 0.05
    assert np.isclose(aapl.loc["2014-06-06", "close"], 645.57 / 7)
    # Quandl's adj_close is adjusted to a later date; compare the shapes (each series over its last value).
    for _, group in merged.groupby("ticker"):
        ours = group["closeadj"] / group["closeadj"].iloc[-1]
        theirs = group["adj_close"] / group["adj_close"].iloc[-1]
        assert np.allclose(ours, theirs, rtol=5e-4)
    # Dividends make closeadj below close earlier in history; equal on the last day.
    msft = merged[merged["ticker"] == "MSFT"]
    assert msft["closeadj"].iloc[0] < msft["close"].iloc[0]
    assert msft["closeadj"].iloc[-1] == msft["close"].iloc[-1]


def test_yahoo_folder() -> None:
    result = ingest_source(FIXTURES / "yahoo")
    assert result.source_kind == "yahoo_folder"
    assert sorted(result.sep["ticker"].astype(str).unique()) == ["AAPL", "MSFT"]
    yahoo = pd.read_csv(FIXTURES / "yahoo" / "AAPL.csv")
    aapl = result.sep[result.sep["ticker"] == "AAPL"]
    assert np.allclose(aapl["closeadj"], yahoo["Adj Close"]) and np.allclose(aapl["close"], yahoo["Close"])


def test_sharadar_folder_with_tickers_and_asof_from_name(tmp_path: Path) -> None:
    sep = pd.read_csv(FIXTURES / "malformed" / "sep_valid.csv")
    tickers = pd.read_csv(FIXTURES / "malformed" / "tickers_valid.csv")
    tickers = pd.concat([tickers, tickers.assign(table="SF1")])  # other Sharadar tables are ignored
    write_panel(sep.assign(date=pd.to_datetime(sep["date"])), tmp_path / "SHARADAR_SEP_2024-01-31.parquet")
    tickers.to_csv(tmp_path / "SHARADAR_TICKERS.csv", index=False)
    result = ingest_source(tmp_path)
    assert result.source_kind == "sharadar"
    assert result.asof == "2024-01-31" and result.asof_source == "file name"
    assert list(result.tickers["ticker"]) == ["AAA", "BBB"]


def test_params_asof_wins(tmp_path: Path) -> None:
    result = ingest_source(FIXTURES / "malformed" / "sep_valid.csv", asof="2024-02-15")
    assert result.asof == "2024-02-15" and result.asof_source == "params"


def test_ticker_named_na_is_kept(tmp_path: Path) -> None:
    text = (FIXTURES / "malformed" / "sep_valid.csv").read_text().replace("BBB", "NA")
    (tmp_path / "sep.csv").write_text(text)
    assert "NA" in set(ingest_source(tmp_path / "sep.csv").sep["ticker"].astype(str))


def test_derived_tickers_for_sources_without_tickers() -> None:
    result = ingest_source(FIXTURES / "sp500_5yr_slice.csv")
    tickers = result.tickers
    assert list(tickers["ticker"]) == ["AAL", "AOS", "BHF"]
    assert (tickers["category"] == "Unknown").all()
    assert tickers.loc[tickers["ticker"] == "AAL", "firstpricedate"].iloc[0] == pd.Timestamp("2013-02-08")


CSV_SOURCES = sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*.csv") if "yahoo" not in str(p))
TICKERS_SOURCES = sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("tickers_*.csv"))
EVERY_ROW_CHECK_DROPS = ValidationPolicy(**{check: "drop" for check in ValidationPolicy.strict().model_dump()
                                            if check != "price_tolerance"})


def _ingest_or_error(path: Path, tickers: Path | None = None) -> tuple[str, object]:
    try:
        result = ingest_source(path, tickers=tickers, policy=EVERY_ROW_CHECK_DROPS)
    except Exception as exc:  # compared by type: both readers must fail the same way
        return "error", type(exc)
    return "ok", result


@pytest.mark.parametrize(("name", "tickers"), [(n, None) for n in CSV_SOURCES] +
                         [("malformed/sep_valid.csv", t) for t in TICKERS_SOURCES])
def test_arrow_csv_reader_reads_what_the_pandas_reader_reads(
    name: str, tickers: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sepflow.sep import ingest

    tickers_path = FIXTURES / tickers if tickers else None
    fast = _ingest_or_error(FIXTURES / name, tickers_path)
    monkeypatch.setattr(ingest, "_read_csv_arrow", lambda *args: None)
    slow = _ingest_or_error(FIXTURES / name, tickers_path)
    assert fast[0] == slow[0]
    if fast[0] == "error":
        assert fast[1] is slow[1]
    else:
        pd.testing.assert_frame_equal(fast[1].sep, slow[1].sep)
        pd.testing.assert_frame_equal(fast[1].tickers, slow[1].tickers)
        assert fast[1].summary() == slow[1].summary()


def test_arrow_csv_reader_keeps_text_and_missing_markers_apart(tmp_path: Path) -> None:
    from sepflow.sep.ingest import read_table

    path = tmp_path / "prices.csv.gz"
    pd.DataFrame({"ticker": ["NA", "", "AB"], "volume": ["1", "NA", "2"], "note": ["N/A", "x", ""]}).to_csv(
        path, index=False)
    table = read_table(path, text_columns=("ticker",))
    assert table["ticker"].astype(str).tolist() == ["NA", "", "AB"]  # text: a ticker named NA stays
    assert table["volume"].isna().tolist() == [False, True, False]
    assert table["note"].isna().tolist() == [True, False, True]  # other text: NA markers are missing


def test_repeated_column_names_are_renamed_as_pandas_does(tmp_path: Path) -> None:
    from sepflow.sep.ingest import read_table

    path = tmp_path / "repeated.csv"
    path.write_text("ticker,close,close\nAA,1.0,2.0\n")
    assert list(read_table(path, text_columns=("ticker",)).columns) == ["ticker", "close", "close.1"]
