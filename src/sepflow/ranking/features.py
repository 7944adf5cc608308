"""select_features: the features several model families agree on, per selected target.

For each target, every family is cross-validated with :class:`PurgedKFold`; on each fold it
yields up to three importance vectors:

* ``native``: gain (boosters) or impurity decrease (random forest), from the training rows;
* ``permutation``: drop in the held-out score when a feature is shuffled (held-out rows only);
* ``shap``: mean |SHAP value| on held-out rows: exact TreeSHAP, the boosters' own
  (``pred_contribs``) and the ``shap`` library's TreeExplainer for the random forest.

Each vector is turned into a normalised rank in (0, 1] (1 = most important; ranks make gain,
score drops and SHAP magnitudes comparable). A family's view of a feature is the mean of its
normalised ranks over methods and folds. The **consensus score** is the mean of the families'
views; a family **supports** a feature that is in its own top ``top_m``. Features supported by
at least ``require_min_models`` families are eligible; the top ``top_m`` eligible by consensus
are selected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from joblib import delayed
from scipy.stats import spearmanr
from sklearn.inspection import permutation_importance
from sklearn.metrics import make_scorer
from threadpoolctl import threadpool_limits

from sepflow.errors import SepflowError
from sepflow.features.dataset import DatasetBuilder
from sepflow.models.base import make_model
from sepflow.progress import parallel_map
from sepflow.ranking.params import SelectionParams
from sepflow.ranking.targets import QUICK_MODELS, panel_frame, sample_rows
from sepflow.validation.calendar import EvaluationWindow, development_rows
from sepflow.validation.splits import PurgedKFold

log = logging.getLogger(__name__)


def _rank_ic(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(spearmanr(y_true, y_pred).statistic)


SCORING = {"classification": "roc_auc", "multiclass": "balanced_accuracy", "regression": make_scorer(_rank_ic)}


def normalised_rank(values: pd.Series) -> pd.Series:
    """Rank in (0, 1], 1 for the largest value; ties share their average rank."""
    return values.rank(method="average") / len(values)


@dataclass
class FamilyImportance:
    """Normalised-rank importances of one family, per method (columns), or why it failed."""

    family: str
    by_method: pd.DataFrame = field(default_factory=pd.DataFrame)
    error: str | None = None


def family_importance(
    family: str, kind: str, X: pd.DataFrame, y: pd.Series, groups: pd.DataFrame, cv: PurgedKFold,
    params: SelectionParams, seed: int,
) -> FamilyImportance:
    """Importances of one family over the CV folds; a failure is reported, not raised."""
    result = FamilyImportance(family)
    rng = np.random.default_rng(seed)
    try:
        # One BLAS/OpenMP thread, as in a joblib worker: n_jobs never changes an importance.
        with threadpool_limits(limits=1):
            per_method: dict[str, list[pd.Series]] = {}
            for train, test in cv.split(X, y, groups):
                model = make_model(family, kind, random_state=seed, n_jobs=1, **QUICK_MODELS.get(family, {}))
                model.fit(X.iloc[train], y.iloc[train])
                held = np.sort(rng.choice(test, size=min(len(test), params.permutation_rows), replace=False))
                X_held, y_held = X.iloc[held], y.iloc[held]
                vectors = {"native": np.asarray(model.feature_importances_, dtype=float)}
                permuted = permutation_importance(
                    model, X_held, y_held, scoring=SCORING[kind], n_repeats=params.permutation_repeats,
                    random_state=seed, n_jobs=1,
                )
                vectors["permutation"] = permuted.importances_mean
                if (contributions := getattr(model, "contributions", None)) is not None:
                    vectors["shap"] = np.abs(contributions(X_held)).mean(axis=(0, 1))  # over rows and outputs
                for method, values in vectors.items():
                    per_method.setdefault(method, []).append(normalised_rank(pd.Series(values, index=X.columns)))
            result.by_method = pd.DataFrame({m: pd.concat(v, axis=1).mean(axis=1) for m, v in per_method.items()})
    except (SepflowError, ValueError, RuntimeError, MemoryError) as exc:  # isolate one family's failure
        result.error = f"{type(exc).__name__}: {exc}"
        log.warning("select_features: %s failed: %s", family, result.error)
    return result


@dataclass(frozen=True)
class FeatureSelection:
    """One target's selection with the evidence behind it."""

    target: str
    selected: list[str]
    table: pd.DataFrame  # one row per feature: per family/method ranks, consensus, support, selected
    agreement: pd.DataFrame  # Spearman correlation between the families' views
    errors: dict[str, str]
    manual: bool = False


