"""Stage `train@FAMILY`: one model family on every selected target → ``models/<family>/<target>/``.

Writes ``reports/train/<family>.json`` (DVC metrics: per target, per segment, the headline
metrics as numbers) and ``reports/train/<family>_models.json`` (per target the artefact and its
headline; failures, and why nothing was trained). Neither holds a run id or a version number:
a fresh clone reproduces both byte for byte.

One MLflow run for the stage, a nested run per target (params, metrics, tuning trials, a
feature-importance chart); each trained folder is logged as a pyfunc from the nested run,
registered as a new version of ``<family>-<target>`` and given the alias ``candidate``.

With ``train.scope: per_symbol`` each target gets one model per ticker under
``models/<family>/<target>/per_symbol/<ticker>/``; the nested run logs the per-ticker metrics
table and every ticker's folder, and the registered version routes each ticker to its own model.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path

import mlflow
import pandas as pd

from sepflow.catalog import FEATURES, MANIFEST, MODELS, SELECTED_FEATURES, SELECTED_TARGETS, TRAIN_REPORTS
from sepflow.config import Params, load_params
from sepflow.distributed import engine_session
from sepflow.errors import SepflowError
from sepflow.evaluation.plots import bar_chart
from sepflow.features.dataset import DatasetBuilder
from sepflow.features.spec import feature_signature
from sepflow.io import read_json, read_panel_metadata
from sepflow.progress import progress
from sepflow.summary import print_summary
from sepflow.tracking.registry import model_name, register_trained
from sepflow.tracking.runs import flatten, stage_run, write_report
from sepflow.training.per_symbol import PerSymbolResult, train_per_symbol
from sepflow.training.routing import PER_SYMBOL_DIR
from sepflow.training.train import TrainResult, forward_returns_for, train_family
from sepflow.validation.calendar import EvaluationWindow, development_rows, trading_calendar

log = logging.getLogger(__name__)

COMMON_KEYS = ("validation_fraction", "test_fraction", "embargo_days", "max_samples_per_symbol", "n_splits",
               "calibration", "fee_bps", "slippage_bps", "tuning", "scope", "max_workers")


def main(params_path: str = "params.yaml", family: str = "") -> None:
    params = load_params(params_path)
    train = params.train
    logged = {"train": {**{k: getattr(train, k) for k in COMMON_KEYS}, family: train.model_params(family)},
              "seed": params.seed}
    # The ensemble reads its members' models: recorded, so `sepflow reproduce` restores them too.
    members = [MODELS / f for f in train.ensemble_members] if family == "ensemble" else []
    inputs = [FEATURES, MANIFEST, SELECTED_TARGETS, SELECTED_FEATURES, *members]
    with stage_run(f"train@{family}", params=logged, inputs=inputs) as run:
        targets = read_json(SELECTED_TARGETS)["targets"]
        chosen = read_json(SELECTED_FEATURES)
        asof = read_panel_metadata(FEATURES).get("asof", "")
        builder = DatasetBuilder(FEATURES, MANIFEST, expected_signature=feature_signature(params.features))
        window = params.evaluation_window(trading_calendar(builder))
        (MODELS / family).mkdir(parents=True, exist_ok=True)  # a declared output, even with no target
        rows, metrics, failed = [], {}, {}
        # One cluster for every target of the stage (train_family would otherwise start one per target).
        with engine_session(train.engine, train.dask, uses_cluster=family in ("xgboost", "lightgbm")):
            for target in progress(targets, desc=f"train@{family}", unit="target"):
                try:
                    row, metrics[target] = _train_target(family, target, builder, chosen[target], params,
                                                         window, asof, run.info.run_id)
                except (SepflowError, ValueError) as exc:  # one target's failure must not sink the others
                    failed[target] = f"{type(exc).__name__}: {exc}"
                    log.warning("train@%s: %s failed: %s", family, target, failed[target])
                    continue
                rows.append(row)
                if row["test"] is not None:  # the headline on the stage run too, for comparing families
                    mlflow.log_metric(f"{target}.test.{row['headline']}", float(row["test"]))
        why = {} if targets else {"why_empty": "rank_targets selected no target: nothing to train"}
        write_report(metrics, TRAIN_REPORTS / f"{family}.json")
        models = [{k: v for k, v in row.items() if k != "version"} for row in rows]  # versions: registry state
        write_report({"family": family, "asof": asof, "models": models, "failed": failed, **why},
                     TRAIN_REPORTS / f"{family}_models.json")
        if failed and not rows:
            raise SepflowError(f"train@{family}: every target failed: {failed}")
    _summarise(family, rows, failed, window)


def _train_target(
    family: str, target: str, builder: DatasetBuilder, features: list[str], params: Params,
    window: EvaluationWindow, asof: str, parent: str,
) -> tuple[dict[str, object], dict[str, object]]:
    """Train on the development region, log (a nested run per target) and register one model;
    return its summary row and its DVC metrics."""
    tags = {"sepflow.family": family, "sepflow.target": target, "sepflow.parent_stage": f"train@{family}"}
    with mlflow.start_run(run_name=f"{family}/{target}", nested=True, parent_run_id=parent, tags=tags) as child:
        ds = development_rows(builder.build(target, features), window)
        train = train_per_symbol if params.train.scope == "per_symbol" else train_family
        result = train(
            family, target, ds, features, params.train, params.seed, asof=asof,
            out_dir=MODELS / family / target, optuna_storage=params.train.tuning.resolved_storage(),
            forward_returns=forward_returns_for(builder, ds),
        )
        mlflow.log_params(flatten({"features": features, "model": result.metadata.get("model_params", {})}))
        metrics = {k: v for k, v in flatten(result.metrics).items() if _is_number(v)}
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        if isinstance(result, PerSymbolResult):
            _log_per_symbol(result)
        else:
            _log_pooled(result, features)
        version = register_trained(result.out_dir, model_name(family, target), child.info.run_id)
    headline = result.metrics.get("headline")
    row = {"target": target, "artifact": result.artifact_name, "version": version, "headline": headline,
           "validation": result.metrics["validation"].get(headline), "test": result.metrics["test"].get(headline),
           "overfit_margin": result.metrics.get("overfit_margin")}
    if isinstance(result, PerSymbolResult):  # the summary row holds means over these tickers
        row.update(tickers=result.metrics["n_tickers"], skipped_tickers=len(result.skipped))
    return row, _dvc_metrics(result.metrics)


def _dvc_metrics(metrics: dict[str, object]) -> dict[str, object]:
    """Per segment the headline, rank IC, RMSE (regression) and net Sharpe where defined, and the
    overfit margin: a few finite numbers per target, so `dvc metrics show` / `dvc exp show` stay
    readable. RMSE is defined where a constant prediction leaves every rank-based figure undefined."""
    headline = str(metrics["headline"])
    shown = dict.fromkeys((headline, "rank_ic", "rmse", "net_sharpe"))
    flat: dict[str, object] = {
        segment: {key: float(value) for key, value in metrics[segment].items() if key in shown and _finite(value)}
        for segment in ("validation", "test")
    }
    if _finite(metrics.get("overfit_margin")):
        flat["overfit_margin"] = float(metrics["overfit_margin"])
    return flat


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _log_pooled(result: TrainResult, features: list[str]) -> None:
    """The tuning trials and, where the model has them, its feature importances as a chart."""
    if result.trials is not None:
        mlflow.log_table(result.trials, artifact_file="tuning/trials.json")
    if hasattr(result.model, "feature_importances_"):
        with tempfile.TemporaryDirectory() as tmp:
            importance = pd.Series(result.model.feature_importances_, index=features)
            mlflow.log_artifact(str(bar_chart(importance, Path(tmp) / "feature_importance.png",
                                              title=f"{result.family}: {result.target}", xlabel="normalised gain")))


def _log_per_symbol(result: PerSymbolResult) -> None:
    """Every ticker's metrics as one table, and the routing manifest, CSV and ticker folders as artifacts."""
    mlflow.log_table(result.table, artifact_file=f"{PER_SYMBOL_DIR}/metrics_table.json")
    # index.json, metrics.csv and per_symbol/<ticker>/ for each trained ticker.
    mlflow.log_artifacts(str(result.out_dir / PER_SYMBOL_DIR), artifact_path=PER_SYMBOL_DIR)
    mlflow.log_metric("n_skipped_tickers", len(result.skipped))  # n_tickers comes with the summary metrics


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return value not in ("None", "nan")


def _summarise(family: str, rows: list[dict[str, object]], failed: dict[str, str], window: EvaluationWindow) -> None:
    shown = ("target", "headline", "validation", "test", "overfit_margin", "tickers", "skipped_tickers")
    table = [{**{k: row[k] for k in shown if k in row},
              "registered": f"{model_name(family, str(row['target']))} v{row['version']} @candidate"} for row in rows]
    print_summary(f"train@{family}", table, notes={
        "models": len(rows) or "none (no selected targets)", "date rule": window.describe(), **({"failed": sorted(failed)} if failed else {}),
        "outputs": [f"{MODELS / family}/", TRAIN_REPORTS / f"{family}.json"]})
