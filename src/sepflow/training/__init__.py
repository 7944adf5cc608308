"""Training: chronological segments, per-family fitting with tuning, calibration and thresholds, artifacts.

``train_family`` is the library function a ``train@FAMILY`` stage calls; ``load_trained`` reads
its folder back for prediction. With ``train.scope: per_symbol`` the stage calls
``train_per_symbol`` (one model per ticker) and ``load_routed`` reads the per-ticker models back
behind one ``predict_frame``; ``load_served`` reads either layout. The MLflow pyfunc wrapper lives in ``sepflow.training.pyfunc``
(imported on demand: it imports MLflow).
"""

from sepflow.training.artifacts import (
    TrainedModel,
    calibrator_from_json,
    calibrator_to_json,
    load_trained,
)
from sepflow.training.params import TrainParams, TuningParams
from sepflow.training.per_symbol import PerSymbolResult, train_per_symbol
from sepflow.training.routing import RoutedModel, load_routed, load_served
from sepflow.training.segments import (
    Segments,
    chronological_segments,
    segments_by_fraction,
)
from sepflow.training.train import (
    TrainResult,
    artifact_name,
    forward_returns_for,
    train_family,
)

__all__ = [
    "PerSymbolResult",
    "RoutedModel",
    "Segments",
    "TrainParams",
    "TrainResult",
    "TrainedModel",
    "TuningParams",
    "artifact_name",
    "calibrator_from_json",
    "calibrator_to_json",
    "chronological_segments",
    "forward_returns_for",
    "load_routed",
    "load_served",
    "load_trained",
    "segments_by_fraction",
    "train_family",
    "train_per_symbol",
]
