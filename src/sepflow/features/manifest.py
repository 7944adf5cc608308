"""The features file's contract: ordered names, dtypes, statistics, signature, targets.

A stage that trains writes the manifest beside ``features.parquet``; whoever reads features
later (training, inference) checks its frame against it, so a missing, extra, reordered or
retyped feature fails at once with a message naming the columns, not deep inside a model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from sepflow.errors import DataValidationError
from sepflow.features.spec import (
    EXECUTION_SETTINGS,
    FEATURE_CODE_VERSION,
    FeatureParams,
    TargetParams,
    feature_names,
    feature_signature,
    target_columns,
    target_signature,
)

MANIFEST_VERSION = 1
KEY_COLUMNS = ("ticker", "date")
UNIVERSE_COLUMN = "in_universe"
FEATURE_DTYPE = "float32"

ColumnsAndDtypes = pd.DataFrame | pa.Schema | Mapping[str, Any] | Iterable[tuple[str, Any]]


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _feature_stats(column: pd.Series) -> dict[str, Any]:
    values = column.to_numpy()
    nulls = int(np.isnan(values).sum())
    has_values = nulls < values.size
    return {
        "name": column.name,
        "dtype": str(column.dtype),
        "null_count": nulls,
        "min": _finite_or_none(np.nanmin(values)) if has_values else None,
        "max": _finite_or_none(np.nanmax(values)) if has_values else None,
    }


def build_manifest(
    frame: pd.DataFrame, params: FeatureParams, target_params: TargetParams | None = None
) -> dict[str, Any]:
    """Describe a frame of ``ticker, date, [in_universe], features..., [targets...]``.

    The feature columns must be exactly ``feature_names(params)`` in order, as float32;
    target columns (with their label_end columns) are those of ``target_params`` present.
    """
    names = feature_names(params)
    targets = target_columns(target_params) if target_params is not None else {}
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "feature_code_version": FEATURE_CODE_VERSION,
        "feature_signature": feature_signature(params),
        "feature_names": names,
        "key_columns": list(KEY_COLUMNS),
    }
    absent_keys = [c for c in KEY_COLUMNS if c not in frame.columns]
    if absent_keys:
        raise DataValidationError(f"features frame lacks key columns {absent_keys}")
    manifest["other_columns"] = [c for c in frame.columns if c not in set(names) | set(KEY_COLUMNS)]
    check_against_manifest(frame, manifest)

    dates = frame["date"]
    manifest["n_rows"] = len(frame)
    manifest["n_tickers"] = int(frame["ticker"].nunique())
    manifest["date_min"] = dates.min().date().isoformat() if len(frame) else None
    manifest["date_max"] = dates.max().date().isoformat() if len(frame) else None
    manifest["features"] = [_feature_stats(frame[name]) for name in names]
    manifest["targets"] = {
        name: {**spec, "dtype": str(frame[name].dtype), "null_count": int(frame[name].isna().sum())}
        for name, spec in targets.items()
        if name in frame.columns
    }
    missing_ends = {
        spec["label_end"] for spec in manifest["targets"].values() if spec["label_end"] not in frame.columns
    }
    if missing_ends:
        raise DataValidationError(f"target label_end columns missing from the frame: {sorted(missing_ends)}")
    manifest["params"] = {"features": params.model_dump(mode="json", exclude=EXECUTION_SETTINGS)}
    if target_params is not None:
        manifest["target_signature"] = target_signature(target_params)
        manifest["params"]["targets"] = target_params.model_dump(mode="json")
    return manifest


def _columns_and_dtypes(source: ColumnsAndDtypes) -> list[tuple[str, str]]:
    """(name, dtype) pairs with numpy-style dtype names ('float32'), from any accepted source."""
    if isinstance(source, pd.DataFrame):
        return [(str(name), str(dtype)) for name, dtype in source.dtypes.items()]
    if isinstance(source, pa.Schema):
        return [(f.name, _arrow_dtype_name(f.type)) for f in source]
    pairs = source.items() if isinstance(source, Mapping) else source
    return [(str(name), _dtype_name(dtype)) for name, dtype in pairs]


def _arrow_dtype_name(arrow_type: pa.DataType) -> str:
    try:
        return str(np.dtype(arrow_type.to_pandas_dtype()))
    except (NotImplementedError, TypeError):
        return str(arrow_type)


def _dtype_name(dtype: Any) -> str:
    try:
        return str(np.dtype(dtype))
    except TypeError:
        return str(dtype)


def check_against_manifest(source: ColumnsAndDtypes, manifest: Mapping[str, Any]) -> None:
    """Fail fast when ``source`` (a frame, an arrow schema, or (name, dtype) pairs) does not
    hold the manifest's features: missing, extra, reordered or retyped ones.

    Columns listed as key, target or other non-feature columns in the manifest may be present
    or absent; any other column is an extra feature.
    """
    expected = list(manifest["feature_names"])
    known_other = set(manifest.get("key_columns", ())) | set(manifest.get("other_columns", ()))
    pairs = _columns_and_dtypes(source)
    present = [name for name, _ in pairs]

    missing = [name for name in expected if name not in present]
    if missing:
        raise DataValidationError(
            f"{len(missing)} of {len(expected)} manifest features are missing, e.g. {missing[:10]}"
        )
    expected_set = set(expected)
    extra = [name for name in present if name not in expected_set and name not in known_other]
    if extra:
        raise DataValidationError(
            f"{len(extra)} columns are not in the manifest (extra features?), e.g. {extra[:10]}"
        )
    duplicated = sorted({name for name in present if present.count(name) > 1} & expected_set)
    if duplicated:
        raise DataValidationError(f"features appear more than once: {duplicated[:10]}")
    order = [name for name in present if name in expected_set]
    if order != expected:
        at = next(i for i, (got, want) in enumerate(zip(order, expected, strict=True)) if got != want)
        raise DataValidationError(
            f"features are reordered: position {at} holds {order[at]!r}, the manifest expects "
            f"{expected[at]!r} (manifest order: {expected[max(0, at - 2) : at + 3]} ...)"
        )
    dtypes = dict(pairs)
    recorded = {f["name"]: f["dtype"] for f in manifest.get("features", ())}
    retyped = [
        (name, dtypes[name], recorded.get(name, FEATURE_DTYPE))
        for name in expected
        if dtypes[name] != recorded.get(name, FEATURE_DTYPE)
    ]
    if retyped:
        shown = ", ".join(f"{name}: {got} (manifest: {want})" for name, got, want in retyped[:10])
        raise DataValidationError(f"{len(retyped)} features have another dtype than the manifest: {shown}")
