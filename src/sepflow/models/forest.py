"""Random forest with median imputation fitted on the training rows (forests cannot split on NaN)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from sepflow.errors import ConfigError
from sepflow.models._skops import SkopsModel
from sepflow.models.base import TaskKind

__all__ = ["RandomForestModel"]

CLASS_WEIGHTS = (None, "balanced", "balanced_subsample")


class RandomForestModel(SkopsModel):
    """``SimpleImputer(median) → RandomForest{Classifier,Regressor}`` as one pipeline.

    The imputer lives inside the saved pipeline, so its medians are the training rows' and
    travel with the model. ``class_weight`` is None, ``balanced`` or ``balanced_subsample``
    (a per-label dict would not survive adapter.json). Results do not depend on ``n_jobs``:
    each tree's seed is drawn from ``random_state`` before the trees are farmed out, and
    predictions add the trees up in one thread, in order.
    """

    family = "random_forest"
    # skops trusts scikit-learn estimators by default, but not the compiled tree structure nor
    # the dtype the imputer records (rebuilt with numpy.dtype(name), which runs no code).
    trusted_types: ClassVar[tuple[str, ...]] = ("numpy.dtype", "sklearn.tree._tree.Tree")

    def __init__(
        self,
        task: TaskKind = "classification",
        n_estimators: int = 300,
        max_depth: int | None = None,
        min_samples_leaf: int = 1,
        max_features: str | float | None = "sqrt",
        class_weight: str | None = None,
        n_jobs: int | None = 1,
        random_state: int | None = 0,
    ) -> None:
        self.task = task
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.class_weight = class_weight
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _make_estimator(self) -> BaseEstimator:
        if self.class_weight not in CLASS_WEIGHTS:
            raise ConfigError(
                f"random_forest: class_weight must be one of {CLASS_WEIGHTS}, got {self.class_weight!r}"
            )
        common = {
            "n_estimators": self.n_estimators, "max_depth": self.max_depth,
            "min_samples_leaf": self.min_samples_leaf, "max_features": self.max_features,
            "n_jobs": self.n_jobs, "random_state": self.random_state,
        }
        if self.task == "regression":
            if self.class_weight is not None:
                raise ConfigError("random_forest: class_weight applies to classification tasks only")
            forest: BaseEstimator = RandomForestRegressor(**common)
        else:
            forest = RandomForestClassifier(class_weight=self.class_weight, **common)
        # keep_empty_features: a column empty in training still gets a value, so columns never shift.
        imputer = SimpleImputer(strategy="median", keep_empty_features=True)
        return Pipeline([("impute", imputer), ("forest", forest)])

    def _predict_output(self, X: pd.DataFrame) -> np.ndarray:
        # With n_jobs > 1 scikit-learn's threads add the trees' outputs in the order they finish,
        # so the last bits of a prediction vary run to run; one thread sums them in tree order.
        forest = self.estimator_[-1]
        n_jobs, forest.n_jobs = forest.n_jobs, 1
        try:
            return super()._predict_output(X)
        finally:
            forest.n_jobs = n_jobs

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        """Exact TreeSHAP values of the forest on imputed rows, shaped (rows, outputs, features).

        Like the boosters: one output for binary (class 1; class 0's values are its negative)
        and regression, one per class for multiclass.
        """
        import shap  # heavy import (numba); only feature selection needs it

        imputed = self.estimator_[:-1].transform(self._matrix(self._check_features(X)))
        values = np.asarray(shap.TreeExplainer(self.estimator_[-1]).shap_values(imputed), dtype=np.float64)
        if values.ndim == 2:  # regression: (rows, features)
            return values[:, None, :]
        per_class = values.transpose(0, 2, 1)  # (rows, classes, features)
        return per_class[:, 1:, :] if per_class.shape[1] == 2 else per_class

    @property
    def feature_importances_(self) -> np.ndarray:
        """Mean decrease in impurity per feature (the forest's gain), summing to 1."""
        return np.asarray(self.estimator_[-1].feature_importances_, dtype=np.float64)
