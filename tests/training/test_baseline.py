"""`sepflow train-baseline`: one SEP file → dir/return bundles, for every backend, through the CLI and the library."""

from __future__ import annotations

import contextlib
import io
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml

from sepflow.cli import main
from sepflow.config import Params, load_params
from sepflow.errors import DataValidationError
from sepflow.sep.synthetic import SyntheticParams, generate_market
from sepflow.training import device as device_module
from sepflow.training.baseline import (
    BACKENDS,
    BaselineResult,
    baseline_features,
    load_baseline,
    train_baseline,
)

SEP_NAME = "SHARADAR_SEP_2024-03-01.csv"
FILE_DATE, FLAG_DATE = "2024-03-01", "2024-05-31"
HORIZON = "1d"  # the most independent labels per test date: the planted signal shows in few rows
# Short feature windows keep most of the 400 days usable; one thread keeps XGBoost deterministic.
PARAMS: dict[str, Any] = {
    "universe": {"min_history_days": 60, "liquidity_window": 20},
    "features": {"sma_windows": [5, 10, 20, 50], "lookback_52w": 60, "weekly": {"enabled": False}},
    "train": {"xgboost": {"n_estimators": 100, "early_stopping_rounds": 10, "n_jobs": 1}},
}


def _names(asof: str) -> set[str]:
    return {f"dir_{HORIZON}_clf_{asof}.joblib", f"return_{HORIZON}_reg_{asof}.joblib"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SEP CSV named with its as-of date and a tiny params file.

    Market moves are made small against the stocks' own (planted) moves, so a pooled ROC-AUC
    over a few test weeks measures the planted cross-sectional signal, not the market's luck.
    """
    root = tmp_path_factory.mktemp("baseline")
    market = generate_market(SyntheticParams(n_tickers=30, n_days=400, signal_strength=3,
                                             market_vol=0.002, sector_vol=0.0))
    market.sep.to_csv(root / SEP_NAME, index=False)
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    return root


def _cli(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(args)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def runs(workdir: Path) -> dict[str, dict[str, Any]]:
    """Per backend: a library run (as-of date from the file name) and a CLI run with --date, same seed."""
    params = load_params(workdir / "params.yaml")
    out: dict[str, dict[str, Any]] = {}
    for backend in BACKENDS:
        library_dir, cli_dir = workdir / backend / "library", workdir / backend / "cli"
        result = train_baseline(workdir / SEP_NAME, params, horizon=HORIZON, backend=backend, out_dir=library_dir)
        code, stdout = _cli(["train-baseline", "--sep-master", str(workdir / SEP_NAME), "--date", FLAG_DATE,
                             "--horizon", HORIZON, "--backend", backend, "--out", str(cli_dir),
                             "--params", str(workdir / "params.yaml")])
        assert code == 0
        out[backend] = {"result": result, "library_dir": library_dir, "cli_dir": cli_dir, "stdout": stdout}
    return out


@pytest.fixture(scope="module")
def features_frame(workdir: Path) -> pd.DataFrame:
    """The features of the SEP file, built as training built them, indexed by (ticker, date)."""
    built = baseline_features(workdir / SEP_NAME, load_params(workdir / "params.yaml"), HORIZON)
    return built.frame.set_index(["ticker", "date"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_writes_both_files_named_by_date(runs: dict[str, dict[str, Any]], backend: str) -> None:
    run = runs[backend]
    assert {p.name for p in run["library_dir"].iterdir()} == _names(FILE_DATE)  # date from the file name
    assert {p.name for p in run["cli_dir"].iterdir()} == _names(FLAG_DATE)  # --date wins
    result: BaselineResult = run["result"]
    for bundle, target, task in ((result.classifier, f"dir_{HORIZON}", "classification"),
                                 (result.regressor, f"return_{HORIZON}", "regression")):
        kind = "clf" if task == "classification" else "reg"
        loaded = load_baseline(run["library_dir"] / f"{target}_{kind}_{FILE_DATE}.joblib")
        assert (loaded.target, loaded.task, loaded.horizon, loaded.asof, loaded.backend, loaded.device) == (
            target, task, HORIZON, FILE_DATE, backend, "cpu")
        assert loaded.feature_names == bundle.feature_names and len(loaded.feature_names) > 10
        assert loaded.feature_signature == bundle.feature_signature and loaded.seed == Params().seed
        library = {"dummy": "sklearn", "xgb": "xgboost", "torch": "torch"}[backend]
        assert library in loaded.libraries and "joblib" in loaded.libraries
        assert loaded.segments["train"]["end"] < loaded.segments["validation"]["start"]
        assert loaded.segments["validation"]["end"] < loaded.segments["test"]["start"]
    assert {"accuracy", "balanced_accuracy", "roc_auc"} <= set(result.classifier.metrics)
    assert {"rmse", "rank_ic"} <= set(result.regressor.metrics)


@pytest.mark.parametrize("backend", BACKENDS)
def test_summary_table_names_rows_dates_metrics_and_files(runs: dict[str, dict[str, Any]], backend: str) -> None:
    stdout, cli_dir = runs[backend]["stdout"], runs[backend]["cli_dir"]
    assert "11,0" in stdout.splitlines()[1] and "2017-01-02 to 2018-07-13" in stdout  # rows, date range
    for name in ("roc_auc", "balanced_accuracy", "rank_ic", "rmse", *(str(cli_dir / n) for n in _names(FLAG_DATE))):
        assert name in stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_load_and_predict_reproduce_the_training_predictions(
    runs: dict[str, dict[str, Any]], features_frame: pd.DataFrame, backend: str,
) -> None:
    result: BaselineResult = runs[backend]["result"]
    for bundle, path in ((result.classifier, result.classifier_path), (result.regressor, result.regressor_path)):
        expected = result.test_predictions[bundle.target]
        rows = features_frame.loc[expected.index]
        loaded = load_baseline(path)
        np.testing.assert_array_equal(loaded.predict(rows, feature_signature=bundle.feature_signature),
                                      expected.to_numpy())
        if bundle.task == "classification":
            assert ((expected > 0) & (expected < 1)).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_inputs_and_seed_give_identical_predictions(
    runs: dict[str, dict[str, Any]], features_frame: pd.DataFrame, backend: str,
) -> None:
    """The CLI run (another process step, another as-of name) learned exactly what the library run did."""
    result: BaselineResult = runs[backend]["result"]
    cli_dir = runs[backend]["cli_dir"]
    for bundle, kind in ((result.classifier, "clf"), (result.regressor, "reg")):
        expected = result.test_predictions[bundle.target]
        again = load_baseline(cli_dir / f"{bundle.target}_{kind}_{FLAG_DATE}.joblib")
        np.testing.assert_array_equal(again.predict(features_frame.loc[expected.index]), expected.to_numpy())
        assert joblib.hash(again.model) == joblib.hash(bundle.model)  # the same learned state, to the byte
        assert again.metrics == pytest.approx(bundle.metrics, nan_ok=True)
    if backend == "torch":
        import torch

        # The deterministic mode and the single thread were set for the fit only.
        assert not torch.are_deterministic_algorithms_enabled()


def test_xgb_classifier_beats_the_dummy_on_the_planted_signal(runs: dict[str, dict[str, Any]]) -> None:
    dummy, xgb = (runs[b]["result"].classifier.metrics["roc_auc"] for b in ("dummy", "xgb"))
    assert dummy == pytest.approx(0.5)
    assert xgb > dummy + 0.02


def test_predict_leaves_rows_with_a_missing_feature_empty(
    runs: dict[str, dict[str, Any]], features_frame: pd.DataFrame,
) -> None:
    bundle = runs["xgb"]["result"].classifier
    rows = features_frame.loc[runs["xgb"]["result"].test_predictions[bundle.target].index[:4]].copy()
    rows.iloc[1, rows.columns.get_loc(bundle.feature_names[0])] = np.nan
    scores = bundle.predict(rows)
    assert np.isnan(scores[1]) and np.isfinite(scores[[0, 2, 3]]).all()
    with pytest.raises(DataValidationError, match="lacks 1 model features"):
        bundle.predict(rows.drop(columns=[bundle.feature_names[0]]))
    with pytest.raises(DataValidationError, match="signature"):
        bundle.predict(rows, feature_signature="0" * 64)


def test_load_baseline_refuses_what_it_did_not_write(tmp_path: Path) -> None:
    other = tmp_path / "other.joblib"
    joblib.dump({"model": None}, other)
    with pytest.raises(DataValidationError, match="not a sepflow baseline bundle"):
        load_baseline(other)
    with pytest.raises(DataValidationError, match="not found"):
        load_baseline(tmp_path / "missing.joblib")


def test_gpu_without_a_gpu_falls_back_to_the_cpu(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(device_module, "visible_gpus", lambda: 0)
    caplog.set_level(logging.WARNING, logger="sepflow.training.baseline")
    code, stdout = _cli(["train-baseline", "--sep-master", str(workdir / SEP_NAME), "--horizon", HORIZON,
                         "--backend", "xgb", "--device", "gpu", "--out", str(tmp_path),
                         "--params", str(workdir / "params.yaml")])
    assert code == 0 and "backend xgb (cpu)" in stdout
    assert "--device gpu, but no GPU is visible; training on the CPU" in caplog.text
    bundle = load_baseline(tmp_path / f"dir_{HORIZON}_clf_{FILE_DATE}.joblib")
    assert bundle.device == "cpu" and bundle.model.get_params()["device"] == "cpu"


def _young_file(workdir: Path) -> Path:
    """Every ticker's first 45 days: the universe admits them, but no row has a full 50-day feature."""
    sep = pd.read_csv(workdir / SEP_NAME)
    young = workdir / "young" / "SHARADAR_SEP_2017-03-03.csv"
    young.parent.mkdir(exist_ok=True)
    sep[sep["date"] < "2017-03-06"].to_csv(young, index=False)
    return young


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_file", "SEP file not found"),
        ("bad_horizon", "horizon must be one of 1d, 5d, 10d, 30d, got '7d'"),
        ("bad_date", "--date must be a YYYY-MM-DD date, got '2024-02-30'"),
        ("no_rows", "0 no data rows"),
        ("no_usable_rows", "no usable rows for dir_1d"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_files(
    workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str,
) -> None:
    sep, horizon, extra = workdir / SEP_NAME, HORIZON, []
    params = workdir / "params.yaml"
    if case == "missing_file":
        sep = workdir / "SHARADAR_SEP_1999-01-01.csv"
    elif case == "bad_horizon":
        horizon = "7d"
    elif case == "bad_date":
        extra = ["--date", "2024-02-30"]
    elif case == "no_rows":
        sep = tmp_path / "SHARADAR_SEP_2024-01-02.csv"
        sep.write_text((workdir / SEP_NAME).read_text().splitlines()[0] + "\n")
    else:
        sep = _young_file(workdir)
        params = tmp_path / "params.yaml"
        params.write_text(yaml.safe_dump({**PARAMS, "universe": {"min_history_days": 20, "liquidity_window": 20}}))
    out = tmp_path / "models"
    code = main(["train-baseline", "--sep-master", str(sep), "--horizon", horizon, "--backend", "dummy",
                 "--out", str(out), "--params", str(params), *extra])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.startswith("sepflow: error: ") and captured.err.count("\n") == 1
    assert message in captured.err
    assert not out.exists()


def test_the_cli_and_the_library_do_not_import_torch() -> None:
    """torch is loaded only when the torch backend fits or predicts."""
    code = ("import sys, sepflow.cli, sepflow.training.baseline; sepflow.cli.build_parser(); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
