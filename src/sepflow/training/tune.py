"""The hyper-parameter search of ``train@FAMILY``, and the same search shared by several processes.

``train_family`` asks ``final_model_params`` for the constructor params of its final fit: the fixed
params, plus Optuna's best for a tuned family. The search is a ``TuningJob``: the training
segment's rows, the purged folds and the stored study ``<family>-<target>`` with a fingerprint
of everything that decides a trial's score (a study that searched other rows is started afresh).

``sepflow tune --workers N`` runs that very job in N processes that share the study through its
database storage: the storage hands out trial numbers, the missing trials are split between the
workers (each samples with its own seed) and optuna's ``MaxTrialsCallback`` stops a worker once
the study holds the requested COMPLETE trials, so processes started by hand on several machines
(pointed at one PostgreSQL or MySQL URL) do not run past it either. A following ``train@FAMILY``
finds the trials done and only fits the best. Which trials a parallel search runs depends on
which worker finishes first, so unlike a one-process search it is not reproducible trial by
trial; the final fit on the best params is.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
import pandas as pd
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState

from sepflow.errors import ConfigError
from sepflow.models.base import TaskKind
from sepflow.models.tuning import TUNABLE, rdb_storage, search_space, tune
from sepflow.tracking.lineage import params_digest
from sepflow.training.device import device_params, resolve_device
from sepflow.training.params import TrainParams
from sepflow.validation.splits import PurgedKFold

if TYPE_CHECKING:
    from sepflow.features.dataset import Dataset

__all__ = [
    "FINGERPRINT_ATTR",
    "SearchReport",
    "TuningJob",
    "check_tunable",
    "claim_study",
    "final_model_params",
    "format_search",
    "parallel_search",
    "tune_target",
    "tuning_job",
]

log = logging.getLogger(__name__)

FINGERPRINT_ATTR = "sepflow.fingerprint"


@dataclass(frozen=True)
class TuningJob:
    """One family's search over purged folds of the training rows, in stored study ``study_name``."""

    family: str
    task: TaskKind
    X: pd.DataFrame
    y: pd.Series
    groups: pd.DataFrame
    n_splits: int
    embargo: int
    n_trials: int
    seed: int
    storage: str | None
    study_name: str
    scoring: str
    fixed: dict[str, Any]
    n_estimators_range: tuple[int, int]
    fingerprint: str

    def claim(self) -> None:
        """Resume the stored study only if it searched this job; a stale one is started afresh."""
        claim_study(self.storage, self.study_name, self.fingerprint)

    def run(
        self, *, callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (), worker: int = 0,
        max_new_trials: int | None = None,
    ) -> tuple[dict[str, Any], optuna.Study]:
        """``models.tuning.tune`` on this job: the best constructor params and the study."""
        return tune(
            self.family, self.task, self.X, self.y, self.groups, PurgedKFold(self.n_splits, embargo_days=self.embargo),
            n_trials=self.n_trials, seed=self.seed, storage=self.storage, study_name=self.study_name,
            scoring=self.scoring, fixed_params=self.fixed, n_estimators_range=self.n_estimators_range,
            callbacks=callbacks, worker=worker, max_new_trials=max_new_trials,
        )


def _searched_params(family: str, task: TaskKind) -> set[str]:
    """The constructor params ``family``'s search space samples (asked of a throwaway in-memory trial)."""
    probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    return set(search_space(family, probe, task))


def _fixed_params(family: str, params: TrainParams) -> dict[str, Any]:
    return {**params.model_params(family), **device_params(family, resolve_device(params.device))}


