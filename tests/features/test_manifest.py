"""Manifest contents, signature stability, and fail-fast schema checks; spec validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pydantic import ValidationError

from sepflow.errors import DataValidationError
from sepflow.features import spec
from sepflow.features.dataset import assemble_features_frame
from sepflow.features.manifest import build_manifest, check_against_manifest
from sepflow.features.spec import (
    CrossSectionalParams,
    FeatureParams,
    MACDParams,
    TargetParams,
    feature_names,
    feature_signature,
    target_signature,
)
from sepflow.io import read_json, write_json

FPARAMS = FeatureParams(sma_windows=[5, 20], lookback_52w=60)
TPARAMS = TargetParams(horizons=[1, 5])



@pytest.fixture(scope="module")
def assembled(tiny_panel) -> tuple[pd.DataFrame, dict]:
    return assemble_features_frame(tiny_panel(n_tickers=3, n_days=150), FPARAMS, TPARAMS)


def test_manifest_describes_the_frame(assembled, tmp_path) -> None:
    frame, manifest = assembled
    names = feature_names(FPARAMS)
    assert manifest["feature_names"] == names
    assert [f["name"] for f in manifest["features"]] == names
    assert manifest["feature_signature"] == feature_signature(FPARAMS)
    assert manifest["target_signature"] == target_signature(TPARAMS)
    assert manifest["n_rows"] == len(frame) and manifest["n_tickers"] == 3
    assert manifest["date_min"] == "2021-01-01"
    stats = {f["name"]: f for f in manifest["features"]}
    assert stats["ret_5d"]["null_count"] == 3 * 5 and stats["ret_5d"]["dtype"] == "float32"
    assert stats["ret_5d"]["min"] == pytest.approx(float(frame["ret_5d"].min()))
    assert stats["ret_5d"]["max"] == pytest.approx(float(frame["ret_5d"].max()))
    assert {n: t["kind"] for n, t in manifest["targets"].items()} == {
        "return_1d": "regression", "dir_1d": "classification", "label3_1d": "multiclass",
        "return_5d": "regression", "dir_5d": "classification", "label3_5d": "multiclass",
    }  # fmt: skip
    assert manifest["targets"]["dir_5d"]["label_end"] == "label_end_5d"
    write_json(manifest, tmp_path / "manifest.json")
    assert read_json(tmp_path / "manifest.json") == manifest


def test_all_nan_feature_has_no_min_max(tiny_panel) -> None:
    _, manifest = assemble_features_frame(tiny_panel(n_tickers=3, n_days=30), FPARAMS, TPARAMS)
    stats = {f["name"]: f for f in manifest["features"]}
    assert stats["dist_52w_high"] == {
        "name": "dist_52w_high",
        "dtype": "float32",
        "null_count": 90,
        "min": None,
        "max": None,
    }


def test_signature_is_stable_and_sensitive() -> None:
    assert feature_signature(FeatureParams()) == feature_signature(FeatureParams())
    assert feature_signature(FeatureParams()) != feature_signature(FeatureParams(rsi_window=10))
    assert feature_signature(FeatureParams()) != feature_signature(
        FeatureParams(cross_sectional=CrossSectionalParams(method="zscore"))
    )
    assert target_signature(TargetParams()) != target_signature(TargetParams(label3_threshold=0.02))
    assert target_signature(TargetParams()) != target_signature(TargetParams(delisting_return=-0.3))
    assert target_signature(TargetParams()) != target_signature(TargetParams(delisting_return=None))


def test_cross_sectional_definition_names_the_universe() -> None:
    """The ``_xs`` definition (hence the signature) says the ranks are taken within the universe."""
    definition = spec.feature_definitions(FeatureParams())["ret_5d_xs"]
    assert "in the universe" in definition and "NaN" in definition


def test_signature_follows_code_version(monkeypatch) -> None:
    before = feature_signature(FeatureParams())
    monkeypatch.setattr(spec, "FEATURE_CODE_VERSION", "999")
    assert feature_signature(FeatureParams()) != before


def test_check_accepts_frame_schema_and_pairs(assembled) -> None:
    frame, manifest = assembled
    check_against_manifest(frame, manifest)
    check_against_manifest(pa.Schema.from_pandas(frame, preserve_index=False), manifest)
    features_only = frame[manifest["feature_names"]]
    check_against_manifest(features_only, manifest)
    check_against_manifest({name: np.float32 for name in manifest["feature_names"]}, manifest)
    check_against_manifest([(name, "float32") for name in manifest["feature_names"]], manifest)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda f: f.drop(columns=["rsi_14"]), "missing.*rsi_14"),
        (lambda f: f.assign(new_feature=np.float32(0)), "not in the manifest.*new_feature"),
        (lambda f: f[[*f.columns[:3], f.columns[4], f.columns[3], *f.columns[5:]]], "reordered"),
        (lambda f: f.astype({"macd": "float64"}), "macd: float64"),
    ],
)
def test_check_fails_fast_with_a_clear_message(assembled, mutate, message) -> None:
    frame, manifest = assembled
    with pytest.raises(DataValidationError, match=message):
        check_against_manifest(mutate(frame[["ticker", "date", *manifest["feature_names"]]]), manifest)


def test_build_manifest_refuses_frames_that_do_not_match_params(assembled) -> None:
    frame, _ = assembled
    with pytest.raises(DataValidationError):
        build_manifest(frame, FeatureParams(), TPARAMS)
    with pytest.raises(DataValidationError, match="key columns"):
        build_manifest(frame.drop(columns=["date"]), FPARAMS, TPARAMS)


@pytest.mark.parametrize(
    "make",
    [
        lambda: FeatureParams(cross_sectional=CrossSectionalParams(features=["nope"])),
        lambda: FeatureParams(macd=MACDParams(fast=26, slow=12)),
        lambda: FeatureParams(sma_windows=[5, 5]),
        lambda: FeatureParams(vol_windows=[1]),
        lambda: FeatureParams(unknown_key=1),
        lambda: TargetParams(horizons=[0]),
    ],
)
def test_invalid_params_are_rejected(make) -> None:
    with pytest.raises(ValidationError):
        make()
