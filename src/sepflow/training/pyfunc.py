"""The MLflow pyfunc face of a trained folder: ``mlflow.pyfunc.load_model(...).predict(frame)``.

``TrainedPyfunc`` is logged from code (``ENTRY_POINT``, MLflow's models-from-code), not pickled;
the model itself is read from the logged ``trained`` artifact folder, in its native formats, by
``load_served``: a pooled folder, or a per-symbol folder whose model routes each ticker's rows to
that ticker's own model. The registry logs sepflow's code with the model (``code_paths``), so
serving needs no sepflow install, only the pinned libraries of the model's requirements.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from sepflow.training.artifacts import TrainedModel
from sepflow.training.routing import RoutedModel, load_served

__all__ = ["ARTIFACT_KEY", "ENTRY_POINT", "TrainedPyfunc", "predict_records"]

ARTIFACT_KEY = "trained"
# The file to pass as ``python_model``: it builds a TrainedPyfunc when MLflow runs it.
ENTRY_POINT = Path(__file__).with_name("pyfunc_entry.py")
KEYS = ["ticker", "date"]


def predict_records(trained: TrainedModel | RoutedModel, frame: pd.DataFrame) -> pd.DataFrame:
    """Predictions for a flat frame; ``ticker`` and ``date`` columns, when present, index the rows
    (an LSTM and a per-symbol model need them) and come back as the first output columns."""
    if not set(KEYS) <= set(frame.columns):
        return trained.predict_frame(frame).reset_index(drop=True)
    X = frame.assign(date=pd.to_datetime(frame["date"])).set_index(KEYS)
    return trained.predict_frame(X).reset_index()


class TrainedPyfunc(mlflow.pyfunc.PythonModel):
    """Loads the ``trained`` artifact folder in ``load_context``; ``predict`` calls ``predict_records``."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self._trained = load_served(Path(context.artifacts[ARTIFACT_KEY]))

    def predict(
        self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        return predict_records(self._trained, pd.DataFrame(model_input))
