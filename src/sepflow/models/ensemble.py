"""Weighted average of already-fitted models, weights fitted on validation predictions only.

Weights come from a ridge regression of the target on the members' validation outputs,
constrained to be non-negative and without intercept (the ensemble is a convex combination,
so it is fitted as one), then normalised to sum to 1; equal weights if ridge zeroes them all.
Multiclass members are combined with ONE weight each: the ridge is fitted on the one-vs-rest
problems stacked (every class's probability column against its indicator) and the
probability matrices are averaged with those weights, so rows still sum to 1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge
from sklearn.utils.validation import check_is_fitted

from sepflow.errors import ConfigError, DataValidationError
from sepflow.models.base import EvalSet, SepflowModel, TaskKind

__all__ = ["EnsembleModel"]

WEIGHTS_FILE = "weights.json"
MEMBERS_FOLDER = "members"
_MEMBER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class EnsembleModel(SepflowModel):
    """``members``: name → fitted ``SepflowModel`` of the same task (and classes).

    ``fit(X, y)`` and ``fit_weights`` learn ``weights_`` (name → weight); the rows given must be
    rows the members did NOT train on (validation rows), or the weights reward overfitting.
    Each member is handed its own feature columns of ``X``, so members may use different
    feature subsets; ``X`` must hold their union (``feature_names_in_``).
    """

    family = "ensemble"
    native_files: ClassVar[tuple[str, ...]] = (WEIGHTS_FILE,)

    weights_: dict[str, float]

    def __init__(
        self, members: Mapping[str, SepflowModel], task: TaskKind = "classification", alpha: float = 1.0,
    ) -> None:
        self.members = members
        self.task = task
        self.alpha = alpha

    def fit(self, X: pd.DataFrame, y: Any, *, eval_set: EvalSet | None = None) -> Self:
        """Fit the weights on validation rows ``X``, ``y`` (the members are not refitted)."""
        if eval_set is not None:
            raise ConfigError(
                "ensemble: weights are fitted on the rows passed to fit; pass validation rows as X, y"
            )
        return self.fit_weights(self.member_predictions(X), y)

    def member_predictions(self, X: pd.DataFrame) -> pd.DataFrame:
        """One column per member: P(class 1), or the prediction for regression.

        Multiclass: columns ``(member, class)``, one per class probability.
        """
        self._check_members()  # a misconfigured ensemble is refused before any member predicts
        return self.predictions_frame(self.member_outputs(X), X.index)

    def member_outputs(
        self, X: pd.DataFrame, *, only_weighted: bool = False, rows: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Each member's output on ``X`` (or on its rows at positions ``rows``, the others being
        context): probabilities (classifiers) or predictions (regression).

        ``only_weighted`` skips members whose fitted weight is 0: they cannot change the average.
        """
        return {
            name: member.predict_output_at(X[list(member.feature_names_in_)],
                                           np.arange(len(X)) if rows is None else rows)
            for name, member in self.members.items()
            if not (only_weighted and self.weights_[name] == 0.0)
        }

    def predictions_frame(self, outputs: Mapping[str, np.ndarray], index: pd.Index) -> pd.DataFrame:
        """``member_predictions``' frame from the members' outputs (e.g. outputs saved when they were trained)."""
        self._check_members()
        columns: dict[Any, np.ndarray] = {}
        for name in self.members:
            output = outputs[name]
            if self.task == "regression":
                columns[name] = output
            elif self.task == "classification":
                columns[name] = output[:, 1]
            else:
                columns.update({(name, label): output[:, k] for k, label in enumerate(self.classes_)})
        frame = pd.DataFrame(columns, index=index)
        if self.task == "multiclass":
            frame.columns = pd.MultiIndex.from_tuples(list(columns), names=["member", "class"])
        return frame

    def combine(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The weighted average of the members' outputs: exactly what ``predict_proba``/``predict`` return."""
        check_is_fitted(self, "weights_")
        total: np.ndarray | None = None
        for name in self.members:
            weight = self.weights_[name]
            if weight == 0.0:
                continue
            total = weight * outputs[name] if total is None else total + weight * outputs[name]
        assert total is not None  # weights sum to 1, so at least one is positive
        return total

    def fit_weights(self, predictions_val: pd.DataFrame, y_val: Any) -> Self:
        """Fit non-negative weights summing to 1 from validation predictions (see ``member_predictions``)."""
        self._check_task()
        self._check_members()
        names = list(self.members)
        target = self._encode_target(y_val, predictions_val, fitting=False)
        if self.task == "multiclass":
            design, response = self._stacked_one_vs_rest(predictions_val, target, names)
        else:
            missing = [name for name in names if name not in predictions_val.columns]
            if missing:
                raise DataValidationError(f"ensemble: predictions_val has no column for members {missing}")
            design = predictions_val[names].to_numpy(dtype=np.float64)
            response = target.astype(np.float64)
        if not np.isfinite(design).all():
            raise DataValidationError("ensemble: predictions_val holds missing or infinite values")
        ridge = Ridge(alpha=float(self.alpha), positive=True, fit_intercept=False).fit(design, response)
        weights = np.clip(ridge.coef_, 0.0, None)
        total = weights.sum()
        weights = weights / total if total > 0 else np.full(len(names), 1.0 / len(names))
        self.weights_ = dict(zip(names, weights.tolist(), strict=True))
        return self

    def _stacked_one_vs_rest(
        self, predictions_val: pd.DataFrame, codes: np.ndarray, names: list[str],
    ) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(predictions_val.columns, pd.MultiIndex):
            raise DataValidationError("ensemble: multiclass predictions_val needs (member, class) columns")
        try:
            blocks = [predictions_val.xs(label, axis=1, level=1)[names] for label in self.classes_]
        except KeyError as exc:
            raise DataValidationError(f"ensemble: predictions_val lacks a (member, class) column: {exc}") from exc
        design = np.vstack([block.to_numpy(dtype=np.float64) for block in blocks])
        response = np.concatenate([(codes == k).astype(np.float64) for k in range(len(self.classes_))])
        return design, response

    def _check_members(self) -> None:
        if not isinstance(self.members, Mapping) or not self.members:
            raise ConfigError("ensemble: members must be a non-empty mapping of name → fitted model")
        for name, member in self.members.items():
            if not isinstance(name, str) or not _MEMBER_NAME.match(name):
                raise ConfigError(f"ensemble: member name {name!r} must be letters, digits, '_', '.', '-'")
            if not isinstance(member, SepflowModel):
                raise ConfigError(f"ensemble: member {name!r} is a {type(member).__name__}, not a SepflowModel")
            check_is_fitted(member, "feature_names_in_")
            if member.task != self.task:
                raise ConfigError(
                    f"ensemble: member {name!r} has task {member.task!r}, the ensemble {self.task!r}"
                )
        if self.task != "regression":
            classes = [member.classes_.tolist() for member in self.members.values()]
            if any(c != classes[0] for c in classes):
                raise ConfigError(f"ensemble: members disagree on classes: {dict(zip(self.members, classes))}")
            self.classes_ = next(iter(self.members.values())).classes_
        names = [n for member in self.members.values() for n in member.feature_names_in_]
        self.feature_names_in_ = np.asarray(list(dict.fromkeys(names)), dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)

    def _predict_output(self, X: pd.DataFrame) -> np.ndarray:
        return self._output_at(X, np.arange(len(X)))

    def _output_at(self, X: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "weights_")
        return self.combine(self.member_outputs(X, only_weighted=True, rows=rows))

    def _json_params(self) -> dict[str, Any]:
        return {"members": list(self.members), "task": self.task, "alpha": self.alpha}

    @classmethod
    def _params_from_json(cls, folder: Path, params: dict[str, Any]) -> dict[str, Any]:
        members = {name: SepflowModel.load(folder / MEMBERS_FOLDER / name) for name in params["members"]}
        return {**params, "members": members}

    def _save_native(self, folder: Path) -> dict[str, Any]:
        check_is_fitted(self, "weights_")
        for name, member in self.members.items():
            member.save(folder / MEMBERS_FOLDER / name)
        (folder / WEIGHTS_FILE).write_text(json.dumps(self.weights_, indent=2) + "\n")
        return {}

    def _load_native(self, folder: Path, state: dict[str, Any]) -> None:
        weights = json.loads((folder / WEIGHTS_FILE).read_text())
        if list(weights) != list(self.members):
            raise DataValidationError(
                f"ensemble: {folder / WEIGHTS_FILE} names {list(weights)}, members are {list(self.members)}"
            )
        self.weights_ = {name: float(w) for name, w in weights.items()}
