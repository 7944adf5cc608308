"""Stage `select_features`: multi-model importance consensus per selected target → selected_features.json."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow

from sepflow.catalog import FEATURES, MANIFEST, SELECT_REPORT, SELECTED_FEATURES, SELECTED_TARGETS, SELECTION_REPORTS
from sepflow.config import load_params
from sepflow.evaluation.plots import bar_chart
from sepflow.features.dataset import DatasetBuilder
from sepflow.features.spec import feature_signature
from sepflow.io import atomic_path, read_json, write_json
from sepflow.ranking.features import select_features
from sepflow.summary import print_summary
from sepflow.tracking.runs import stage_run, write_report
from sepflow.validation.calendar import trading_calendar


def main(params_path: str = "params.yaml") -> None:
    params = load_params(params_path)
    logged = {"selection": params.selection.model_dump(), "seed": params.seed}
    with stage_run("select_features", params=logged, inputs=[FEATURES, MANIFEST, SELECTED_TARGETS]):
        targets = read_json(SELECTED_TARGETS)["targets"]
        builder = DatasetBuilder(FEATURES, MANIFEST, expected_signature=feature_signature(params.features))
        window = params.evaluation_window(trading_calendar(builder))
        selections = select_features(builder, targets, params.selection, params.seed, window=window) if targets else []
        SELECTION_REPORTS.mkdir(parents=True, exist_ok=True)  # a declared output, even when nothing was selected
        for selection in selections:
            folder = SELECTION_REPORTS / selection.target
            with atomic_path(folder / "selected_features.txt") as tmp:
                tmp.write_text("".join(f"{name}\n" for name in selection.selected))
            with atomic_path(folder / "feature_importance_multi_model.csv") as tmp:
                selection.table.to_csv(tmp, float_format="%.6g")
            with atomic_path(folder / "model_agreement_matrix.csv") as tmp:
                selection.agreement.to_csv(tmp, float_format="%.6g")
            mlflow.log_artifacts(str(folder), artifact_path=f"selection/{selection.target}")
            if not selection.manual:
                with tempfile.TemporaryDirectory() as tmp:
                    top = selection.table["consensus"].head(params.selection.top_m)
                    chart = bar_chart(top, Path(tmp) / f"{selection.target}_importance.png",
                                      title=f"Consensus importance: {selection.target}", xlabel="mean normalised rank")
                    mlflow.log_artifact(str(chart), artifact_path=f"selection/{selection.target}")
        chosen = {s.target: s.selected for s in selections}
        write_json(chosen, SELECTED_FEATURES)
        write_report({"targets": len(chosen), "features": {t: len(f) for t, f in chosen.items()}}, SELECT_REPORT)
        mlflow.log_artifact(str(SELECTED_FEATURES))
        mlflow.log_metric("targets", len(chosen))
    print_summary("select_features", [
        {"target": s.target, "method": "manual" if s.manual else "consensus", "selected": len(s.selected),
         "candidates": None if s.manual else len(s.table), "failed families": sorted(s.errors) or None} for s in selections
    ], notes={"targets": len(selections) or "none selected: nothing to do", "date rule": window.describe(),
              "outputs": [SELECTED_FEATURES, f"{SELECTION_REPORTS}/"]})
