"""train_per_symbol on a few tickers: folders, manifest, metrics table, skipped tickers, determinism,
routing predictions and the registered routing model."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from pydantic import ValidationError

from sepflow.errors import ConfigError, DataValidationError, SepflowError
from sepflow.features.dataset import DatasetBuilder
from sepflow.ranking.targets import panel_frame
from sepflow.tracking.registry import register_trained
from sepflow.training.artifacts import load_trained
from sepflow.training.params import TrainParams
from sepflow.training.per_symbol import (
    PerSymbolResult,
    take_rows,
    ticker_datasets,
    ticker_seed,
    train_per_symbol,
)
from sepflow.training.pyfunc import predict_records
from sepflow.training.routing import (
    RoutedModel,
    load_routed,
    load_served,
    ticker_folder,
)
from sepflow.training.train import forward_returns_for

ASOF = "2018-07-06"
# Optuna flags the heartbeats of its SQLite storage as experimental.
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
SEED = 11
N_FULL = 3  # tickers with their whole history; one more keeps too few dates for three segments
SHORT_ROWS = 12


@pytest.fixture(scope="module")
def panel(builder: DatasetBuilder, features: list[str]) -> tuple[Any, np.ndarray, str]:
    """dir_5d on the longest tickers plus a short one, its forward returns, and the short ticker."""
    full = builder.build("dir_5d", features)
    returns = forward_returns_for(builder, full)
    counts = full.tickers.value_counts()
    counts = counts[counts > 0]  # a categorical column also counts tickers never in the universe
    longest = sorted(counts.index[np.lexsort((counts.index, -counts.to_numpy()))][:N_FULL])
    short = min(set(counts.index) - set(longest))
    ticker = full.tickers.to_numpy()
    rows = np.sort(np.r_[np.flatnonzero(np.isin(ticker, longest)), np.flatnonzero(ticker == short)[-SHORT_ROWS:]])
    return take_rows(full, rows), returns[rows], short


def per_symbol(params: TrainParams, **update: Any) -> TrainParams:
    return params.model_copy(update={"scope": "per_symbol", **update})


@pytest.fixture(scope="module")
def xgb_params(fast_params: TrainParams) -> TrainParams:
    """Tuned xgboost (two in-memory trials per ticker) on two workers."""
    return per_symbol(fast_params, max_workers=2)


@pytest.fixture(scope="module")
def trained(panel, features, xgb_params, tmp_path_factory) -> PerSymbolResult:
    ds, returns, _ = panel
    out = tmp_path_factory.mktemp("models") / "xgboost" / "dir_5d"
    return train_per_symbol("xgboost", "dir_5d", ds, features, xgb_params, SEED, asof=ASOF, out_dir=out,
                            optuna_storage=None, forward_returns=returns)


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_folders_manifest_and_table(trained: PerSymbolResult, panel, features) -> None:
    ds, _, short = panel
    tickers = sorted(set(ds.tickers) - {short})
    root = trained.out_dir / "per_symbol"
    assert sorted(p.name for p in trained.out_dir.iterdir()) == ["per_symbol"]
    assert sorted(p.name for p in root.iterdir()) == sorted([*tickers, "index.json", "metrics.csv"])
    assert not list(trained.out_dir.parent.glob(".*tmp-*")), "staging folders must not survive"

    index = json.loads((root / "index.json").read_text())
    assert index["scope"] == "per_symbol" and index["seed"] == SEED and index["features"] == features
    assert index["artifact_name"] == trained.artifact_name == f"dir_5d_clf_{ASOF}"
    assert list(index["tickers"]) == tickers and list(index["skipped"]) == [short]
    assert "segment has no rows left" in index["skipped"][short]
    assert "max_workers" not in index["train_params"]

    table = pd.read_csv(root / "metrics.csv")
    assert table["ticker"].tolist() == sorted([*tickers, short])
    assert table.set_index("ticker")["status"].to_dict() == {**dict.fromkeys(tickers, "trained"), short: "skipped"}
    seeds = []
    for ticker in tickers:
        folder = root / index["tickers"][ticker]["folder"]
        metadata = json.loads((folder / "metadata.json").read_text())
        metrics = json.loads((folder / "metrics.json").read_text())
        row = table.set_index("ticker").loc[ticker]
        assert metadata["seed"] == index["tickers"][ticker]["seed"] == row["seed"] == ticker_seed(SEED, ticker)
        assert metadata["data"]["n_tickers"] == 1 and metadata["data"]["rows_used"] == (ds.tickers == ticker).sum()
        assert metadata["tuning"]["study_name"] == f"xgboost-dir_5d-{ticker}"
        assert row["test.roc_auc"] == pytest.approx(metrics["test"]["roc_auc"])
        assert row["overfit_margin"] == pytest.approx(metrics["overfit_margin"])
        seeds.append(metadata["seed"])
    assert len(set(seeds)) == len(seeds)
    assert trained.metrics["test"]["roc_auc"] == pytest.approx(table["test.roc_auc"].mean())
    assert trained.metrics["n_tickers"] == len(tickers) and trained.metrics["headline"] == "roc_auc"


def test_max_workers_does_not_change_a_byte(trained, panel, features, xgb_params, tmp_path: Path) -> None:
    ds, returns, _ = panel
    again = train_per_symbol("xgboost", "dir_5d", ds, features, xgb_params.model_copy(update={"max_workers": 1}),
                             SEED, asof=ASOF, out_dir=tmp_path / "xgboost" / "dir_5d", optuna_storage=None,
                             forward_returns=returns)
    assert files_of(again.out_dir) == files_of(trained.out_dir)


def test_ticker_seed_comes_from_seed_and_name() -> None:
    assert ticker_seed(SEED, "AAA") == ticker_seed(SEED, "AAA")
    assert len({ticker_seed(SEED, "AAA"), ticker_seed(SEED, "AAB"), ticker_seed(SEED + 1, "AAA")}) == 3
    assert all(0 <= ticker_seed(seed, "AAA") < 2**31 for seed in (-1, 0, 2**40))


def test_routing_predicts_each_ticker_with_its_own_model(trained: PerSymbolResult, panel, features) -> None:
    ds, _, short = panel
    X = panel_frame(ds)[0][features]
    X = X[X.index.get_level_values("ticker") != short]
    shuffled = X.sample(frac=1.0, random_state=0)
    routed = load_served(trained.out_dir)
    assert isinstance(routed, RoutedModel) and routed.task == "classification"
    frame = routed.predict_frame(shuffled)
    assert frame.index.equals(shuffled.index)
    for ticker, entry in routed.metadata["tickers"].items():
        own = load_trained(trained.out_dir / "per_symbol" / entry["folder"])
        rows = X.index.get_level_values("ticker") == ticker
        pd.testing.assert_frame_equal(frame.loc[X.index[rows]], own.predict_frame(X[rows]))
    # Each ticker's own threshold decides its rows: the routing is not one model in disguise.
    thresholds = {t: m.threshold for t, m in routed.models.items()}
    assert len(set(thresholds.values())) > 1


def test_unknown_or_skipped_tickers_are_refused(trained: PerSymbolResult, panel, features) -> None:
    ds, _, short = panel
    X = panel_frame(ds)[0][features]
    routed = load_routed(trained.out_dir)
    with pytest.raises(DataValidationError, match=rf"no model for ticker\(s\) \['{short}'\].*skipped in training"):
        routed.predict_frame(X)
    renamed = X.head(3).rename(index=lambda t: "NOPE" if isinstance(t, str) else t, level="ticker")
    with pytest.raises(DataValidationError, match=r"\['NOPE'\]"):
        routed.predict_frame(renamed)
    with pytest.raises(DataValidationError, match="indexed by"):
        routed.predict_frame(X.head(3).reset_index(drop=True))
    with pytest.raises(SepflowError, match="routing manifest"):
        load_routed(trained.out_dir / "per_symbol")
    with pytest.raises(DataValidationError, match="cannot name a model folder"):
        ticker_folder("../AAA")


def test_failing_tickers_are_logged_and_all_failing_raises(
    panel, features, fast_params, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    ds, _, short = panel
    params = per_symbol(fast_params, max_workers=1)
    out = tmp_path / "dummy" / "dir_5d"
    with caplog.at_level(logging.WARNING, logger="sepflow.training.per_symbol"):
        result = train_per_symbol("dummy", "dir_5d", ds, features, params, SEED, asof=ASOF, out_dir=out,
                                  optuna_storage=None)
    assert list(result.skipped) == [short]
    assert any(short in r.getMessage() and "segment has no rows left" in r.getMessage() for r in caplog.records)

    before = files_of(out)
    only_short = take_rows(ds, ticker_datasets(ds)[short][1])
    with pytest.raises(SepflowError, match=f"every ticker of dummy per-symbol dir_5d failed.*{short}"):
        train_per_symbol("dummy", "dir_5d", only_short, features, params, SEED, asof=ASOF, out_dir=out,
                         optuna_storage=None)
    assert files_of(out) == before, "a failed run leaves the previous folder whole"
    with pytest.raises(ConfigError, match="not 'return_5d'"):  # refused once, before any ticker trains
        train_per_symbol("dummy", "return_5d", ds, features, params, SEED, asof=ASOF, out_dir=out,
                         optuna_storage=None)


def test_per_symbol_ensemble_weighs_each_tickers_members(panel, features, fast_params, tmp_path: Path) -> None:
    ds, _, short = panel
    params = per_symbol(fast_params, max_workers=1, families=["dummy", "xgboost", "ensemble"],
                        tuning=fast_params.tuning.model_copy(update={"n_trials": {}}))
    for family in ("dummy", "xgboost", "ensemble"):
        result = train_per_symbol(family, "dir_5d", ds, features, params, SEED, asof=ASOF,
                                  out_dir=tmp_path / family / "dir_5d", optuna_storage=None)
    assert list(result.skipped) == [short]
    for ticker in result.metadata["tickers"]:
        record = json.loads((tmp_path / "ensemble/dir_5d/per_symbol" / ticker / "metadata.json").read_text())
        assert record["ensemble"]["members"] == ["dummy", "xgboost"] and record["ensemble"]["skipped"] == {}


def test_scope_params() -> None:
    assert TrainParams().scope == "pooled" and TrainParams().max_workers >= 1
    with pytest.raises(ValidationError, match="scope"):
        TrainParams.model_validate({"scope": "per_ticker"})
    with pytest.raises(ValidationError, match="max_workers"):
        TrainParams.model_validate({"max_workers": 0})


@pytest.fixture()
def tracking(tmp_path: Path) -> Iterator[None]:
    """A throwaway SQLite tracking store with its artifacts beside it."""
    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
        experiment = mlflow.create_experiment("per_symbol", artifact_location=(tmp_path / "artifacts").as_uri())
        mlflow.set_experiment(experiment_id=experiment)
        yield
        mlflow.set_tracking_uri(previous)


def test_registered_routing_model_serves_like_the_folder(
    tracking: None, trained: PerSymbolResult, panel, features,
) -> None:
    ds, _, short = panel
    with mlflow.start_run() as run:
        version = register_trained(trained.out_dir, "xgboost-dir_5d", run.info.run_id)
    tags = MlflowClient().get_model_version("xgboost-dir_5d", str(version)).tags
    assert tags["sepflow.scope"] == "per_symbol" and tags["sepflow.artifact_name"] == trained.artifact_name
    assert float(tags["sepflow.metric.test.roc_auc"]) == trained.metrics["test"]["roc_auc"]

    frame = panel_frame(ds)[0][features].reset_index()
    frame = frame[frame["ticker"] != short].groupby("ticker").tail(4).reset_index(drop=True)
    served = mlflow.pyfunc.load_model("models:/xgboost-dir_5d@candidate").predict(frame)
    local = predict_records(load_served(trained.out_dir), frame)
    pd.testing.assert_frame_equal(served, local)
    assert served["ticker"].nunique() == N_FULL


def test_stored_studies_are_named_per_ticker(panel, features, xgb_params, tmp_path: Path) -> None:
    """Two workers tune into one SQLite storage, one resumable study per ticker."""
    ds = panel[0]
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = train_per_symbol("xgboost", "dir_5d", ds, features, xgb_params, SEED, asof=ASOF,
                              out_dir=tmp_path / "xgboost" / "dir_5d", optuna_storage=storage)
    names = sorted(optuna.get_all_study_names(storage))
    assert names == [f"xgboost-dir_5d-{t}" for t in result.metadata["tickers"]]
    for name in names:
        assert len(optuna.load_study(study_name=name, storage=storage).trials) == 2
