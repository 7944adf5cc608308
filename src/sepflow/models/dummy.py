"""The floor every model must beat: scikit-learn's Dummy estimators (features ignored)."""

from __future__ import annotations

from sklearn.base import BaseEstimator
from sklearn.dummy import DummyClassifier, DummyRegressor

from sepflow.models._skops import SkopsModel
from sepflow.models.base import TaskKind

__all__ = ["DummyModel"]


class DummyModel(SkopsModel):
    """Class prior (predicts the most frequent class) for classifiers, training mean for regression.

    ``strategy`` None picks those defaults; any scikit-learn Dummy strategy is accepted.
    ``random_state`` only matters for the random strategies (``stratified``, ``uniform``).
    """

    family = "dummy"

    def __init__(
        self, task: TaskKind = "classification", strategy: str | None = None, random_state: int | None = 0,
    ) -> None:
        self.task = task
        self.strategy = strategy
        self.random_state = random_state

    def _make_estimator(self) -> BaseEstimator:
        if self.task == "regression":
            return DummyRegressor(strategy=self.strategy or "mean")
        return DummyClassifier(strategy=self.strategy or "prior", random_state=self.random_state)
