"""Hyper-parameter search with Optuna over purged cross-validation folds.

A study lives in ``storage`` (an SQLAlchemy URL such as ``sqlite:////abs/path/optuna.db``,
or a shared database for parallel workers) under ``study_name``; calling ``tune`` again with
the same name resumes it and runs only the trials still missing from ``n_trials`` COMPLETE
trials. Trials of a killed process are marked FAIL once their heartbeat goes stale. Several
processes may search one stored study at once (``sepflow.training.tune``): the storage numbers
their trials, and each process samples with its own seed (``worker``).

Inside the search no eval_set is given, so boosters train exactly ``n_estimators`` rounds:
early stopping on the scored fold would select on the very rows being scored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, Trial, TrialState
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from sepflow.errors import ConfigError
from sepflow.families import SCORINGS, TUNABLE
from sepflow.evaluation.metrics import information_coefficients, regression_metrics
from sepflow.models.base import SepflowModel, TaskKind, make_model
from sepflow.progress import progress, trial_callback

__all__ = ["SCORINGS", "TUNABLE", "rdb_storage", "search_space", "trials_frame", "tune"]


# Seconds between a running trial's heartbeats, and silence after which it counts as dead.
HEARTBEAT_INTERVAL = 30
GRACE_PERIOD = 120
# Seconds an SQLite writer waits for another process's lock before failing (parallel workers).
SQLITE_TIMEOUT = 60
# Sampler seeds of parallel workers lie this far apart, so no two draw the same start-up points.
WORKER_SEED_STRIDE = 100_003


def rdb_storage(url: str, **kwargs: Any) -> optuna.storages.RDBStorage:
    """Optuna's database storage at ``url``; SQLite waits ``SQLITE_TIMEOUT`` s for a lock instead of failing."""
    engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT}} if url.startswith("sqlite") else None
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)


def search_space(
    family: str, trial: Trial, task: TaskKind, *, n_estimators_range: tuple[int, int] = (100, 1000),
) -> dict[str, Any]:
    """Sample one parameter set for ``family``; names are the family's constructor params."""
    if family not in TUNABLE:
        raise ConfigError(f"tuning: no search space for family {family!r}; tunable: {', '.join(TUNABLE)}")
    low, high = n_estimators_range
    n_estimators = trial.suggest_int("n_estimators", low, high, log=True)
    if family == "xgboost":
        return {
            "n_estimators": n_estimators,
            "max_depth": trial.suggest_int("max_depth", 2, 8),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "min_child_weight": trial.suggest_float("min_child_weight", 0.5, 50.0, log=True),
            "gamma": trial.suggest_float("gamma", 1e-8, 5.0, log=True),
            "reg_alpha": trial.suggest_float("reg_alpha", 1e-8, 10.0, log=True),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
        }
    if family == "lightgbm":
        return {
            "n_estimators": n_estimators,
            "num_leaves": trial.suggest_int("num_leaves", 8, 128, log=True),
            "max_depth": trial.suggest_int("max_depth", 3, 12),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 5, 200, log=True),
            "reg_alpha": trial.suggest_float("reg_alpha", 1e-8, 10.0, log=True),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-8, 10.0, log=True),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
        }
    # random_forest
    params: dict[str, Any] = {
        "n_estimators": n_estimators,
        "max_depth": trial.suggest_int("max_depth", 2, 16),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 200, log=True),
        "max_features": trial.suggest_categorical("max_features", ["sqrt", "log2", 0.5, 1.0]),
    }
    if task != "regression":
        params["class_weight"] = trial.suggest_categorical(
            "class_weight", [None, "balanced", "balanced_subsample"],
        )
    return params


def _score(
    model: SepflowModel, X: pd.DataFrame, y: pd.Series, dates: np.ndarray | None, scoring: str,
) -> float:
    if scoring == "neg_rmse":
        return -regression_metrics(y, model.predict(X))["rmse"]
    if scoring == "rank_ic":
        return information_coefficients(dates, y, model.predict(X))["rank_ic"]
    proba = model.predict_proba(X)
    classes = model.classes_
    if scoring == "balanced_accuracy":
        return float(balanced_accuracy_score(y, classes[np.argmax(proba, axis=1)]))
    # Undefined when a class is missing from the fold (the trial then fails rather than wins).
    if not np.isin(classes, y).all():
        return float("nan")
    if len(classes) == 2:
        return float(roc_auc_score(y == classes[1], proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", labels=classes))


def _open_study(storage: str | None, study_name: str, seed: int, worker: int = 0) -> optuna.Study:
    backend = None if storage is None else rdb_storage(
        storage, heartbeat_interval=HEARTBEAT_INTERVAL, grace_period=GRACE_PERIOD,
    )
    study = optuna.create_study(
        storage=backend, study_name=study_name, direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed), load_if_exists=True,
    )
    if study.trials or worker:
        # A resumed sampler seeded as before would redraw the first run's start-up points, and
        # parallel workers seeded alike would draw the same ones.
        study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials) + WORKER_SEED_STRIDE * worker)
    return study


