"""train_family: tune, fit, calibrate, choose the threshold and evaluate one family on one target.

Leakage rules, each enforced here:

- rows are cut into chronological train / validation / test segments, purged by label end with
  an embargo of at least the target's horizon (``sepflow.training.segments``);
- Optuna searches over purged folds of the TRAIN segment only;
- the final model trains on TRAIN; VALIDATION drives early stopping, the calibrator, the
  decision threshold and the ensemble weights; TEST is only scored;
- an LSTM's validation and test windows look back into the rows before them (features only,
  never labels), as it would in production.

The threshold objective is the net Sharpe of the long/flat book when the target's forward
returns are given. An h-day return held from every date would count each day h times, so the
book holds for h days: it trades on every h-th validation date, annualised with 252 / h.
"""

from __future__ import annotations

import importlib
import logging
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from sepflow.distributed import engine_session
from sepflow.errors import ConfigError, DataValidationError, SepflowError
from sepflow.evaluation.calibration import ProbabilityCalibrator, fit_calibrator
from sepflow.evaluation.metrics import (
    classification_metrics,
    information_coefficients,
    regression_metrics,
)
from sepflow.evaluation.thresholds import tune_threshold
from sepflow.evaluation.trading import TRADING_DAYS, backtest
from sepflow.features.dataset import Dataset, DatasetBuilder
from sepflow.features.targets import LABEL3_CLASSES
from sepflow.io import json_ready, write_json
from sepflow.models import (
    TASKS,
    EnsembleModel,
    LSTMModel,
    SepflowModel,
    TaskKind,
    make_model,
    with_context,
)
from sepflow.models.boosting import GradientBoostingModel
from sepflow.models.tuning import trials_frame
from sepflow.ranking.targets import panel_frame, sample_rows
from sepflow.training.artifacts import (
    ARTIFACTS,
    CALIBRATOR_FILE,
    FEATURES_FILE,
    INPUT_EXAMPLE_FILE,
    METADATA_FILE,
    METRICS_FILE,
    THRESHOLD_FILE,
    calibrator_to_json,
    decide,
    load_trained,
    read_segment_outputs,
    segment_outputs_frame,
    write_trained,
)
from sepflow.training.params import TrainParams
from sepflow.training.segments import SEGMENTS, Segments, segments_by_fraction
from sepflow.training.tune import final_model_params

__all__ = [
    "EXAMPLE_ROWS",
    "HEADLINE",
    "SegmentContext",
    "TrainResult",
    "artifact_name",
    "calibrated",
    "context_length",
    "fit_decision_rule",
    "forward_returns_for",
    "holding_rows",
    "ranking_score",
    "segment_metrics",
    "segment_output",
    "train_family",
]

log = logging.getLogger(__name__)

# The metric whose train − validation gap is reported as the overfit margin.
HEADLINE: dict[str, str] = {"classification": "roc_auc", "multiclass": "roc_auc", "regression": "rank_ic"}
EXAMPLE_ROWS = 5


@dataclass(frozen=True)
class TrainResult:
    """What ``train_family`` wrote (to ``out_dir``) and learned; ``trials`` is None for untuned families."""

    family: str
    target: str
    task: TaskKind
    artifact_name: str
    out_dir: Path
    model: SepflowModel
    metrics: dict[str, Any]
    metadata: dict[str, Any]
    trials: pd.DataFrame | None


def artifact_name(target: str, task: TaskKind, asof: str) -> str:
    """``<target>_<clf|reg>_<asof>``, e.g. ``dir_5d_clf_2024-06-28``."""
    return f"{target}_{'reg' if task == 'regression' else 'clf'}_{asof}"


def forward_returns_for(builder: DatasetBuilder, ds: Dataset) -> np.ndarray:
    """The target horizon's ``return_<h>d`` for every row of ``ds`` (NaN where unknown)."""
    returns = builder.build(
        f"return_{ds.meta['horizon']}d", [ds.feature_names[0]], universe_only=ds.meta["universe_only"], dropna=False,
    )
    keys = pd.MultiIndex.from_arrays([returns.tickers, returns.dates])
    lookup = pd.Series(returns.y.to_numpy(dtype=float), index=keys)
    return lookup.reindex(pd.MultiIndex.from_arrays([ds.tickers, ds.dates])).to_numpy()


@dataclass(frozen=True)
class TrainingRows:
    """The rows ``train_family`` fits, tunes and scores on: sampled per ticker, cut into segments."""

    task: TaskKind
    features: list[str]
    sampled: np.ndarray  # positions in the dataset
    X_all: pd.DataFrame
    groups: pd.DataFrame  # per-row date and label_end
    horizon: int
    embargo: int
    segments: Segments
    X: dict[str, pd.DataFrame]
    y: dict[str, pd.Series]


