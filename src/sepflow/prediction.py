"""Predict with a registered model: one row per ticker in the universe on a date.

``sepflow predict --model NAME@ALIAS`` resolves the version in the MLflow registry, downloads its
``trained`` artifact folder (the one ``train_family`` or ``train_per_symbol`` wrote) and loads it
with ``load_served``, so predictions are exactly what the saved model gives. Features come from the code the
pipeline runs (``filter_universe``, then ``compute_features``) on the prices up to the as-of
date, after two fail-fast checks: the params' feature signature must equal the one the model
recorded, and every feature the model lists must be one the params build.

Rows kept: tickers in the point-in-time universe on the as-of date whose model features are all
known there (and, for a per-symbol model, that have a model). The others get no row:
``Prediction.excluded`` names them by reason so the caller can warn.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

import mlflow
import numpy as np
import pandas as pd
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from sepflow.config import Params
from sepflow.errors import ConfigError, DataValidationError, SepflowError
from sepflow.features.engine import compute_features
from sepflow.features.manifest import UNIVERSE_COLUMN
from sepflow.features.spec import FeatureParams, feature_names, feature_signature
from sepflow.io import atomic_path, read_json, read_panel, write_panel
from sepflow.models import with_context
from sepflow.sep.ingest import ingest_source
from sepflow.sep.universe import filter_universe
from sepflow.catalog import SEP_COMMON
from sepflow.training.artifacts import FEATURES_FILE, TrainedModel
from sepflow.training.pyfunc import ARTIFACT_KEY, KEYS
from sepflow.training.routing import (
    INDEX_FILE,
    PER_SYMBOL_DIR,
    RoutedModel,
    is_per_symbol,
    load_served,
)

# How many rows an LSTM (or an ensemble holding one) looks back on: the number training used.
from sepflow.training.train import context_length

__all__ = [
    "OUTPUT_SUFFIXES",
    "ModelRef",
    "Prediction",
    "check_feature_contract",
    "check_output_path",
    "downloaded_trained",
    "load_universe_panel",
    "predict_at",
    "predict_registered",
    "predictions_csv",
    "recorded_features",
    "resolve_asof",
    "resolve_model",
    "write_predictions",
]

MODELS_SCHEME = "models:/"
OUTPUT_SUFFIXES = (".csv", ".parquet")
SHOWN = 10  # names listed in one-line messages


@dataclass(frozen=True)
class ModelRef:
    """One registered model version, and the alias it was asked for by (if any)."""

    name: str
    version: int
    alias: str | None = None

    def __str__(self) -> str:
        return f"{self.name} v{self.version}" + (f" (@{self.alias})" if self.alias else "")

    @property
    def uri(self) -> str:
        return f"{MODELS_SCHEME}{self.name}/{self.version}"


def _parse_spec(spec: str) -> tuple[str, str | None, int | None]:
    """``NAME@ALIAS`` or ``NAME/VERSION`` (optionally prefixed ``models:/``) → (name, alias, version)."""
    text = spec.strip().removeprefix(MODELS_SCHEME)
    if "@" in text:
        name, _, alias = text.partition("@")
        if name and alias:
            return name, alias, None
    elif "/" in text:
        name, _, number = text.rpartition("/")
        if name and number.isdigit() and int(number) > 0:
            return name, None, int(number)
    raise ConfigError(
        f"predict: --model {spec!r} must be NAME@ALIAS (e.g. xgboost-dir_5d@production) or NAME/VERSION"
    )


def _missing(exc: MlflowException) -> bool:
    return exc.error_code == "RESOURCE_DOES_NOT_EXIST"


def resolve_model(spec: str, client: MlflowClient | None = None) -> ModelRef:
    """Look ``spec`` (``NAME@ALIAS`` or ``NAME/VERSION``) up in the registry; one-line errors when absent."""
    name, alias, number = _parse_spec(spec)
    client = client or MlflowClient()
    where = mlflow.get_tracking_uri()
    try:
        try:
            registered = client.get_registered_model(name)
        except MlflowException as exc:
            if not _missing(exc):
                raise
            known = sorted(m.name for m in client.search_registered_models(max_results=SHOWN + 1))
            more = " ..." if len(known) > SHOWN else ""
            raise SepflowError(
                f"predict: no registered model {name!r} at {where} "
                f"(registered: {', '.join(known[:SHOWN]) or 'none'}{more})"
            ) from exc
        aliases = {a: int(v) for a, v in registered.aliases.items()}
        if alias is not None:
            if alias not in aliases:
                have = ", ".join(f"@{a} → v{v}" for a, v in sorted(aliases.items())) or "none"
                raise SepflowError(f"predict: model {name!r} has no alias {alias!r} (aliases: {have})")
            number = aliases[alias]
        try:
            version = client.get_model_version(name, str(number))
        except MlflowException as exc:
            if not _missing(exc):
                raise
            versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
            raise SepflowError(f"predict: model {name!r} has no version {number} (versions: {versions})") from exc
    except MlflowException as exc:  # an unreachable server, a broken store: still one line
        first = (str(exc.message).splitlines() or [type(exc).__name__])[0]
        raise SepflowError(f"predict: cannot read {spec!r} from the registry at {where}: {first}") from exc
    return ModelRef(name=name, version=int(version.version), alias=alias)


@contextmanager
def downloaded_trained(ref: ModelRef) -> Iterator[Path]:
    """Download ``ref``'s pyfunc model to a temporary folder and yield its ``trained`` folder (removed on exit)."""
    with tempfile.TemporaryDirectory(prefix="sepflow-predict-") as tmp:
        # A progress bar on stderr would bury the one-line summary (and the CSV's neighbour on stdout).
        with patch.dict(os.environ, {MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name: "false"}):
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=tmp))
        artifacts = Model.load(local / "MLmodel").flavors.get(mlflow.pyfunc.FLAVOR_NAME, {}).get("artifacts", {})
        if ARTIFACT_KEY not in artifacts:
            raise SepflowError(f"predict: {ref} has no {ARTIFACT_KEY!r} artifact; it was not registered by sepflow")
        yield local / artifacts[ARTIFACT_KEY]["path"]


