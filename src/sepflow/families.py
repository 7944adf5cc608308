"""The names params are checked against: model families, tasks, tunable families, tuning scorings.

Plain constants, so that reading ``params.yaml`` imports no model library and a stage's import
closure (its DVC code dependencies) holds only the code it runs. ``sepflow.models`` registers
an implementation for every family named here (a family it does not name fails at import).
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["FAMILY_NAMES", "SCORINGS", "TASKS", "TUNABLE", "TaskKind"]

FAMILY_NAMES = ("dummy", "random_forest", "xgboost", "lightgbm", "mlp", "lstm", "ensemble")

TaskKind = Literal["classification", "multiclass", "regression"]
TASKS: tuple[str, ...] = get_args(TaskKind)

# Families with an Optuna search space (sepflow.models.tuning), and the scores a study may maximise.
TUNABLE = ("xgboost", "lightgbm", "random_forest")
SCORINGS: dict[str, tuple[str, ...]] = {
    "classification": ("balanced_accuracy", "roc_auc"),
    "multiclass": ("balanced_accuracy", "roc_auc"),
    "regression": ("neg_rmse", "rank_ic"),
}
