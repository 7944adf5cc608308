"""rank_targets: how predictable is each candidate target, judged by several model families?

For every candidate target and family, a quick model is cross-validated with
:class:`~sepflow.validation.splits.PurgedKFold` (embargo at least the label horizon) on a
sample capped per ticker. Each fold is scored on its held-out dates:

* classification (``dir_*``, ``label3_*``): ROC-AUC computed within each date and averaged;
  the family's **edge** is that AUC − 0.5; balanced accuracy is reported beside it. For the
  ordinal ``label3`` the AUC is BULLISH against BEARISH rows, scored by the expected class;
* regression (``return_*``): the mean per-date rank IC; that is the edge.

Both are cross-sectional on purpose: a model that only times the market (every name up on
the same dates) shows no edge, which is what a stock-selection target should measure. The
**composite predictability score** of a target is the mean edge over the families that
succeeded (0 for a target nothing can predict, growing with skill on comparable scales). Targets are ranked by it; the top ``top_n`` at or above
``min_predictability_score`` are selected.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from joblib import delayed
from sklearn.metrics import balanced_accuracy_score
from threadpoolctl import threadpool_limits

from sepflow.errors import SepflowError
from sepflow.evaluation.metrics import information_coefficients, mean_daily_auc
from sepflow.features.dataset import Dataset, DatasetBuilder
from sepflow.features.targets import LABEL3_CLASSES
from sepflow.models.base import make_model
from sepflow.progress import parallel_map
from sepflow.ranking.params import RankingParams
from sepflow.validation.calendar import EvaluationWindow, development_rows
from sepflow.validation.splits import PurgedKFold

log = logging.getLogger(__name__)

QUICK_MODELS: dict[str, dict[str, object]] = {
    # Small, fast configurations: ranking asks "is there signal?", not "how good can it get?".
    "lightgbm": {"n_estimators": 150, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 50},
    "xgboost": {"n_estimators": 150, "learning_rate": 0.05, "max_depth": 4, "min_child_weight": 20},
    "random_forest": {"n_estimators": 50, "max_depth": 6, "min_samples_leaf": 50},
    "mlp": {"hidden_layer_sizes": [32], "max_iter": 40},
}


@dataclass
class FamilyResult:
    """One family's cross-validated scores on one target (or why it failed)."""

    family: str
    scores: dict[str, float] = field(default_factory=dict)
    importances: pd.Series | None = None
    error: str | None = None


def sample_rows(tickers: pd.Series, max_per_ticker: int) -> np.ndarray:
    """Row positions keeping at most ``max_per_ticker`` rows per ticker, evenly spread over its history.

    Even spacing (not a random draw) keeps every period represented and needs no seed.
    """
    codes = pd.factorize(tickers)[0]
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    rank = np.arange(len(codes)) - np.repeat(starts, counts)  # position within its ticker, sorted order
    bucket = rank * max_per_ticker // np.repeat(counts, counts)  # k equal buckets; first row of each kept
    keep = np.r_[True, bucket[1:] != bucket[:-1]] | (rank == 0)
    return np.sort(order[keep])


