"""train_per_symbol: one model per ticker (``train.scope: per_symbol``), trained in parallel.

Each ticker's rows form their own dataset and go through ``train_family`` unchanged, so every
leakage rule holds per ticker (its own chronological segments, purge and embargo; tuning on
its own training rows; calibrator and threshold on its own validation rows). The folder
layout is described in ``sepflow.training.routing``, which also loads it back.

- Determinism: a ticker's seed comes from the base seed and the ticker's name
  (``ticker_seed``), never from a worker or the order of completion; results come back in
  ticker order, so ``max_workers`` changes how long it takes, never a byte of the output.
- Failures: a ticker whose training raises ``SepflowError`` or ``ValueError`` (too few rows
  for three segments, one class only, ...) is logged and skipped with its reason; if every
  ticker fails, ``SepflowError``. Other exceptions are bugs and stop the run.
- Tuning: each ticker has its own resumable study ``<family>-<target>-<ticker>``.
- Ensemble: each ticker's ensemble weighs the members' models of that same ticker
  (``models/<member>/<target>/per_symbol/<ticker>``), fitted on that ticker's validation rows.
- Summary: the routed model's ``metrics`` are the equal-weight means over trained tickers of
  each ticker's segment metrics. Cross-sectional metrics (IC, rank IC) need several names on a
  date, so they are undefined for one ticker and stay undefined in the summary (the
  headline of a per-symbol regression target, rank IC, is then None).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from joblib import delayed

from sepflow.errors import SepflowError
from sepflow.features.dataset import Dataset
from sepflow.io import json_ready, write_json
from sepflow.models import TaskKind
from sepflow.models.base import _atomic_folder
from sepflow.progress import parallel_map, quiet
from sepflow.training.params import TrainParams
from sepflow.training.routing import (
    INDEX_FILE,
    PER_SYMBOL_DIR,
    TABLE_FILE,
    ticker_folder,
)
from sepflow.training.segments import SEGMENTS
from sepflow.training.train import (
    HEADLINE,
    _aligned,
    _check_asof,
    _features,
    _task,
    artifact_name,
    train_family,
)

__all__ = [
    "PerSymbolResult",
    "metrics_table",
    "summary_metrics",
    "take_rows",
    "ticker_datasets",
    "ticker_seed",
    "train_per_symbol",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PerSymbolResult:
    """What ``train_per_symbol`` wrote under ``out_dir/per_symbol``: the manifest, summary and table."""

    family: str
    target: str
    task: TaskKind
    artifact_name: str
    out_dir: Path
    metrics: dict[str, Any]
    metadata: dict[str, Any]
    table: pd.DataFrame
    skipped: dict[str, str]


def ticker_seed(seed: int, ticker: str) -> int:
    """The seed of ``ticker``'s model, derived from the base ``seed`` and the ticker's name only."""
    entropy = [int(seed) % 2**64, zlib.crc32(ticker.encode("utf-8"))]
    # Below 2**31: LightGBM takes its seed as a C int.
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] >> 1)


def take_rows(ds: Dataset, rows: np.ndarray) -> Dataset:
    """Rows ``rows`` (positions, in order) of ``ds`` as a dataset of their own, with its coverage recounted."""
    def pick(values: Any) -> Any:
        return values.iloc[rows].reset_index(drop=True)

    dates, tickers = pick(ds.dates), pick(ds.tickers)
    meta = {**ds.meta, "n_rows": len(rows), "n_tickers": int(tickers.nunique()),
            "date_min": dates.min().date().isoformat() if len(rows) else None,
            "date_max": dates.max().date().isoformat() if len(rows) else None}
    return replace(ds, X=pick(ds.X), y=pick(ds.y), dates=dates, tickers=tickers, label_end=pick(ds.label_end),
                   meta=meta)


def ticker_datasets(ds: Dataset) -> dict[str, tuple[Dataset, np.ndarray]]:
    """Each ticker's own dataset (``meta["ticker"]`` names it) and its row positions in ``ds``, by ticker."""
    out: dict[str, tuple[Dataset, np.ndarray]] = {}
    for ticker, rows in sorted(ds.tickers.groupby(ds.tickers, sort=True).indices.items()):
        rows = np.sort(rows)
        one = take_rows(ds, rows)
        out[str(ticker)] = (replace(one, meta={**one.meta, "ticker": str(ticker)}), rows)
    return out