def training_rows(ds: Dataset, target: str, selected_features: list[str], params: TrainParams) -> TrainingRows:
    """``ds``'s rows for ``target`` as training uses them: ``max_samples_per_symbol`` rows per
    ticker, the selected features, and purged train / validation / test segments."""
    task = _task(ds, target)
    features = _features(ds, selected_features)
    sampled = (
        sample_rows(ds.tickers, params.max_samples_per_symbol) if params.max_samples_per_symbol
        else np.arange(len(ds.y))
    )
    X_all, y_all, groups = panel_frame(ds, sampled)
    X_all = X_all[features]
    horizon = int(ds.meta["horizon"])
    embargo = params.embargo_for(horizon)
    segments = segments_by_fraction(
        groups["date"], groups["label_end"], validation_fraction=params.validation_fraction,
        test_fraction=params.test_fraction, embargo_days=embargo,
    )
    return TrainingRows(
        task=task, features=features, sampled=sampled, X_all=X_all, groups=groups, horizon=horizon, embargo=embargo,
        segments=segments, X={name: X_all.iloc[rows] for name, rows in segments.items()},
        y={name: y_all.iloc[rows] for name, rows in segments.items()},
    )


def train_family(
    family: str,
    target: str,
    ds: Dataset,
    selected_features: list[str],
    params: TrainParams,
    seed: int,
    *,
    asof: str,
    out_dir: Path,
    optuna_storage: str | None,
    forward_returns: Any = None,
    study_name: str | None = None,
    member_dirs: Mapping[str, Path] | None = None,
) -> TrainResult:
    """Train ``family`` on ``ds`` (the dataset of ``target``) and write its folder ``out_dir``.

    ``selected_features`` are the model inputs, in order. ``forward_returns`` (one per row of
    ``ds``, e.g. from ``forward_returns_for``) switch the threshold objective to net Sharpe and
    add trading and IC-on-returns metrics. ``optuna_storage`` holds the resumable study
    ``study_name`` (default ``<family>-<target>``; None storage: in memory). The ``ensemble``
    family fits weights over the members already saved in ``member_dirs`` (by family; default
    ``out_dir.parent.parent/<family>/<target>``). With
    ``params.max_samples_per_symbol`` each ticker keeps that many evenly spaced rows (as target
    ranking does); an LSTM's windows then step over the rows left out.
    """
    _check_asof(asof)
    out_dir = Path(out_dir)
    prepared = training_rows(ds, target, selected_features, params)
    task, features, sampled, X_all = prepared.task, prepared.features, prepared.sampled, prepared.X_all
    groups, horizon, embargo, segments = prepared.groups, prepared.horizon, prepared.embargo, prepared.segments
    X, y = prepared.X, prepared.y
    returns_all = None if forward_returns is None else _aligned(forward_returns, len(ds.y))[sampled]

    study, ensemble_record = None, None
    if family == "ensemble":
        model, outputs, ensemble_record = _fit_ensemble(target, task, features, segments, X_all, X, y["validation"],
                                                        out_dir, params, member_dirs)
    else:
        model_params, study = final_model_params(family, task, X["train"], y["train"],
                                                 groups.iloc[segments["train"]], params, seed, embargo,
                                                 optuna_storage, study_name or f"{family}-{target}",
                                                 ds.meta["feature_signature"])
        model = make_model(family, task, **model_params)
        # train.engine dask: the boosted families' final fit runs on the cluster (tuning stays local).
        with engine_session(params.engine, params.dask, uses_cluster=isinstance(model, GradientBoostingModel)):
            model.fit(X["train"], y["train"], eval_set=(X["validation"], y["validation"]))
        outputs = {name: segment_output(model, X_all, X[name]) for name in SEGMENTS}

    context = {
        name: SegmentContext(
            dates=groups["date"].to_numpy()[rows], tickers=X[name].index.get_level_values("ticker").to_numpy(),
            returns=None if returns_all is None else returns_all[rows],
        )
        for name, rows in segments.items()
    }
    calibrator, threshold, metrics = _evaluate(model, outputs, y, context, horizon, params)
    name = artifact_name(target, task, asof)
    metadata = {
        "artifact_name": name, "family": family, "target": target, "task": task, "asof": asof, "seed": seed,
        "data": {
            **{key: ds.meta[key] for key in ("n_rows", "n_tickers", "date_min", "date_max", "dropped",
                                             "feature_signature", "universe_only", "horizon")},
            "rows_used": len(sampled), "forward_returns": forward_returns is not None,
        },
        "segments": segments.info,
        "embargo_days": embargo,
        "model_params": _json_params(model),
        # How many processes trained the tickers changes no model, so it must not change the files.
        "train_params": params.model_dump(mode="json", exclude={"max_workers"}),
        "tuning": _tuning_record(study),
        "ensemble": ensemble_record,
        "libraries": _library_versions(model),
        "artifacts": ARTIFACTS,
    }
    example = X["test"].head(EXAMPLE_ROWS).reset_index()
    example["date"] = example["date"].dt.strftime("%Y-%m-%d")
    files = {
        CALIBRATOR_FILE: calibrator_to_json(calibrator),
        THRESHOLD_FILE: json_ready(threshold),
        FEATURES_FILE: {"features": features, "feature_signature": ds.meta["feature_signature"]},
        METRICS_FILE: json_ready(metrics),
        METADATA_FILE: json_ready(metadata),
        INPUT_EXAMPLE_FILE: example.to_dict(orient="list"),
    }
    write_trained(out_dir, model, files, segment_outputs_frame(outputs, {name: X[name].index for name in SEGMENTS}))
    return TrainResult(
        family=family, target=target, task=task, artifact_name=name, out_dir=out_dir, model=model,
        metrics=files[METRICS_FILE], metadata=files[METADATA_FILE],
        trials=None if study is None else trials_frame(study),
    )


