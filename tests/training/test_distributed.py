"""``train.engine: dask``: the boosted families' final fit on a two-worker LocalCluster.

One cluster serves the module (starting one takes seconds); ``use_session`` makes it the place
fits run, and ``train_family`` reuses it instead of opening its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from sepflow.distributed import (
    DaskParams,
    DaskSession,
    current_session,
    dask_client,
    dask_session,
    engine_session,
    use_session,
)
from sepflow.features.dataset import DatasetBuilder
from sepflow.models import load_model, make_model
from sepflow.models.boosting import _early_stopping_round
from sepflow.ranking.targets import panel_frame
from sepflow.training.artifacts import load_trained
from sepflow.training.params import TrainParams
from sepflow.training.train import train_family

TWO_WORKERS = DaskParams(n_workers=2, partitions_per_worker=2)


@pytest.fixture(scope="module")
def cluster() -> Iterator[DaskSession]:
    with dask_client(TWO_WORKERS) as client:
        yield DaskSession(client, TWO_WORKERS.partitions_per_worker)


def _market(seed: int = 3, n_tickers: int = 20, n_dates: int = 60) -> tuple[pd.DataFrame, pd.Series]:
    """Features indexed (ticker, date) and a score that two of them predict, plus noise."""
    rng = np.random.default_rng(seed)
    index = pd.MultiIndex.from_product(
        [[f"T{i:02d}" for i in range(n_tickers)], pd.date_range("2021-01-01", periods=n_dates)], names=["ticker", "date"])
    X = pd.DataFrame(rng.normal(size=(len(index), 5)).astype(np.float32), index=index, columns=[f"f{i}" for i in range(5)])
    return X, X["f0"] + 0.5 * X["f1"] + pd.Series(rng.normal(size=len(X)), index=index)


@pytest.mark.parametrize("family", ["xgboost", "lightgbm"])
def test_two_workers_train_as_well_as_one_process(family: str, cluster: DaskSession, tmp_path: Path) -> None:
    X, score = _market(n_tickers=50)
    y = (score > 0).astype(int)
    train, val, test = slice(0, 1800), slice(1800, 2200), slice(2200, None)
    params = {"n_estimators": 200, "early_stopping_rounds": 15, "learning_rate": 0.1, "n_jobs": 1, "random_state": 7}
    local = make_model(family, "classification", **params).fit(X[train], y[train], eval_set=(X[val], y[val]))
    with use_session(cluster):
        spread = make_model(family, "classification", **params).fit(X[train], y[train], eval_set=(X[val], y[val]))

    def quality(model: object) -> tuple[float, float]:
        proba = model.predict_proba(X[test])[:, 1]
        return roc_auc_score(y[test], proba), balanced_accuracy_score(y[test], proba > 0.5)

    assert quality(spread) == pytest.approx(quality(local), abs=0.02)
    assert quality(spread)[0] > 0.75  # the signal is learned, not only matched
    assert 1 <= spread.n_iterations_ < 200  # early stopping on the validation rows still chose the rounds
    # The cluster's booster is a local one: its saved folder predicts what the fitted model did.
    reloaded = load_model(spread.save(tmp_path / family))
    np.testing.assert_array_equal(reloaded.predict_proba(X[test]), spread.predict_proba(X[test]))
    assert reloaded.get_params() == local.get_params()  # the engine is no model parameter


def test_train_family_fits_boosters_on_the_cluster(
    cluster: DaskSession, builder: DatasetBuilder, features: list[str], fast_params: TrainParams, tmp_path: Path,
) -> None:
    from distributed import get_task_stream

    ds = builder.build("dir_5d", features)
    params = fast_params.model_copy(update={"engine": "dask"})
    with use_session(cluster), get_task_stream(cluster.client) as stream:
        result = train_family("xgboost", "dir_5d", ds, features, params, 7, asof="2024-01-05",
                              out_dir=tmp_path / "xgboost", optuna_storage=None)
    assert stream.data, "the final fit ran no task on the cluster"
    assert result.metadata["train_params"]["engine"] == "dask"
    assert result.metadata["tuning"]["n_complete_trials"] == 2  # trials ran here, in this process
    X = panel_frame(ds)[0][features].iloc[-300:]
    np.testing.assert_array_equal(load_trained(tmp_path / "xgboost").model.predict_proba(X),
                                  result.model.predict_proba(X))


def test_spread_gives_every_worker_rows(cluster: DaskSession) -> None:
    values = np.arange(40, dtype=np.float64).reshape(20, 2)
    (spread,) = cluster.spread(values)
    np.testing.assert_array_equal(spread.compute(), values)
    holders = {worker for workers in cluster.client.who_has().values() for worker in workers}
    assert set(cluster.workers()) <= holders and spread.numblocks[0] == 4


def test_sessions_nest_and_the_local_engine_opens_none(cluster: DaskSession) -> None:
    assert current_session() is None
    with engine_session("local", TWO_WORKERS) as none, engine_session("dask", TWO_WORKERS, uses_cluster=False) as no:
        assert none is None and no is None and current_session() is None
    with use_session(cluster), dask_session(TWO_WORKERS) as reused:
        assert reused is cluster  # no second cluster inside an open session
    assert current_session() is None


@pytest.mark.parametrize("task", ["classification", "multiclass", "regression"])
def test_lightgbm_round_choice_is_early_stoppings(task: str) -> None:
    """Every round and then the choice from validation losses keeps what lightgbm.early_stopping keeps."""
    X, score = _market()
    y = {"classification": (score > 0).astype(int), "multiclass": pd.Series(np.digitize(score, [-0.7, 0.7]), X.index),
         "regression": score}[task]
    train, val = slice(0, 900), slice(900, None)
    kwargs = {"n_estimators": 150, "learning_rate": 0.3, "n_jobs": 1}
    stopped = make_model("lightgbm", task, early_stopping_rounds=8, **kwargs).fit(
        X[train], y[train], eval_set=(X[val], y[val]))
    every_round = make_model("lightgbm", task, early_stopping_rounds=None, **kwargs).fit(X[train], y[train])
    codes = y[val].to_numpy(dtype=float)
    chosen = _early_stopping_round(every_round.booster_, (X[val].to_numpy(), codes), task, 8)
    assert chosen == stopped.n_iterations_ < 150
