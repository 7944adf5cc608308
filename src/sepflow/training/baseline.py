"""The old single-script entry point: one SEP file → a direction classifier and a return regressor.

``sepflow train-baseline --sep-master PATH`` runs the pipeline's own pieces in memory, without
DVC or MLflow: read and validate the file (``sep.ingest``, policy ``params.validation``), apply
the universe (``sep.universe``), build features and the horizon's targets
(``features.dataset.assemble_features_frame``), cut ``dir_<h>`` and ``return_<h>`` with
``DatasetBuilder``, split each chronologically into train / validation / test with purge by
label end and an embargo of at least the horizon (``training.segments``), fit on train, stop
early on validation, and score the test segment only. It writes two joblib files,
``<out>/dir_<h>_clf_<asof>.joblib`` and ``<out>/return_<h>_reg_<asof>.joblib``, each holding a
``BaselineBundle``. The as-of date is ``asof``, else the ``YYYY-MM-DD`` in the SEP file name,
else the last price date.

Backends (no hyperparameter search, unlike ``train@FAMILY``):

- ``dummy``: class prior / training mean (``models.dummy``), the floor to beat;
- ``xgb``: XGBoost with the fixed params of ``params.train.xgboost`` (``models.boosting``),
  early-stopped on validation;
- ``torch``: a small PyTorch MLP on the feature vector (``models.torch_mlp``), early-stopped on
  validation, seeded and deterministic on the CPU (``torch.manual_seed``,
  ``torch.use_deterministic_algorithms(True)``, one thread). torch is imported only for it.

``device="gpu"`` puts XGBoost on CUDA (``device="cuda"``) and the network on ``cuda``; when no
GPU is visible it falls back to the CPU with a log line. The dummy always runs on the CPU.

Same file, params and seed give identical predictions (and byte-identical files on the CPU).

**joblib files are pickles**: loading one runs code chosen by whoever wrote it. Only load files
you made yourself (``load_baseline``); the pipeline's own models use native formats instead.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal, get_args

import joblib
import numpy as np
import pandas as pd

from sepflow.config import Params
from sepflow.errors import ConfigError, DataValidationError
from sepflow.evaluation.metrics import (
    classification_metrics,
    information_coefficients,
    regression_metrics,
)
from sepflow.features.dataset import Dataset, DatasetBuilder, assemble_features_frame
from sepflow.io import atomic_path
from sepflow.models import SepflowModel, TaskKind, make_model
from sepflow.models.base import _library_versions
from sepflow.ranking.targets import panel_frame
from sepflow.sep.ingest import IngestResult, ingest_source
from sepflow.sep.universe import filter_universe
from sepflow.training.device import Device, device_params, resolve_device
from sepflow.training.segments import Segments, segments_by_fraction

__all__ = [
    "BACKENDS",
    "HORIZONS",
    "BaselineBundle",
    "BaselineFeatures",
    "BaselineResult",
    "baseline_features",
    "baseline_paths",
    "format_summary",
    "load_baseline",
    "train_baseline",
]

log = logging.getLogger(__name__)

Backend = Literal["dummy", "xgb", "torch"]
BACKENDS: tuple[str, ...] = get_args(Backend)
HORIZONS = ("1d", "5d", "10d", "30d")
DEVICES = ("cpu", "gpu")
# Bumped when the bundle's fields change, so an old file fails loudly instead of loading wrong.
BUNDLE_VERSION = 1
# The test metrics the summary shows, per task.
HEADLINE_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "balanced_accuracy", "roc_auc"),
    "regression": ("rmse", "rank_ic"),
}


@dataclass(frozen=True)
class BaselineBundle:
    """What one baseline joblib file holds: a fitted model and everything needed to use and judge it.

    ``predict`` takes a features frame (e.g. ``baseline_features(...).frame``) and returns one
    value per row: P(``dir_<h>`` = 1) for the classifier, the predicted ``return_<h>`` for the
    regressor; NaN where a feature is missing (the model never trained on such rows).
    """

    model: SepflowModel = field(repr=False)
    target: str
    task: TaskKind
    horizon: str
    asof: str
    backend: str
    device: str
    feature_names: tuple[str, ...]
    feature_signature: str
    seed: int
    metrics: dict[str, float]
    segments: dict[str, dict[str, Any]]
    data: dict[str, Any]
    libraries: dict[str, str]
    format_version: int = BUNDLE_VERSION

    def predict(self, features: pd.DataFrame, *, feature_signature: str | None = None) -> np.ndarray:
        """Scores for every row of ``features`` (extra columns ignored; the model's are picked in order).

        ``feature_signature`` (a manifest's) must match the training features' when given.
        """
        if feature_signature is not None and feature_signature != self.feature_signature:
            raise DataValidationError(
                f"baseline {self.target}: features built with signature {feature_signature[:12]}…, the model "
                f"was trained on {self.feature_signature[:12]}…; build them with the training params"
            )
        missing = [name for name in self.feature_names if name not in features.columns]
        if missing:
            raise DataValidationError(
                f"baseline {self.target}: the features frame lacks {len(missing)} model features, e.g. {missing[:5]}"
            )
        X = features[list(self.feature_names)]
        complete = ~X.isna().any(axis=1).to_numpy()
        out = np.full(len(X), np.nan)
        if complete.any():
            rows = X if complete.all() else X.iloc[np.flatnonzero(complete)]
            out[complete] = _scores(self.model, rows)
        return out


@dataclass(frozen=True)
class BaselineFeatures:
    """The features frame of one SEP file (universe applied) with its manifest and source summary."""

    frame: pd.DataFrame = field(repr=False)
    manifest: dict[str, Any] = field(repr=False)
    source: dict[str, Any]


@dataclass(frozen=True)
class BaselineResult:
    """What ``train_baseline`` wrote and learned; ``test_predictions`` are the scores behind the metrics.

    ``test_predictions[target]`` is indexed by (ticker, date) over that target's test segment.
    """

    classifier: BaselineBundle
    regressor: BaselineBundle
    classifier_path: Path
    regressor_path: Path
    source: dict[str, Any]
    test_predictions: dict[str, pd.Series] = field(repr=False)


# -- checks ------------------------------------------------------------------------------------


def _horizon_days(horizon: str) -> int:
    if horizon not in HORIZONS:
        raise ConfigError(f"train-baseline: horizon must be one of {', '.join(HORIZONS)}, got {horizon!r}")
    return int(horizon[:-1])


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"train-baseline: {name} must be one of {', '.join(choices)}, got {value!r}")


def _check_date(asof: str | None) -> None:
    if asof is None:
        return
    try:
        date.fromisoformat(asof)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"train-baseline: --date must be a YYYY-MM-DD date, got {asof!r}") from exc
    if len(asof) != 10:  # fromisoformat also takes 20240301; the file names want the dashed form
        raise ConfigError(f"train-baseline: --date must be a YYYY-MM-DD date, got {asof!r}")


# -- data --------------------------------------------------------------------------------------


def baseline_features(
    sep_path: str | Path, params: Params, horizon: str, *, asof: str | None = None,
) -> BaselineFeatures:
    """Read ``sep_path`` (validated by ``params.validation``), apply ``params.universe``, and build
    ``params.features`` plus the ``horizon``'s targets (``params.targets`` with that horizon only)."""
    days = _horizon_days(horizon)
    _check_date(asof)
    sep_path = Path(sep_path)
    if not sep_path.exists():
        raise DataValidationError(f"{sep_path}: SEP file not found")
    ingested: IngestResult = ingest_source(sep_path, policy=params.validation, asof=asof)
    if ingested.sep.empty:
        raise DataValidationError(f"{sep_path}: no usable price rows after validation")
    universe = filter_universe(ingested.sep, ingested.tickers, params.universe)
    targets = params.targets.model_copy(update={"horizons": [days]})
    frame, manifest = assemble_features_frame(universe.sep, params.features, targets)
    summary = ingested.summary()
    source = {
        "path": str(sep_path), "rows": summary["rows"], "tickers": summary["tickers"],
        "date_min": summary["date_min"], "date_max": summary["date_max"],
        "asof": ingested.asof, "asof_source": ingested.asof_source,
        "rows_in_universe": int(universe.sep["in_universe"].sum()),
    }
    return BaselineFeatures(frame=frame, manifest=manifest, source=source)


def baseline_paths(out_dir: str | Path, horizon: str, asof: str) -> tuple[Path, Path]:
    """``<out>/dir_<h>_clf_<asof>.joblib`` and ``<out>/return_<h>_reg_<asof>.joblib``."""
    out_dir = Path(out_dir)
    return out_dir / f"dir_{horizon}_clf_{asof}.joblib", out_dir / f"return_{horizon}_reg_{asof}.joblib"


# -- models ------------------------------------------------------------------------------------


def _resolve_device(requested: str, backend: str) -> Device:
    """Where ``backend`` trains for ``--device``: ``gpu`` falls back to the CPU (logged) when none is visible."""
    if requested == "cpu":
        return "cpu"
    if backend == "dummy":
        log.warning("train-baseline: the dummy backend has nothing to put on a GPU; running on the CPU")
        return "cpu"
    device = resolve_device("auto")
    if device == "cpu":
        log.warning("train-baseline: --device gpu, but no GPU is visible; training on the CPU")
    return device


def _make(backend: str, task: TaskKind, params: Params, seed: int, device: Device) -> SepflowModel:
    if backend == "dummy":
        return make_model("dummy", task, **{"random_state": seed, **params.train.model_params("dummy")})
    if backend == "xgb":
        return make_model("xgboost", task, **{**params.train.model_params("xgboost"),
                                              **device_params("xgboost", device), "random_state": seed})
    from sepflow.models.torch_mlp import (
        TorchMLPModel,  # torch is imported only when this network is used
    )

    return TorchMLPModel(task=task, random_state=seed, device=device)


def _scores(model: SepflowModel, X: pd.DataFrame) -> np.ndarray:
    """P(positive class) for a binary classifier, the prediction for a regressor."""
    return model.predict(X) if model.task == "regression" else model.predict_proba(X)[:, 1]


def _test_metrics(model: SepflowModel, X: pd.DataFrame, y: pd.Series, scores: np.ndarray) -> dict[str, float]:
    dates = X.index.get_level_values("date")
    if model.task == "regression":
        return {**regression_metrics(y, scores), **information_coefficients(dates, y.to_numpy(), scores)}
    labels = model.classes_[(scores > 0.5).astype(int)]  # the argmax of two probabilities
    return classification_metrics(y.to_numpy(), labels, scores, labels=model.classes_)


def _fit_one(
    ds: Dataset, backend: str, params: Params, seed: int, device: Device,
) -> tuple[SepflowModel, Segments, dict[str, float], pd.Series]:
    """Fit on train (early stopping on validation); metrics and scores of the test segment."""
    X_all, y_all, groups = panel_frame(ds)
    horizon = int(ds.meta["horizon"])
    segments = segments_by_fraction(
        groups["date"], groups["label_end"], validation_fraction=params.train.validation_fraction,
        test_fraction=params.train.test_fraction, embargo_days=params.train.embargo_for(horizon),
    )
    X = {name: X_all.iloc[rows] for name, rows in segments.items()}
    y = {name: y_all.iloc[rows] for name, rows in segments.items()}
    model = _make(backend, ds.meta["kind"], params, seed, device)
    model.fit(X["train"], y["train"], eval_set=(X["validation"], y["validation"]))
    scores = _scores(model, X["test"])
    metrics = _test_metrics(model, X["test"], y["test"], scores)
    return model, segments, metrics, pd.Series(scores, index=X["test"].index, name=ds.meta["target"])


def train_baseline(
    sep_path: str | Path,
    params: Params,
    *,
    horizon: str = "5d",
    backend: str = "xgb",
    device: str = "cpu",
    asof: str | None = None,
    out_dir: str | Path = "models",
) -> BaselineResult:
    """Train the ``dir_<h>`` classifier and the ``return_<h>`` regressor on one SEP file and write both bundles.

    ``params`` supplies the validation policy, universe, features, target settings, segment
    fractions and embargo, the seed and (for ``xgb``) ``train.xgboost``. Both files are written
    only after both models trained, each through a temporary file renamed into place.
    """
    _check_choice("backend", backend, BACKENDS)
    _check_choice("device", device, DEVICES)
    days = _horizon_days(horizon)
    _check_date(asof)
    features = baseline_features(sep_path, params, horizon, asof=asof)
    builder = DatasetBuilder.from_frame(features.frame, features.manifest)
    resolved = _resolve_device(device, backend)
    asof_value = features.source["asof"]

    bundles: list[BaselineBundle] = []
    predictions: dict[str, pd.Series] = {}
    for target in (f"dir_{days}d", f"return_{days}d"):
        ds = builder.build(target)
        if ds.meta["n_rows"] == 0:
            raise DataValidationError(
                f"{sep_path}: no usable rows for {target} (dropped: {ds.meta['dropped']}); the file needs "
                "more history per ticker than the longest feature window and the horizon"
            )
        model, segments, metrics, scores = _fit_one(ds, backend, params, params.seed, resolved)
        predictions[target] = scores
        bundles.append(BaselineBundle(
            model=model, target=target, task=ds.meta["kind"], horizon=horizon, asof=asof_value,
            backend=backend, device=resolved, feature_names=ds.feature_names,
            feature_signature=ds.meta["feature_signature"], seed=params.seed, metrics=metrics,
            segments=segments.info,
            data={key: ds.meta[key] for key in ("n_rows", "n_tickers", "date_min", "date_max", "dropped")},
            libraries=_library_versions(("joblib", *model.libraries)),
        ))

    clf_path, reg_path = baseline_paths(out_dir, horizon, asof_value)
    # Both temporaries are complete before either is renamed: a failure leaves neither file.
    with atomic_path(clf_path) as clf_tmp, atomic_path(reg_path) as reg_tmp:
        for bundle, tmp in zip(bundles, (clf_tmp, reg_tmp), strict=True):
            joblib.dump(bundle, tmp)
            tmp.chmod(0o644)  # mkstemp's temporaries are private; a model file is an ordinary output
    return BaselineResult(
        classifier=bundles[0], regressor=bundles[1], classifier_path=clf_path, regressor_path=reg_path,
        source=features.source, test_predictions=predictions,
    )


def load_baseline(path: str | Path) -> BaselineBundle:
    """Load a bundle written by ``train_baseline``.

    A joblib file is a pickle: loading it can run arbitrary code. Only load files you made.
    """
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"{path}: baseline file not found")
    bundle = joblib.load(path)
    if not isinstance(bundle, BaselineBundle):
        raise DataValidationError(f"{path}: not a sepflow baseline bundle (holds a {type(bundle).__name__})")
    if bundle.format_version != BUNDLE_VERSION:
        raise DataValidationError(
            f"{path}: baseline bundle format {bundle.format_version}; this sepflow reads {BUNDLE_VERSION}"
        )
    return bundle


# -- the summary -------------------------------------------------------------------------------


def _number(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.4f}"


def _segment_rows(segments: Mapping[str, Mapping[str, Any]]) -> str:
    return "/".join(f"{segments[name]['n_rows']:,}" for name in ("train", "validation", "test"))


def format_summary(result: BaselineResult) -> str:
    """A short table: the source's rows and dates, each model's segment rows, test metrics and file."""
    source = result.source
    first = result.classifier
    lines = [
        (f"train-baseline: {source['path']} · horizon {first.horizon} · backend {first.backend} "
         f"({first.device}) · as of {first.asof} ({source['asof_source']})"),
        (f"  prices: {source['rows']:,} rows, {source['tickers']} tickers, {source['date_min']} to "
         f"{source['date_max']}; {source['rows_in_universe']:,} rows in the universe"),
    ]
    rows = [("target", "rows train/val/test", "test metrics", "file")]
    for bundle, path in ((result.classifier, result.classifier_path), (result.regressor, result.regressor_path)):
        metrics = " ".join(f"{name} {_number(bundle.metrics[name])}" for name in HEADLINE_METRICS[bundle.task])
        rows.append((bundle.target, _segment_rows(bundle.segments), metrics, str(path)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines += ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
              for row in rows]
    return "\n".join(lines)
