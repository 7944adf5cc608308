"""``params.yaml: train``: how each family is tuned, fitted, calibrated and judged."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sepflow.distributed import DaskParams
from sepflow.families import FAMILY_NAMES, SCORINGS, TASKS, TUNABLE
from sepflow.tracking.lineage import repo_root
from sepflow.validation.splits import WalkForward

__all__ = ["EvaluationParams", "TrainParams", "TuningParams", "WalkForwardParams"]

_SQLITE = "sqlite:///"


class TuningParams(BaseModel):
    """``train.tuning``: Optuna trials per family over purged folds of the training segment."""

    model_config = ConfigDict(extra="forbid")

    # Families absent here (or at 0) are fitted with their fixed params only.
    n_trials: dict[str, int] = Field(default_factory=lambda: {"random_forest": 6, "xgboost": 10, "lightgbm": 10})
    # An SQLAlchemy URL; a relative SQLite path is taken from the repository root. null: in memory, no resuming.
    storage: str | None = "sqlite:///optuna.db"
    scoring: dict[str, str] = Field(
        default_factory=lambda: {"classification": "balanced_accuracy", "multiclass": "balanced_accuracy",
                                 "regression": "rank_ic"}
    )
    # Searched only for families whose fixed params do not set n_estimators.
    n_estimators_range: tuple[int, int] = (100, 1000)

    @field_validator("n_trials")
    @classmethod
    def _tunable(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(TUNABLE))
        if unknown:
            raise ValueError(f"no search space for {unknown}; tunable families: {list(TUNABLE)}")
        if any(n < 0 for n in value.values()):
            raise ValueError(f"trial counts must be >= 0, got {value}")
        return value

    @field_validator("scoring")
    @classmethod
    def _scorings(cls, value: dict[str, str]) -> dict[str, str]:
        for task in TASKS:
            if value.get(task) not in SCORINGS[task]:
                raise ValueError(f"scoring.{task} must be one of {list(SCORINGS[task])}, got {value.get(task)!r}")
        unknown = sorted(set(value) - set(TASKS))
        if unknown:
            raise ValueError(f"unknown tasks {unknown}; tasks: {list(TASKS)}")
        return value

    @field_validator("n_estimators_range")
    @classmethod
    def _range(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= value[0] <= value[1]:
            raise ValueError(f"n_estimators_range must be [low, high] with 1 <= low <= high, got {list(value)}")
        return value

    def resolved_storage(self, root: Path | None = None) -> str | None:
        """``storage`` with a relative SQLite path made absolute under ``root`` (default: the repo root).

        DVC experiments run in temporary copies; an absolute path keeps every study in one database.
        """
        if self.storage is None or not self.storage.startswith(_SQLITE):
            return self.storage
        path = self.storage[len(_SQLITE):]
        if path in ("", ":memory:") or Path(path).is_absolute():
            return self.storage
        return f"{_SQLITE}{(root or repo_root()) / path}"


class TrainParams(BaseModel):
    """``params.yaml: train``. The per-family sections are constructor params fixed for every fit."""

    model_config = ConfigDict(extra="forbid")

    families: list[str] = Field(
        default_factory=lambda: ["dummy", "random_forest", "xgboost", "lightgbm", "lstm", "ensemble"]
    )
    validation_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, gt=0, lt=1)
    embargo_days: int = Field(5, ge=0)  # raised to the target's horizon when smaller
    max_samples_per_symbol: int | None = Field(None, ge=10)  # null: every row
    n_splits: int = Field(3, ge=2)
    calibration: Literal["isotonic", "sigmoid", "none"] = "isotonic"
    # cpu | gpu | auto (a GPU when visible, else the CPU with a log line); see training.device.
    device: Literal["cpu", "gpu", "auto"] = "auto"
    fee_bps: float = Field(5.0, ge=0)
    slippage_bps: float = Field(5.0, ge=0)
    # pooled: one cross-sectional model per family and target; per_symbol: one model per ticker,
    # routed by ticker when serving (see training.per_symbol).
    scope: Literal["pooled", "per_symbol"] = "pooled"
    # per_symbol: tickers trained at once, in processes (times each family's own n_jobs threads).
    # Each ticker's seed comes from the base seed and its name, so results never depend on it.
    max_workers: int = Field(2, ge=1)
    # Where the final fit of xgboost / lightgbm runs: local, or dask (xgboost.dask / lightgbm.dask on
    # train.dask's scheduler, else a LocalCluster). Tuning trials stay local (`sepflow tune --workers`
    # shares a study instead). A dask fit matches a local one in quality, not bit for bit.
    engine: Literal["local", "dask"] = "local"
    dask: DaskParams = Field(default_factory=DaskParams)
    tuning: TuningParams = Field(default_factory=TuningParams)

    dummy: dict[str, Any] = Field(default_factory=dict)
    random_forest: dict[str, Any] = Field(default_factory=lambda: {"n_jobs": 2})
    xgboost: dict[str, Any] = Field(
        default_factory=lambda: {"n_estimators": 400, "early_stopping_rounds": 30, "n_jobs": 2}
    )
    lightgbm: dict[str, Any] = Field(
        default_factory=lambda: {"n_estimators": 400, "early_stopping_rounds": 30, "n_jobs": 2}
    )
    lstm: dict[str, Any] = Field(
        default_factory=lambda: {"sequence_length": 20, "units1": 32, "units2": 16, "epochs": 10,
                                 "batch_size": 256, "patience": 2, "window_stride": 2}
    )
    mlp: dict[str, Any] = Field(default_factory=dict)
    ensemble: dict[str, Any] = Field(default_factory=lambda: {"alpha": 1.0})

    @property
    def ensemble_members(self) -> list[str]:
        """The families the ensemble combines: every trained family but the ensemble itself."""
        return [family for family in self.families if family != "ensemble"]

    @field_validator("families")
    @classmethod
    def _known_families(cls, value: list[str]) -> list[str]:
        # A family needs a section below for its fixed params.
        unknown = [f for f in value if f not in FAMILY_NAMES or f not in cls.model_fields]
        if unknown or len(set(value)) != len(value) or not value:
            raise ValueError(f"families must be distinct known families ({sorted(FAMILY_NAMES)}), got {value}")
        return value

    @model_validator(mode="after")
    def _pooled_on_dask(self) -> TrainParams:
        if self.engine == "dask" and self.scope == "per_symbol":
            raise ValueError(
                "engine dask trains pooled models; per_symbol fits many small models in processes "
                "(train.max_workers): use engine local with scope per_symbol"
            )
        return self

    @model_validator(mode="after")
    def _fractions_leave_training_rows(self) -> TrainParams:
        if self.validation_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"validation_fraction + test_fraction must be below 1, got "
                f"{self.validation_fraction} + {self.test_fraction}"
            )
        return self

    def embargo_for(self, horizon: int) -> int:
        """Embargo in unique dates for a target of ``horizon`` days: never shorter than the label."""
        return max(self.embargo_days, int(horizon))

    def model_params(self, family: str) -> dict[str, Any]:
        """A copy of ``family``'s fixed constructor params."""
        return dict(getattr(self, family))


