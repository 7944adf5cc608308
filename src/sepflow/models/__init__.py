"""Model families behind one adapter contract (see ``sepflow.models.base``).

Importing this package registers every family in ``FAMILIES``; the LSTM imports Keras and
TensorFlow only when one is fitted or loaded.
"""

from sepflow.models.base import (
    FAMILIES,
    TASKS,
    SepflowModel,
    TaskKind,
    load_model,
    make_model,
)
from sepflow.models.boosting import LightGBMModel, XGBoostModel
from sepflow.models.dummy import DummyModel
from sepflow.models.ensemble import EnsembleModel
from sepflow.models.forest import RandomForestModel
from sepflow.models.lstm import LSTMModel, with_context
from sepflow.models.mlp import MLPModel

__all__ = [
    "FAMILIES",
    "TASKS",
    "DummyModel",
    "EnsembleModel",
    "LSTMModel",
    "LightGBMModel",
    "MLPModel",
    "RandomForestModel",
    "SepflowModel",
    "TaskKind",
    "XGBoostModel",
    "load_model",
    "make_model",
    "with_context",
]
