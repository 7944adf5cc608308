"""Shared base of the scikit-learn families (dummy, random forest): one estimator saved with skops.

skops writes a zip of JSON schemas and numpy arrays and, unlike pickle, refuses to build any
type it was not told to trust. Each family lists the few non-default types its estimator
needs (``trusted_types``); a file asking for anything else is rejected before loading.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
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
        sio = _skops_io()
        sio.dump(self.estimator_, folder / MODEL_FILE)
        canonical_skops(folder / MODEL_FILE)
        return {}

    def _load_native(self, folder: Path, state: dict[str, Any]) -> None:
        sio = _skops_io()
        file = folder / MODEL_FILE
        asked = sio.get_untrusted_types(file=file)
        refused = sorted(set(asked) - set(self.trusted_types))
        if refused:
            raise SepflowError(f"models: {file} asks to build types this family never saves: {refused}")
        self.estimator_ = sio.load(file, trusted=asked)


# Imported by scikit-learn's estimator scan only because it is a package; it imports all of PyTorch.
_TORCH_COMPAT = "sklearn.externals.array_api_compat.torch"


def _skops_io() -> ModuleType:
    """``skops.io``, imported when a model is saved or loaded, without importing PyTorch.

    skops lists the scikit-learn types it trusts with ``sklearn.utils.all_estimators()``, whose
    ``pkgutil.walk_packages`` imports every subpackage of scikit-learn on the way, the array-API
    shim for PyTorch included: where torch is installed, every process that loads a forest paid
    for importing torch (see BENCHMARKS.md, "skops without torch": about 8 s → 4.5 s on 2 cores).
    Hiding the shim for the duration of the import makes ``walk_packages`` skip it (it ignores
    ImportError); nothing in sepflow dispatches scikit-learn to torch arrays.
    """
    if "skops.io" in sys.modules or "torch" in sys.modules or _TORCH_COMPAT in sys.modules:
        import skops.io

        return skops.io
    sys.modules[_TORCH_COMPAT] = None  # type: ignore[assignment]  # `import` of it raises ImportError
    try:
        import skops.io
    finally:
        del sys.modules[_TORCH_COMPAT]
    return skops.io
