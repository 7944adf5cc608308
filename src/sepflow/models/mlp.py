"""A small feed-forward network (scikit-learn MLP): the neural family that is cheap enough to rank with.

Imputation (median) and standardisation are fitted on the training rows and saved inside the
pipeline, so prediction applies the training statistics only.
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import TransformedTargetRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sepflow.models._skops import SkopsModel
from sepflow.models.base import TaskKind

__all__ = ["MLPModel"]


class MLPModel(SkopsModel):
    """``SimpleImputer(median) → StandardScaler → MLP{Classifier,Regressor}`` (Adam, seeded)."""

    family = "mlp"
    # The fitted network keeps its Adam state; it is a plain scikit-learn object of arrays.
    trusted_types: ClassVar[tuple[str, ...]] = ("numpy.dtype", "sklearn.neural_network._stochastic_optimizers.AdamOptimizer")

    def __init__(
        self,
        task: TaskKind = "classification",
        hidden_layer_sizes: tuple[int, ...] | list[int] = (32,),
        alpha: float = 1e-3,
        learning_rate_init: float = 1e-3,
        max_iter: int = 100,
        n_jobs: int | None = 1,  # accepted for a uniform family interface; the MLP is single-threaded
        random_state: int | None = 0,
    ) -> None:
        self.task = task
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _fit(self, X: pd.DataFrame, y: np.ndarray, eval_set: tuple[pd.DataFrame, np.ndarray] | None) -> None:
        # max_iter is the training budget the caller chose; stopping there is not an error.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            super()._fit(X, y, eval_set)

    def _make_estimator(self) -> BaseEstimator:
        common = {
            "hidden_layer_sizes": tuple(self.hidden_layer_sizes), "alpha": self.alpha,
            "learning_rate_init": self.learning_rate_init, "max_iter": self.max_iter,
            "random_state": self.random_state,
        }
        network = MLPRegressor(**common) if self.task == "regression" else MLPClassifier(**common)
        imputer = SimpleImputer(strategy="median", keep_empty_features=True)
        pipeline = Pipeline([("impute", imputer), ("scale", StandardScaler()), ("mlp", network)])
        if self.task == "regression":
            # Daily returns are ~1e-2: standardise the target too, or Adam's steps swamp it.
            return TransformedTargetRegressor(regressor=pipeline, transformer=StandardScaler())
        return pipeline
