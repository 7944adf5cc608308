"""Shared base of the scikit-learn families (dummy, random forest): one estimator saved with skops.

skops writes a zip of JSON schemas and numpy arrays and, unlike pickle, refuses to build any
type it was not told to trust. Each family lists the few non-default types its estimator
needs (``trusted_types``); a file asking for anything else is rejected before loading.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from sepflow.errors import SepflowError
from sepflow.models._archive import canonical_skops
from sepflow.models.base import SepflowModel

__all__ = ["SkopsModel"]

MODEL_FILE = "model.skops"


class SkopsModel(SepflowModel):
    """A family whose learned state is one scikit-learn estimator in ``estimator_``."""

    native_files: ClassVar[tuple[str, ...]] = (MODEL_FILE,)
    libraries: ClassVar[tuple[str, ...]] = ("skops",)
    trusted_types: ClassVar[tuple[str, ...]] = ()

    estimator_: BaseEstimator

    def _make_estimator(self) -> BaseEstimator:
        """A new, unfitted scikit-learn estimator configured from the params."""
        raise NotImplementedError

    def _fit(self, X: pd.DataFrame, y: np.ndarray, eval_set: tuple[pd.DataFrame, np.ndarray] | None) -> None:
        # Labels arrive encoded as 0..K-1, so the estimator's classes_ are the column order.
        self.estimator_ = self._make_estimator().fit(self._matrix(X), y)

    def _predict_output(self, X: pd.DataFrame) -> np.ndarray:
        features = self._matrix(X)
        if self.task == "regression":
            return np.asarray(self.estimator_.predict(features), dtype=np.float64)
        return np.asarray(self.estimator_.predict_proba(features), dtype=np.float64)

    def _save_native(self, folder: Path) -> dict[str, Any]:
        import skops.io as sio  # imported here: skops pulls in torch when installed (~2 s per process)

        sio.dump(self.estimator_, folder / MODEL_FILE)
        canonical_skops(folder / MODEL_FILE)
        return {}

    def _load_native(self, folder: Path, state: dict[str, Any]) -> None:
        import skops.io as sio

        file = folder / MODEL_FILE
        asked = sio.get_untrusted_types(file=file)
        refused = sorted(set(asked) - set(self.trusted_types))
        if refused:
            raise SepflowError(f"models: {file} asks to build types this family never saves: {refused}")
        self.estimator_ = sio.load(file, trusted=asked)
