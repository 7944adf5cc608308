"""A tiny panel with a planted signal, split by date into train / validation / test periods.

Shared through fixtures: the suite runs with ``--import-mode=importlib``, so test modules
cannot import helpers from this folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

N_TICKERS, N_DAYS, N_FEATURES = 6, 120, 5
TRAIN_DAYS, VAL_DAYS = 80, 20


@dataclass(frozen=True)
class Panel:
    """Features and one target per task, with boolean masks for the three periods."""

    X: pd.DataFrame
    targets: dict[str, pd.Series]
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def part(self, task: str, period: str) -> tuple[pd.DataFrame, pd.Series]:
        mask = getattr(self, period)
        return self.X[mask], self.targets[task][mask]


def make_panel(seed: int = 0) -> Panel:
    """The forward return is driven by f0 and f1 of the same row; f2 has gaps (NaN)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2021-01-04", periods=N_DAYS)
    tickers = [f"TK{i}" for i in range(N_TICKERS)]
    index = pd.MultiIndex.from_product([tickers, dates], names=["ticker", "date"])
    X = pd.DataFrame(
        rng.normal(size=(len(index), N_FEATURES)).astype(np.float32),
        index=index, columns=[f"feat_{i}" for i in range(N_FEATURES)],
    )
    X.iloc[rng.random(len(index)) < 0.05, 2] = np.nan
    signal = X["feat_0"].to_numpy() + 0.5 * X["feat_1"].to_numpy()
    forward = 0.01 * (signal + 0.4 * rng.normal(size=len(index)))
    label3 = np.where(forward > 0.004, "BULLISH", np.where(forward < -0.004, "BEARISH", "NEUTRAL"))
    targets = {
        "classification": pd.Series((forward > 0).astype(np.int64), index=index, name="dir_5d"),
        "multiclass": pd.Series(label3, index=index, name="label3_5d"),
        "regression": pd.Series(forward, index=index, name="return_5d"),
    }
    day = pd.Index(dates).get_indexer(X.index.get_level_values("date"))
    return Panel(
        X=X, targets=targets,
        train=day < TRAIN_DAYS,
        val=(day >= TRAIN_DAYS) & (day < TRAIN_DAYS + VAL_DAYS),
        test=day >= TRAIN_DAYS + VAL_DAYS,
    )



# Small enough for sub-second tree fits; the LSTM is tiny here (its learning test sizes it up).
FAST_PARAMS: dict[str, dict[str, Any]] = {
    "dummy": {},
    "random_forest": {"n_estimators": 30},
    "xgboost": {"n_estimators": 40},
    "lightgbm": {"n_estimators": 40, "min_child_samples": 5},
    "lstm": {"sequence_length": 5, "units1": 8, "units2": 4, "epochs": 2, "batch_size": 64},
    "mlp": {"hidden_layer_sizes": [16], "max_iter": 200},
}


@pytest.fixture(scope="session")
def panel() -> Panel:
    return make_panel()


@pytest.fixture(scope="session")
def fast_params() -> dict[str, dict[str, Any]]:
    """Constructor params per family that keep every fit in the suite fast."""
    return FAST_PARAMS