def panel_frame(ds: Dataset, rows: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """X indexed by (ticker, date), y aligned, and the split groups (date, label_end)."""
    rows = np.arange(len(ds.y)) if rows is None else rows
    index = pd.MultiIndex.from_arrays(
        [ds.tickers.to_numpy()[rows], ds.dates.to_numpy()[rows]], names=["ticker", "date"]
    )
    X = ds.X.iloc[rows].set_axis(index)
    y = ds.y.iloc[rows].set_axis(index)
    groups = pd.DataFrame({"date": ds.dates.to_numpy()[rows], "label_end": ds.label_end.to_numpy()[rows]})
    return X, y, groups


def fold_edge(kind: str, y_true: pd.Series, model: object, X_test: pd.DataFrame) -> dict[str, float]:
    """Scores of one held-out fold, all cross-sectional (per date, then averaged); see the module docstring."""
    dates = X_test.index.get_level_values("date")
    if kind == "regression":
        rank_ic = information_coefficients(dates, y_true.to_numpy(), model.predict(X_test))["rank_ic"]
        return {"rank_ic": rank_ic, "edge": rank_ic}
    proba = model.predict_proba(X_test)
    classes = np.asarray(model.classes_, dtype=object)
    y_values = y_true.to_numpy()
    if kind == "classification":
        auc = mean_daily_auc(dates, y_values == classes[1], proba[:, 1])
    else:
        # Ordinal classes (BEARISH < NEUTRAL < BULLISH): score = expected class; skill = ordering
        # the up-movers above the down-movers. NEUTRAL-vs-rest is left out on purpose: it is a
        # volatility forecast, and volatility clusters even in a market with nothing to trade.
        order = np.array([LABEL3_CLASSES.index(c) for c in classes], dtype=float)
        expected = proba @ order
        extreme = np.isin(y_values, [LABEL3_CLASSES[0], LABEL3_CLASSES[-1]])
        auc = mean_daily_auc(dates[extreme], y_values[extreme] == LABEL3_CLASSES[-1], expected[extreme])
    predicted = classes[np.argmax(proba, axis=1)]
    balanced = balanced_accuracy_score(y_values.astype(str), predicted.astype(str))
    return {"daily_auc": auc, "balanced_accuracy": balanced, "edge": auc - 0.5}


def evaluate_family(
    family: str, kind: str, X: pd.DataFrame, y: pd.Series, groups: pd.DataFrame, cv: PurgedKFold, seed: int
) -> FamilyResult:
    """Cross-validate one quick model; failures are caught and reported, not raised."""
    result = FamilyResult(family)
    try:
        # One BLAS/OpenMP thread, as in a joblib worker: the MLP's sums would otherwise differ in
        # the last bits between n_jobs 1 (in-process, every core) and 2.
        with threadpool_limits(limits=1):
            folds, importances = [], []
            for train, test in cv.split(X, y, groups):
                model = make_model(family, kind, random_state=seed, n_jobs=1, **QUICK_MODELS.get(family, {}))
                model.fit(X.iloc[train], y.iloc[train])
                folds.append(fold_edge(kind, y.iloc[test], model, X.iloc[test]))
                if hasattr(model, "feature_importances_"):
                    importances.append(np.asarray(model.feature_importances_, dtype=float))
            scores = pd.DataFrame(folds)
            result.scores = {**scores.mean().to_dict(), "edge_std": float(scores["edge"].std(ddof=0))}
            if importances:
                mean = np.mean(importances, axis=0)
                result.importances = pd.Series(mean / mean.sum() if mean.sum() > 0 else mean, index=X.columns)
    except (SepflowError, ValueError, RuntimeError, MemoryError) as exc:  # isolate one family's failure
        result.error = f"{type(exc).__name__}: {exc}"
        log.warning("rank_targets: %s failed: %s", family, result.error)
    return result


@dataclass(frozen=True)
class TargetRanking:
    """The ranking table, the importances seen along the way, and the selection."""

    table: pd.DataFrame
    importances: pd.DataFrame
    selected: list[str]
    manual: bool

    @property
    def nothing_predictable(self) -> bool:
        return not self.manual and not self.selected


def rank_targets(builder: DatasetBuilder, params: RankingParams, seed: int, *, window: EvaluationWindow) -> TargetRanking:
    """Evaluate every candidate target with every family and rank them (see module docstring), on
    the development region of ``window`` only."""
    manifest_targets = builder.manifest["targets"]
    if params.targets is not None:
        unknown = sorted(set(params.targets) - set(manifest_targets))
        if unknown:
            raise SepflowError(f"ranking.targets names unknown targets {unknown}; known: {sorted(manifest_targets)}")
        table = pd.DataFrame({"target": params.targets, "selected": True, "reason": "manual list (ranking skipped)"})
        return TargetRanking(table, pd.DataFrame(), list(params.targets), manual=True)

    jobs, meta = [], {}
    for target, spec in manifest_targets.items():
        try:
            ds = development_rows(builder.build(target), window)
        except SepflowError as exc:  # one unusable target is reported, the others still ranked
            log.warning("rank_targets: target %s skipped: %s", target, exc)
            meta[target] = {"kind": spec["kind"], "horizon": spec["horizon"], "n_rows": 0, "error": str(exc)}
            continue
        X, y, groups = panel_frame(ds, sample_rows(ds.tickers, params.max_samples_per_symbol))
        cv = PurgedKFold(params.n_splits, embargo_days=max(params.embargo_days, int(spec["horizon"])))
        meta[target] = {"kind": spec["kind"], "horizon": spec["horizon"], "n_rows": len(y)}
        jobs += [(target, family, (family, spec["kind"], X, y, groups, cv, seed)) for family in params.families]
    results = parallel_map([delayed(evaluate_family)(*args) for _, _, args in jobs], n_jobs=params.n_jobs,
                           desc="rank_targets", unit="fit")
    return _rank(jobs, results, meta, params)


def _rank(
    jobs: Sequence[tuple[str, str, tuple]], results: Sequence[FamilyResult], meta: dict[str, dict], params: RankingParams
) -> TargetRanking:
    rows: dict[str, dict[str, object]] = {t: {"target": t, **m} for t, m in meta.items()}
    edges: dict[str, list[float]] = {t: [] for t in meta}
    importances = []
    for (target, family, _), result in zip(jobs, results, strict=True):
        row = rows[target]
        if result.error:
            row[f"{family}_error"] = result.error
            continue
        for name, value in result.scores.items():
            row[f"{family}_{name}"] = value
        if np.isfinite(result.scores.get("edge", np.nan)):
            edges[target].append(result.scores["edge"])
        if result.importances is not None:
            importances.append(pd.DataFrame({"target": target, "family": family, "feature": result.importances.index,
                                             "importance": result.importances.to_numpy()}))
    table = pd.DataFrame(list(rows.values()))
    table["families_ok"] = [len(edges[t]) for t in table["target"]]
    table["composite"] = [float(np.mean(edges[t])) if edges[t] else np.nan for t in table["target"]]
    table["consistency"] = [float(np.mean(np.asarray(edges[t]) > 0)) if edges[t] else np.nan for t in table["target"]]
    table = table.sort_values(["composite", "target"], ascending=[False, True], na_position="last")
    table["rank"] = np.arange(1, len(table) + 1)
    reasons = []
    for rank, score in zip(table["rank"], table["composite"], strict=True):
        if not np.isfinite(score):
            reasons.append("every family failed")
        elif score < params.min_predictability_score:
            reasons.append(f"composite {score:.4f} below min_predictability_score {params.min_predictability_score}")
        elif rank > params.top_n:
            reasons.append(f"outside top_n {params.top_n}")
        else:
            reasons.append("selected")
    table["reason"] = reasons
    table["selected"] = table["reason"] == "selected"
    if table["families_ok"].sum() == 0:
        raise SepflowError("rank_targets: every family failed on every target; see the warnings above")
    selected = table.loc[table["selected"], "target"].tolist()
    imp = pd.concat(importances, ignore_index=True) if importances else pd.DataFrame(
        columns=["target", "family", "feature", "importance"])
    return TargetRanking(table.reset_index(drop=True), imp, selected, manual=False)
