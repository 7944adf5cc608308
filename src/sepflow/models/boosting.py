"""XGBoost and LightGBM behind one gradient-boosting base.

The base owns what the two share: objectives per task, ``scale_pos_weight='auto'``, early
stopping on ``eval_set``, predicting with the best iteration only, gain importances and
save/load. A subclass only maps the shared params onto its library's names and calls its
library's ``train``/``predict``/``save_model``. Both train through the native APIs (not the
scikit-learn wrappers) because the native booster is what is saved and loaded back.

Saved files hold only the iterations kept by early stopping, so the native file alone
predicts what the adapter predicts (useful when MLflow's xgboost/lightgbm flavour loads it).

Inside ``sepflow.distributed.dask_session`` (``train.engine: dask``) a fit runs on the cluster:
the rows are spread over the workers, ``xgboost.dask`` / ``lightgbm.dask`` train one model
together, and the result is the same local booster, so saving, loading, prediction and
calibration do not change. XGBoost stops early on the cluster (its validation metric is
reduced over the workers). LightGBM's Dask interface cannot stop early (each worker would judge
its own validation rows and stop on its own), so it trains every round and the best round is
then chosen from the validation rows here, by the rule ``lightgbm.early_stopping`` applies.
Histograms built from partitioned rows make a cluster fit close to a local one, not identical.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar

import lightgbm as lgb
import numpy as np
import pandas as pd
import xgboost as xgb
from scipy.special import expit, log_softmax

from sepflow.distributed import DaskSession, current_session
from sepflow.errors import ConfigError
from sepflow.models.base import SepflowModel, TaskKind

__all__ = ["GradientBoostingModel", "LightGBMModel", "XGBoostModel"]


class GradientBoostingModel(SepflowModel):
    """Shared fit/predict/save of the boosted-tree families.

    Learned state: ``booster_`` (the library's booster), ``n_iterations_`` (boosting rounds used
    at predict time: the best validation round with early stopping, else ``n_estimators``),
    ``scale_pos_weight_`` (the weight actually used; None outside binary classification).

    ``scale_pos_weight``: a number, or ``'auto'`` for negatives/positives of the training rows.
    ``'auto'`` is a no-op for multiclass and regression; a number there is a config error.
    """

    model_file: ClassVar[str]

    booster_: Any
    n_iterations_: int
    scale_pos_weight_: float | None

    n_estimators: int
    early_stopping_rounds: int | None
    scale_pos_weight: float | str | None

    # -- library hooks ---------------------------------------------------------------------

    def _library_params(self, n_classes: int) -> dict[str, Any]:
        """The library's own params (objective, metric, seed, threads, tree params)."""
        raise NotImplementedError

    def _train(
        self, params: dict[str, Any], train: tuple[np.ndarray, np.ndarray],
        validation: tuple[np.ndarray, np.ndarray] | None, session: DaskSession | None,
    ) -> tuple[Any, int]:
        """Train a booster (here, or on ``session``'s cluster); return it and the rounds to predict with."""
        raise NotImplementedError

    def _raw_predict(self, features: np.ndarray) -> np.ndarray:
        """Booster output with ``n_iterations_`` rounds: P(class 1), class matrix, or values."""
        raise NotImplementedError

    def _raw_contributions(self, features: np.ndarray) -> np.ndarray:
        """TreeSHAP output, (rows, [outputs ×] (features + 1)) with the bias last."""
        raise NotImplementedError

    def _gain_by_feature(self) -> np.ndarray:
        """Total split gain per feature, in ``feature_names_in_`` order."""
        raise NotImplementedError

    def _write_booster(self, file: Path) -> None:
        raise NotImplementedError

    def _read_booster(self, file: Path) -> Any:
        raise NotImplementedError

    # -- shared logic ----------------------------------------------------------------------

    def _resolve_scale_pos_weight(self, y: np.ndarray) -> float | None:
        if self.scale_pos_weight is None:
            return None
        if self.task != "classification":
            if self.scale_pos_weight == "auto":
                return None
            raise ConfigError(f"{self.family}: scale_pos_weight applies to binary classification only")
        if self.scale_pos_weight == "auto":
            positives = int(y.sum())
            return (len(y) - positives) / positives
        weight = float(self.scale_pos_weight)
        if weight <= 0:
            raise ConfigError(f"{self.family}: scale_pos_weight must be positive or 'auto', got {weight}")
        return weight

    def _fit(self, X: pd.DataFrame, y: np.ndarray, eval_set: tuple[pd.DataFrame, np.ndarray] | None) -> None:
        if int(self.n_estimators) < 1:
            raise ConfigError(f"{self.family}: n_estimators must be at least 1, got {self.n_estimators}")
        self.scale_pos_weight_ = self._resolve_scale_pos_weight(y)
        params = self._library_params(0 if self.task == "regression" else len(self.classes_))
        if self.scale_pos_weight_ is not None:
            params["scale_pos_weight"] = self.scale_pos_weight_
        stopping = eval_set is not None and self.early_stopping_rounds is not None
        validation = (self._matrix(eval_set[0]), eval_set[1]) if stopping else None
        self.booster_, self.n_iterations_ = self._train(params, (self._matrix(X), y), validation, current_session())

    def _predict_output(self, X: pd.DataFrame) -> np.ndarray:
        raw = np.asarray(self._raw_predict(self._matrix(X)), dtype=np.float64)
        if self.task == "classification":
            return np.column_stack([1.0 - raw, raw])
        return raw

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        """Exact TreeSHAP values (the library's own), shaped (rows, outputs, features).

        One output for binary and regression (the margin), one per class for multiclass;
        features follow ``feature_names_in_``; the bias term is dropped.
        """
        raw = np.asarray(self._raw_contributions(self._matrix(self._check_features(X))), dtype=np.float64)
        n_features = len(self.feature_names_in_)
        return raw.reshape(len(X), -1, n_features + 1)[:, :, :n_features]

    @property
    def feature_importances_(self) -> np.ndarray:
        """Total gain per feature over the rounds used, normalised to sum to 1 (0s if no split)."""
        gain = self._gain_by_feature()
        total = gain.sum()
        return gain / total if total > 0 else gain

    def _save_native(self, folder: Path) -> dict[str, Any]:
        self._write_booster(folder / self.model_file)
        return {"n_iterations": self.n_iterations_, "scale_pos_weight": self.scale_pos_weight_}

    def _load_native(self, folder: Path, state: dict[str, Any]) -> None:
        self.booster_ = self._read_booster(folder / self.model_file)
        self.n_iterations_ = int(state["n_iterations"])
        self.scale_pos_weight_ = state["scale_pos_weight"]


