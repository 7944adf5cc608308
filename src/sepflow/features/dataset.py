"""DatasetBuilder: the one way a stage gets (X, y, dates, tickers, label_end, names, meta).

``data/processed/features.parquet`` holds ``ticker, date, [in_universe], features...,
targets...`` in panel order (ticker, then date); its manifest JSON lies beside it.
``assemble_features_frame`` builds both; ``DatasetBuilder`` reads them back, checks the file
against the manifest, and cuts one target with the requested features.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sepflow.errors import ConfigError, DataValidationError
from sepflow.features.engine import compute_features
from sepflow.features.manifest import (
    UNIVERSE_COLUMN,
    build_manifest,
    check_against_manifest,
)
from sepflow.features.spec import FeatureParams, TargetParams
from sepflow.features.targets import LABEL3_CLASSES, LABEL3_DTYPE, build_targets
from sepflow.io import read_json, read_panel


def assemble_features_frame(
    sep: pd.DataFrame, fparams: FeatureParams, tparams: TargetParams
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Features and targets of one SEP panel side by side, plus the manifest describing them."""
    features = compute_features(sep, fparams)
    targets = build_targets(sep, tparams)
    keys = ["ticker", "date"]
    universe = (
        [sep[[UNIVERSE_COLUMN]].reset_index(drop=True).astype(bool)] if UNIVERSE_COLUMN in sep.columns else []
    )
    frame = pd.concat(
        [features[keys], *universe, features.drop(columns=keys), targets.drop(columns=keys)], axis=1
    )
    return frame, build_manifest(frame, fparams, tparams)


@dataclass(frozen=True)
class Dataset:
    """One target's rows: aligned X, y, dates, tickers and label_end, RangeIndex 0..n-1."""

    X: pd.DataFrame = field(repr=False)
    y: pd.Series = field(repr=False)
    dates: pd.Series = field(repr=False)
    tickers: pd.Series = field(repr=False)
    label_end: pd.Series = field(repr=False)
    feature_names: tuple[str, ...]
    meta: dict[str, Any]


class DatasetBuilder:
    """Cuts datasets from a features file (or frame) that matches its manifest.

    ``expected_signature``, when given, must equal the manifest's feature signature: a stage
    passes ``feature_signature(params.features)`` so stale features are refused.
    """

    def __init__(
        self,
        features_path: str | os.PathLike[str],
        manifest_path: str | os.PathLike[str],
        *,
        expected_signature: str | None = None,
    ) -> None:
        # Only the parquet schema is read here; build() reads just the columns it needs.
        self._setup(read_json(manifest_path), pq.read_schema(features_path), expected_signature)
        self._path: str | os.PathLike[str] | None = features_path
        self._frame: pd.DataFrame | None = None

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, manifest: dict[str, Any], *, expected_signature: str | None = None
    ) -> DatasetBuilder:
        """A builder over an in-memory frame, e.g. the output of ``assemble_features_frame``."""
        builder = cls.__new__(cls)
        builder._setup(manifest, frame, expected_signature)
        builder._path, builder._frame = None, frame
        return builder

    def _setup(
        self, manifest: dict[str, Any], source: pd.DataFrame | pa.Schema, expected_signature: str | None
    ) -> None:
        actual = manifest["feature_signature"]
        if expected_signature is not None and expected_signature != actual:
            raise DataValidationError(
                f"features were built with signature {actual[:12]}…, the params expect "
                f"{expected_signature[:12]}…; rebuild the features (dvc repro build_features)"
            )
        check_against_manifest(source, manifest)
        self.manifest = manifest
        self._columns = list(source.columns) if isinstance(source, pd.DataFrame) else list(source.names)

    def _read(self, columns: list[str], categorical: tuple[str, ...]) -> pd.DataFrame:
        if self._frame is not None:
            return self._frame[columns]
        return read_panel(self._path, columns=columns, categorical=categorical)

    def build(
        self,
        target: str,
        features: Sequence[str] | None = None,
        *,
        universe_only: bool = True,
        dropna: bool = True,
    ) -> Dataset:
        """Rows for ``target`` with ``features`` (default: all, in manifest order) as X columns,
        in the order given. Drops out-of-universe rows, then rows with a missing target, then
        rows with a missing feature; ``meta['dropped']`` counts each."""
        targets = self.manifest["targets"]
        if target not in targets:
            raise ConfigError(f"unknown target {target!r}; the features file has {list(targets)}")
        names = list(self.manifest["feature_names"]) if features is None else list(features)
        unknown = [n for n in names if n not in set(self.manifest["feature_names"])]
        if unknown or len(set(names)) != len(names) or not names:
            raise ConfigError(
                f"features must be distinct manifest features, got unknown {unknown}, "
                f"{len(names) - len(set(names))} repeated, {len(names)} in all"
            )
        spec = targets[target]
        has_universe = UNIVERSE_COLUMN in self._columns
        columns = [
            "ticker",
            "date",
            *([UNIVERSE_COLUMN] if has_universe else []),
            target,
            spec["label_end"],
            *names,
        ]
        multiclass = spec["kind"] == "multiclass"
        frame = self._read(columns, categorical=(target,) if multiclass else ())
        if multiclass:  # the same ordered classes whether read from parquet or handed in memory
            frame[target] = frame[target].astype(LABEL3_DTYPE)

        keep = np.ones(len(frame), dtype=bool)
        dropped: dict[str, int] = {}
        if universe_only and has_universe:
            in_universe = frame[UNIVERSE_COLUMN].to_numpy(dtype=bool)
            dropped["not_in_universe"] = int((~in_universe).sum())
            keep &= in_universe
        if dropna:
            no_target = keep & frame[target].isna().to_numpy()
            dropped["target_missing"] = int(no_target.sum())
            keep &= ~no_target
            no_feature = np.zeros(len(frame), dtype=bool)
            for name in names:  # column by column: no (rows × features) temporary
                no_feature |= np.isnan(frame[name].to_numpy())
            no_feature &= keep
            dropped["features_missing"] = int(no_feature.sum())
            keep &= ~no_feature

        rows = frame.loc[keep].reset_index(drop=True)
        dates = rows["date"]
        meta: dict[str, Any] = {
            "target": target,
            "kind": spec["kind"],
            "horizon": spec["horizon"],
            "label_end_column": spec["label_end"],
            "feature_signature": self.manifest["feature_signature"],
            "n_rows_in": len(frame),
            "n_rows": len(rows),
            "n_tickers": int(rows["ticker"].nunique()),
            "date_min": dates.min().date().isoformat() if len(rows) else None,
            "date_max": dates.max().date().isoformat() if len(rows) else None,
            "universe_only": universe_only and has_universe,
            "dropped": dropped,
        }
        if spec["kind"] == "classification":
            meta["classes"] = [0.0, 1.0]
        elif spec["kind"] == "multiclass":
            meta["classes"] = list(LABEL3_CLASSES)
        return Dataset(
            X=rows[names],
            y=rows[target],
            dates=dates,
            tickers=rows["ticker"],
            label_end=rows[spec["label_end"]],
            feature_names=tuple(names),
            meta=meta,
        )
