"""Stage `rank_targets`: which targets can the model families predict? → selected_targets.json."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import mlflow

from sepflow.catalog import FEATURES, IMPORTANCES, MANIFEST, RANK_REPORT, RANKINGS, SELECTED_TARGETS
from sepflow.config import load_params
from sepflow.evaluation.plots import bar_chart
from sepflow.features.dataset import DatasetBuilder
from sepflow.features.spec import feature_signature
from sepflow.io import atomic_path, write_json
from sepflow.ranking.targets import TargetRanking, rank_targets
from sepflow.summary import print_summary
from sepflow.tracking.runs import stage_run, write_report
from sepflow.validation.calendar import EvaluationWindow, trading_calendar


log = logging.getLogger(__name__)


def main(params_path: str = "params.yaml") -> None:
    params = load_params(params_path)
    logged = {"ranking": params.ranking.model_dump(), "seed": params.seed}
    with stage_run("rank_targets", params=logged, inputs=[FEATURES, MANIFEST]):
        builder = DatasetBuilder(FEATURES, MANIFEST, expected_signature=feature_signature(params.features))
        window = params.evaluation_window(trading_calendar(builder))
        ranking = rank_targets(builder, params.ranking, params.seed, window=window)
        with atomic_path(RANKINGS) as tmp:
            ranking.table.to_csv(tmp, index=False, float_format="%.6g")
        with atomic_path(IMPORTANCES) as tmp:
            ranking.importances.to_csv(tmp, index=False, float_format="%.6g")
        write_json({"targets": ranking.selected, "manual": ranking.manual, "date_rule": window.as_dict()},
                   SELECTED_TARGETS)
        # Numbers only (DVC metrics); whether the targets were named by hand is in selected_targets.json.
        best = {"best_composite": float(ranking.table["composite"].max())} if "composite" in ranking.table else {}
        write_report({"candidates": len(ranking.table), "selected": len(ranking.selected), **best}, RANK_REPORT)
        for path in (RANKINGS, IMPORTANCES, SELECTED_TARGETS):
            mlflow.log_artifact(str(path))
        if not ranking.manual:
            scores = ranking.table.set_index("target")["composite"].dropna()
            mlflow.log_metrics({f"composite.{t}": float(v) for t, v in scores.items()})
            mlflow.log_metric("targets_selected", len(ranking.selected))
            with tempfile.TemporaryDirectory() as tmp:
                chart = bar_chart(scores, Path(tmp) / "target_scores.png",
                                  title="Target predictability (composite edge)", xlabel="mean edge over families")
                mlflow.log_artifact(str(chart))
    _summarise(ranking, window)


def _summarise(ranking: TargetRanking, window: EvaluationWindow) -> None:
    outputs = {"date rule": window.describe(), "outputs": [SELECTED_TARGETS, f"{RANKINGS.parent}/"]}
    if ranking.manual:
        print_summary("rank_targets", {"ranking": "skipped (manual target list)", "selected": ranking.selected,
                                       **outputs})
        return
    if ranking.nothing_predictable:
        log.warning("rank_targets: no target looks predictable (every composite score is below "
                    "ranking.min_predictability_score); downstream stages have nothing to train")
    columns = ["rank", "target", "composite", "consistency", "families_ok", "selected"]
    print_summary("rank_targets", ranking.table[columns].to_dict(orient="records"),
                  notes={"selected": ranking.selected or "none: no target looks predictable", **outputs})
