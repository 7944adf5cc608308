"""Stage `walk_forward@FAMILY`: refit a family fold after fold in the evaluation window and test it.

Writes ``reports/walk_forward/<family>/``: ``predictions.parquet`` (every out-of-sample
prediction), ``outputs.parquet`` (raw outputs per fold on its validation tail and test block,
which the ensemble's walk-forward combines), ``metrics.json`` (DVC metrics: per target the
evidence, ``DVC_METRICS``), ``folds.json`` (every overall metric, per-fold details, the date
rule, skipped targets) and ``plots/`` (equity, rolling rank IC, per-fold and calibration-curve
tables: one CSV each, every target, overlaid across families by ``dvc.yaml``'s top-level plots).
The MLflow run gets the overall metrics, per-fold metrics as steps and PNG charts.

Then the procedure that was judged is run once more on every labelled row (the release refit,
``sepflow.training.release``) into ``models/release/<family>/<target>/``, registered as a new
version of ``<family>-<target>`` (alias ``candidate``, tag ``sepflow.procedure: release``) and
tagged with the walk-forward metrics and the evaluation window (``sepflow.wf.<metric>``), which
the promotion gate reads. The development model ``train@FAMILY`` registered keeps no
walk-forward evidence, so it cannot be promoted.

``--family ensemble`` walks the ensemble from its members' ``outputs.parquet``: per fold, its
weights are fitted on the members' outputs on the fold's validation tail, and its release
re-weights the members' releases on their shared validation tail.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import LoggedModelInput

from sepflow.catalog import (
    FEATURES,
    MANIFEST,
    MODELS,
    RELEASES,
    SELECTED_TARGETS,
    SEP_COMMON,
    WALK_FORWARD_REPORTS,
)
from sepflow.config import Params, load_params
from sepflow.errors import SepflowError
from sepflow.evaluation.plots import bar_chart, line_chart
from sepflow.features.dataset import DatasetBuilder
from sepflow.features.spec import feature_signature
from sepflow.features.targets import daily_returns
from sepflow.io import atomic_path, read_json, read_panel, write_json, write_panel
from sepflow.progress import progress
from sepflow.summary import print_summary
from sepflow.tracking.registry import (
    latest_version,
    logged_model_id,
    model_name,
    record_walk_forward,
    register_trained,
)
from sepflow.tracking.runs import stage_run
from sepflow.training.artifacts import load_trained
from sepflow.training.release import release_ensemble, release_fit, write_release
from sepflow.training.train import forward_returns_for
from sepflow.training.walk_forward import (
    OUTPUT_COLUMNS,
    PREDICTION_COLUMNS,
    Evidence,
    WalkForwardResult,
    walk_forward,
    walk_forward_ensemble,
)
from sepflow.validation.calendar import EvaluationWindow, trading_calendar

log = logging.getLogger(__name__)

# The plot tables (reports/walk_forward/<family>/plots/<name>.csv) and their columns.
PLOTS = {
    "equity": ("family", "target", "date", "gross", "net", "benchmark"),
    "rolling_ic": ("family", "target", "date", "rank_ic", "rolling_rank_ic"),
    "folds": ("family", "target", "fold", "rank_ic", "ic", "net_sharpe", "gross_sharpe"),
    "calibration": ("family", "target", "bin", "predicted", "observed", "rows"),
}
# The DVC metrics, per target: the evidence with its error bars (every other metric is in folds.json),
# so `dvc metrics show` / `dvc exp show` stay readable.
DVC_METRICS = ("rank_ic", "rank_ic_se", "rank_ic_tstat", "n_dates", "net_sharpe", "net_sharpe_se", "psr", "dsr",
               "n_periods", "turnover", "max_drawdown")
# Shown in the stage summary, per target.
HEADLINE = ("rank_ic", "rank_ic_tstat", "net_sharpe", "net_sharpe_se", "psr", "dsr", "n_periods", "turnover")


def main(params_path: str = "params.yaml", family: str = "") -> None:
    params = load_params(params_path)
    out = WALK_FORWARD_REPORTS / family
    logged = {"walk_forward": params.walk_forward.model_dump(), "seed": params.seed,
              "evaluation": params.evaluation.model_dump(),
              "train": {k: getattr(params.train, k) for k in ("calibration", "fee_bps", "slippage_bps")}}
    members = params.train.ensemble_members if family == "ensemble" else []
    inputs = [FEATURES, MANIFEST, SELECTED_TARGETS, SEP_COMMON, MODELS / family,
              *(WALK_FORWARD_REPORTS / m / "outputs.parquet" for m in members), *(RELEASES / m for m in members)]
    with stage_run(f"walk_forward@{family}", params=logged, inputs=inputs) as run:
        builder = DatasetBuilder(FEATURES, MANIFEST, expected_signature=feature_signature(params.features))
        window = params.evaluation_window(trading_calendar(builder))
        targets = read_json(SELECTED_TARGETS)["targets"]
        results: dict[str, WalkForwardResult] = {}
        failed: dict[str, str] = {}
        notes: dict[str, Any] = {} if targets else {"why_empty": "rank_targets selected no target"}
        prices = _prices(params) if targets else None
        daily = daily_returns(prices, params.targets) if targets else None  # once for every target
        member_outputs = {m: pd.read_parquet(WALK_FORWARD_REPORTS / m / "outputs.parquet") for m in members}
        for target in progress(targets, desc=f"walk_forward@{family}", unit="target"):
            if params.train.scope != "pooled":  # one walk per ticker would need its own fold design
                failed[target] = f"train.scope {params.train.scope}: walk-forward evaluates pooled models only"
                continue
            if not (MODELS / family / target).is_dir():
                failed[target] = f"train@{family} has no model for it"
                continue
            try:
                results[target] = _walk_target(family, target, builder, params, window, prices, daily,
                                               member_outputs, notes)
            except (SepflowError, ValueError) as exc:  # one target's failure must not sink the others
                failed[target] = f"{type(exc).__name__}: {exc}"
                log.warning("walk_forward@%s: %s failed: %s", family, target, failed[target])
        if failed and not results and params.train.scope == "pooled":
            raise SepflowError(f"walk_forward@{family}: every target failed: {failed}")
        _write_outputs(out, results, window, failed, notes)
        (RELEASES / family).mkdir(parents=True, exist_ok=True)  # a declared output, even with no target
        for name in ("predictions.parquet", "metrics.json", "folds.json"):
            mlflow.log_artifact(str(out / name), artifact_path="walk_forward")
        released = {}
        for target, result in results.items():
            _log_target(target, result)
            released[target] = _register_release(family, target, result, window, run.info.run_id)
    _summarise(family, results, failed, out, window, released)


def _prices(params: Params) -> pd.DataFrame:
    """``ticker, date`` and the target price column of every row: closes for price-space RMSE,
    and the daily returns the book earns."""
    column = params.targets.price_column
    return read_panel(SEP_COMMON, columns=["ticker", "date", column])


def _n_trials(builder: DatasetBuilder, params: Params) -> int:
    """Candidates tried, for the Deflated Sharpe: every family walked × every candidate target ranked."""
    return len(params.train.families) * len(builder.manifest["targets"])


def _walk_target(
    family: str, target: str, builder: DatasetBuilder, params: Params, window: EvaluationWindow,
    prices: pd.DataFrame, daily: pd.DataFrame, member_outputs: dict[str, pd.DataFrame], notes: dict[str, Any],
) -> WalkForwardResult:
    trained = load_trained(MODELS / family / target)
    ds = builder.build(target, trained.features)
    column = params.targets.price_column
    close = pd.Series(prices[column].to_numpy(dtype=float), index=pd.MultiIndex.from_frame(prices[["ticker", "date"]]))
    evidence = Evidence(
        window=window, forward_returns=forward_returns_for(builder, ds),
        daily_returns=daily, execution_lag=params.evaluation.execution_lag_days,
        n_trials=_n_trials(builder, params),
        prices=close.reindex(pd.MultiIndex.from_arrays([ds.tickers, ds.dates])).to_numpy(),
    )
    wf, train = params.walk_forward, params.train
    if family != "ensemble":
        result = walk_forward(trained, ds, evidence, wf, train)
        release = release_fit(trained, ds, evidence, wf, train)
    else:
        result, skipped = walk_forward_ensemble(trained, ds, member_outputs, evidence, wf, train)
        members = {m: RELEASES / m / target for m in trained.model.members}
        release, release_skipped = release_ensemble(trained, ds, members, evidence, wf, train)
        if skipped or release_skipped:
            notes.setdefault("ensemble_members_skipped", {})[target] = {**release_skipped, **skipped}
    write_release(release, trained, _numbers(result.overall), RELEASES / family / target)
    return result


def _write_outputs(
    out: Path, results: dict[str, WalkForwardResult], window: EvaluationWindow, failed: dict[str, str],
    notes: dict[str, Any],
) -> None:
    """Every declared output, also when nothing was walked (then each says why it is empty)."""
    predictions = pd.concat([r.predictions for r in results.values()], ignore_index=True) if results else (
        pd.DataFrame(columns=PREDICTION_COLUMNS).astype(
            {"ticker": str, "date": "datetime64[ns]", "target": str, "fold": "int64"}
            | dict.fromkeys(PREDICTION_COLUMNS[4:], "float64")))
    outputs = pd.concat([r.outputs for r in results.values()], ignore_index=True) if results else (
        pd.DataFrame(columns=OUTPUT_COLUMNS).astype({"date": "datetime64[ns]", "fold": "int64"}))
    write_panel(predictions, out / "predictions.parquet")
    write_panel(outputs, out / "outputs.parquet")
    (out / "plots").mkdir(parents=True, exist_ok=True)
    per_target = [_plot_tables(out.name, target, result) for target, result in results.items()]
    for name, columns in PLOTS.items():  # one table per plot, every target: the top-level plots overlay families
        tables = [tables_of_target[name] for tables_of_target in per_target]
        frame = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=list(columns))
        with atomic_path(out / "plots" / f"{name}.csv") as tmp:
            frame[list(columns)].to_csv(tmp, index=False, float_format="%.8g", date_format="%Y-%m-%d")
    # Numbers only (no run id): DVC diffs it, and a fresh clone reproduces it byte for byte.
    write_json({t: {k: v for k, v in _numbers(r.overall).items() if k in DVC_METRICS} for t, r in results.items()},
               out / "metrics.json")
    write_json({"date_rule": window.as_dict(), "overall": {t: _numbers(r.overall) for t, r in results.items()},
                "folds": {t: _fold_records(r) for t, r in results.items()}, "failed": failed, **notes},
               out / "folds.json")


def _plot_tables(family: str, target: str, result: WalkForwardResult) -> dict[str, pd.DataFrame]:
    tables = {"equity": result.equity, "rolling_ic": result.rolling_ic.dropna(), "folds": result.folds,
              "calibration": result.calibration}
    return {name: frame.assign(family=family, target=target) for name, frame in tables.items()}


def _numbers(metrics: dict[str, float]) -> dict[str, float]:
    """Finite numbers only: a metrics file DVC can diff (an undefined metric is left out)."""
    return {key: float(value) for key, value in metrics.items() if np.isfinite(value)}


def _fold_records(result: WalkForwardResult) -> dict[str, dict[str, Any]]:
    return {f"fold_{row['fold']}": {key: _plain(value) for key, value in row.items() if key != "fold"}
            for row in result.folds.to_dict(orient="records")}


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
    mlflow.log_metrics({f"{target}.{k}": v for k, v in _numbers(result.overall).items()})
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


def _register_release(
    family: str, target: str, result: WalkForwardResult, window: EvaluationWindow, parent: str,
) -> int:
    """Register the release (from a nested run) as the new ``candidate``, with the walk-forward
    evidence that judged its procedure and the development version it was walked from; return
    its version."""
    name = model_name(family, target)
    development = latest_version(name, "development")
    if development is not None and (evaluated := logged_model_id(name, development)):
        mlflow.log_input(model=LoggedModelInput(evaluated))  # the walk-forward run evaluated this model's procedure
    tags = {"sepflow.family": family, "sepflow.target": target, "sepflow.parent_stage": f"walk_forward@{family}"}
    with mlflow.start_run(run_name=f"{family}/{target} release", nested=True, parent_run_id=parent, tags=tags) as child:
        version = register_trained(RELEASES / family / target, name, child.info.run_id,
                                   tags={"sepflow.development_version": str(development)})
    # The model's wf.* metrics go through the nested run: the stage run keeps its <target>.<metric> names.
    record_walk_forward(name, version, _numbers(result.overall),
                        {"eval_start": window.start.date().isoformat(), "eval_end": window.end.date().isoformat()},
                        parent, log_from=child.info.run_id)
    return version


def _summarise(
    family: str, results: dict[str, WalkForwardResult], failed: dict[str, str], out: Path, window: EvaluationWindow,
    released: dict[str, int],
) -> None:
    table = [{"target": t, **{k: r.overall.get(k) for k in HEADLINE},
              "release": f"{model_name(family, t)} v{released[t]} @candidate"} for t, r in results.items()]
    print_summary(f"walk_forward@{family}", table, notes={
        "targets": len(results) or "none walked forward", "date rule": window.describe(),
        **({"failed": failed} if failed else {}),
        "outputs": [f"{out}/ (predictions.parquet, outputs.parquet, metrics.json, folds.json, plots/)",
                    f"{RELEASES / family}/"]})