class XGBoostModel(GradientBoostingModel):
    """XGBoost (``hist`` trees), saved as UBJSON. Deterministic on CPU for a given seed."""

    family = "xgboost"
    model_file = "model.ubj"
    native_files = (model_file,)
    libraries = ("xgboost",)

    def __init__(
        self,
        task: TaskKind = "classification",
        n_estimators: int = 500,
        learning_rate: float = 0.05,
        max_depth: int = 6,
        min_child_weight: float = 1.0,
        gamma: float = 0.0,
        reg_alpha: float = 0.0,
        reg_lambda: float = 1.0,
        subsample: float = 1.0,
        colsample_bytree: float = 1.0,
        scale_pos_weight: float | str | None = None,
        early_stopping_rounds: int | None = 50,
        n_jobs: int = 1,
        random_state: int = 0,
        device: str = "cpu",
    ) -> None:
        self.task = task
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.gamma = gamma
        self.reg_alpha = reg_alpha
        self.reg_lambda = reg_lambda
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.scale_pos_weight = scale_pos_weight
        self.early_stopping_rounds = early_stopping_rounds
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.device = device

    def _library_params(self, n_classes: int) -> dict[str, Any]:
        objective = {
            "classification": ("binary:logistic", "logloss"),
            "multiclass": ("multi:softprob", "mlogloss"),
            "regression": ("reg:squarederror", "rmse"),
        }[self.task]
        params = {
            "objective": objective[0], "eval_metric": objective[1], "tree_method": "hist",
            "eta": self.learning_rate, "max_depth": self.max_depth,
            "min_child_weight": self.min_child_weight, "gamma": self.gamma,
            "alpha": self.reg_alpha, "lambda": self.reg_lambda,
            "subsample": self.subsample, "colsample_bytree": self.colsample_bytree,
            "seed": self.random_state, "nthread": self.n_jobs, "verbosity": 0,
            "device": "cuda" if self.device == "gpu" else "cpu",
        }
        if self.task == "multiclass":
            params["num_class"] = n_classes
        return params

    def _train(
        self, params: dict[str, Any], train: tuple[np.ndarray, np.ndarray],
        validation: tuple[np.ndarray, np.ndarray] | None, session: DaskSession | None,
    ) -> tuple[Any, int]:
        names = list(self.feature_names_in_)
        if session is None:
            def matrix(X: np.ndarray, y: np.ndarray) -> Any:
                return xgb.DMatrix(X, label=y, feature_names=names, nthread=self.n_jobs)
            run = xgb.train
        else:
            from xgboost import dask as dxgb  # the cluster path only

            def matrix(X: np.ndarray, y: np.ndarray) -> Any:
                return dxgb.DaskDMatrix(session.client, *session.spread(X, y), feature_names=names)

            def run(*args: Any, **kwargs: Any) -> xgb.Booster:
                return dxgb.train(session.client, *args, **kwargs)["booster"]
        dtrain = matrix(*train)
        if validation is None:
            booster = run(params, dtrain, num_boost_round=int(self.n_estimators))
            return booster, booster.num_boosted_rounds()
        booster = run(
            params, dtrain, num_boost_round=int(self.n_estimators), evals=[(matrix(*validation), "validation")],
            early_stopping_rounds=int(self.early_stopping_rounds), verbose_eval=False,
        )
        return booster, booster.best_iteration + 1

    def _raw_predict(self, features: np.ndarray) -> np.ndarray:
        return self.booster_.inplace_predict(features, iteration_range=(0, self.n_iterations_))

    def _raw_contributions(self, features: np.ndarray) -> np.ndarray:
        matrix = xgb.DMatrix(features, feature_names=list(self.feature_names_in_), nthread=self.n_jobs)
        return self.booster_.predict(matrix, pred_contribs=True, iteration_range=(0, self.n_iterations_))

    def _gain_by_feature(self) -> np.ndarray:
        # get_score covers every round the booster holds, so score the kept rounds only.
        score = self.booster_[: self.n_iterations_].get_score(importance_type="total_gain")
        return np.array([score.get(name, 0.0) for name in self.feature_names_in_], dtype=np.float64)

    def _write_booster(self, file: Path) -> None:
        self.booster_[: self.n_iterations_].save_model(file)

    def _read_booster(self, file: Path) -> Any:
        return xgb.Booster(model_file=file)