@dataclass(frozen=True)
class SegmentContext:
    """Per-row dates, tickers and (optional) forward returns of one segment."""

    dates: np.ndarray
    tickers: np.ndarray
    returns: np.ndarray | None


def _evaluate(
    model: SepflowModel, outputs: dict[str, np.ndarray], y: dict[str, pd.Series],
    context: dict[str, SegmentContext], horizon: int, params: TrainParams,
) -> tuple[ProbabilityCalibrator | None, dict[str, Any], dict[str, Any]]:
    """Calibrator and decision rule fitted on validation, and every segment's metrics, from the
    model's raw ``outputs`` per segment (``segment_output``)."""
    task = model.task
    calibrator, threshold = fit_decision_rule(model, outputs["validation"], np.asarray(y["validation"]),
                                              context["validation"], horizon, params)
    outputs = {name: calibrated(calibrator, output) for name, output in outputs.items()}
    per_segment = {
        name: segment_metrics(model, np.asarray(y[name]), outputs[name], threshold["threshold"],
                               context[name], horizon, params)
        for name in SEGMENTS
    }
    headline = HEADLINE[task]
    metrics = {
        **per_segment, "headline": headline,
        "overfit_margin": per_segment["train"][headline] - per_segment["validation"][headline],
    }
    return calibrator, threshold, metrics


def fit_decision_rule(
    model: SepflowModel, validation_output: np.ndarray, y_validation: np.ndarray, context: SegmentContext,
    horizon: int, params: TrainParams,
) -> tuple[ProbabilityCalibrator | None, dict[str, Any]]:
    """The calibrator and decision rule of a classifier, both fitted on its validation outputs only.

    Regression models get no calibrator and the rule ``prediction``; multiclass ones ``argmax``.
    """
    task = model.task
    calibrator, threshold = None, {"threshold": None, "rule": "prediction" if task == "regression" else "argmax"}
    if task == "regression":
        return calibrator, threshold
    if params.calibration != "none":
        calibrator = fit_calibrator(validation_output, y_validation, params.calibration, classes=model.classes_)
    if task == "classification":
        p_up = calibrated(calibrator, validation_output)[:, 1]
        threshold = _choose_threshold(p_up, y_validation, model.classes_, context, horizon, params)
    return calibrator, threshold


# -- checks ------------------------------------------------------------------------------------


def _task(ds: Dataset, target: str) -> TaskKind:
    if ds.meta.get("target") != target:
        raise ConfigError(f"training: the dataset is for target {ds.meta.get('target')!r}, not {target!r}")
    if ds.meta.get("kind") not in TASKS:
        raise ConfigError(f"training: target {target!r} has kind {ds.meta.get('kind')!r}; tasks: {TASKS}")
    return ds.meta["kind"]


def _features(ds: Dataset, selected: list[str]) -> list[str]:
    selected = [str(f) for f in selected]
    unknown = [f for f in selected if f not in ds.feature_names]
    if unknown or not selected or len(set(selected)) != len(selected):
        raise ConfigError(
            f"training: selected features must be distinct features of the dataset; unknown {unknown}, "
            f"{len(selected) - len(set(selected))} repeated, {len(selected)} in all"
        )
    return selected


