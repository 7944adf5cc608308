"""Probability calibration fitted on validation rows only (isotonic or sigmoid/Platt).

Fit on the validation predictions of a model trained elsewhere; fitting on the model's own
training rows would learn its overconfidence there, not the calibration it needs out of sample.
Binary probabilities are calibrated directly. Multi-class probabilities are calibrated one
column at a time (one-vs-rest) and each row is renormalised to sum to 1. ``reliability_table``
measures how well probabilities are calibrated out of sample (the walk-forward's calibration curve).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from sepflow.errors import ConfigError, DataValidationError

__all__ = ["ProbabilityCalibrator", "fit_calibrator", "reliability_table"]

Method = Literal["isotonic", "sigmoid"]

# Keeps logit(p) finite for p = 0 or 1.
_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return np.log(p / (1.0 - p)).reshape(-1, 1)


class ProbabilityCalibrator:
    """Maps raw class probabilities to calibrated ones; scikit-learn style (``fit`` returns self).

    ``transform`` keeps the input's shape: a 1-D array is the probability of the positive
    (larger) class of a binary problem, a 2-D array has one column per entry of ``classes_``.
    """

    def __init__(self, method: Method = "isotonic") -> None:
        if method not in ("isotonic", "sigmoid"):
            raise ConfigError(f"calibration: method must be 'isotonic' or 'sigmoid', got {method!r}")
        self.method = method

    def fit(self, proba: Any, y: Any, *, classes: Sequence[Any] | None = None) -> ProbabilityCalibrator:
        """Fit on validation probabilities ``proba`` and their true labels ``y``.

        ``classes`` names the columns of a 2-D ``proba`` (a model's ``classes_``); by default
        the sorted labels in ``y``.
        """
        proba = self._check_proba(proba)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(proba):
            raise DataValidationError(f"calibration: y must be 1-D with {len(proba)} rows, got shape {y.shape}")
        self.classes_ = np.unique(y) if classes is None else np.asarray(classes)
        n_columns = 2 if proba.ndim == 1 else proba.shape[1]
        if len(self.classes_) != n_columns:
            raise ConfigError(
                f"calibration: {n_columns} probability columns but {len(self.classes_)} classes "
                f"({self.classes_.tolist()}); pass classes="
            )
        # A binary problem needs one map: the negative class is its complement.
        columns = [1] if n_columns == 2 else range(n_columns)
        self.calibrators_ = [self._fit_one(self._column(proba, j), y == self.classes_[j]) for j in columns]
        return self

    def transform(self, proba: Any) -> np.ndarray:
        """Calibrated probabilities, same shape as ``proba``."""
        proba = self._check_proba(proba)
        n_columns = 2 if proba.ndim == 1 else proba.shape[1]
        if n_columns != len(self.classes_):
            raise DataValidationError(
                f"calibration: fitted on {len(self.classes_)} classes, got {n_columns} probability columns"
            )
        if n_columns == 2:
            positive = self._apply(self.calibrators_[0], self._column(proba, 1))
            return positive if proba.ndim == 1 else np.column_stack([1.0 - positive, positive])
        calibrated = np.column_stack(
            [self._apply(model, proba[:, j]) for j, model in enumerate(self.calibrators_)]
        )
        totals = calibrated.sum(axis=1, keepdims=True)
        # A row every one-vs-rest map sends to 0 carries no information: spread it evenly.
        return np.where(totals > 0, calibrated / np.where(totals > 0, totals, 1.0), 1.0 / n_columns)

    @staticmethod
    def _check_proba(proba: Any) -> np.ndarray:
        arr = np.asarray(proba, dtype=float)
        if arr.ndim not in (1, 2) or len(arr) == 0:
            raise DataValidationError(
                f"calibration: proba must be a non-empty 1-D or 2-D array, got shape {arr.shape}"
            )
        if not np.isfinite(arr).all() or (arr < 0).any() or (arr > 1).any():
            raise DataValidationError("calibration: proba must hold finite values in [0, 1]")
        return arr

    @staticmethod
    def _column(proba: np.ndarray, j: int) -> np.ndarray:
        return proba if proba.ndim == 1 else proba[:, j]

    def _fit_one(self, p: np.ndarray, outcome: np.ndarray) -> IsotonicRegression | LogisticRegression:
        if outcome.all() or not outcome.any():
            raise DataValidationError(
                "calibration: every class needs both outcomes among the validation rows to be calibrated"
            )
        if self.method == "isotonic":
            return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, outcome.astype(float))
        # Platt scaling on the logit, unpenalised so the map is fitted, not shrunk.
        return LogisticRegression(C=np.inf).fit(_logit(p), outcome.astype(int))

    @staticmethod
    def _apply(model: IsotonicRegression | LogisticRegression, p: np.ndarray) -> np.ndarray:
        if isinstance(model, IsotonicRegression):
            return model.predict(p)
        return model.predict_proba(_logit(p))[:, 1]


def fit_calibrator(
    proba_val: Any, y_val: Any, method: Method = "isotonic", *, classes: Sequence[Any] | None = None,
) -> ProbabilityCalibrator:
    """Fit a ``ProbabilityCalibrator`` on validation probabilities and labels only."""
    return ProbabilityCalibrator(method=method).fit(proba_val, y_val, classes=classes)


def reliability_table(probability: Any, outcome: Any, n_bins: int = 10) -> pd.DataFrame:
    """The calibration curve: rows binned by predicted probability into ``n_bins`` equal-width
    bins; per non-empty bin its ``bin`` (lower edge), mean ``predicted`` probability, ``observed``
    frequency of the outcome and ``rows``. A calibrated model lies on predicted = observed."""
    p = np.asarray(probability, dtype=np.float64)
    hit = np.asarray(outcome, dtype=bool)
    keep = np.isfinite(p)
    p, hit = p[keep], hit[keep]
    # Equal widths (not quantiles): bins are comparable across families, commits and targets.
    bins = np.minimum((np.clip(p, 0.0, 1.0) * n_bins).astype(np.int64), n_bins - 1)
    rows = np.bincount(bins, minlength=n_bins)
    present = rows > 0
    return pd.DataFrame({
        "bin": np.arange(n_bins, dtype=np.float64)[present] / n_bins,
        "predicted": np.bincount(bins, weights=p, minlength=n_bins)[present] / rows[present],
        "observed": np.bincount(bins, weights=hit, minlength=n_bins)[present] / rows[present],
        "rows": rows[present],
    })
