"""Optuna tuning: seeded, resumable from SQLite, scored over purged folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from sepflow.errors import ConfigError
from sepflow.models import tuning
from sepflow.models.tuning import search_space, trials_frame, tune
from sepflow.validation.splits import PurgedKFold

optuna.logging.set_verbosity(optuna.logging.WARNING)
# Heartbeats (used to fail trials of killed processes) are flagged experimental by Optuna.
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

SMALL_FOREST = (5, 15)


class Interrupted(Exception):
    """Stands in for a process stopped between trials."""


def _groups(X: pd.DataFrame) -> pd.DataFrame:
    dates = X.index.get_level_values("date")
    return pd.DataFrame({"date": dates, "label_end": dates + pd.offsets.BDay(5)}, index=X.index)


def _tune(panel, task: str = "classification", **kwargs: object) -> tuple[dict, optuna.Study]:
    X, y = panel.X[~panel.test], panel.targets[task][~panel.test]
    options = {
        "n_trials": 4, "seed": 3, "storage": None, "study_name": "rf",
        "scoring": "balanced_accuracy", "n_estimators_range": SMALL_FOREST, **kwargs,
    }
    return tune("random_forest", task, X, y, _groups(X), PurgedKFold(n_splits=3, embargo_days=5), **options)


def _stop_after(k: int):
    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.number + 1 >= k:
            raise Interrupted

    return callback


def test_interrupted_study_resumes_to_exactly_n_trials(panel, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    with pytest.raises(Interrupted):
        _tune(panel, n_trials=5, storage=storage, callbacks=[_stop_after(2)])
    assert len(optuna.load_study(study_name="rf", storage=storage).trials) == 2
    best, study = _tune(panel, n_trials=5, storage=storage)
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(5))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert best["random_state"] == 3 and best["n_estimators"] == study.best_params["n_estimators"]
    # Already complete: calling again runs nothing.
    assert len(_tune(panel, n_trials=5, storage=storage)[1].trials) == 5


def test_a_trial_killed_midway_fails_and_is_made_up_on_resume(
    panel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    real_make_model, calls = tuning.make_model, []

    def make_model_then_die(*args: object, **kwargs: object):
        calls.append(1)
        if len(calls) == 7:  # first fold of the third trial (3 folds per trial)
            raise KeyboardInterrupt
        return real_make_model(*args, **kwargs)

    monkeypatch.setattr(tuning, "make_model", make_model_then_die)
    with pytest.raises(KeyboardInterrupt):
        _tune(panel, n_trials=4, storage=storage)
    monkeypatch.setattr(tuning, "make_model", real_make_model)
    study = _tune(panel, n_trials=4, storage=storage)[1]
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 4
    assert states.count(optuna.trial.TrialState.FAIL) == 1
    assert len({t.number for t in study.trials}) == 5


def test_same_seed_gives_the_same_best_params(panel) -> None:
    first, second = _tune(panel, seed=11), _tune(panel, seed=11)
    assert first[0] == second[0]
    assert [t.params for t in first[1].trials] == [t.params for t in second[1].trials]
    assert [t.value for t in first[1].trials] == [t.value for t in second[1].trials]


@pytest.mark.parametrize(("task", "scoring"), [("regression", "rank_ic"), ("regression", "neg_rmse"),
                                               ("multiclass", "roc_auc")])
def test_every_scoring_gives_a_finite_mean_over_folds(panel, task: str, scoring: str) -> None:
    study = _tune(panel, task=task, scoring=scoring, n_trials=1)[1]
    trial = study.trials[0]
    assert np.isfinite(trial.value)
    assert trial.value == pytest.approx(np.mean(trial.user_attrs["fold_scores"]))


def test_scoring_must_fit_the_task(panel) -> None:
    with pytest.raises(ConfigError, match="scoring"):
        _tune(panel, task="regression", scoring="roc_auc")


@pytest.mark.parametrize("family", ["xgboost", "lightgbm", "random_forest"])
def test_search_spaces_name_constructor_params(family: str) -> None:
    from sepflow.models import FAMILIES

    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    params = search_space(family, trial, "classification", n_estimators_range=(10, 20))
    assert set(params) <= set(FAMILIES[family]().get_params())
    assert 10 <= params["n_estimators"] <= 20
    if family == "random_forest":
        assert params["class_weight"] in (None, "balanced", "balanced_subsample")
    with pytest.raises(ConfigError, match="no search space"):
        search_space("lstm", trial, "classification")


def test_trials_frame_is_json_ready(panel) -> None:
    frame = trials_frame(_tune(panel, n_trials=2)[1])
    assert list(frame["number"]) == [0, 1]
    assert {"value", "state", "params_n_estimators", "user_attrs_fold_scores", "duration_s"} <= set(frame.columns)
    frame.to_json(orient="split")  # what mlflow.log_table serialises
