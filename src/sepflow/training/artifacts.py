"""A trained model's folder: layout, JSON calibrators, and loading it back for prediction.

``models/<family>/<target>/`` holds::

    model/               the model in its native format (``SepflowModel.save``)
    calibrator.json      isotonic thresholds or sigmoid coefficients per class map ({"method": "none"} otherwise)
    threshold.json       the decision rule: P(up) > threshold (binary), argmax (multiclass), none (regression)
    features.json        the exact, ordered model inputs and the feature signature they were built with
    metrics.json         train / validation / test metrics and the overfit margin of the headline metric
    metadata.json        data coverage, segments, params, seed, library versions, artifact paths
    input_example.json   a few test-segment rows (ticker, date, features) to document and register the model
    segment_outputs.parquet  the model's raw outputs (before calibration) on every train / validation /
                         test row, keyed by ticker and date: the ensemble reuses them instead of
                         recomputing its members' predictions (an LSTM's cost most of all)

Nothing here is pickled: the calibrator is rebuilt from JSON numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from sepflow.errors import DataValidationError, SepflowError
from sepflow.evaluation.calibration import ProbabilityCalibrator
from sepflow.io import read_json, write_json
from sepflow.models.base import SepflowModel, TaskKind, _atomic_folder, load_model

__all__ = [
    "ARTIFACTS",
    "TrainedModel",
    "calibrator_from_json",
    "calibrator_to_json",
    "check_columns",
    "decide",
    "load_trained",
    "read_segment_outputs",
    "segment_outputs_frame",
    "write_trained",
]

MODEL_DIR = "model"
CALIBRATOR_FILE = "calibrator.json"
THRESHOLD_FILE = "threshold.json"
FEATURES_FILE = "features.json"
METRICS_FILE = "metrics.json"
METADATA_FILE = "metadata.json"
INPUT_EXAMPLE_FILE = "input_example.json"
SEGMENT_OUTPUTS_FILE = "segment_outputs.parquet"
ARTIFACTS = {
    "model": MODEL_DIR, "calibrator": CALIBRATOR_FILE, "threshold": THRESHOLD_FILE,
    "features": FEATURES_FILE, "metrics": METRICS_FILE, "metadata": METADATA_FILE,
    "input_example": INPUT_EXAMPLE_FILE,
}


def calibrator_to_json(calibrator: ProbabilityCalibrator | None) -> dict[str, Any]:
    """The fitted maps as plain numbers: isotonic (x, y) knots or sigmoid (coef, intercept) on logit(p)."""
    if calibrator is None:
        return {"method": "none"}
    maps: list[dict[str, Any]] = []
    for fitted in calibrator.calibrators_:
        if isinstance(fitted, IsotonicRegression):
            maps.append({"x": fitted.X_thresholds_.tolist(), "y": fitted.y_thresholds_.tolist()})
        else:
            maps.append({"coef": float(fitted.coef_[0, 0]), "intercept": float(fitted.intercept_[0])})
    return {"method": calibrator.method, "classes": calibrator.classes_.tolist(), "maps": maps}


def _isotonic(knots: dict[str, Any]) -> IsotonicRegression:
    # Refitting on monotone knots reproduces them exactly, using only scikit-learn's public API.
    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    return model.fit(np.asarray(knots["x"], dtype=float), np.asarray(knots["y"], dtype=float))


def _platt(coefficients: dict[str, Any]) -> LogisticRegression:
    model = LogisticRegression(C=np.inf)
    model.coef_ = np.array([[float(coefficients["coef"])]])
    model.intercept_ = np.array([float(coefficients["intercept"])])
    model.classes_ = np.array([0, 1])
    model.n_features_in_ = 1
    return model


def calibrator_from_json(spec: dict[str, Any]) -> ProbabilityCalibrator | None:
    """Inverse of ``calibrator_to_json``: a calibrator whose ``transform`` matches the saved one."""
    method = spec.get("method")
    if method == "none":
        return None
    if method not in ("isotonic", "sigmoid"):
        raise SepflowError(f"training: calibrator method {method!r} is not isotonic, sigmoid or none")
    calibrator = ProbabilityCalibrator(method)
    calibrator.classes_ = np.asarray(spec["classes"])
    calibrator.calibrators_ = [_isotonic(m) if method == "isotonic" else _platt(m) for m in spec["maps"]]
    return calibrator


def decide(calibrated: np.ndarray, classes: np.ndarray, threshold: float | None) -> np.ndarray:
    """Predicted classes: the up class where P(up) > threshold (binary), else the most probable class."""
    if threshold is not None:
        return np.where(calibrated[:, 1] > threshold, classes[1], classes[0])
    return classes[np.argmax(calibrated, axis=1)]


def check_columns(X: Any, features: list[str]) -> None:
    """Fail fast unless ``X`` is a DataFrame whose columns are exactly ``features``, in order."""
    if not isinstance(X, pd.DataFrame):
        raise DataValidationError(f"training: X must be a pandas DataFrame, got {type(X).__name__}")
    columns = [str(c) for c in X.columns]
    if columns == features:
        return
    missing = [f for f in features if f not in columns]
    extra = [c for c in columns if c not in features]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    problems = [f"missing {missing}" if missing else "", f"extra {extra}" if extra else "",
                f"repeated {repeated}" if repeated else ""]
    if not (missing or extra or repeated):
        at = next(i for i, (a, b) in enumerate(zip(columns, features, strict=True)) if a != b)
        problems.append(f"reordered: column {at} is {columns[at]!r}, the model expects {features[at]!r}")
    raise DataValidationError(
        f"training: X's columns do not match features.json ({'; '.join(p for p in problems if p)}); "
        f"expected {len(features)} columns in this order: {features}"
    )


@dataclass(frozen=True)
class TrainedModel:
    """A trained folder loaded back: the model, its calibrator and decision rule, and its records."""

    folder: Path
    model: SepflowModel
    features: list[str]
    calibrator: ProbabilityCalibrator | None
    threshold: float | None
    metrics: dict[str, Any]
    metadata: dict[str, Any]

    @property
    def task(self) -> TaskKind:
        return self.model.task

    def input_example(self) -> pd.DataFrame:
        """The saved example rows: ``ticker``, ``date`` and the features as float64 columns."""
        frame = pd.DataFrame(read_json(self.folder / INPUT_EXAMPLE_FILE))[["ticker", "date", *self.features]]
        dates = pd.to_datetime(frame["date"]).dt.as_unit("ns")  # the panel's unit, which MLflow's schema keeps
        return frame.assign(date=dates).astype(dict.fromkeys(self.features, "float64"))

    def predict_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        """Predictions indexed like ``X``, whose columns must be ``features`` exactly.

        Classifiers: ``probability`` (raw P(up)), ``calibrated_probability`` and ``predicted_class``
        for binary targets; ``probability_<class>`` / ``calibrated_probability_<class>`` per class
        for multiclass. Regression: ``prediction``. An LSTM predicts from each row's preceding
        rows of ``X``: include each ticker's history (see ``sepflow.models.with_context``).
        """
        check_columns(X, self.features)
        if self.task == "regression":
            return pd.DataFrame({"prediction": self.model.predict(X)}, index=X.index)
        proba = self.model.predict_proba(X)
        calibrated = proba if self.calibrator is None else self.calibrator.transform(proba)
        classes = self.model.classes_
        if self.task == "classification":
            columns: dict[str, Any] = {"probability": proba[:, 1], "calibrated_probability": calibrated[:, 1]}
        else:
            columns = {f"probability_{c}": proba[:, k] for k, c in enumerate(classes)}
            columns.update({f"calibrated_probability_{c}": calibrated[:, k] for k, c in enumerate(classes)})
        columns["predicted_class"] = decide(calibrated, classes, self.threshold)
        return pd.DataFrame(columns, index=X.index)


def load_trained(folder: Path) -> TrainedModel:
    """Load a folder written by ``train_family``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SepflowError(f"training: no trained model folder at {folder}")
    missing = [name for name in ARTIFACTS.values() if not (folder / name).exists()]
    if missing:
        raise SepflowError(f"training: {folder} is not a trained model folder; it lacks {missing}")
    features = read_json(folder / FEATURES_FILE)["features"]
    model = load_model(folder / MODEL_DIR)
    if list(model.feature_names_in_) != features:
        raise SepflowError(f"training: {folder / FEATURES_FILE} disagrees with the saved model's features")
    return TrainedModel(
        folder=folder,
        model=model,
        features=features,
        calibrator=calibrator_from_json(read_json(folder / CALIBRATOR_FILE)),
        threshold=read_json(folder / THRESHOLD_FILE)["threshold"],
        metrics=read_json(folder / METRICS_FILE),
        metadata=read_json(folder / METADATA_FILE),
    )