def train_per_symbol(
    family: str,
    target: str,
    ds: Dataset,
    selected_features: list[str],
    params: TrainParams,
    seed: int,
    *,
    asof: str,
    out_dir: Path,
    optuna_storage: str | None,
    forward_returns: Any = None,
) -> PerSymbolResult:
    """Train ``family`` once per ticker of ``ds`` into ``out_dir/per_symbol/<ticker>/`` (arguments as
    ``train_family``), ``params.max_workers`` tickers at a time, and write the routing manifest and
    the per-ticker metrics table beside them. The whole ``out_dir`` is replaced in one swap."""
    out_dir = Path(out_dir)
    # Checked once here: a bad request is one error, not the same reason for every ticker.
    task = _task(ds, target)
    _features(ds, selected_features)
    _check_asof(asof)
    returns = None if forward_returns is None else _aligned(forward_returns, len(ds.y))
    if optuna_storage is not None:
        # Create the study tables once here: workers creating them at the same time would race.
        optuna.storages.RDBStorage(optuna_storage)
    models_root = out_dir.parent.parent
    jobs, skipped = [], {}
    for ticker, (ticker_ds, rows) in ticker_datasets(ds).items():
        try:
            folder = ticker_folder(ticker)
        except SepflowError as exc:
            skipped[ticker] = f"{type(exc).__name__}: {exc}"
            continue
        member_dirs = (
            {f: models_root / f / target / PER_SYMBOL_DIR / folder for f in params.families if f != "ensemble"}
            if family == "ensemble" else None
        )
        jobs.append((ticker, folder, ticker_ds, None if returns is None else returns[rows], member_dirs))

    with _atomic_folder(out_dir) as staging:
        root = staging / PER_SYMBOL_DIR
        records = parallel_map([
            delayed(_train_ticker)(
                family, target, ticker_ds, selected_features, params, ticker_seed(seed, ticker), asof=asof,
                out_dir=root / folder, optuna_storage=optuna_storage, forward_returns=ticker_returns,
                study_name=f"{family}-{target}-{ticker}", member_dirs=member_dirs,
            )
            for ticker, folder, ticker_ds, ticker_returns, member_dirs in jobs
        ], n_jobs=min(params.max_workers, max(len(jobs), 1)), backend="loky", desc=f"{family} {target}", unit="ticker")
        trained: dict[str, dict[str, Any]] = {}
        for (ticker, folder, *_), record in zip(jobs, records, strict=True):
            if isinstance(record, str):
                skipped[ticker] = record
            else:
                trained[ticker] = {"folder": folder, **record}
        skipped = dict(sorted(skipped.items()))
        for ticker, reason in skipped.items():
            log.warning("training: %s per-symbol %s skips %s: %s", family, target, ticker, reason)
        if not trained:
            raise SepflowError(
                f"training: every ticker of {family} per-symbol {target} failed ({len(skipped)}); "
                f"the first: {dict(list(skipped.items())[:3])}"
            )
        metrics = summary_metrics(task, [r["metrics"] for r in trained.values()])
        index = _index(family, target, task, asof, seed, selected_features, ds, params, trained, skipped, metrics)
        table = metrics_table(trained, skipped)
        write_json(index, root / INDEX_FILE)
        table.to_csv(root / TABLE_FILE, index=False)
    return PerSymbolResult(
        family=family, target=target, task=task, artifact_name=index["artifact_name"], out_dir=out_dir,
        metrics=metrics, metadata=index, table=table, skipped=skipped,
    )


def _train_ticker(*args: Any, **kwargs: Any) -> dict[str, Any] | str:
    """One ticker's ``train_family`` in a worker: its JSON records, or why it was skipped.

    Only the JSON records travel back: the model stays on disk (a Keras model need not pickle).
    """
    try:
        with quiet():  # workers' bars would garble the parent's bar over tickers
            result = train_family(*args, **kwargs)
    except (SepflowError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return {"seed": result.metadata["seed"], "rows_used": result.metadata["data"]["rows_used"],
            "metrics": result.metrics, "libraries": result.metadata["libraries"]}


def _mean(values: list[Any]) -> float | None:
    known = [float(v) for v in values if v is not None]
    return float(np.mean(known)) if known else None


def summary_metrics(task: TaskKind, per_ticker: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Equal-weight means over tickers of each segment metric and of the overfit margin (None where
    no ticker defines it), in the shape of a pooled ``metrics.json``."""
    summary: dict[str, Any] = {}
    for segment in SEGMENTS:
        names = dict.fromkeys(name for metrics in per_ticker for name in metrics[segment])
        summary[segment] = {name: _mean([m[segment].get(name) for m in per_ticker]) for name in names}
    summary["headline"] = HEADLINE[task]
    summary["overfit_margin"] = _mean([m["overfit_margin"] for m in per_ticker])
    summary["n_tickers"] = len(per_ticker)
    summary["aggregate"] = "equal-weight mean over tickers"
    return summary


def metrics_table(trained: Mapping[str, Mapping[str, Any]], skipped: Mapping[str, str]) -> pd.DataFrame:
    """One row per ticker, in ticker order: status, reason, seed, rows used, ``<segment>.<metric>`` and the margin."""
    rows = []
    for ticker in sorted({*trained, *skipped}):
        if ticker in skipped:
            rows.append({"ticker": ticker, "status": "skipped", "reason": skipped[ticker]})
            continue
        record = trained[ticker]
        metrics = record["metrics"]
        rows.append({
            "ticker": ticker, "status": "trained", "reason": None, "seed": record["seed"],
            "rows_used": record["rows_used"],
            **{f"{segment}.{name}": value for segment in SEGMENTS for name, value in metrics[segment].items()},
            "overfit_margin": metrics["overfit_margin"],
        })
    # Skipped rows leave seed and rows_used empty; nullable ints keep the others from turning into floats.
    return pd.DataFrame(rows).astype({"seed": "Int64", "rows_used": "Int64"})


def _index(
    family: str, target: str, task: TaskKind, asof: str, seed: int, features: list[str], ds: Dataset,
    params: TrainParams, trained: Mapping[str, Mapping[str, Any]], skipped: Mapping[str, str],
    metrics: Mapping[str, Any],
) -> dict[str, Any]:
    """The routing manifest: what ``load_routed`` needs, and what the registry tags a version with."""
    libraries: dict[str, str] = {}
    for record in trained.values():
        libraries.update(record["libraries"])
    return json_ready({
        "scope": "per_symbol", "artifact_name": artifact_name(target, task, asof), "family": family,
        "target": target, "task": task, "asof": asof, "seed": seed, "features": list(features),
        "feature_signature": ds.meta["feature_signature"],
        "tickers": {t: {"folder": r["folder"], "seed": r["seed"], "rows_used": r["rows_used"]}
                    for t, r in trained.items()},
        "skipped": dict(skipped), "metrics": metrics, "libraries": libraries,
        "train_params": params.model_dump(mode="json", exclude={"max_workers"}),
    })