def claim_study(storage: str | None, study_name: str, fingerprint: str) -> None:
    """Resume the stored study only if it searched the same problem; a stale one is started afresh.

    Trials scored on other rows, features or folds would otherwise win the new search unseen.
    """
    if storage is None:
        return
    backend = rdb_storage(storage)
    study = optuna.create_study(storage=backend, study_name=study_name, direction="maximize", load_if_exists=True)
    recorded = study.user_attrs.get(FINGERPRINT_ATTR)
    if recorded is not None and recorded != fingerprint:
        log.warning("training: study %s searched other data or settings; starting it afresh", study_name)
        optuna.delete_study(study_name=study_name, storage=backend)
        study = optuna.create_study(storage=backend, study_name=study_name, direction="maximize")
    # Recorded before the first trial, so an interrupted first run still resumes.
    study.set_user_attr(FINGERPRINT_ATTR, fingerprint)


def tuning_job(
    family: str, task: TaskKind, X_train: pd.DataFrame, y_train: pd.Series, groups: pd.DataFrame,
    params: TrainParams, seed: int, embargo: int, storage: str | None, study_name: str, feature_signature: str,
) -> TuningJob | None:
    """The search ``train@family`` runs on these training rows; None for a family fitted with fixed params."""
    n_trials = params.tuning.n_trials.get(family, 0)
    if family not in TUNABLE or n_trials == 0:
        return None
    fixed = _fixed_params(family, params)
    clash = sorted((set(fixed) & _searched_params(family, task)) - {"n_estimators"})
    if clash:
        raise ConfigError(
            f"training: train.{family} fixes {clash}, which tuning searches; remove them or set "
            f"train.tuning.n_trials.{family}: 0"
        )
    # A fixed n_estimators pins the searched range: every trial then trains what the final fit caps.
    low, high = (int(fixed["n_estimators"]),) * 2 if "n_estimators" in fixed else params.tuning.n_estimators_range
    scoring = params.tuning.scoring[task]
    fingerprint = params_digest({
        "task": task, "features": list(X_train.columns), "feature_signature": feature_signature,
        "data": [int(pd.util.hash_pandas_object(X_train).sum()), int(pd.util.hash_pandas_object(y_train).sum())],
        "scoring": scoring, "n_splits": params.n_splits, "embargo_days": embargo, "seed": seed,
        "fixed": fixed, "n_estimators_range": [low, high],
    })
    return TuningJob(
        family=family, task=task, X=X_train, y=y_train, groups=groups, n_splits=params.n_splits, embargo=embargo,
        n_trials=n_trials, seed=seed, storage=storage, study_name=study_name, scoring=scoring, fixed=fixed,
        n_estimators_range=(low, high), fingerprint=fingerprint,
    )


def final_model_params(
    family: str, task: TaskKind, X_train: pd.DataFrame, y_train: pd.Series, groups: pd.DataFrame,
    params: TrainParams, seed: int, embargo: int, storage: str | None, study_name: str, feature_signature: str,
) -> tuple[dict[str, Any], optuna.Study | None]:
    """Constructor params for the final fit: fixed params, plus Optuna's best for tuned families.

    A resumed study runs only the trials still missing from ``n_trials`` COMPLETE ones.
    """
    job = tuning_job(family, task, X_train, y_train, groups, params, seed, embargo, storage, study_name,
                     feature_signature)
    if job is None:
        return {"random_state": seed, **_fixed_params(family, params)}, None
    job.claim()
    return job.run()


# -- several processes on one study ---------------------------------------------------------------


@dataclass(frozen=True)
class SearchReport:
    """What a (parallel) search left in its study; ``by_worker`` lists the trial numbers each process ran."""

    study_name: str
    n_trials: int
    n_complete: int
    best_value: float
    best_params: dict[str, Any]
    by_worker: list[list[int]]


def _search_worker(job: TuningJob, worker: int, share: int) -> list[int]:
    """Run up to ``share`` trials of ``job`` in this process; return the numbers of the trials it ran."""
    ran: list[int] = []
    if share < 1:
        return ran
    job.run(
        callbacks=[MaxTrialsCallback(job.n_trials, states=(TrialState.COMPLETE,)),
                   lambda _study, trial: ran.append(trial.number)],
        worker=worker, max_new_trials=share,
    )
    return ran