def _check_asof(asof: str) -> None:
    try:
        date.fromisoformat(asof)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"training: asof must be a YYYY-MM-DD date, got {asof!r}") from exc


def _aligned(values: Any, n_rows: int) -> np.ndarray:
    returns = np.asarray(values, dtype=float)
    if returns.shape != (n_rows,):
        raise DataValidationError(
            f"training: forward_returns must hold one value per dataset row ({n_rows}), got shape {returns.shape}"
        )
    return returns


# -- tuning and fitting ------------------------------------------------------------------------


def _fit_ensemble(
    target: str, task: TaskKind, features: list[str], segments: Segments, X_all: pd.DataFrame,
    X: dict[str, pd.DataFrame], y_val: pd.Series, out_dir: Path, params: TrainParams,
    member_dirs: Mapping[str, Path] | None,
) -> tuple[EnsembleModel, dict[str, np.ndarray], dict[str, Any]]:
    """Weights over the saved members, fitted on their validation predictions only; also the
    ensemble's raw outputs per segment.

    A member is skipped (and the reason recorded) when it is missing or was trained on other
    features or other segments: its "validation" rows could then be rows it trained on. Members'
    outputs come from their ``segment_outputs.parquet`` when it covers exactly these rows
    (predicting afresh gives the same numbers, at an LSTM's cost).
    """
    root = out_dir.parent.parent
    index = {name: X[name].index for name in SEGMENTS}
    members: dict[str, SepflowModel] = {}
    member_outputs: dict[str, dict[str, np.ndarray]] = {}
    skipped: dict[str, str] = {}
    for family in params.ensemble_members:
        folder = root / family / target if member_dirs is None else member_dirs.get(family)
        try:
            if folder is None:
                raise SepflowError("no member folder given")
            member = load_trained(folder)
        except SepflowError as exc:
            skipped[family] = str(exc)
            continue
        if member.task != task:
            skipped[family] = f"trained for task {member.task!r}, not {task!r}"
        elif member.features != features:
            skipped[family] = "trained on other features"
        elif member.metadata.get("segments") != segments.info:
            skipped[family] = "trained on other segments"
        else:
            members[family] = member.model
            saved = read_segment_outputs(folder, index, two_dimensional=task != "regression")
            member_outputs[family] = saved if saved is not None else {
                name: segment_output(member.model, X_all, X[name]) for name in SEGMENTS
            }
    for family, reason in skipped.items():
        log.warning("training: ensemble %s skips %s: %s", target, family, reason)
    if not members:
        where = f"{root}/<family>/{target}" if member_dirs is None else "the given member folders"
        raise ConfigError(f"training: no usable ensemble member under {where}: {skipped}")
    ensemble = EnsembleModel(members, task=task, **params.model_params("ensemble"))
    by_segment = {name: {family: outputs[name] for family, outputs in member_outputs.items()} for name in SEGMENTS}
    ensemble.fit_weights(ensemble.predictions_frame(by_segment["validation"], index["validation"]), y_val)
    outputs = {name: ensemble.combine(by_segment[name]) for name in SEGMENTS}
    return ensemble, outputs, {"members": list(members), "weights": ensemble.weights_, "skipped": skipped}


# -- predictions -------------------------------------------------------------------------------


def context_length(model: SepflowModel) -> int:
    """Rows of history a model reads per prediction: its window for sequence models, else 1."""
    if isinstance(model, LSTMModel):
        return int(model.sequence_length)
    if isinstance(model, EnsembleModel):
        return max(context_length(member) for member in model.members.values())
    return 1