class LightGBMModel(GradientBoostingModel):
    """LightGBM, saved as its text model. ``deterministic`` + ``force_row_wise`` fix the result per seed.

    ``subsample`` < 1 bags rows every ``subsample_freq`` rounds (LightGBM ignores it at freq 0).
    """

    family = "lightgbm"
    model_file = "model.txt"
    native_files = (model_file,)
    libraries = ("lightgbm",)

    def __init__(
        self,
        task: TaskKind = "classification",
        n_estimators: int = 500,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        max_depth: int = -1,
        min_child_samples: int = 20,
        reg_alpha: float = 0.0,
        reg_lambda: float = 0.0,
        subsample: float = 1.0,
        subsample_freq: int = 1,
        colsample_bytree: float = 1.0,
        scale_pos_weight: float | str | None = None,
        early_stopping_rounds: int | None = 50,
        n_jobs: int = 1,
        random_state: int = 0,
        device: str = "cpu",
    ) -> None:
        self.task = task
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.max_depth = max_depth
        self.min_child_samples = min_child_samples
        self.reg_alpha = reg_alpha
        self.reg_lambda = reg_lambda
        self.subsample = subsample
        self.subsample_freq = subsample_freq
        self.colsample_bytree = colsample_bytree
        self.scale_pos_weight = scale_pos_weight
        self.early_stopping_rounds = early_stopping_rounds
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.device = device

    def _library_params(self, n_classes: int) -> dict[str, Any]:
        objective = {
            "classification": ("binary", "binary_logloss"),
            "multiclass": ("multiclass", "multi_logloss"),
            "regression": ("regression", "l2"),
        }[self.task]
        params = {
            "objective": objective[0], "metric": objective[1],
            "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
            "max_depth": self.max_depth, "min_data_in_leaf": self.min_child_samples,
            "lambda_l1": self.reg_alpha, "lambda_l2": self.reg_lambda,
            "bagging_fraction": self.subsample, "bagging_freq": self.subsample_freq,
            "feature_fraction": self.colsample_bytree,
            "seed": self.random_state, "num_threads": self.n_jobs,
            "deterministic": True, "force_row_wise": True, "verbosity": -1,
            "device_type": "gpu" if self.device == "gpu" else "cpu",
        }
        if self.task == "multiclass":
            params["num_class"] = n_classes
        return params

    def _train(
        self, params: dict[str, Any], train: tuple[np.ndarray, np.ndarray],
        validation: tuple[np.ndarray, np.ndarray] | None, session: DaskSession | None,
    ) -> tuple[Any, int]:
        if session is not None:
            return self._train_on_cluster(params, train, validation, session)
        names = list(self.feature_names_in_)
        dtrain = lgb.Dataset(train[0], label=train[1], feature_name=names)
        if validation is None:
            booster = lgb.train(params, dtrain, num_boost_round=int(self.n_estimators))
            return booster, booster.current_iteration()
        dval = lgb.Dataset(validation[0], label=validation[1], reference=dtrain)
        booster = lgb.train(
            params, dtrain, num_boost_round=int(self.n_estimators), valid_sets=[dval],
            valid_names=["validation"],
            callbacks=[lgb.early_stopping(int(self.early_stopping_rounds), verbose=False)],
        )
        return booster, booster.best_iteration

    def _train_on_cluster(
        self, params: dict[str, Any], train: tuple[np.ndarray, np.ndarray],
        validation: tuple[np.ndarray, np.ndarray] | None, session: DaskSession,
    ) -> tuple[Any, int]:
        """Every round through ``lightgbm.dask``, then the round early stopping would have kept."""
        from lightgbm import dask as dlgb  # the cluster path only

        # The regressor wrapper passes labels through as given (codes 0..K-1) with our objective
        # and num_class; the classifier would re-encode labels per worker, from that worker's rows.
        # lightgbm.dask sets each worker's threads itself.
        native = {key: value for key, value in params.items() if key != "num_threads"}
        estimator = dlgb.DaskLGBMRegressor(n_estimators=int(self.n_estimators), **native)
        X, y = session.spread(*train)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Parameter .* will be ignored")
            estimator.fit(X, y, feature_name=list(self.feature_names_in_))
        booster = estimator.to_local().booster_
        if validation is None:
            return booster, booster.current_iteration()
        return booster, _early_stopping_round(booster, validation, self.task, int(self.early_stopping_rounds))

    def _raw_predict(self, features: np.ndarray) -> np.ndarray:
        return self.booster_.predict(features, num_iteration=self.n_iterations_, num_threads=self.n_jobs)

    def _raw_contributions(self, features: np.ndarray) -> np.ndarray:
        return self.booster_.predict(features, num_iteration=self.n_iterations_, pred_contrib=True,
                                     num_threads=self.n_jobs)

    def _gain_by_feature(self) -> np.ndarray:
        gain = self.booster_.feature_importance(importance_type="gain", iteration=self.n_iterations_)
        return np.asarray(gain, dtype=np.float64)

    def _write_booster(self, file: Path) -> None:
        self.booster_.save_model(file, num_iteration=self.n_iterations_)

    def _read_booster(self, file: Path) -> Any:
        return lgb.Booster(model_file=file)