class EvaluationParams(BaseModel):
    """``params.yaml: evaluation``: how out-of-sample evidence is traded."""

    model_config = ConfigDict(extra="forbid")

    # Trading dates between a signal (known at the close of t) and the close at which its book enters.
    execution_lag_days: int = Field(1, ge=0)


class WalkForwardParams(BaseModel):
    """``params.yaml: walk_forward``. Day counts are unique panel dates.

    The evaluation window is the last ``n_folds`` test blocks before the labels run out
    (``sepflow.validation.calendar``); every choice is made on rows whose labels end before it.
    """

    model_config = ConfigDict(extra="forbid")

    window: Literal["expanding", "sliding"] = "expanding"
    train_days: int = Field(504, ge=20)  # the sliding window's length; the expanding window's minimum
    test_days: int = Field(63, ge=5)
    step_days: int | None = Field(None, ge=1)  # null: test_days (back-to-back test blocks)
    embargo_days: int = Field(5, ge=0)  # raised to each target's horizon when smaller
    n_folds: int = Field(4, ge=1)  # test blocks in the evaluation window (its length: n_folds x test_days)
    validation_fraction: float = Field(0.2, gt=0, lt=0.5)
    max_samples_per_symbol: int | None = Field(200, ge=10)  # fit on every k-th date (~this many rows per ticker)
    scheme: Literal["long_short", "long_flat"] = "long_short"
    quantile: float = Field(0.2, gt=0, le=0.5)  # long-short: top and bottom share of names
    n_jobs: int = Field(2, ge=1)  # processes refitting a sequence model's folds; changes speed, never results

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "max_folds" in data:
            raise ValueError(
                "walk_forward.max_folds is now walk_forward.n_folds: the evaluation window is the last "
                "n_folds test blocks, and every earlier choice is made before it"
            )
        return data

    @model_validator(mode="after")
    def _step_covers_test(self) -> WalkForwardParams:
        if self.step_days is not None and self.step_days < self.test_days:
            raise ValueError(
                f"step_days ({self.step_days}) below test_days ({self.test_days}) would test dates twice"
            )
        return self

    @property
    def window_days(self) -> int:
        """Dates from the first test block's start to the last one's end."""
        return (self.n_folds - 1) * (self.step_days or self.test_days) + self.test_days

    def embargo_for(self, horizon: int) -> int:
        """Embargo in unique dates for a target of ``horizon`` days: never shorter than the label."""
        return max(self.embargo_days, int(horizon))

    def splitter(self, horizon: int, first_test_date: Any = None) -> WalkForward:
        """The fold generator for a target of ``horizon`` days, its first block on ``first_test_date``."""
        return WalkForward(
            test_days=self.test_days, step_days=self.step_days,
            train_days=self.train_days if self.window == "sliding" else None,
            embargo_days=self.embargo_for(horizon), min_train_days=self.train_days,
            first_test_date=first_test_date,
        )