def recorded_features(folder: Path) -> dict[str, Any]:
    """The ``features`` and ``feature_signature`` a trained folder records (``features.json``, or a
    per-symbol folder's routing manifest), read without loading any model."""
    if is_per_symbol(folder):
        return read_json(folder / PER_SYMBOL_DIR / INDEX_FILE)
    if not (folder / FEATURES_FILE).is_file():
        raise SepflowError(f"predict: {folder} holds neither {FEATURES_FILE} nor {PER_SYMBOL_DIR}/{INDEX_FILE}")
    return read_json(folder / FEATURES_FILE)


def check_feature_contract(recorded: dict[str, Any], params: FeatureParams, model: str, params_path: str) -> None:
    """Fail fast unless the params build the features ``recorded`` (a ``features.json``) lists,
    with the same definitions: equal feature signatures and no recorded feature missing."""
    expected = recorded.get("feature_signature")
    actual = feature_signature(params)
    if expected != actual:
        shown = f"{expected[:12]}…" if isinstance(expected, str) else "none"
        raise DataValidationError(
            f"predict: {model} was trained on features with signature {shown} but {params_path} features "
            f"give {actual[:12]}…; predict with the features params it was trained with, or retrain it"
        )
    built = set(feature_names(params))
    missing = [str(name) for name in recorded.get("features", []) if name not in built]
    if missing:
        raise DataValidationError(
            f"predict: {model} needs features that {params_path} does not build: {missing[:SHOWN]}"
        )


def load_universe_panel(
    params: Params, sep: str | Path | None = None, tickers: str | Path | None = None,
) -> pd.DataFrame:
    """The universe panel the features are built from, with ``in_universe``.

    Default: the pipeline's ``data/interim/sep_common.parquet``. Given ``sep`` (any source
    ``ingest_source`` reads, with an optional TICKERS file), the pipeline's validation and
    universe filter run on it first, with the params' settings.
    """
    if sep is None:
        if not SEP_COMMON.exists():
            raise SepflowError(
                f"predict: no filtered SEP at {SEP_COMMON}; run `dvc repro filter_sep` or pass --sep PATH"
            )
        return read_panel(SEP_COMMON)
    result = ingest_source(sep, tickers=tickers, policy=params.validation)
    return filter_universe(result.sep, result.tickers, params.universe).sep


def resolve_asof(dates: pd.Series, asof: str | None, source: str) -> pd.Timestamp:
    """``asof`` as a date with prices in ``dates`` (default: the last one); one-line error otherwise."""
    first, last = dates.min(), dates.max()
    if asof is None:
        return last
    try:
        day = pd.Timestamp(asof)
    except ValueError as exc:
        raise ConfigError(f"predict: --asof {asof!r} is not a date (YYYY-MM-DD)") from exc
    if day != day.normalize() or not (dates == day).any():
        raise DataValidationError(
            f"predict: no prices on {asof} in {source}; it covers {first:%Y-%m-%d} to {last:%Y-%m-%d} "
            "(trading days only)"
        )
    return day


@dataclass(frozen=True)
class Prediction:
    """One model's predictions on one date: ``frame`` has ``ticker, date, model, version`` then the outputs."""

    model: ModelRef
    asof: pd.Timestamp
    frame: pd.DataFrame
    # Tickers in the universe on ``asof`` that get no prediction, by reason: ``missing_feature``
    # (a window not yet full) or ``no_model`` (a per-symbol model has none for the ticker).
    excluded: dict[str, list[str]]


