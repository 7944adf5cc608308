"""The adapter contract every model family follows, and the family registry.

A ``SepflowModel`` is a scikit-learn estimator (parameters in ``__init__``, learned state
ending in ``_``, ``fit`` returns ``self``) with three additions the pipeline relies on:

- one ``task`` parameter (``classification`` | ``multiclass`` | ``regression``) instead of
  separate classifier and regressor classes, so a stage can loop over targets;
- ``fit(X, y, *, eval_set=(X_val, y_val))``: validation rows for early stopping, never trained on;
- ``save(folder)`` / ``load(folder)`` in the library's own format plus ``adapter.json``
  (family, params, task, classes, feature names, library versions, small learned state).
  Nothing is ever unpickled: a saved folder may come from a place the user did not choose.

``X`` is a DataFrame of float features indexed by (``ticker``, ``date``); class labels are
encoded to ``0..K-1`` internally and ``classes_`` keeps the original labels, sorted.
"""

from __future__ import annotations

import importlib
import json
import platform
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils import ClassifierTags, RegressorTags, Tags
from sklearn.utils._available_if import available_if
from sklearn.utils.validation import check_is_fitted

from sepflow.errors import ConfigError, DataValidationError, SepflowError
from sepflow.families import FAMILY_NAMES, TASKS, TaskKind

__all__ = [
    "ADAPTER_FILE",
    "FAMILIES",
    "TASKS",
    "EvalSet",
    "SepflowModel",
    "TaskKind",
    "load_model",
    "make_model",
]

EvalSet = tuple[pd.DataFrame, Any]

ADAPTER_FILE = "adapter.json"
# Bumped when the adapter.json layout changes, so old folders fail loudly instead of loading wrong.
FORMAT_VERSION = 1

FAMILIES: dict[str, type[SepflowModel]] = {}


def _library_versions(modules: tuple[str, ...]) -> dict[str, str]:
    """Versions of the imported modules (import names: a wheel's distribution name may differ)."""
    versions = {"python": platform.python_version()}
    for name in ("sepflow", "numpy", "pandas", "sklearn", *modules):
        versions[name] = str(getattr(importlib.import_module(name), "__version__", "unknown"))
    return versions