def _early_stopping_round(booster: lgb.Booster, validation: tuple[np.ndarray, np.ndarray], task: str,
                          stopping_rounds: int) -> int:
    """The rounds ``lightgbm.early_stopping(stopping_rounds)`` would keep, from the validation loss per round.

    The loss is the objective's own metric (binary / multi logloss, l2); a round counts as better
    only when strictly lower, and the search ends ``stopping_rounds`` rounds after the best.
    """
    X_val, y_val = validation
    codes = np.asarray(y_val).astype(int) if task != "regression" else None
    raw = 0.0
    best_loss, best_round = np.inf, 0
    for round_ in range(booster.current_iteration()):
        # Raw scores add up over rounds (the first round holds the starting average).
        raw = raw + booster.predict(X_val, start_iteration=round_, num_iteration=1, raw_score=True)
        if task == "classification":
            p = np.clip(expit(raw), 1e-15, 1 - 1e-15)
            loss = -np.mean(codes * np.log(p) + (1 - codes) * np.log1p(-p))
        elif task == "multiclass":
            loss = -np.mean(np.maximum(log_softmax(raw, axis=1)[np.arange(len(codes)), codes], np.log(1e-15)))
        else:
            loss = float(np.mean((np.asarray(y_val, dtype=np.float64) - raw) ** 2))
        if loss < best_loss:
            best_loss, best_round = loss, round_
        elif round_ - best_round >= stopping_rounds:
            break
    return best_round + 1
