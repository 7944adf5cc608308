"""``sepflow tune``: train@FAMILY's search shared by worker processes through the study's database."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from sepflow.cli import main
from sepflow.config import load_params
from sepflow.errors import ConfigError
from sepflow.features.dataset import DatasetBuilder
from sepflow.models.tuning import SQLITE_TIMEOUT, rdb_storage
from sepflow.training.params import TrainParams
from sepflow.training.train import train_family
from sepflow.training.tune import check_tunable, tune_target


def _shared(fast_params: TrainParams, storage: str) -> TrainParams:
    tuning = fast_params.tuning.model_copy(update={"storage": storage, "n_trials": {"xgboost": 2},
                                                   "n_estimators_range": (5, 10)})
    return fast_params.model_copy(update={"tuning": tuning})


@pytest.mark.slow  # two spawned interpreters import the model libraries
def test_two_processes_fill_one_study_that_training_then_reads(
    builder: DatasetBuilder, features: list[str], fast_params: TrainParams, tmp_path: Path,
) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    params = _shared(fast_params, storage)
    ds = builder.build("dir_5d", features)

    report = tune_target("xgboost", "dir_5d", ds, features, params, 7, workers=2, n_trials=6)

    trials = optuna.load_study(study_name="xgboost-dir_5d", storage=storage).get_trials()
    numbers = sorted(t.number for t in trials)
    assert numbers == list(range(6))  # one numbering across processes: unique, contiguous, none extra
    assert all(t.state == TrialState.COMPLETE for t in trials) and report.n_complete == 6
    assert [len(ran) for ran in report.by_worker] == [3, 3]  # both processes searched, an even split
    assert sorted(n for ran in report.by_worker for n in ran) == numbers
    # Distinct sampler seeds: the workers' first trials are not the same draw.
    first = [min(ran) for ran in report.by_worker]
    assert trials[first[0]].params != trials[first[1]].params

    # train@xgboost (which asks for 2) finds the study done: no new trial, the best params fitted.
    result = train_family("xgboost", "dir_5d", ds, features, params, 7, asof="2024-01-05",
                          out_dir=tmp_path / "model", optuna_storage=storage)
    assert result.metadata["tuning"]["n_complete_trials"] == 6
    assert len(optuna.load_study(study_name="xgboost-dir_5d", storage=storage).trials) == 6
    assert result.metadata["tuning"]["best_params"] == report.best_params


def test_sqlite_storage_waits_for_other_writers(tmp_path: Path) -> None:
    storage = rdb_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    with storage.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_TIMEOUT * 1000


def test_searches_training_would_not_read_are_refused(fast_params: TrainParams) -> None:
    with pytest.raises(ConfigError, match="no search space"):
        check_tunable("dummy", fast_params)
    with pytest.raises(ConfigError, match=r"n_trials\.xgboost is 0"):
        check_tunable("xgboost", fast_params.model_copy(update={"tuning": fast_params.tuning.model_copy(
            update={"n_trials": {}})}))
    with pytest.raises(ConfigError, match="--trials must be at least 1"):
        check_tunable("xgboost", fast_params, n_trials=0)


def test_in_memory_storage_cannot_be_shared(
    builder: DatasetBuilder, features: list[str], fast_params: TrainParams,
) -> None:
    ds = builder.build("dir_5d", features)
    with pytest.raises(ConfigError, match="storage is null"):
        tune_target("xgboost", "dir_5d", ds, features, fast_params, 7, workers=2)


def test_cli_names_the_problem_before_reading_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({"train": {"tuning": {"n_trials": {"xgboost": 0}}}}))
    code = main(["tune", "--family", "xgboost", "--target", "dir_5d", "--workers", "2", "--params", str(params_file)])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "sepflow: error: tune: train.tuning.n_trials.xgboost is 0, so train@xgboost fits fixed params and would "
        "not read the study; set it above 0"
    )


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"engine": "spark"}, "train.engine: Input should be 'local' or 'dask'"),
        ({"engine": "dask", "dask": {"n_workers": 0}}, "train.dask.n_workers: Input should be greater than or equal to 1"),
        ({"engine": "dask", "scope": "per_symbol"}, "engine dask trains pooled models"),
    ],
)
def test_train_engine_is_validated(train: dict, message: str, tmp_path: Path) -> None:
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({"train": train}))
    with pytest.raises(ConfigError) as caught:
        load_params(params_file)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_dask_engine_defaults_to_a_local_cluster() -> None:
    params = TrainParams.model_validate({"engine": "dask"})
    assert params.engine == "dask" and params.dask.scheduler is None and params.dask.n_workers == 2
    assert TrainParams().engine == "local"
