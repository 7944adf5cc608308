"""Threshold tuning picks the right cut on constructed validation sets, deterministically."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sepflow.errors import ConfigError
from sepflow.evaluation.thresholds import tune_threshold


def _validation_panel() -> pd.DataFrame:
    """Four names per date with P(up) 0.2/0.4/0.6/0.8; only the 0.8 name earns money."""
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2024-03-01", periods=120)
    proba = np.tile([0.2, 0.4, 0.6, 0.8], len(dates))
    drift = np.where(proba > 0.7, 0.004, -0.004)
    return pd.DataFrame({
        "ticker": np.tile(["W", "X", "Y", "Z"], len(dates)),
        "date": np.repeat(dates, 4),
        "proba": proba,
        "y": (proba > 0.7).astype(int),
        "forward_return": drift + rng.normal(0, 0.002, len(proba)),
    })


def test_net_sharpe_objective_keeps_only_the_profitable_name():
    v = _validation_panel()
    threshold, score, objective = tune_threshold(
        v["proba"], v["y"], forward_returns=v["forward_return"], dates=v["date"], tickers=v["ticker"],
        fee_bps=1.0, slippage_bps=1.0,
    )
    # Every cut in [0.60, 0.80) holds Z alone; the tie goes to the cut nearest 0.5.
    assert (threshold, objective) == (0.6, "net_sharpe")
    assert score > 10
    with_costs = tune_threshold(
        v["proba"], v["y"], forward_returns=v["forward_return"], dates=v["date"], tickers=v["ticker"],
        fee_bps=0.0, slippage_bps=0.0,
    )
    assert with_costs.score >= score


def test_balanced_accuracy_fallback_without_returns():
    proba = np.array([0.10, 0.20, 0.30, 0.35, 0.45, 0.60, 0.90])
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    choice = tune_threshold(proba, y)
    # Cuts 0.30 … 0.34 separate the classes perfectly; 0.34 is nearest 0.5.
    assert choice == (0.34, 1.0, "balanced_accuracy")
    assert tune_threshold(np.column_stack([1 - proba, proba]), y) == choice


def test_ties_are_broken_the_same_way_every_time():
    proba, y = np.array([0.3, 0.7]), np.array([0, 1])
    assert tune_threshold(proba, y, grid=[0.6, 0.4]).threshold == 0.4
    assert tune_threshold(proba, y, grid=[0.51, 0.49]).threshold == 0.49
    with pytest.raises(ConfigError, match="dates"):
        tune_threshold(proba, y, forward_returns=[0.01, -0.01])
