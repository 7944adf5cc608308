"""Model metrics: classification, regression, and cross-sectional information coefficients.

Every function returns a plain ``dict`` of Python floats (JSON-ready for DVC metrics and
MLflow), with NaN where a metric is undefined (e.g. ROC-AUC when ``y_true`` holds one class).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from sepflow.errors import ConfigError, DataValidationError

__all__ = [
    "classification_metrics",
    "regression_metrics",
    "daily_information_coefficients",
    "information_coefficients",
]


def _vector(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DataValidationError(f"metrics: {name} must be one value per row, got shape {arr.shape}")
    return arr


def _check_same_length(**arrays: np.ndarray) -> int:
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise DataValidationError(f"metrics: inputs differ in length: {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise DataValidationError("metrics: no rows to score")
    return n


def _check_finite(arr: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(arr.astype(float))
    if bad.any():
        raise DataValidationError(
            f"metrics: {name} has {int(bad.sum())} non-finite values (rows {np.flatnonzero(bad)[:5].tolist()})"
        )


def classification_metrics(
    y_true: Any, y_pred: Any, proba: Any = None, *, labels: Sequence[Any] | None = None,
) -> dict[str, float]:
    """Accuracy, balanced accuracy, precision, recall, F1, RMSE and, with ``proba``, ROC-AUC, log loss, Brier.

    ``labels`` lists the classes in the order of ``proba``'s columns (a model's ``classes_``);
    by default the sorted classes seen in ``y_true`` and ``y_pred``. With two classes the
    larger label is the positive one; a 1-D ``proba`` is its probability. With more classes,
    precision/recall/F1 are macro averages, ROC-AUC is one-vs-rest macro, and Brier is the
    multi-class sum over classes (not halved). ``rmse`` is the root mean squared difference of
    the numeric labels, so for ordinal direction labels (-1/0/1) a down-for-up miss costs more
    than a down-for-flat one; it is NaN for named classes.
    """
    y_true, y_pred = _vector(y_true, "y_true"), _vector(y_pred, "y_pred")
    _check_same_length(y_true=y_true, y_pred=y_pred)
    classes = np.unique(np.concatenate([y_true, y_pred])) if labels is None else np.asarray(labels)
    binary = len(classes) <= 2
    averaging: dict[str, Any] = (
        {"average": "binary", "pos_label": classes[-1]} if binary else {"average": "macro", "labels": classes}
    )
    out = {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y_true, y_pred),
        "precision": skm.precision_score(y_true, y_pred, zero_division=np.nan, **averaging),
        "recall": skm.recall_score(y_true, y_pred, zero_division=np.nan, **averaging),
        "f1": skm.f1_score(y_true, y_pred, zero_division=np.nan, **averaging),
        "rmse": _label_rmse(y_true, y_pred),
    }
    if proba is not None:
        out.update(_probability_metrics(y_true, np.asarray(proba, dtype=float), classes))
    return {name: float(value) for name, value in out.items()}


def _label_rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """RMSE of numeric labels; NaN for named classes (BEARISH/NEUTRAL/BULLISH have no distance)."""
    if not (np.issubdtype(y_true.dtype, np.number) and np.issubdtype(y_pred.dtype, np.number)):
        return float("nan")
    return float(np.sqrt(np.mean((y_true.astype(float) - y_pred.astype(float)) ** 2)))


def _probability_metrics(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    _check_same_length(y_true=y_true, proba=proba)
    _check_finite(proba, "proba")
    if proba.ndim == 2 and proba.shape[1] == 2:
        proba = proba[:, 1]
    if proba.ndim == 1:
        if len(classes) != 2:
            return {"roc_auc": np.nan, "log_loss": np.nan, "brier": np.nan}
        positive = (y_true == classes[1]).astype(int)
        one_class = len(np.unique(positive)) < 2
        return {
            "roc_auc": np.nan if one_class else skm.roc_auc_score(positive, proba),
            "log_loss": skm.log_loss(positive, proba, labels=[0, 1]),
            "brier": skm.brier_score_loss(positive, proba, labels=[0, 1]),
        }
    if proba.shape[1] != len(classes):
        raise ConfigError(
            f"metrics: proba has {proba.shape[1]} columns but there are {len(classes)} classes; pass labels="
        )
    # One-vs-rest AUC is undefined for a class absent from y_true.
    all_present = np.isin(classes, y_true).all()
    return {
        "roc_auc": skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=classes) if all_present else np.nan,
        "log_loss": skm.log_loss(y_true, proba, labels=classes),
        "brier": skm.brier_score_loss(y_true, proba, labels=classes),
    }


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """RMSE and MAE."""
    y_true = _vector(y_true, "y_true").astype(float)
    y_pred = _vector(y_pred, "y_pred").astype(float)
    _check_same_length(y_true=y_true, y_pred=y_pred)
    _check_finite(y_true, "y_true")
    _check_finite(y_pred, "y_pred")
    return {
        "rmse": float(skm.root_mean_squared_error(y_true, y_pred)),
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
    }


def _grouped_pearson(frame: pd.DataFrame, x: str, y: str) -> pd.Series:
    """Pearson correlation of ``x`` and ``y`` within each date, from grouped sums of centred values."""
    by_date = frame.groupby("date", sort=True)
    dx = frame[x] - by_date[x].transform("mean")
    dy = frame[y] - by_date[y].transform("mean")
    sums = pd.DataFrame({"xy": dx * dy, "xx": dx * dx, "yy": dy * dy}).groupby(frame["date"], sort=True).sum()
    # A constant cross-section has no correlation; test max > min because the centred values
    # of a constant group can be rounding noise rather than exact zeros.
    varying = (by_date[x].max() > by_date[x].min()) & (by_date[y].max() > by_date[y].min())
    return (sums["xy"] / np.sqrt(sums["xx"] * sums["yy"])).where(varying)


def daily_information_coefficients(
    dates: Any, y_true: Any, y_pred: Any, *, min_names: int = 5,
) -> pd.DataFrame:
    """Per-date IC (Pearson) and rank IC (Spearman) across names, for rolling-IC plots.

    Rows where either value is missing are dropped; dates with fewer than ``min_names`` rows
    are left out. A date whose predictions or outcomes are constant has NaN IC. Index: date;
    columns: ``ic``, ``rank_ic``, ``n_names``.
    """
    if int(min_names) < 2:
        raise ConfigError(f"metrics: min_names must be at least 2, got {min_names}")
    d, t, p = _vector(dates, "dates"), _vector(y_true, "y_true"), _vector(y_pred, "y_pred")
    _check_same_length(dates=d, y_true=t, y_pred=p)
    frame = pd.DataFrame({"date": d, "true": t.astype(float), "pred": p.astype(float)}).dropna()
    counts = frame.groupby("date")["date"].transform("size")
    frame = frame[counts >= int(min_names)]
    by_date = frame.groupby("date", sort=True)
    # Spearman is Pearson on ranks; average ranks for ties, as scipy.stats.spearmanr does.
    frame = frame.assign(true_rank=by_date["true"].rank(), pred_rank=by_date["pred"].rank())
    out = pd.DataFrame({
        "ic": _grouped_pearson(frame, "true", "pred"),
        "rank_ic": _grouped_pearson(frame, "true_rank", "pred_rank"),
        "n_names": frame.groupby("date", sort=True).size(),
    })
    out.index.name = "date"
    return out


def _ir(series: pd.Series) -> float:
    values = series.dropna()
    if len(values) < 2:
        return np.nan
    std = values.std(ddof=1)
    return float(values.mean() / std) if std > 0 else np.nan


def information_coefficients(
    dates: Any, y_true: Any, y_pred: Any, *, min_names: int = 5,
) -> dict[str, float]:
    """Mean per-date IC and rank IC, and their ICIR (mean / sample std of the per-date series).

    ICIR is *not* annualised: it is per rebalancing date (multiply by sqrt(252) for daily
    dates to annualise). ``n_dates`` counts the dates with a defined IC.
    """
    daily = daily_information_coefficients(dates, y_true, y_pred, min_names=min_names)
    return {
        "ic": float(daily["ic"].mean()),
        "rank_ic": float(daily["rank_ic"].mean()),
        "icir": _ir(daily["ic"]),
        "rank_icir": _ir(daily["rank_ic"]),
        "n_dates": float(daily["ic"].notna().sum()),
    }


def mean_daily_auc(dates: Any, positive: Any, score: Any, *, min_names: int = 5) -> float:
    """ROC-AUC of ``score`` for the boolean ``positive`` computed within each date, then averaged.

    The cross-sectional counterpart of ROC-AUC, as rank IC is of IC: it asks whether the model
    orders the names of one date, so market-wide swings shared by every name neither help nor
    hurt. Dates with fewer than ``min_names`` rows or without both outcomes are skipped (NaN
    when none is left). Per date, AUC = (sum of positives' ranks − n⁺(n⁺+1)/2) / (n⁺ n⁻),
    with average ranks for ties.
    """
    frame = pd.DataFrame({"date": np.asarray(dates), "pos": np.asarray(positive, dtype=bool),
                          "score": np.asarray(score, dtype=float)})
    frame["rank"] = frame.groupby("date")["score"].rank(method="average")
    grouped = frame.groupby("date")
    n = grouped.size()
    n_pos = grouped["pos"].sum()
    rank_pos = frame["rank"].where(frame["pos"], 0.0).groupby(frame["date"]).sum()
    n_neg = n - n_pos
    usable = (n >= min_names) & (n_pos > 0) & (n_neg > 0)
    auc = (rank_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return float(auc[usable].mean()) if usable.any() else float("nan")
