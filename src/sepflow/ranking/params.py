"""The ``ranking`` and ``selection`` sections of params.yaml.

Kept apart from the ranking code so that reading params (every stage does) does not import
SciPy and scikit-learn's inspection tools.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RankingParams", "SelectionParams"]


class RankingParams(BaseModel):
    """``params.yaml: ranking``."""

    model_config = ConfigDict(extra="forbid")

    targets: list[str] | None = None  # a manual list skips the automatic ranking
    families: list[str] = Field(default_factory=lambda: ["lightgbm", "xgboost", "random_forest", "mlp"])
    n_splits: int = Field(3, ge=2)
    embargo_days: int = Field(5, ge=0)  # raised to each target's horizon when smaller
    max_samples_per_symbol: int = Field(250, ge=10)
    top_n: int = Field(3, ge=1)
    min_predictability_score: float = 0.02  # null-market edges stay within about ±0.02 at the default size
    n_jobs: int = Field(2, ge=1)


class SelectionParams(BaseModel):
    """``params.yaml: selection``."""

    model_config = ConfigDict(extra="forbid")

    families: list[str] = Field(default_factory=lambda: ["lightgbm", "xgboost", "random_forest"])
    top_m: int = Field(15, ge=1)
    require_min_models: int = Field(2, ge=1)
    n_splits: int = Field(3, ge=2)
    embargo_days: int = Field(5, ge=0)
    max_samples_per_symbol: int = Field(400, ge=10)
    permutation_repeats: int = Field(2, ge=1)
    permutation_rows: int = Field(2000, ge=100)  # held-out rows scored per fold for permutation
    manual: dict[str, list[str]] = Field(default_factory=dict)  # target → features: bypasses selection
    n_jobs: int = Field(2, ge=1)
