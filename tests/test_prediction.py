"""`sepflow predict`: registered model + prices → one prediction per universe ticker, or a one-line refusal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from sepflow.cli import main
from sepflow.errors import DataValidationError
from sepflow.features.dataset import DatasetBuilder, assemble_features_frame
from sepflow.features.manifest import UNIVERSE_COLUMN
from sepflow.features.spec import FeatureParams, TargetParams
from sepflow.io import read_panel, write_panel
from sepflow.prediction import ModelRef, predict_at
from sepflow.sep.ingest import ingest_source
from sepflow.sep.synthetic import SyntheticParams, generate_market
from sepflow.sep.universe import UniverseParams, filter_universe
from sepflow.tracking.registry import model_name, register_trained
from sepflow.training.artifacts import load_trained
from sepflow.training.params import TrainParams
from sepflow.training.per_symbol import take_rows, train_per_symbol
from sepflow.training.routing import load_served
from sepflow.training.train import train_family

FEATURES = ["ret_5d", "ret_20d", "ret_60d", "sma_ratio_20", "rsi_14", "ret_20d_xs", "rvol_20"]
NAME = model_name("xgboost", "dir_5d")
TAMPERED = model_name("xgboost", "dir_5d_tampered")
UNIVERSE = {"min_history_days": 60, "liquidity_window": 20}
OUTPUTS = ["probability", "calibrated_probability", "predicted_class"]


@dataclass(frozen=True)
class Market:
    """A SEP folder, the params file that reads it, and the frame training saw (full history)."""

    root: Path
    sep: Path
    params: Path
    frame: pd.DataFrame
    manifest: dict[str, object]


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Market:
    root = tmp_path_factory.mktemp("predict")
    synthetic = generate_market(SyntheticParams(n_tickers=30, n_days=400, signal_strength=3))
    sep = root / "sharadar"
    write_panel(synthetic.sep, sep / "SHARADAR_SEP.parquet")
    write_panel(synthetic.tickers, sep / "SHARADAR_TICKERS.parquet")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"universe": UNIVERSE, "targets": {"horizons": [5]}}))
    ingested = ingest_source(sep)
    universe = filter_universe(ingested.sep, ingested.tickers, UniverseParams(**UNIVERSE))
    frame, manifest = assemble_features_frame(universe.sep, FeatureParams(), TargetParams(horizons=[5]))
    return Market(root, sep, params, frame, manifest)


def _train(market: Market, family: str, params: dict[str, object]) -> Path:
    builder = DatasetBuilder.from_frame(market.frame, market.manifest)
    folder = market.root / "models" / family / "dir_5d"
    train_family(family, "dir_5d", builder.build("dir_5d", FEATURES), FEATURES,
                 TrainParams.model_validate({"tuning": {"n_trials": {}, "storage": None}, family: params}), 1,
                 asof="2018-07-06", out_dir=folder, optuna_storage=None)
    return folder


@pytest.fixture(scope="module")
def folder(market: Market) -> Path:
    return _train(market, "xgboost", {"n_estimators": 20, "early_stopping_rounds": 5, "n_jobs": 1})


@pytest.fixture(scope="module")
def registry(market: Market, folder: Path) -> Iterator[int]:
    """A throwaway SQLite store (named by MLFLOW_TRACKING_URI, as a server would be) holding NAME
    v1 with alias production, and TAMPERED whose stored features.json names a feature nobody builds."""
    store = market.root / "mlflow"
    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/mlflow.db")
        store.mkdir()
        mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
        experiment = mlflow.create_experiment("sepflow", artifact_location=(store / "artifacts").as_uri())
        client = MlflowClient()
        with mlflow.start_run(experiment_id=experiment) as run:
            version = register_trained(folder, NAME, run.info.run_id)
            tampered = register_trained(folder, TAMPERED, run.info.run_id)
        client.set_registered_model_alias(NAME, "production", str(version))
        client.set_registered_model_alias(TAMPERED, "production", str(tampered))
        # Corrupt the stored copy (not the trained folder): the registry is what predict trusts.
        location = client.get_model_version_download_uri(TAMPERED, str(tampered))
        stored = next(Path(location.removeprefix("file://")).rglob("features.json"))
        recorded = json.loads(stored.read_text())
        recorded["features"] = [name.replace("rvol_20", "rvol_21") for name in recorded["features"]]
        stored.write_text(json.dumps(recorded))
        yield version
        mlflow.set_tracking_uri(previous)


def _expected(market: Market, folder: Path, asof: str) -> pd.DataFrame:
    """What the trained folder predicts on the universe rows of ``asof`` in the full-history frame."""
    rows = market.frame[(market.frame["date"] == pd.Timestamp(asof)) & market.frame[UNIVERSE_COLUMN]]
    rows = rows.dropna(subset=FEATURES)
    X = rows.assign(ticker=rows["ticker"].astype(str)).set_index(["ticker", "date"])[FEATURES]
    return load_trained(folder).predict_frame(X).reset_index()


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], out: Path) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("sepflow: error: predict: ") and err.count("\n") == 1, err
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.*"))
    return err


def test_one_prediction_per_universe_ticker(
    market: Market, folder: Path, registry: int, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    last = market.frame["date"].max()
    members = market.frame[market.frame[UNIVERSE_COLUMN]]  # a mid-history date with names in the universe
    asof = f"{members['date'].sort_values().iloc[len(members) // 2]:%Y-%m-%d}"
    for day in (None, asof):
        out = tmp_path / f"{day or 'last'}.csv"
        argv = ["predict", "--model", f"{NAME}@production", "--sep", str(market.sep), "--params", str(market.params),
                "--out", str(out), *(["--asof", day] if day else [])]
        assert main(argv) == 0
        assert f"{NAME} v{registry} (@production)" in capsys.readouterr().out
        got = pd.read_csv(out, parse_dates=["date"])
        expected = _expected(market, folder, day or f"{last:%Y-%m-%d}")
        assert len(expected) > 10 and got["ticker"].is_unique
        assert list(got.columns) == ["ticker", "date", "model", "version", *OUTPUTS]
        assert (got["model"] == NAME).all() and (got["version"] == registry).all()
        pd.testing.assert_frame_equal(got[["ticker", "date", *OUTPUTS]], expected, check_dtype=False, rtol=0, atol=0)


def test_stdout_parquet_and_default_source_agree(
    market: Market, registry: int, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = ["predict", "--model", f"{NAME}/{registry}", "--params", str(market.params)]
    assert main([*base, "--sep", str(market.sep)]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("predict: ") and captured.out.startswith("ticker,date,model,version,")
    # The pipeline's own filtered SEP is the default source; same prices, same bytes.
    ingested = ingest_source(market.sep)
    universe = filter_universe(ingested.sep, ingested.tickers, UniverseParams(**UNIVERSE))
    write_panel(universe.sep, tmp_path / "data" / "interim" / "sep_common.parquet")
    monkeypatch.chdir(tmp_path)
    assert main([*base, "--out", "p.csv"]) == 0
    assert Path("p.csv").read_text() == captured.out
    assert main([*base, "--out", "p.parquet"]) == 0
    assert main([*base, "--out", "again.parquet"]) == 0
    assert Path("p.parquet").read_bytes() == Path("again.parquet").read_bytes()
    frame = read_panel("p.parquet")
    assert list(frame.columns) == ["ticker", "date", "model", "version", *OUTPUTS] and len(frame) > 10


def test_feature_signature_mismatch_is_refused(
    market: Market, registry: int, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    params = yaml.safe_load(market.params.read_text())
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**params, "features": {"rsi_window": 10}}))
    out = tmp_path / "p.csv"
    err = _refused(capsys, ["predict", "--model", f"{NAME}@production", "--sep", str(market.sep),
                            "--params", str(other), "--out", str(out)], out)
    assert f"{NAME} v{registry}" in err and "signature" in err and str(other) in err


def test_recorded_feature_not_built_is_refused(
    market: Market, registry: int, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "p.csv"
    err = _refused(capsys, ["predict", "--model", f"{TAMPERED}@production", "--sep", str(market.sep),
                            "--params", str(market.params), "--out", str(out)], out)
    assert TAMPERED in err and "['rvol_21']" in err


@pytest.mark.parametrize(("model", "says"), [
    ("no-such-model@production", "no registered model 'no-such-model'"),
    (f"{NAME}@champion", "has no alias 'champion' (aliases: @candidate → v1, @production → v1)"),
    (f"{NAME}/7", "has no version 7 (versions: [1])"),
    (NAME, "must be NAME@ALIAS"),
])
def test_unknown_model_alias_or_version_is_one_line(
    market: Market, registry: int, tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str, says: str,
) -> None:
    out = tmp_path / "p.csv"
    err = _refused(capsys, ["predict", "--model", model, "--sep", str(market.sep), "--params", str(market.params),
                            "--out", str(out)], out)
    assert says in err


@pytest.mark.parametrize("asof", ["2030-01-02", "2017-01-07", "yesterday-ish"])
def test_asof_without_prices_is_one_line(
    market: Market, registry: int, tmp_path: Path, capsys: pytest.CaptureFixture[str], asof: str,
) -> None:
    out = tmp_path / "p.csv"
    err = _refused(capsys, ["predict", "--model", f"{NAME}@production", "--sep", str(market.sep),
                            "--params", str(market.params), "--asof", asof, "--out", str(out)], out)
    first, last = market.frame["date"].min(), market.frame["date"].max()
    assert asof in err
    if asof[0].isdigit():
        assert f"covers {first:%Y-%m-%d} to {last:%Y-%m-%d}" in err


def test_bad_output_suffix_and_missing_default_source(
    market: Market, registry: int, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "p.txt"
    assert "must end with .csv or .parquet" in _refused(
        capsys, ["predict", "--model", f"{NAME}@production", "--out", str(out)], out)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "p.csv"
    assert "no filtered SEP at data/interim/sep_common.parquet" in _refused(
        capsys, ["predict", "--model", f"{NAME}@production", "--params", str(market.params), "--out", str(out)], out)


def test_tickers_missing_a_feature_are_excluded_and_named(market: Market, folder: Path) -> None:
    asof = market.frame["date"].max()
    panel = market.frame[market.frame["date"] <= asof]
    frame = panel[["ticker", "date", UNIVERSE_COLUMN, *FEATURES]].reset_index(drop=True)
    on_asof = frame.index[(frame["date"] == asof) & frame[UNIVERSE_COLUMN]]
    frame.loc[on_asof[:2], "rsi_14"] = np.nan
    result = predict_at(load_trained(folder), frame, asof, ModelRef(NAME, 1))
    dropped = sorted(frame.loc[on_asof[:2], "ticker"].astype(str))
    assert result.excluded == {"missing_feature": dropped} and not set(dropped) & set(result.frame["ticker"])
    assert len(result.frame) == len(on_asof) - 2
    frame[UNIVERSE_COLUMN] = False
    with pytest.raises(DataValidationError, match="no ticker is in the universe on"):
        predict_at(load_trained(folder), frame, asof, ModelRef(NAME, 1))


def test_per_symbol_model_routes_and_names_tickers_without_a_model(market: Market) -> None:
    """Each ticker is predicted by its own model; a universe ticker that has none is excluded by name."""
    ds = DatasetBuilder.from_frame(market.frame, market.manifest).build("dir_5d", FEATURES)
    counts = ds.tickers.astype(str).value_counts()
    chosen = sorted(counts.index[:2])
    folder = market.root / "models" / "per_symbol" / "xgboost" / "dir_5d"
    params = TrainParams.model_validate({"tuning": {"n_trials": {}, "storage": None}, "max_workers": 1,
                                         "xgboost": {"n_estimators": 10, "early_stopping_rounds": 5, "n_jobs": 1}})
    rows = np.flatnonzero(ds.tickers.astype(str).isin(chosen).to_numpy())
    train_per_symbol("xgboost", "dir_5d", take_rows(ds, rows), FEATURES, params, 1, asof="2018-07-06",
                     out_dir=folder, optuna_storage=None)
    asof = market.frame["date"].max()
    frame = market.frame[["ticker", "date", UNIVERSE_COLUMN, *FEATURES]]
    result = predict_at(load_served(folder), frame, asof, ModelRef("xgboost-dir_5d", 1))
    assert sorted(result.frame["ticker"]) == chosen
    day = f"{asof:%Y-%m-%d}"
    expected = pd.concat([_expected(market, folder / "per_symbol" / t, day).query("ticker == @t") for t in chosen],
                         ignore_index=True)
    pd.testing.assert_frame_equal(result.frame[["ticker", "date", *OUTPUTS]], expected, check_dtype=False)
    universe = set(_expected(market, folder / "per_symbol" / chosen[0], day)["ticker"])
    assert result.excluded == {"no_model": sorted(universe - set(chosen))}


@pytest.mark.slow
def test_lstm_looks_back_as_in_training(market: Market) -> None:
    """An LSTM's prediction at the as-of date uses the earlier rows, trimmed to its window, exactly
    as predict_frame on the whole usable history gives it."""
    folder = _train(market, "lstm", {"sequence_length": 5, "units1": 4, "units2": 2, "epochs": 1,
                                     "batch_size": 256, "patience": 1})
    trained = load_trained(folder)
    asof = market.frame["date"].max()
    usable = market.frame[market.frame[UNIVERSE_COLUMN]].dropna(subset=FEATURES)
    X = usable.assign(ticker=usable["ticker"].astype(str)).set_index(["ticker", "date"])[FEATURES]
    whole = trained.predict_frame(X)
    expected = whole[whole.index.get_level_values("date") == asof].reset_index()
    frame = market.frame[["ticker", "date", UNIVERSE_COLUMN, *FEATURES]]
    got = predict_at(trained, frame, asof, ModelRef("lstm-dir_5d", 1)).frame
    pd.testing.assert_frame_equal(got.drop(columns=["model", "version"]), expected, check_dtype=False)
