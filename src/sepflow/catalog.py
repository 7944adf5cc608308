"""Every file and folder the pipeline passes between stages, named once (paths from the repository root).

Stages, the CLI, prediction, notebooks and tests take their paths from here; ``dvc.yaml`` names
the same paths as deps and outs (``tests/test_dvc_yaml.py`` holds the two together). A stage
module never imports another stage module, so a stage's import closure — its DVC code
dependencies — holds only the code it runs.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "FEATURES", "FEATURES_INFO", "FEATURES_REPORT", "FILTER_INFO", "FILTER_REPORT", "IMPORTANCES", "INGEST_INFO",
    "INGEST_REPORT", "MANIFEST", "MODELS",
    "RANKINGS", "RANK_REPORT", "RELEASES", "SELECTED_FEATURES", "SELECTED_TARGETS", "SELECTION_REPORTS",
    "SELECT_REPORT", "SEP", "SEP_COMMON", "SYNTHETIC_SEP", "SYNTHETIC_TRUTH", "TICKERS", "TRAIN_REPORTS",
    "WALK_FORWARD_REPORTS",
]

# synthesize
SYNTHETIC_SEP = Path("data/synthetic")  # SHARADAR_SEP_<asof>.parquet and SHARADAR_TICKERS.parquet
SYNTHETIC_TRUTH = Path("data/raw/synthetic_truth.parquet")
# ingest
SEP = Path("data/raw/sep.parquet")
TICKERS = Path("data/raw/tickers.parquet")
INGEST_REPORT = Path("reports/ingest.json")  # numbers (DVC metrics); dates, source and kind in *_INFO
INGEST_INFO = Path("reports/ingest_info.json")
# filter_sep
SEP_COMMON = Path("data/interim/sep_common.parquet")
FILTER_REPORT = Path("reports/filter_sep.json")
FILTER_INFO = Path("reports/filter_sep_info.json")
# build_features
FEATURES = Path("data/processed/features.parquet")
MANIFEST = Path("data/processed/features_manifest.json")
FEATURES_REPORT = Path("reports/build_features.json")
FEATURES_INFO = Path("reports/build_features_info.json")
# rank_targets
SELECTED_TARGETS = Path("data/processed/selected_targets.json")
RANKINGS = Path("reports/ranking/target_predictability_rankings.csv")
IMPORTANCES = Path("reports/ranking/feature_importances.csv")
RANK_REPORT = Path("reports/rank_targets.json")
# select_features
SELECTED_FEATURES = Path("data/processed/selected_features.json")
SELECTION_REPORTS = Path("reports/selection")  # <target>/ per selected target
SELECT_REPORT = Path("reports/select_features.json")
# train@FAMILY: models/<family>/<target>/ and reports/train/<family>.json
MODELS = Path("models")
TRAIN_REPORTS = Path("reports/train")
# walk_forward@FAMILY: reports/walk_forward/<family>/ and the release refits models/release/<family>/<target>/
WALK_FORWARD_REPORTS = Path("reports/walk_forward")
RELEASES = MODELS / "release"