def predict_at(
    served: TrainedModel | RoutedModel, features: pd.DataFrame, asof: pd.Timestamp, model: ModelRef,
) -> Prediction:
    """Predictions for the tickers in the universe on ``asof``.

    ``features`` is the feature panel up to ``asof`` (``ticker, date, in_universe, features...``,
    sorted by ticker then date). Models that look back (an LSTM) get each ticker's earlier rows,
    chosen as in training: in the universe (when the model was trained on universe rows) with
    every model feature known.
    """
    names = served.features
    complete = ~features[names].isna().any(axis=1).to_numpy()
    in_universe = features[UNIVERSE_COLUMN].to_numpy(dtype=bool)
    on_asof = (features["date"] == asof).to_numpy() & in_universe
    if not on_asof.any():
        raise DataValidationError(f"predict: no ticker is in the universe on {asof:%Y-%m-%d}")
    routed = isinstance(served, RoutedModel)
    candidates = features["ticker"].to_numpy()[on_asof].astype(str)
    known = complete[on_asof]
    modelled = np.isin(candidates, list(served.models)) if routed else np.ones(len(candidates), dtype=bool)
    reasons = {"missing_feature": ~known, "no_model": known & ~modelled}
    excluded = {reason: sorted(candidates[mask]) for reason, mask in reasons.items() if mask.any()}
    if not (known & modelled).any():
        raise DataValidationError(
            f"predict: no ticker in the universe on {asof:%Y-%m-%d} can be predicted by {model}: "
            + "; ".join(f"{reason} {found[:SHOWN]}" for reason, found in excluded.items())
        )
    rows = on_asof.copy()
    rows[on_asof] = known & modelled

    members = list(served.models.values()) if routed else [served]
    context = max(context_length(m.model) for m in members)
    universe_only = all(m.metadata.get("data", {}).get("universe_only", True) for m in members)
    usable = complete & in_universe if universe_only else complete
    # Only look-back models need earlier rows; the others read the as-of rows alone.
    needed = rows | (usable & features["ticker"].isin(candidates[known & modelled]).to_numpy()) if context > 1 else rows
    part = features.loc[needed]
    index = pd.MultiIndex.from_arrays([part["ticker"].astype(str), part["date"]], names=KEYS)
    X = pd.DataFrame(part[names].to_numpy(), index=index, columns=names)
    X_new = X[rows[needed]]
    combined, _ = with_context(X[usable[needed]], X_new, context)
    outputs = served.predict_frame(combined).iloc[combined.index.get_indexer(X_new.index)]
    frame = pd.DataFrame({
        "ticker": X_new.index.get_level_values("ticker"),
        "date": X_new.index.get_level_values("date"),
        "model": model.name,
        "version": model.version,
    })
    frame = pd.concat([frame, outputs.reset_index(drop=True)], axis=1)
    return Prediction(model=model, asof=asof, frame=frame, excluded=excluded)


def predict_registered(
    spec: str,
    params: Params,
    *,
    params_path: str = "params.yaml",
    sep: str | Path | None = None,
    tickers: str | Path | None = None,
    asof: str | None = None,
) -> Prediction:
    """Resolve ``spec`` in the registry, check its features against ``params`` and predict on ``asof``."""
    ref = resolve_model(spec)
    with downloaded_trained(ref) as folder:
        # The recorded features alone decide the contract: refuse before loading the model or any prices.
        check_feature_contract(recorded_features(folder), params.features, str(ref), params_path)
        panel = load_universe_panel(params, sep, tickers)
        day = resolve_asof(panel["date"], asof, str(sep or SEP_COMMON))
        # Features at a date use prices up to it, so later rows change nothing and are left out.
        panel = panel.loc[(panel["date"] <= day).to_numpy()].reset_index(drop=True)
        features = compute_features(panel, params.features)
        features[UNIVERSE_COLUMN] = panel[UNIVERSE_COLUMN].to_numpy(dtype=bool)
        return predict_at(load_served(folder), features, day, ref)


def check_output_path(out: str | Path) -> Path:
    """``out`` as a path sepflow can write (``.csv`` or ``.parquet``); checked before any work is done."""
    target = Path(out)
    if target.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ConfigError(f"predict: --out {target} must end with {' or '.join(OUTPUT_SUFFIXES)}")
    return target


def predictions_csv(frame: pd.DataFrame) -> str:
    """``frame`` as CSV text: dates as YYYY-MM-DD, floats written to round-trip exactly."""
    return frame.to_csv(index=False, date_format="%Y-%m-%d", lineterminator="\n")


def write_predictions(frame: pd.DataFrame, out: str | Path) -> Path:
    """Write ``frame`` atomically as CSV (``predictions_csv``) or parquet (dates as date32), by suffix."""
    target = check_output_path(out)
    if target.suffix.lower() == ".parquet":
        write_panel(frame, target)
    else:
        with atomic_path(target) as tmp:
            tmp.write_text(predictions_csv(frame))
    return target