def parallel_search(job: TuningJob, workers: int) -> SearchReport:
    """Fill ``job``'s stored study up to ``job.n_trials`` COMPLETE trials with ``workers`` processes.

    The missing trials are split evenly between the workers (spawned processes, each with its
    own sampler seed); ``workers=1`` searches in this process.
    """
    if workers < 1:
        raise ConfigError(f"tune: --workers must be at least 1, got {workers}")
    if job.storage is None:
        raise ConfigError(
            "tune: train.tuning.storage is null (an in-memory study); parallel workers share a study through "
            "a database: set it to sqlite:///optuna.db or a PostgreSQL/MySQL URL"
        )
    job.claim()  # once, before the workers: a stale study is replaced by one process only
    backend = rdb_storage(job.storage)
    study = optuna.load_study(study_name=job.study_name, storage=backend)
    missing = max(0, job.n_trials - len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))))
    shares = [missing // workers + (worker < missing % workers) for worker in range(workers)]
    if workers == 1:
        by_worker = [_search_worker(job, 0, shares[0])]
    else:
        # spawn: a fresh interpreter per worker (forking a process that holds database
        # connections and BLAS/OpenMP threads is unsafe).
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            by_worker = list(pool.map(_search_worker, [job] * workers, range(workers), shares))
    study = optuna.load_study(study_name=job.study_name, storage=backend)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ConfigError(f"tune: study {job.study_name!r} has no completed trial (every fold score undefined?)")
    return SearchReport(
        study_name=job.study_name, n_trials=job.n_trials, n_complete=len(complete), best_value=study.best_value,
        best_params=study.best_params, by_worker=by_worker,
    )


def check_tunable(family: str, params: TrainParams, n_trials: int | None = None) -> None:
    """Refuse a search ``train@family`` would never read (before any data is loaded)."""
    if family not in TUNABLE:
        raise ConfigError(f"tune: family {family!r} has no search space; tunable: {', '.join(TUNABLE)}")
    if params.tuning.n_trials.get(family, 0) == 0:
        raise ConfigError(
            f"tune: train.tuning.n_trials.{family} is 0, so train@{family} fits fixed params and would not "
            f"read the study; set it above 0"
        )
    if n_trials is not None and n_trials < 1:
        raise ConfigError(f"tune: --trials must be at least 1, got {n_trials}")


def tune_target(
    family: str, target: str, ds: Dataset, features: list[str], params: TrainParams, seed: int, *,
    workers: int = 1, n_trials: int | None = None, study_name: str | None = None,
) -> SearchReport:
    """Run the search ``train@family`` would run for ``target`` (same rows, folds, study) in ``workers`` processes.

    ``n_trials`` overrides ``train.tuning.n_trials.<family>`` as the COMPLETE trials to reach;
    the train stage then tops the study up to its own count, or uses the best of what it finds.
    """
    # train.py imports this module for final_model_params, so its row preparation is imported here, late.
    from sepflow.training.train import training_rows

    check_tunable(family, params, n_trials)
    rows = training_rows(ds, target, features, params)
    job = tuning_job(
        family, rows.task, rows.X["train"], rows.y["train"], rows.groups.iloc[rows.segments["train"]], params, seed,
        rows.embargo, params.tuning.resolved_storage(), study_name or f"{family}-{target}",
        ds.meta["feature_signature"],
    )
    assert job is not None  # a tunable family with trials above 0, checked above
    if n_trials is not None:
        job = dataclasses.replace(job, n_trials=n_trials)
    return parallel_search(job, workers)


def format_search(report: SearchReport) -> str:
    """A few lines for the terminal: the study, its best trial, and each worker's trials."""
    lines = [
        (f"study {report.study_name}: {report.n_complete} complete trials (requested {report.n_trials}); "
         f"best value {report.best_value:.4f}"),
        f"best params: {report.best_params}",
    ]
    lines += [f"worker {worker}: trials {numbers or 'none'}" for worker, numbers in enumerate(report.by_worker)]
    return "\n".join(lines)
