"""Stage `walk_forward@FAMILY`: retrain a family fold after fold and test it on the next period.

Writes ``reports/walk_forward/<family>/``: ``predictions.parquet`` (every out-of-sample
prediction), ``metrics.json`` (per target: overall and per fold; DVC metrics) and ``plots/``
(equity curves, rolling rank IC and per-fold metrics as CSV for ``dvc plots``). The MLflow run
gets the overall metrics, per-fold metrics as steps and PNG charts; the registered model version
that ``train@FAMILY`` produced for each target is tagged with the overall walk-forward metrics
(``sepflow.wf.<metric>``), which the promotion gate reads.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from sepflow.config import Params, load_params
from sepflow.errors import SepflowError
from sepflow.evaluation.plots import bar_chart, line_chart
from sepflow.features.dataset import DatasetBuilder
from sepflow.features.spec import feature_signature
from sepflow.io import atomic_path, read_json, read_panel, write_panel
from sepflow.progress import progress
from sepflow.stages.build_features import FEATURES, MANIFEST
from sepflow.stages.filter_sep import SEP_COMMON
from sepflow.stages.rank_targets import SELECTED_TARGETS
from sepflow.stages.train import MODELS
from sepflow.stages.train import REPORTS as TRAIN_REPORTS
from sepflow.summary import print_summary
from sepflow.tracking.registry import model_name
from sepflow.tracking.runs import stage_run, write_report
from sepflow.training.artifacts import load_trained
from sepflow.training.train import forward_returns_for
from sepflow.training.walk_forward import (
    PREDICTION_COLUMNS,
    WalkForwardResult,
    walk_forward,
    wf_tags,
)

log = logging.getLogger(__name__)

REPORTS = Path("reports/walk_forward")
# Shown in the stage summary and on the stage run, per target.
HEADLINE = ("rank_ic", "ic", "icir", "net_sharpe", "gross_sharpe", "max_drawdown", "turnover", "n_folds")


def main(params_path: str = "params.yaml", family: str = "") -> None:
    params = load_params(params_path)
    out = REPORTS / family
    logged = {"walk_forward": params.walk_forward.model_dump(), "seed": params.seed,
              "train": {k: getattr(params.train, k) for k in ("calibration", "fee_bps", "slippage_bps")}}
    inputs = [FEATURES, MANIFEST, SELECTED_TARGETS, TRAIN_REPORTS / f"{family}.json"]
    with stage_run(f"walk_forward@{family}", params=logged, inputs=inputs) as run:
        builder = DatasetBuilder(FEATURES, MANIFEST, expected_signature=feature_signature(params.features))
        registered = {row["target"]: row.get("version") for row in read_json(TRAIN_REPORTS / f"{family}.json")["models"]}
        prices = _prices(params)
        results: dict[str, WalkForwardResult] = {}
        failed: dict[str, str] = {}
        for target in progress(read_json(SELECTED_TARGETS)["targets"], desc=f"walk_forward@{family}", unit="target"):
            if params.train.scope != "pooled":  # one walk per ticker would need its own fold design
                failed[target] = f"train.scope {params.train.scope}: walk-forward evaluates pooled models only"
            elif target not in registered:
                failed[target] = f"train@{family} has no model for it"
                continue
            try:
                results[target] = _walk_target(family, target, builder, params, prices)
            except (SepflowError, ValueError) as exc:  # one target's failure must not sink the others
                failed[target] = f"{type(exc).__name__}: {exc}"
                log.warning("walk_forward@%s: %s failed: %s", family, target, failed[target])
        if failed and not results and params.train.scope == "pooled":
            raise SepflowError(f"walk_forward@{family}: every target failed: {failed}")
        _write_outputs(out, results)
        mlflow.log_artifact(str(out / "predictions.parquet"), artifact_path="walk_forward")
        for target, result in results.items():
            _log_target(target, result)
            if registered[target] is not None:
                _tag_version(model_name(family, target), registered[target], result, run.info.run_id)
        report = {"family": family, "targets": {t: _report(r) for t, r in results.items()}, "failed": failed}
        write_report(report, out / "metrics.json")
    _summarise(family, results, failed, out)


def _prices(params: Params) -> pd.Series:
    """The target price column per (ticker, date), for price-space RMSE."""
    column = params.targets.price_column
    sep = read_panel(SEP_COMMON, columns=["ticker", "date", column])
    return pd.Series(sep[column].to_numpy(dtype=float), index=pd.MultiIndex.from_frame(sep[["ticker", "date"]]))


def _walk_target(
    family: str, target: str, builder: DatasetBuilder, params: Params, prices: pd.Series,
) -> WalkForwardResult:
    trained = load_trained(MODELS / family / target)
    ds = builder.build(target, trained.features)
    keys = pd.MultiIndex.from_arrays([ds.tickers, ds.dates])
    return walk_forward(trained, ds, forward_returns_for(builder, ds), params.walk_forward, params.train,
                        prices=prices.reindex(keys).to_numpy())


def _write_outputs(out: Path, results: dict[str, WalkForwardResult]) -> None:
    """Predictions of every target in one parquet, and the plot tables per target."""
    empty = pd.DataFrame(columns=PREDICTION_COLUMNS).astype(
        {"ticker": str, "date": "datetime64[ns]", "target": str, "fold": "int64"} | dict.fromkeys(PREDICTION_COLUMNS[4:], "float64"))
    predictions = pd.concat([r.predictions for r in results.values()], ignore_index=True) if results else empty
    write_panel(predictions, out / "predictions.parquet")
    for target, result in results.items():
        for name, frame in _plot_tables(result).items():
            path = out / "plots" / name / f"{target}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                frame.to_csv(tmp, index=False, float_format="%.8g", date_format="%Y-%m-%d")


def _plot_tables(result: WalkForwardResult) -> dict[str, pd.DataFrame]:
    folds = result.folds[["fold", "net_sharpe", "gross_sharpe", "rank_ic", "ic"]]
    return {"equity": result.equity, "rolling_ic": result.rolling_ic.dropna(), "folds": folds}


def _report(result: WalkForwardResult) -> dict[str, Any]:
    """Overall and per-fold metrics, JSON-ready (NaN → None, dates as ISO strings)."""
    folds = {}
    for row in result.folds.to_dict(orient="records"):
        folds[f"fold_{row['fold']}"] = {key: _plain(value) for key, value in row.items() if key != "fold"}
    return {"overall": {key: _plain(value) for key, value in result.overall.items()}, "folds": folds}


def _plain(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _log_target(target: str, result: WalkForwardResult) -> None:
    """Overall metrics, per-fold metrics as steps, and PNG charts on the stage run."""
    mlflow.log_metrics({f"{target}.{k}": v for k, v in result.overall.items() if np.isfinite(v)})
    for row in result.folds.to_dict(orient="records"):
        for metric in ("net_sharpe", "rank_ic", "ic"):
            if np.isfinite(row[metric]):
                mlflow.log_metric(f"{target}.fold.{metric}", float(row[metric]), step=int(row["fold"]))
    with tempfile.TemporaryDirectory() as tmp:
        charts = [
            line_chart(result.equity, Path(tmp) / f"equity_{target}.png", x="date",
                       title=f"{target}: walk-forward equity", ylabel="equity (start = 1)"),
            line_chart(result.rolling_ic[["date", "rolling_rank_ic"]], Path(tmp) / f"rolling_ic_{target}.png",
                       x="date", title=f"{target}: rolling rank IC", ylabel="rank IC"),
            bar_chart(result.folds.set_index("fold")["net_sharpe"].rename(lambda f: f"fold {f}"),
                      Path(tmp) / f"folds_{target}.png", title=f"{target}: net Sharpe per fold",
                      xlabel="net Sharpe"),
        ]
        for chart in charts:
            mlflow.log_artifact(str(chart), artifact_path="walk_forward")


def _tag_version(name: str, version: int, result: WalkForwardResult, run_id: str) -> None:
    """The walk-forward summary on the registered version it evaluated (read by the promotion gate)."""
    client = MlflowClient()
    for key, value in {**wf_tags(result.overall), "sepflow.wf.run_id": run_id}.items():
        client.set_model_version_tag(name, str(version), key, value)


def _summarise(family: str, results: dict[str, WalkForwardResult], failed: dict[str, str], out: Path) -> None:
    table = [{"target": t, **{k: int(r.overall[k]) if k == "n_folds" else r.overall.get(k) for k in HEADLINE}}
             for t, r in results.items()]
    print_summary(f"walk_forward@{family}", table, notes={
        "targets": len(results) or "none walked forward", **({"failed": failed} if failed else {}),
        "outputs": f"{out}/ (predictions.parquet, metrics.json, plots/)"})
