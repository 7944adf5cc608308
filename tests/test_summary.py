"""Stage summaries: facts and tables, aligned, numbers formatted, printed to stdout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sepflow.summary import format_summary, format_value, print_summary


@pytest.mark.parametrize(("value", "text"), [
    (None, "-"), (float("nan"), "-"), (np.float32("nan"), "-"), (True, "yes"), (False, "no"),
    (193448, "193,448"), (np.int64(36), "36"), (0.51234, "0.5123"), (np.float64(-0.01), "-0.0100"),
    (123456.7, "123,457"), (float("inf"), "inf"),
    (Path("data/raw/sep.parquet"), "data/raw/sep.parquet"),
    ({"missing_value": 1, "high_below_low": 2}, "missing_value=1, high_below_low=2"), ({}, "none"),
    (["a", "b"], "a, b"), ([], "none"), ({"b", "a"}, "a, b"),
    (list(range(10)), "0, 1, 2, 3, 4, 5, 6, 7 (+2 more)"), ("dir_5d", "dir_5d"),
])
def test_values(value: object, text: str) -> None:
    assert format_value(value) == text


def test_facts_are_aligned_on_their_names() -> None:
    text = format_summary("ingest", {"rows": 1200, "tickers": 3, "dropped": {}},
                          notes={"outputs": [Path("data/raw/sep.parquet"), Path("reports/ingest.json")]})
    assert text.splitlines() == [
        "== ingest ==",
        "  rows     1,200",
        "  tickers  3",
        "  dropped  none",
        "  outputs  data/raw/sep.parquet, reports/ingest.json",
    ]


def test_table_right_aligns_numbers_and_left_aligns_text() -> None:
    rows = [
        {"target": "dir_5d", "headline": "roc_auc", "test": 0.5312, "version": 3},
        {"target": "return_10d", "headline": "rank_ic", "test": np.float64(-0.0123), "version": 12, "extra": None},
    ]
    text = format_summary("train@xgboost", rows, notes={"models": 2})
    assert text.splitlines() == [
        "== train@xgboost ==",
        "  target      headline     test  version  extra",
        "  dir_5d      roc_auc    0.5312        3      -",
        "  return_10d  rank_ic   -0.0123       12      -",
        "  models  2",
    ]


def test_an_empty_table_says_so() -> None:
    assert format_summary("walk_forward@lstm", [], notes={"targets": "none walked forward"}).splitlines() == [
        "== walk_forward@lstm ==", "  (nothing)", "  targets  none walked forward",
    ]


def test_print_summary_writes_to_stdout_only(capsys: pytest.CaptureFixture[str]) -> None:
    print_summary("filter_sep", {"tickers kept": 36})
    assert capsys.readouterr() == ("== filter_sep ==\n  tickers kept  36\n", "")
