"""Registry: register trained folders as pyfunc versions, move aliases, gate and audit promotions."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from sepflow.config import load_params
from sepflow.errors import ConfigError, SepflowError
from sepflow.features.dataset import DatasetBuilder, assemble_features_frame
from sepflow.features.spec import FeatureParams, TargetParams
from sepflow.sep.synthetic import SyntheticParams, generate_market
from sepflow.sep.universe import UniverseParams, filter_universe
from sepflow.tracking.gate import PromotionParams, VersionMetrics, judge, side_by_side
from sepflow.tracking.models_table import ModelRow, format_models
from sepflow.tracking.registry import (
    PromotionRefused,
    logged_model_id,
    model_name,
    promote,
    record_walk_forward,
    register_trained,
    version_metrics,
    walk_forward_gate,
)
from sepflow.training.artifacts import load_trained
from sepflow.training.params import TrainParams
from sepflow.training.pyfunc import predict_records
from sepflow.training.train import train_family

FEATURES = ["ret_5d", "ret_20d", "ret_60d", "sma_ratio_20", "rsi_14", "rvol_20"]
NAME = model_name("xgboost", "dir_5d")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two trained xgboost folders for dir_5d that differ in tree depth (so their predictions differ)."""
    market = generate_market(SyntheticParams(n_tickers=30, n_days=400, signal_strength=3))
    universe = filter_universe(market.sep, market.tickers, UniverseParams(min_history_days=60, liquidity_window=20))
    frame, manifest = assemble_features_frame(universe.sep, FeatureParams(), TargetParams(horizons=[5]))
    ds = DatasetBuilder.from_frame(frame, manifest).build("dir_5d", FEATURES)
    root = tmp_path_factory.mktemp("models")
    out = []
    for depth in (2, 4):
        params = TrainParams.model_validate({
            "tuning": {"n_trials": {}, "storage": None},
            "xgboost": {"n_estimators": 20, "early_stopping_rounds": 5, "n_jobs": 1, "max_depth": depth},
        })
        folder = root / f"depth{depth}" / "xgboost" / "dir_5d"
        train_family("xgboost", "dir_5d", ds, FEATURES, params, 1, asof="2018-07-06", out_dir=folder,
                     optuna_storage=None)
        out.append(folder)
    return out


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway SQLite tracking store with its artifacts in the same temporary folder."""
    folder = tmp_path_factory.mktemp("mlflow")
    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
        experiment = mlflow.create_experiment("registry", artifact_location=(folder / "artifacts").as_uri())
        mlflow.set_experiment(experiment_id=experiment)
        yield experiment
        mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def registered(tracking: str, folders: list[Path]) -> list[int]:
    """Version 1 logged to a finished run (resumed), version 2 inside the active run."""
    with mlflow.start_run() as run:
        pass
    versions = [register_trained(folders[0], NAME, run.info.run_id)]
    with mlflow.start_run() as run:
        versions.append(register_trained(folders[1], NAME, run.info.run_id))
    return versions


def test_versions_and_candidate_alias(registered: list[int], folders: list[Path]) -> None:
    assert registered == [1, 2]
    client = MlflowClient()
    assert client.get_model_version_by_alias(NAME, "candidate").version == 2
    tags = client.get_model_version(NAME, "2").tags
    assert tags["sepflow.artifact_name"] == "dir_5d_clf_2018-07-06"
    assert tags["sepflow.family"] == "xgboost" and tags["sepflow.headline_metric"] == "roc_auc"
    saved = load_trained(folders[1]).metrics
    assert version_metrics(NAME, 2).metrics["test.roc_auc"] == saved["test"]["roc_auc"]
    assert version_metrics(NAME, 2).metrics["overfit_margin"] == saved["overfit_margin"]


def test_pyfunc_from_alias_matches_load_trained(registered: list[int], folders: list[Path]) -> None:
    for alias_or_version, folder in (("@candidate", folders[1]), ("/1", folders[0])):
        trained = load_trained(folder)
        example = trained.input_example()
        served = mlflow.pyfunc.load_model(f"models:/{NAME}{alias_or_version}").predict(example)
        expected = predict_records(trained, example)
        pd.testing.assert_frame_equal(served, expected)
        direct = trained.predict_frame(example.set_index(["ticker", "date"]))
        assert np.array_equal(served["calibrated_probability"], direct["calibrated_probability"])
    example = load_trained(folders[0]).input_example()
    one = mlflow.pyfunc.load_model(f"models:/{NAME}/1").predict(example)
    two = mlflow.pyfunc.load_model(f"models:/{NAME}/2").predict(example)
    assert not np.array_equal(one["probability"], two["probability"])


def test_a_version_carries_its_metrics_on_its_model_and_a_description(registered: list[int]) -> None:
    client = MlflowClient()
    version = client.get_model_version(NAME, "2")
    assert version.description.startswith("**xgboost** on **dir_5d** (classification), as of 2018-07-06: trained on")
    assert "Headline roc_auc: validation" in version.description
    model = client.get_logged_model(logged_model_id(NAME, 2))
    logged = {metric.key: metric.value for metric in model.metrics}
    assert logged["test.roc_auc"] == version_metrics(NAME, 2).metrics["test.roc_auc"]
    found = client.search_logged_models(experiment_ids=[model.experiment_id], filter_string="metrics.test.roc_auc > 0")
    assert model.model_id in {m.model_id for m in found}


def test_record_walk_forward_tags_logs_and_describes_the_evidence(registered: list[int]) -> None:
    with mlflow.start_run() as run:
        pass
    evidence = {"rank_ic": 0.05, "rank_ic_se": 0.01, "rank_ic_tstat": 5.0, "n_dates": 252.0, "net_sharpe": 1.2,
                "net_sharpe_se": 0.6, "psr": 0.97, "dsr": 0.8, "n_trials": 18.0, "n_periods": 252.0}
    record_walk_forward(NAME, 1, evidence, WINDOW, run.info.run_id)
    client = MlflowClient()
    version = client.get_model_version(NAME, "1")
    assert version_metrics(NAME, 1).walk_forward["rank_ic_tstat"] == 5.0
    assert version.tags["sepflow.wf.run_id"] == run.info.run_id and version.tags["sepflow.wf.eval_end"] == "2020-12-31"
    assert version.description.endswith("Walk-forward 2016-01-04 to 2020-12-31: rank IC 0.0500 ± 0.0100 (t 5.00, 252 "
                                        "dates); net Sharpe 1.20 ± 0.60 (PSR 0.97, DSR 0.80 over 18 candidates, 252 "
                                        "daily returns).")
    logged = {m.key: m for m in client.get_logged_model(logged_model_id(NAME, 1)).metrics}
    assert logged["wf.net_sharpe"].value == 1.2 and logged["wf.net_sharpe"].run_id == run.info.run_id
    for key in [k for k in version.tags if k.startswith("sepflow.wf.")]:  # the gate test tags its own evidence
        client.delete_model_version_tag(NAME, "1", key)


LOAD_WITHOUT_THE_CHECKOUT = """
import json, sys
from pathlib import Path
checkout = Path(sys.argv[1]).resolve()
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != checkout]  # the editable install's entry
import importlib.util
assert importlib.util.find_spec("sepflow") is None, "sepflow still importable from the checkout"
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[2])
import sepflow
example = pd.read_parquet(sys.argv[3])
print(json.dumps({"sepflow": sepflow.__file__,
                  "probability": model.predict(example)["calibrated_probability"].tolist()}))