@contextmanager
def _atomic_folder(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder that replaces ``path`` only once it is complete."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"models: cannot save into {path}: it exists and is not a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield staging
        # mkdtemp makes a private (0700) folder; a saved model is an ordinary output.
        staging.chmod(0o755)
        if path.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            path.replace(retired / path.name)
            staging.replace(path)
            shutil.rmtree(retired)
        else:
            staging.replace(path)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _is_classifier(model: SepflowModel) -> bool:
    return model.task != "regression"


class SepflowModel(BaseEstimator):
    """Base of every model family; subclasses set ``family`` and implement the ``_`` hooks.

    Subclasses with a non-empty ``family`` register themselves in ``FAMILIES``.
    """

    family: ClassVar[str] = ""
    # File names ``save`` writes beside adapter.json, in the library's native format.
    native_files: ClassVar[tuple[str, ...]] = ()
    # Modules whose versions are recorded in adapter.json.
    libraries: ClassVar[tuple[str, ...]] = ()

    task: TaskKind

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("family"):
            if cls.family not in FAMILY_NAMES:
                raise ConfigError(f"models: family {cls.family!r} is not named in sepflow.families.FAMILY_NAMES")
            FAMILIES[cls.family] = cls

    # -- hooks for subclasses -------------------------------------------------------------

    def _fit(self, X: pd.DataFrame, y: np.ndarray, eval_set: tuple[pd.DataFrame, np.ndarray] | None) -> None:
        """Learn from ``X`` and encoded ``y`` (class codes, or floats for regression)."""
        raise NotImplementedError

    def _predict_output(self, X: pd.DataFrame) -> np.ndarray:
        """(n, n_classes) probabilities for classifiers, (n,) values for regression."""
        raise NotImplementedError

    def _save_native(self, folder: Path) -> dict[str, Any]:
        """Write ``native_files`` into ``folder``; return JSON-ready learned state for adapter.json."""
        raise NotImplementedError

    def _load_native(self, folder: Path, state: dict[str, Any]) -> None:
        """Restore what ``_save_native`` wrote."""
        raise NotImplementedError

    def _json_params(self) -> dict[str, Any]:
        """Constructor params as JSON values (the ensemble overrides: its members are folders)."""
        return self.get_params(deep=False)

    @classmethod
    def _params_from_json(cls, folder: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Inverse of ``_json_params``."""
        return params

    # -- the public contract --------------------------------------------------------------

    def fit(self, X: pd.DataFrame, y: Any, *, eval_set: EvalSet | None = None) -> Self:
        """Fit on training rows; ``eval_set=(X_val, y_val)`` drives early stopping where supported."""
        self._check_task()
        features = self._check_features(X, fitting=True)
        target = self._encode_target(y, features, fitting=True)
        validation = None
        if eval_set is not None:
            X_val, y_val = eval_set
            val_features = self._check_features(X_val)
            validation = (val_features, self._encode_target(y_val, val_features, fitting=False))
        self._fit(features, target, validation)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Class labels (from ``classes_``) or regression values, one per row of ``X``."""
        check_is_fitted(self, "feature_names_in_")
        output = self._predict_output(self._check_features(X))
        if self.task == "regression":
            return output
        return self.classes_[np.argmax(output, axis=1)]

    @available_if(_is_classifier)
    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(n, n_classes) probabilities, columns in ``classes_`` order."""
        check_is_fitted(self, "feature_names_in_")
        return self._predict_output(self._check_features(X))

    def predict_output_at(self, X: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        """``predict_proba`` (classifiers) or ``predict`` (regression) for the rows at positions
        ``rows`` of ``X`` only; the other rows are context a sequence model looks back on."""
        check_is_fitted(self, "feature_names_in_")
        return self._output_at(self._check_features(X), np.asarray(rows))

    def _output_at(self, X: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        """Row-wise models predict every row and keep the chosen ones; sequence models do better."""
        return self._predict_output(X)[rows]

    def save(self, path: Path) -> Path:
        """Write the model to folder ``path`` (replaced atomically): native files + adapter.json."""
        check_is_fitted(self, "feature_names_in_")
        path = Path(path)
        params = self._json_params()
        if json.loads(json.dumps(params)) != params:
            raise ConfigError(
                f"models: {self.family} params do not survive JSON (tuples or non-str keys?): {params}"
            )
        with _atomic_folder(path) as staging:
            state = self._save_native(staging)
            adapter = {
                "format_version": FORMAT_VERSION,
                "family": self.family,
                "task": self.task,
                "params": params,
                "classes": None if self.task == "regression" else self.classes_.tolist(),
                "feature_names": list(self.feature_names_in_),
                "files": sorted(self.native_files),
                "libraries": _library_versions(self.libraries),
                "state": state,
            }
            (staging / ADAPTER_FILE).write_text(json.dumps(adapter, indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a folder written by ``save``; ``SepflowModel.load`` dispatches on its family."""
        path = Path(path)
        adapter_file = path / ADAPTER_FILE
        if not adapter_file.is_file():
            raise SepflowError(f"models: {path} is not a saved model folder (no {ADAPTER_FILE})")
        adapter = json.loads(adapter_file.read_text())
        if adapter.get("format_version") != FORMAT_VERSION:
            raise SepflowError(
                f"models: {adapter_file} has format_version {adapter.get('format_version')!r}; "
                f"this sepflow reads {FORMAT_VERSION}"
            )
        family = adapter["family"]
        if family not in FAMILIES:
            raise SepflowError(
                f"models: {adapter_file} names unknown family {family!r}; known: {sorted(FAMILIES)}"
            )
        target = FAMILIES[family]
        if not issubclass(target, cls):
            raise SepflowError(f"models: {path} holds a {family!r} model, not a {cls.__name__}")
        model = target(**target._params_from_json(path, adapter["params"]))
        model.feature_names_in_ = np.asarray(adapter["feature_names"], dtype=object)
        model.n_features_in_ = len(model.feature_names_in_)
        if adapter["classes"] is not None:
            model.classes_ = np.asarray(adapter["classes"])
        model._load_native(path, adapter["state"])
        return model

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        if self.task == "regression":
            tags.estimator_type, tags.regressor_tags = "regressor", RegressorTags()
        else:
            tags.estimator_type = "classifier"
            tags.classifier_tags = ClassifierTags(multi_class=self.task == "multiclass")
        return tags

    # -- shared checks ----------------------------------------------------------------------

    def _check_task(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"models: task must be one of {TASKS}, got {self.task!r}")

    def _check_features(self, X: Any, *, fitting: bool = False) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise DataValidationError(f"models: X must be a pandas DataFrame, got {type(X).__name__}")
        if len(X) == 0:
            raise DataValidationError("models: X has no rows")
        # From the dtypes Series: selecting each column (X[c]) costs ~0.1 ms a column, per call.
        non_numeric = [c for c, dtype in X.dtypes.items() if not pd.api.types.is_numeric_dtype(dtype)]
        if non_numeric:
            raise DataValidationError(f"models: feature columns must be numeric; not numeric: {non_numeric[:5]}")
        names = np.asarray([str(c) for c in X.columns], dtype=object)
        if fitting:
            self.feature_names_in_ = names
            self.n_features_in_ = len(names)
        elif not np.array_equal(names, self.feature_names_in_):
            expected = list(self.feature_names_in_)
            raise DataValidationError(
                "models: X's columns differ from the training features "
                f"(missing {sorted(set(expected) - set(names))[:5]}, "
                f"unexpected {sorted(set(names) - set(expected))[:5]}, order must match too)"
            )
        return X

    def _encode_target(self, y: Any, X: pd.DataFrame, *, fitting: bool) -> np.ndarray:
        if isinstance(y, pd.Series) and not y.index.equals(X.index):
            raise DataValidationError("models: y's index is not aligned with X's index")
        values = np.asarray(y)
        if values.ndim != 1 or len(values) != len(X):
            raise DataValidationError(
                f"models: y must be one value per row of X ({len(X)}), got shape {values.shape}"
            )
        missing = pd.isna(values)
        if missing.any():
            raise DataValidationError(
                f"models: y has {int(missing.sum())} missing values "
                f"(rows {np.flatnonzero(missing)[:5].tolist()}); drop unlabelled rows first"
            )
        if self.task == "regression":
            return values.astype(np.float64)
        if fitting:
            # Via tolist so a fitted and a loaded model hold the same dtype (JSON round trip).
            self.classes_ = np.asarray(np.unique(values).tolist())
            wanted = "exactly 2" if self.task == "classification" else "at least 2"
            n_classes = len(self.classes_)
            if n_classes < 2 or (self.task == "classification" and n_classes != 2):
                raise DataValidationError(
                    f"models: task {self.task!r} needs {wanted} classes in y, got {self.classes_.tolist()}"
                )
        codes = pd.Index(self.classes_).get_indexer(values)
        unknown = codes < 0
        if unknown.any():
            raise DataValidationError(
                f"models: validation labels {pd.unique(values[unknown]).tolist()[:5]} never occur in training"
            )
        return codes.astype(np.int64)

    @staticmethod
    def _matrix(X: pd.DataFrame) -> np.ndarray:
        return X.to_numpy(dtype=np.float32, na_value=np.nan)


def make_model(family: str, task: TaskKind, **params: Any) -> SepflowModel:
    """A new, unfitted model of ``family`` for ``task``; ``params`` are that family's constructor params."""
    if family not in FAMILIES:
        raise ConfigError(f"models: unknown family {family!r}; choose from {sorted(FAMILIES)}")
    cls = FAMILIES[family]
    try:
        model = cls(task=task, **params)
    except TypeError as exc:
        raise ConfigError(f"models: bad params for {family!r}: {exc}") from exc
    model._check_task()
    return model


def load_model(path: Path) -> SepflowModel:
    """Load any saved model folder, whatever its family."""
    return SepflowModel.load(path)