def write_trained(out_dir: Path, model: SepflowModel, files: dict[str, Any], outputs: pd.DataFrame) -> None:
    """Write a trained folder: the model, the JSON ``files`` (name → content) and the raw
    ``outputs`` (``segment_outputs_frame``). One folder swap: an interrupted run leaves the
    previous folder whole, never a mix of both."""
    missing = [name for name in ARTIFACTS.values() if name != MODEL_DIR and name not in files]
    if missing:
        raise SepflowError(f"training: a trained folder needs {missing} too")
    with _atomic_folder(Path(out_dir)) as staging:
        model.save(staging / MODEL_DIR)
        for file, content in files.items():
            write_json(content, staging / file)
        outputs.to_parquet(staging / SEGMENT_OUTPUTS_FILE, index=False)


def segment_outputs_frame(outputs: dict[str, np.ndarray], index: dict[str, pd.Index]) -> pd.DataFrame:
    """One row per (segment, ticker, date) with the output columns ``out_0`` … (one per class, or one)."""
    frames = []
    for segment, values in outputs.items():
        values = np.asarray(values, dtype=np.float64).reshape(len(index[segment]), -1)
        keys = index[segment].to_frame(index=False)[["ticker", "date"]]
        frames.append(pd.concat([
            pd.DataFrame({"segment": segment}, index=keys.index), keys,
            pd.DataFrame(values, columns=[f"out_{k}" for k in range(values.shape[1])]),
        ], axis=1))
    return pd.concat(frames, ignore_index=True)


def read_segment_outputs(folder: Path, index: dict[str, pd.Index], two_dimensional: bool) -> dict[str, np.ndarray] | None:
    """The saved outputs of ``folder``'s model on exactly the rows ``index`` names per segment, else None.

    None when the file is missing or its rows differ from ``index`` (another sample of rows):
    the caller then predicts afresh rather than pairing outputs with the wrong rows.
    """
    file = Path(folder) / SEGMENT_OUTPUTS_FILE
    if not file.exists():
        return None
    frame = pd.read_parquet(file)
    columns = [c for c in frame.columns if c.startswith("out_")]
    outputs: dict[str, np.ndarray] = {}
    for segment, rows in index.items():
        saved = frame[frame["segment"] == segment]
        keys = rows.to_frame(index=False)
        if len(saved) != len(keys) or not (
            np.array_equal(saved["ticker"].to_numpy(), keys["ticker"].to_numpy())
            and np.array_equal(saved["date"].to_numpy(), keys["date"].to_numpy())
        ):
            return None
        values = saved[columns].to_numpy(dtype=np.float64)
        outputs[segment] = values if two_dimensional else values[:, 0]
    return outputs