def consensus(results: list[FamilyImportance], features: list[str], params: SelectionParams) -> pd.DataFrame:
    """Combine the families' normalised ranks into consensus, support and the selection."""
    ok = [r for r in results if r.error is None]
    table = pd.DataFrame(index=pd.Index(features, name="feature"))
    views = pd.DataFrame(index=table.index)
    for result in ok:
        for method in result.by_method.columns:
            table[f"{result.family}_{method}"] = result.by_method[method]
        views[result.family] = result.by_method.mean(axis=1)
    table["consensus"] = views.mean(axis=1)
    top = views.rank(ascending=False, method="first") <= params.top_m
    table["support"] = top.sum(axis=1)
    eligible = table["support"] >= min(params.require_min_models, len(ok))
    order = table.loc[eligible].sort_values(["consensus", "support"], ascending=False, kind="stable")
    table["selected"] = table.index.isin(order.index[: params.top_m])
    table["rank"] = table["consensus"].rank(ascending=False, method="first").astype(int)
    return table.sort_values("rank")


def select_features(
    builder: DatasetBuilder, targets: list[str], params: SelectionParams, seed: int, *, window: EvaluationWindow,
) -> list[FeatureSelection]:
    """Select features for each target on the development region of ``window``; a target whose
    every family fails is reported and skipped."""
    names = list(builder.manifest["feature_names"])
    out: list[FeatureSelection] = []
    jobs: list[tuple[str, tuple]] = []
    for target in targets:
        if target in params.manual:
            unknown = [f for f in params.manual[target] if f not in names]
            if unknown:
                raise SepflowError(f"selection.manual[{target}] names unknown features {unknown}")
            table = pd.DataFrame({"feature": params.manual[target], "selected": True}).set_index("feature")
            out.append(FeatureSelection(target, list(params.manual[target]), table, pd.DataFrame(), {}, manual=True))
            continue
        spec = builder.manifest["targets"][target]
        ds = development_rows(builder.build(target), window)
        X, y, groups = panel_frame(ds, sample_rows(ds.tickers, params.max_samples_per_symbol))
        cv = PurgedKFold(params.n_splits, embargo_days=max(params.embargo_days, int(spec["horizon"])))
        jobs += [(target, (family, spec["kind"], X, y, groups, cv, params, seed)) for family in params.families]
    results = parallel_map([delayed(family_importance)(*args) for _, args in jobs], n_jobs=params.n_jobs,
                           desc="select_features", unit="fit")

    by_target: dict[str, list[FamilyImportance]] = {}
    for (target, _), result in zip(jobs, results, strict=True):
        by_target.setdefault(target, []).append(result)
    for target, family_results in by_target.items():
        errors = {r.family: r.error for r in family_results if r.error}
        if len(errors) == len(family_results):
            log.warning("select_features: every family failed on %s; skipped", target)
            continue
        table = consensus(family_results, names, params)
        views = pd.DataFrame({r.family: r.by_method.mean(axis=1) for r in family_results if r.error is None})
        agreement = views.corr(method="spearman")
        out.append(FeatureSelection(target, table.index[table["selected"]].tolist(), table, agreement, errors))
    if not out:
        raise SepflowError("select_features: no target could be processed; see the warnings above")
    return sorted(out, key=lambda s: targets.index(s.target))