def tune(
    family: str,
    task: TaskKind,
    X: pd.DataFrame,
    y: pd.Series,
    groups: pd.DataFrame,
    cv: Any,
    *,
    n_trials: int,
    seed: int,
    storage: str | None,
    study_name: str,
    scoring: str,
    fixed_params: Mapping[str, Any] | None = None,
    n_estimators_range: tuple[int, int] = (100, 1000),
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
    worker: int = 0,
    max_new_trials: int | None = None,
) -> tuple[dict[str, Any], optuna.Study]:
    """Search ``family``'s space; each trial scores the mean over ``cv.split(X, y, groups)`` folds.

    ``groups`` holds per-row ``date`` and ``label_end`` (for the purged splitter; ``date`` also
    groups rows for ``rank_ic``, which needs at least 5 names per date). ``scoring``:
    ``balanced_accuracy`` or ``roc_auc`` for classification, ``neg_rmse`` or ``rank_ic`` for
    regression; every score is maximised.
    ``fixed_params`` (e.g. ``n_jobs``) are passed to every model; ``random_state`` defaults to
    ``seed``. Returns the parameters to build the best model with (fixed params included;
    ``make_model(family, task, **best_params)``) and the study.
    ``worker`` (0, 1, ...) offsets the sampler's seed for one of several processes sharing the
    study; ``max_new_trials`` caps the trials this call runs (its share of the missing ones).
    """
    if scoring not in SCORINGS.get(task, ()):
        raise ConfigError(
            f"tuning: scoring {scoring!r} does not fit task {task!r}; choose from {SCORINGS.get(task)}"
        )
    if int(n_trials) < 1:
        raise ConfigError(f"tuning: n_trials must be at least 1, got {n_trials}")
    fixed = {"random_state": seed, **(fixed_params or {})}
    # The folds are fixed once so every trial is scored on exactly the same rows.
    folds = list(cv.split(X, y, groups))
    dates = np.asarray(groups["date"])

    def objective(trial: Trial) -> float:
        params = {**fixed, **search_space(family, trial, task, n_estimators_range=n_estimators_range)}
        scores = []
        for train, test in folds:
            model = make_model(family, task, **params).fit(X.iloc[train], y.iloc[train])
            scores.append(_score(model, X.iloc[test], y.iloc[test], dates[test], scoring))
        trial.set_user_attr("fold_scores", [float(s) for s in scores])
        # An undefined fold score (e.g. one class in a fold) makes the trial FAIL, not win.
        return float(np.mean(scores)) if all(math.isfinite(s) for s in scores) else float("nan")

    study = _open_study(storage, study_name, seed, worker)
    completed = sum(t.state == TrialState.COMPLETE for t in study.trials)
    remaining = int(n_trials) - completed
    if max_new_trials is not None:
        remaining = min(remaining, int(max_new_trials))
    if remaining > 0:
        with progress(desc=f"tuning {family}", total=remaining, unit="trial") as bar:
            study.optimize(objective, n_trials=remaining, callbacks=[*callbacks, trial_callback(bar)])
    if not any(t.state == TrialState.COMPLETE for t in study.trials):
        raise ConfigError(f"tuning: study {study_name!r} has no completed trial (every fold score undefined?)")
    return {**fixed, **study.best_params}, study


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial (number, state, value, params, fold scores, start, seconds).

    JSON-ready for ``mlflow.log_table``: timestamps as strings, durations as seconds.
    """
    frame = study.trials_dataframe(
        attrs=("number", "state", "value", "params", "user_attrs", "datetime_start", "duration"),
    )
    if frame.empty:
        return frame
    frame["duration_s"] = frame.pop("duration").dt.total_seconds()
    frame["datetime_start"] = frame["datetime_start"].astype(str)
    return frame