"""


def test_a_registered_model_loads_where_sepflow_is_not_installed(registered: list[int], folders: list[Path],
                                                                 tmp_path: Path) -> None:
    trained = load_trained(folders[1])
    example = trained.input_example()
    example.to_parquet(tmp_path / "example.parquet")
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
    done = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_THE_CHECKOUT, str(REPO / "src"), f"models:/{NAME}/2",
                           str(tmp_path / "example.parquet")], env=env, cwd=tmp_path, capture_output=True,
                          text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert not Path(result["sepflow"]).resolve().is_relative_to(REPO)  # the model's own copy of the code
    expected = predict_records(trained, example)["calibrated_probability"].to_numpy()
    np.testing.assert_allclose(result["probability"], expected, rtol=0, atol=1e-12)


WINDOW = {"eval_start": "2016-01-04", "eval_end": "2020-12-31"}
# Significant evidence (passes the default significance and min_periods rules).
STRONG = {"rank_ic_se": 0.01, "rank_ic_tstat": 3.0, "n_dates": 500.0, "net_sharpe_se": 0.3, "psr": 0.98,
          "dsr": 0.9, "n_trials": 4.0, "n_periods": 500.0}


def _tag_walk_forward(name: str, version: int, **metrics: float) -> None:
    """What the walk-forward stage leaves on the version it evaluated: its metrics and their evidence
    (undefined ones left out), the evaluation window and its run."""
    client = MlflowClient()
    for metric, value in metrics.items():
        client.set_model_version_tag(name, str(version), f"sepflow.wf.{metric}", repr(float(value)))
    for key, value in {**WINDOW, "run_id": "0123456789abcdef"}.items():
        client.set_model_version_tag(name, str(version), f"sepflow.wf.{key}", value)


def test_promotion_gate_force_audit_and_rollback(registered: list[int]) -> None:
    client = MlflowClient()
    gate = walk_forward_gate(PromotionParams())
    with pytest.raises(PromotionRefused, match=r"run `dvc repro walk_forward@xgboost` first"):
        promote(NAME, gate=gate)

    _tag_walk_forward(NAME, 1, net_sharpe=0.4, rank_ic=0.02, n_folds=4, **STRONG)
    _tag_walk_forward(NAME, 2, net_sharpe=0.9, rank_ic=0.05, n_folds=4, **STRONG)
    dummy = model_name("dummy", "dir_5d")  # the baseline: no production version of NAME yet
    client.create_registered_model(dummy)
    source = client.get_model_version(NAME, "1").source  # any model files do: the gate reads tags only
    client.create_model_version(dummy, source=source, tags={"sepflow.family": "dummy"})
    client.set_registered_model_alias(dummy, "candidate", "1")
    # Constant predictions: no rank IC tag (nor its standard error and t-stat).
    _tag_walk_forward(dummy, 1, net_sharpe=0.1, net_sharpe_se=0.3, psr=0.6, n_periods=500, n_folds=4)

    first = promote(NAME, gate=gate, user="ci")
    assert (first.version, first.previous_version, first.forced) == (2, None, False)
    assert "dummy-dir_5d v1 (@candidate)" in first.comparison
    rank_ic = next(line for line in first.comparison.splitlines() if line.startswith("rank_ic "))
    assert rank_ic.split()[4:] == ["undefined", "reference", "undefined:", "judged", "on", "the", "candidate's",
                                   "significance", "alone", "pass"]
    assert client.get_model_version_by_alias(NAME, "production").version == 2
    tags = client.get_model_version(NAME, "2").tags
    assert tags["sepflow.promoted_by"] == "ci" and tags["sepflow.previous_version"] == "none"
    assert tags["sepflow.promotion_reason"] == "gate passed" and tags["sepflow.promoted_at"]
    assert tags["sepflow.promotion_reference"] == "dummy-dir_5d v1"

    with pytest.raises(PromotionRefused, match="net_sharpe not better than .*; rank_ic not better than") as refused:
        promote(NAME, version=1, gate=gate)
    table = refused.value.comparison
    assert "xgboost-dir_5d v1" in table and "xgboost-dir_5d v2 (@production)" in table
    assert "-0.5000" in table and table.count("FAIL") == 2
    assert client.get_model_version_by_alias(NAME, "production").version == 2
    with pytest.raises(ConfigError, match="non-empty reason"):
        promote(NAME, version=1, gate=gate, force=True, reason="  ")

    # Rolling back is promoting the older version; it is worse, so it takes force and a reason.
    rollback = promote(NAME, version=1, gate=gate, force=True, reason="rollback after incident", user="oncall")
    assert (rollback.version, rollback.previous_version, rollback.forced) == (1, 2, True)
    assert client.get_model_version_by_alias(NAME, "production").version == 1
    tags = client.get_model_version(NAME, "1").tags
    assert tags["sepflow.promotion_reason"] == "rollback after incident"
    assert tags["sepflow.previous_version"] == "2" and tags["sepflow.promotion_forced"] == "true"
    assert tags["sepflow.promoted_by"] == "oncall" and tags["sepflow.promotion_reference"] == NAME + " v2"
    # ...and forward again: v2 beats production v1, so the gate alone lets it back.
    again = promote(NAME, gate=gate)
    assert (again.version, again.previous_version, again.forced) == (2, 1, False)
    assert not promote(NAME, gate=gate).changed  # already production: nothing to do, nothing tagged

    with pytest.raises(SepflowError, match="no version with alias 'staging'"):
        promote(NAME, alias_from="staging", gate=gate)
    with pytest.raises(SepflowError, match="has no version 7"):
        promote(NAME, version=7, gate=gate)


NAN = float("nan")
WINDOW_DATES = (WINDOW["eval_start"], WINDOW["eval_end"])


def _version(number: int, name: str = "xgboost-dir_5d", window: tuple[str, str] | None = WINDOW_DATES,
             **walk_forward: float) -> VersionMetrics:
    """A version as ``from_tags`` reads it: ``STRONG`` evidence under the given metrics, undefined ones left out."""
    values = {k: v for k, v in {**STRONG, **walk_forward}.items() if v == v}
    start, end = window or (None, None)
    return VersionMetrics(name, number, name.split("-")[0], "dir_5d", "roc_auc", {}, values, start, end)


def _dummy(**walk_forward: float) -> VersionMetrics:
    """The dummy baseline: constant predictions, so no rank IC (nor its standard error and t-stat)."""
    values = {"net_sharpe": 0.0, "psr": 0.5, "dsr": 0.1, "n_periods": 500.0, "n_dates": 500.0, **walk_forward}
    return VersionMetrics("dummy-dir_5d", 1, "dummy", "dir_5d", "roc_auc", {}, values, *WINDOW_DATES)


def test_version_metrics_from_tags_keeps_the_window_apart() -> None:
    tags = {"sepflow.family": "xgboost", "sepflow.target": "dir_5d", "sepflow.wf.rank_ic": "0.019",
            "sepflow.wf.rank_ic_se": "0.0432", "sepflow.wf.n_periods": "7.0", "sepflow.wf.eval_start": "2016-01-04",
            "sepflow.wf.eval_end": "2020-12-31", "sepflow.wf.run_id": "abc", "sepflow.wf.note": "not a number",
            "sepflow.metric.test.roc_auc": "0.55"}
    read = VersionMetrics.from_tags("xgboost-dir_5d", 3, tags)
    assert read.walk_forward == {"rank_ic": 0.019, "rank_ic_se": 0.0432, "n_periods": 7.0}
    assert read.window == ("2016-01-04", "2020-12-31") and read.metrics == {"test.roc_auc": 0.55}
    assert VersionMetrics.from_tags("x-y", 1, {"sepflow.wf.eval_start": "2016-01-04"}).window is None
    assert math.isnan(read.value("psr"))


def test_judge_significance_rules_pass_and_fail() -> None:
    params = PromotionParams(significance={"rank_ic_tstat": 2.0, "psr": 0.95}, min_periods=0)
    reference = _version(1, net_sharpe=0.2, rank_ic=0.01)
    assert judge(_version(2, net_sharpe=0.5, rank_ic=0.03), reference, params).allowed
    assert judge(_version(2, net_sharpe=0.5, rank_ic=0.03, rank_ic_tstat=2.0), reference, params).allowed  # ≥

    weak = judge(_version(2, net_sharpe=0.5, rank_ic=0.03, rank_ic_tstat=0.44), reference, params)
    assert not weak.allowed and [(r.metric, r.passed) for r in weak.requirements] == [
        ("rank_ic_tstat", False), ("psr", True)]
    assert all(c.passed for c in weak.checks)  # it beats the reference, but on noise
    assert weak.summary() == "rank_ic_tstat 0.44, needs ≥ 2 (significance)"

    missing = judge(_version(2, net_sharpe=0.5, rank_ic=0.03, psr=NAN), reference, params)  # no PSR tag
    assert not missing.allowed and missing.summary() == "psr undefined, needs ≥ 0.95 (significance)"

    errors = PromotionParams(significance={"log_loss": 0.69}, metrics=["rank_ic"], min_delta={}, min_periods=0)
    assert judge(_version(2, rank_ic=0.03, log_loss=0.68), reference, errors).allowed  # errors: at most
    assert not judge(_version(2, rank_ic=0.03, log_loss=0.70), reference, errors).allowed


def test_judge_min_periods() -> None:
    params = PromotionParams(min_periods=250)
    reference = _version(1, net_sharpe=0.2, rank_ic=0.01)
    assert judge(_version(2, net_sharpe=0.5, rank_ic=0.03, n_periods=250), reference, params).allowed
    short = judge(_version(2, net_sharpe=0.5, rank_ic=0.03, n_periods=249), reference, params)
    assert not short.allowed and short.summary() == "n_periods 249, needs ≥ 250 (min_periods)"
    assert not judge(_version(2, net_sharpe=0.5, rank_ic=0.03, n_periods=NAN), reference, params).allowed
    off = PromotionParams(min_periods=0)  # no rule: not even a check
    assert judge(_version(2, net_sharpe=0.5, rank_ic=0.03, n_periods=7), reference, off).allowed


def test_judge_refuses_another_window_and_names_the_rewalk() -> None:
    params = PromotionParams()
    candidate = _version(2, net_sharpe=0.5, rank_ic=0.03)
    same = judge(candidate, _dummy(), params)
    assert same.allowed and same.same_window
    older = _version(1, "dummy-dir_5d", window=("2015-01-02", "2019-12-31"), net_sharpe=0.0)
    moved = judge(candidate, older, params)
    assert not moved.allowed and moved.same_window is False
    assert moved.notes == ("dummy-dir_5d v1 was walked on another window (2015-01-02..2019-12-31) than "
                           "xgboost-dir_5d v2 (2016-01-04..2020-12-31): "
                           "re-walk it with `dvc repro walk_forward@dummy`",)
    unknown = judge(candidate, _version(1, "dummy-dir_5d", window=None, net_sharpe=0.0), params)
    assert not unknown.allowed and "walked on another window (unknown)" in unknown.summary()
    # Its own production version: re-walking the family walks the candidate, so say what is left.
    own = judge(candidate, _version(1, window=("2015-01-02", "2019-12-31"), net_sharpe=0.2, rank_ic=0.01), params)
    assert ("re-walk it with `dvc repro walk_forward@xgboost` (that walks the version train@xgboost registered "
            "last" in own.summary())
    no_window = judge(_version(2, window=None, net_sharpe=0.5, rank_ic=0.03), _dummy(), params)
    assert no_window.notes == ("xgboost-dir_5d v2 has no evaluation window (sepflow.wf.eval_start/eval_end): "
                               "re-walk it with `dvc repro walk_forward@xgboost`",)


def test_judge_undefined_reference_rests_on_significance_alone() -> None:
    params = PromotionParams()
    decision = judge(_version(2, net_sharpe=0.2, rank_ic=0.01), _dummy(), params, reference_alias="candidate")
    assert decision.allowed
    rank_ic = decision.checks[1]
    assert rank_ic.reference_undefined and math.isnan(rank_ic.reference) and rank_ic.passed  # never 0
    assert rank_ic.description == "reference undefined: judged on the candidate's significance alone"
    # A tiny rank IC beats "undefined" only with significance; without it, it fails.
    noise = judge(_version(2, net_sharpe=0.2, rank_ic=0.019, rank_ic_tstat=0.44), _dummy(), params)
    assert not noise.allowed and not noise.checks[1].passed and noise.checks[0].passed
    assert ("rank_ic: undefined for dummy-dir_5d v1, and the candidate's significance does not carry it"
            in noise.failures)
    # A significantly negative rank IC fails too: the t-stat floor is one-sided.
    assert not judge(_version(2, net_sharpe=0.2, rank_ic=-0.03, rank_ic_tstat=-3.0), _dummy(), params).allowed
    # No significance rules: nothing to judge an undefined reference metric on.
    bare = PromotionParams(significance={}, min_periods=0)
    refused = judge(_version(2, net_sharpe=0.2, rank_ic=0.03), _dummy(), bare)
    assert not refused.allowed
    assert "dummy-dir_5d v1 has no defined rank_ic and promotion.significance is empty" in refused.summary()


def test_judge_defined_reference_must_beat_by_min_delta() -> None:
    params = PromotionParams(metrics=["net_sharpe", "rank_ic"], min_delta={"net_sharpe": 0.1})
    production = _version(1, net_sharpe=0.5, rank_ic=0.02)
    assert judge(_version(2, net_sharpe=0.61, rank_ic=0.03), production, params).allowed
    short = judge(_version(2, net_sharpe=0.59, rank_ic=0.03), production, params)  # better, not by the margin
    assert not short.allowed and [c.passed for c in short.checks] == [False, True]
    assert short.checks[0].description == "Δ > +0.1000 (min_delta)"
    assert short.summary() == "net_sharpe not better than xgboost-dir_5d v1 by more than 0.1 (min_delta)"
    assert not judge(_version(2, net_sharpe=0.7, rank_ic=0.02), production, params).allowed  # a tie is no win

    undefined = judge(_version(2, net_sharpe=0.7, rank_ic=NAN), production, params)
    assert not undefined.allowed
    assert undefined.summary().startswith("xgboost-dir_5d v2 has no defined walk-forward rank_ic")

    alone = judge(_version(2, net_sharpe=1.0, rank_ic=0.1), None, params)
    assert not alone.allowed and "nothing to compare with" in alone.notes and alone.same_window is None


def test_judge_lower_is_better() -> None:
    errors = PromotionParams(metrics=["rmse"], min_delta={"rmse": 0.01})  # smaller is better
    assert judge(_version(2, rmse=0.08), _version(1, rmse=0.1), errors).allowed
    worse = judge(_version(2, rmse=0.095), _version(1, rmse=0.1), errors)
    assert not worse.allowed and worse.checks[0].description == "Δ < -0.0100 (min_delta)"
    # The reference has no rmse: judged on the candidate's (passing) significance, never a stand-in.
    assert judge(_version(2, rmse=0.08), _version(1, net_sharpe=1.0), errors).allowed


def test_side_by_side_shows_standard_errors_and_the_failed_rules() -> None:
    candidate = _version(2, net_sharpe=1.1, net_sharpe_se=0.95, rank_ic=0.019, rank_ic_se=0.0432,
                         rank_ic_tstat=0.44, psr=0.87, dsr=0.41, n_periods=7, n_dates=7, roc_auc=0.51)
    decision = judge(candidate, _dummy(), PromotionParams())
    table = side_by_side(candidate, decision)
    lines = table.splitlines()
    assert lines[0].split() == ["walk-forward", "xgboost-dir_5d", "v2", "dummy-dir_5d", "v1", "delta", "rule", "result"]
    assert [line.split()[0] for line in lines[1:12]] == [
        "window", "net_sharpe", "rank_ic", "rank_ic_tstat", "psr", "n_periods", "n_dates", "dsr", "n_trials",
        "roc_auc", "gate:"]
    assert "1.1000 ± 0.9500" in table and "0.0190 ± 0.0432" in table and "rank_ic_se" not in table
    assert lines[-1] == ("gate: refused (rank_ic_tstat 0.44, needs ≥ 2 (significance); psr 0.87, needs ≥ 0.95 "
                         "(significance); n_periods 7, needs ≥ 250 (min_periods); rank_ic: undefined for dummy-dir_5d "
                         "v1, and the candidate's significance does not carry it)")


def test_format_models_evidence_columns() -> None:
    rows = [ModelRow(_version(2, net_sharpe=0.9, rank_ic=0.04, roc_auc=0.6), ("production",)),
            ModelRow(VersionMetrics("lgbm-dir_5d", 1, "lightgbm", "dir_5d", None, {}, {}), ())]
    lines = format_models(rows, ["net_sharpe", "roc_auc"]).splitlines()
    assert lines[0].split() == ["model", "version", "aliases", "family", "target", "wf", "rank_ic±se", "t", "wf",
                                "net_sharpe±se", "psr", "dsr", "n", "wf", "roc_auc", "test", "headline"]
    assert lines[1].split()[5:] == ["0.0400±0.0100", "3.00", "0.90±0.30", "0.98", "0.90", "500", "0.6000",
                                    "roc_auc", "-"]
    assert lines[2].split()[5:] == ["-"] * 8


def test_walk_forward_gate_chooses_its_reference(add_version) -> None:
    gate = walk_forward_gate(PromotionParams())
    xgb = "xgboost-dir_5d"
    add_version("dummy", walk_forward={"net_sharpe": 0.3, "rank_ic": 0.0})  # dummy v1
    add_version("dummy")  # dummy v2, the candidate, never walk-forward tested
    add_version("xgboost", walk_forward={"net_sharpe": 0.5, "rank_ic": 0.02})
    decision = gate(version_metrics(xgb, 1))
    assert decision.reference is None and not decision.allowed  # dummy@candidate untested, v1 unnamed
    assert "dummy-dir_5d v2 (@candidate) has no walk-forward metrics" in decision.notes

    MlflowClient().set_registered_model_alias("dummy-dir_5d", "production", "1")
    decision = gate(version_metrics(xgb, 1))
    assert decision.allowed and decision.reference_label == "dummy-dir_5d v1 (@production)"

    # Once the model serves, its production version is the reference, whatever the baseline says.
    promote(xgb, gate=gate)
    add_version("xgboost", walk_forward={"net_sharpe": 0.4, "rank_ic": 0.03})
    decision = gate(version_metrics(xgb, 2))
    assert decision.reference_label == "xgboost-dir_5d v1 (@production)" and not decision.allowed

    # The baseline is not judged against itself: dummy v1 (its own production) has nothing to beat.
    decision = gate(version_metrics("dummy-dir_5d", 1))
    assert decision.reference is None and "nothing to compare with" in decision.notes
    no_baseline = walk_forward_gate(PromotionParams(baseline_family=None))
    assert no_baseline(version_metrics("lightgbm-dir_5d", add_version("lightgbm", walk_forward={
        "net_sharpe": 2.0, "rank_ic": 0.2}))).reference is None


def test_walk_forward_gate_prefers_the_baseline_on_the_same_window(add_version) -> None:
    gate = walk_forward_gate(PromotionParams())
    old = ("2015-01-02", "2019-12-31")
    add_version("dummy", walk_forward={"net_sharpe": 0.0, "rank_ic": NAN}, window=old)  # v1: production
    MlflowClient().set_registered_model_alias("dummy-dir_5d", "production", "1")
    add_version("xgboost", walk_forward={"net_sharpe": 0.5, "rank_ic": 0.02})
    decision = gate(version_metrics("xgboost-dir_5d", 1))  # dummy v1 only, on another window
    assert decision.reference_label == "dummy-dir_5d v1 (@production)" and not decision.allowed
    assert "re-walk it with `dvc repro walk_forward@dummy`" in decision.summary()

    add_version("dummy", walk_forward={"net_sharpe": 0.0, "rank_ic": NAN})  # v2, re-walked: the candidate
    decision = gate(version_metrics("xgboost-dir_5d", 1))
    assert decision.allowed and decision.reference_label == "dummy-dir_5d v2 (@candidate)"


def test_promotion_params_in_params_yaml(tmp_path: Path) -> None:
    # params.yaml states the defaults (read on its own: other sections may be mid-edit elsewhere).
    stated = yaml.safe_load((REPO / "params.yaml").read_text())["promotion"]
    assert PromotionParams.model_validate(stated) == PromotionParams()
    assert PromotionParams().significance == {"rank_ic_tstat": 2.0, "psr": 0.95}
    assert PromotionParams().min_periods == 250
    path = tmp_path / "params.yaml"
    # A section written before the significance rules: they take their defaults.
    path.write_text("promotion: {metrics: [net_sharpe, rank_ic], min_delta: {net_sharpe: 0.05}}\n")
    old = load_params(path).promotion
    assert old.significance == PromotionParams().significance and old.min_periods == 250
    for section, complaint in (
        ("{min_delta: {roc_auc: 0.01}}", r"promotion: .*min_delta names metrics the gate does not use: \['roc_auc'\]"),
        ("{baseline_family: naive}", "promotion.baseline_family"),
        ("{metrics: []}", "promotion.metrics"),
        ("{min_delta: {net_sharpe: .nan}}", "promotion.min_delta"),
        ("{metrics: [net_sharp]}", r"promotion.metrics: .*unknown walk-forward metrics \['net_sharp'\]; known: "),
        ("{metrics: [rank_ic_se]}", r"promotion.metrics: .*\['rank_ic_se'\] are standard errors or sample sizes"),
        ("{significance: {t_stat: 2.0}}", r"promotion.significance: .*unknown walk-forward metrics \['t_stat'\]"),
        ("{significance: {n_periods: 250}}", r"promotion.significance: .*n_periods: use min_periods"),
        ("{significance: {psr: 95}}", r"promotion.significance: .*probabilities: thresholds must lie in \[0, 1\]"),
        ("{significance: {psr: .inf}}", "promotion.significance: .*finite numbers"),
        ("{min_periods: -1}", r"promotion.min_periods: .*0 or more .*got -1"),
        ("{min_periods: 2.5}", r"promotion.min_periods: .*whole number"),
        ("{min_period: 250}", "promotion.min_period"),
    ):
        path.write_text(f"promotion: {section}\n")
        with pytest.raises(ConfigError, match=complaint):
            load_params(path)
