"""Stage `build_features`: the universe panel → features and targets, with their manifest."""

from __future__ import annotations


import mlflow

from sepflow.catalog import FEATURES, FEATURES_INFO, FEATURES_REPORT, MANIFEST, SEP_COMMON
from sepflow.config import load_params
from sepflow.features.dataset import assemble_features_frame
from sepflow.io import read_panel, read_panel_metadata, write_json, write_panel
from sepflow.summary import print_summary
from sepflow.tracking.runs import stage_run, write_metrics


def main(params_path: str = "params.yaml") -> None:
    params = load_params(params_path)
    logged = {"features": params.features.model_dump(), "targets": params.targets.model_dump()}
    with stage_run("build_features", params=logged, inputs=[SEP_COMMON]):
        asof = read_panel_metadata(SEP_COMMON).get("asof", "")
        frame, manifest = assemble_features_frame(read_panel(SEP_COMMON), params.features, params.targets)
        write_panel(frame, FEATURES, metadata={"asof": asof})
        write_json(manifest, MANIFEST)
        summary = {
            "asof": asof,
            "rows": len(frame),
            "tickers": int(frame["ticker"].nunique()),
            "features": len(manifest["feature_names"]),
            "targets": len(manifest["targets"]),
            "feature_signature": manifest["feature_signature"],
        }
        write_metrics(summary, FEATURES_REPORT, FEATURES_INFO)
        mlflow.log_metrics({k: v for k, v in summary.items() if isinstance(v, int)})
        mlflow.log_artifact(str(MANIFEST))
    print_summary("build_features", {
        **{k: summary[k] for k in ("rows", "tickers", "features", "targets")},
        "target names": list(manifest["targets"]), "as of": asof,
        "outputs": [FEATURES, MANIFEST, FEATURES_REPORT, FEATURES_INFO],
    })
