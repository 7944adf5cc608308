"""`dvc repro filter_sep` in a temporary copy of the repo: outputs, MLflow runs, caching, failures."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from sepflow.io import file_md5, read_json, read_panel

pytestmark = pytest.mark.slow


def test_repro_filter_sep_records_runs_and_caches(repo_copy: Callable) -> None:
    repo = repo_copy()
    repo.run("dvc", "repro", "filter_sep")
    root = repo.root

    sep = read_panel(root / "data/raw/sep.parquet")
    common = read_panel(root / "data/interim/sep_common.parquet")
    assert list(sep.columns) == ["ticker", "date", "open", "high", "low", "close", "volume", "closeadj",
                                 "closeunadj", "lastupdated"]
    assert common["in_universe"].any() and len(common) < len(sep)
    ingest_report = read_json(root / "reports/ingest.json")
    filter_report = read_json(root / "reports/filter_sep.json")
    assert ingest_report["rows"] == len(sep) and filter_report["rows"] == len(common)
    assert filter_report["tickers_dropped"]  # the synthetic market has ETFs, ADRs, penny names...
    # The DVC metrics files hold numbers only; dates and labels sit beside them.
    for name in ("ingest", "filter_sep"):
        assert _numeric_leaves(read_json(root / f"reports/{name}.json"))
    ingest_info, filter_info = (read_json(root / f"reports/{name}_info.json") for name in ("ingest", "filter_sep"))
    assert filter_info["asof"] == ingest_info["asof"] == sep["date"].max().strftime("%Y-%m-%d")
    assert ingest_info["source_kind"] == "sharadar" and ingest_info["date_min"] < ingest_info["date_max"]

    for stage in ("synthesize", "ingest", "filter_sep"):
        (run,) = repo.stage_runs(stage)
        assert run.info.status == "FINISHED"
        assert run.data.tags["sepflow.git_dirty"] == "false"
        assert len(run.data.tags["sepflow.git_commit"]) == 40
    (filter_run,) = repo.stage_runs("filter_sep")
    assert "mlflow_run_id" not in filter_report  # tracked reports hold no run id
    assert filter_run.data.tags["sepflow.input_md5.data/raw/sep.parquet"] == file_md5(root / "data/raw/sep.parquet")
    assert filter_run.data.params["universe.min_history_days"] == "60"
    assert filter_run.data.metrics["rows"] == len(common)

    # Nothing changed: nothing reruns, no new MLflow run.
    assert "Running stage" not in repo.run("dvc", "repro", "filter_sep").stdout
    assert len(repo.stage_runs()) == 3
    # A universe param change reruns filter_sep only.
    repo.set_params({"universe": {"min_price": 7.5}})
    out = repo.run("dvc", "repro", "filter_sep").stdout
    assert "Running stage 'filter_sep'" in out and "Running stage 'ingest'" not in out
    assert len(repo.stage_runs("filter_sep")) == 2 and len(repo.stage_runs("ingest")) == 1


def test_outputs_are_byte_identical_on_rerun(repo_copy: Callable) -> None:
    repo = repo_copy()
    repo.run("dvc", "repro", "filter_sep")
    paths = ["data/raw/sep.parquet", "data/raw/tickers.parquet", "data/interim/sep_common.parquet",
             "data/raw/synthetic_truth.parquet"]
    first = {p: file_md5(repo.root / p) for p in paths}
    repo.run("dvc", "repro", "--force", "--no-run-cache", "filter_sep")
    assert {p: file_md5(repo.root / p) for p in paths} == first


def test_bad_source_fails_cleanly(repo_copy: Callable) -> None:
    repo = repo_copy({"ingest": {"source": "tests/fixtures/malformed/sep_many_problems.csv"}})
    done = repo.run("dvc", "repro", "ingest", check=False)
    assert done.returncode != 0
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("sepflow: error:")]
    assert len(error_lines) == 1 and "sep_many_problems.csv: invalid SEP data, 2 problems" in error_lines[0]
    assert "unparseable date" in error_lines[0] and "repeating a key" in error_lines[0]
    assert "Traceback" not in done.stderr
    assert not (repo.root / "data/raw/sep.parquet").exists()
    assert not list((repo.root / "data/raw").glob(".*.tmp"))
    (run,) = repo.stage_runs("ingest")
    assert run.info.status == "FAILED"
    assert all(r.info.status != "RUNNING" for r in repo.stage_runs())


def test_real_prices_through_the_pipeline(repo_copy: Callable) -> None:
    """The Kaggle S&P 500 slice (no TICKERS file) runs through ingest and filter_sep."""
    repo = repo_copy({
        "ingest": {"source": "tests/fixtures/sp500_5yr_slice.csv"},
        "universe": {"min_history_days": 20, "liquidity_window": 10},
    })
    repo.run("dvc", "repro", "filter_sep")
    report = read_json(repo.root / "reports/ingest.json")
    assert read_json(repo.root / "reports/ingest_info.json")["source_kind"] == "long_csv"
    assert report["rows_dropped"] == {"high_below_low": 1, "missing_value": 1}
    common = read_panel(repo.root / "data/interim/sep_common.parquet")
    assert set(common["ticker"]) <= {"AAL", "AOS", "BHF"} and common["in_universe"].any()
    assert isinstance(common["date"].iloc[0], pd.Timestamp)


def _numeric_leaves(tree: dict) -> bool:
    """Every leaf a number (bools are not): what `dvc metrics diff` can compare."""
    return all(_numeric_leaves(v) if isinstance(v, dict) else isinstance(v, int | float) and not isinstance(v, bool)
               for v in tree.values())