def _in_context(model: SepflowModel, X_all: pd.DataFrame, X_seg: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """``X_seg`` preceded by the earlier rows the model looks back on, and the positions of ``X_seg``'s rows."""
    combined, _ = with_context(X_all, X_seg, context_length(model))
    return combined, combined.index.get_indexer(X_seg.index)


def segment_output(model: SepflowModel, X_all: pd.DataFrame, X_seg: pd.DataFrame) -> np.ndarray:
    """Probabilities (classifiers) or predictions (regression) for the rows of ``X_seg``, in order."""
    combined, positions = _in_context(model, X_all, X_seg)
    return model.predict_output_at(combined, positions)


def calibrated(calibrator: ProbabilityCalibrator | None, proba: np.ndarray) -> np.ndarray:
    return proba if calibrator is None else calibrator.transform(proba)


# -- threshold and metrics ---------------------------------------------------------------------


def holding_rows(dates: np.ndarray, returns: np.ndarray, horizon: int) -> np.ndarray:
    """Rows on every ``horizon``-th date with a known forward return: non-overlapping holding periods."""
    trade_dates = np.unique(dates)[::horizon]
    return np.flatnonzero(np.isin(dates, trade_dates) & np.isfinite(returns))


def _net_sharpe(p_up: np.ndarray, threshold: float, dates: np.ndarray, tickers: np.ndarray, returns: np.ndarray,
                horizon: int, params: TrainParams) -> float:
    rows = holding_rows(dates, returns, horizon)
    if len(rows) == 0:
        return float("nan")
    book = pd.DataFrame({"ticker": tickers[rows], "date": dates[rows], "signal": p_up[rows],
                         "forward_return": returns[rows]})
    return backtest(book, threshold=threshold, fee_bps=params.fee_bps, slippage_bps=params.slippage_bps,
                    periods_per_year=TRADING_DAYS / horizon).summary["sharpe"]


def _choose_threshold(
    p_up: np.ndarray, y: np.ndarray, classes: np.ndarray, context: SegmentContext, horizon: int,
    params: TrainParams,
) -> dict[str, Any]:
    """The validation-tuned threshold on calibrated P(up), with how it was chosen."""
    returns = context.returns
    rows = np.array([], dtype=int) if returns is None else holding_rows(context.dates, returns, horizon)
    if returns is not None and len(rows):
        choice = tune_threshold(
            p_up[rows], y[rows], forward_returns=returns[rows], dates=context.dates[rows],
            tickers=context.tickers[rows], fee_bps=params.fee_bps, slippage_bps=params.slippage_bps,
            periods_per_year=TRADING_DAYS / horizon,
        )
    else:
        rows = np.arange(len(y))
        choice = tune_threshold(p_up, y)
    return {
        "threshold": choice.threshold, "rule": "calibrated P(positive_class) > threshold",
        "positive_class": classes.tolist()[1], "objective": choice.objective,
        "validation_score": choice.score, "n_rows": len(rows),
        "fee_bps": params.fee_bps, "slippage_bps": params.slippage_bps,
    }


def ranking_score(task: TaskKind, classes: np.ndarray, output: np.ndarray, y: np.ndarray,
                  returns: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(score, outcome) to rank names by per date: P(up) or the expected ordinal class, against returns or labels."""
    if task == "classification":
        return output[:, 1], y.astype(float) if returns is None else returns
    if not set(classes.tolist()) <= set(LABEL3_CLASSES):
        return None  # classes without a known order have no ranking score
    order = np.array([LABEL3_CLASSES.index(c) for c in classes], dtype=float)
    outcome = np.array([LABEL3_CLASSES.index(c) for c in y], dtype=float) if returns is None else returns
    return output @ order, outcome


def segment_metrics(
    model: SepflowModel, y: np.ndarray, output: np.ndarray, threshold: float | None, context: SegmentContext,
    horizon: int, params: TrainParams,
) -> dict[str, float]:
    """One segment's metrics from the model's calibrated ``output``: regression or classification
    quality, ICs against the forward returns (else the labels) and, for binary calls with
    returns, the net Sharpe of the non-overlapping long/flat book."""
    if model.task == "regression":
        return {**regression_metrics(y, output), **information_coefficients(context.dates, y, output)}
    classes = model.classes_
    metrics = classification_metrics(y, decide(output, classes, threshold), output, labels=classes)
    ranking = ranking_score(model.task, classes, output, y, context.returns)
    if ranking is not None:
        metrics.update(information_coefficients(context.dates, ranking[1], ranking[0]))
    if threshold is not None and context.returns is not None:
        metrics["net_sharpe"] = _net_sharpe(output[:, 1], threshold, context.dates, context.tickers,
                                            context.returns, horizon, params)
    return metrics


# -- records -----------------------------------------------------------------------------------


def _json_params(model: SepflowModel) -> dict[str, Any]:
    params = model.get_params(deep=False)
    if isinstance(model, EnsembleModel):
        params["members"] = list(model.members)
    return params


def _tuning_record(study: optuna.Study | None) -> dict[str, Any] | None:
    if study is None:
        return None
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return {"study_name": study.study_name, "n_complete_trials": len(complete),
            "best_value": study.best_value, "best_params": study.best_params}


def _library_versions(model: SepflowModel) -> dict[str, str]:
    libraries = list(model.libraries)
    if isinstance(model, EnsembleModel):
        libraries += [lib for member in model.members.values() for lib in member.libraries]
    versions = {"python": platform.python_version()}
    for name in dict.fromkeys(["sepflow", "numpy", "pandas", "sklearn", "optuna", *libraries]):
        versions[name] = str(getattr(importlib.import_module(name), "__version__", "unknown"))
    return versions
