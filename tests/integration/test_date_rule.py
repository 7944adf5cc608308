"""The date rule, black-box: scrambling every price inside the evaluation window moves no choice.

The pipeline's choosing steps run in-process on a small synthetic market — universe filter,
features, target ranking, feature selection, and training (Optuna tuning, early stopping,
calibration, threshold) on the development region — once on the market as generated and once
with every price of every row inside the evaluation window multiplied by its own random factor
(open, high, low and both closes alike, so each row stays a valid bar). Selected targets,
selected features and every tuned hyperparameter, threshold and calibrator must be identical.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sepflow.config import Params
from sepflow.features.dataset import DatasetBuilder, assemble_features_frame
from sepflow.ranking.features import select_features
from sepflow.ranking.targets import rank_targets
from sepflow.sep.synthetic import generate_market
from sepflow.sep.universe import filter_universe
from sepflow.training.train import forward_returns_for, train_family
from sepflow.validation.calendar import EvaluationWindow, development_rows, trading_calendar

pytestmark = pytest.mark.slow

PARAMS = Params.model_validate({
    "synthetic": {"n_tickers": 40, "n_days": 520, "signal_strength": 3.0},
    "universe": {"min_history_days": 60, "liquidity_window": 20},
    "targets": {"horizons": [1, 5]},
    "ranking": {"families": ["lightgbm", "xgboost"], "max_samples_per_symbol": 150, "top_n": 2,
                "min_predictability_score": -1.0, "n_jobs": 1},
    "selection": {"families": ["lightgbm", "xgboost"], "max_samples_per_symbol": 150, "top_m": 6,
                  "permutation_rows": 500, "n_jobs": 1},
    "train": {"tuning": {"n_trials": {"xgboost": 3}, "storage": None, "n_estimators_range": [10, 40]},
              "xgboost": {"n_estimators": 40, "early_stopping_rounds": 5, "n_jobs": 1}},
    "walk_forward": {"train_days": 120, "test_days": 40, "n_folds": 2},
})
PRICES = ["open", "high", "low", "close", "closeadj", "closeunadj"]


def _choices(sep: pd.DataFrame, tickers: pd.DataFrame, out: Path) -> tuple[dict[str, Any], EvaluationWindow]:
    """Everything the choosing stages decide, as JSON-comparable values."""
    universe = filter_universe(sep, tickers, PARAMS.universe)
    frame, manifest = assemble_features_frame(universe.sep, PARAMS.features, PARAMS.targets)
    builder = DatasetBuilder.from_frame(frame, manifest)
    window = PARAMS.evaluation_window(trading_calendar(builder))
    ranking = rank_targets(builder, PARAMS.ranking, PARAMS.seed, window=window)
    selections = select_features(builder, ranking.selected, PARAMS.selection, PARAMS.seed, window=window)
    choices: dict[str, Any] = {
        "ranking": ranking.table.to_csv(index=False, float_format="%.12g"), "targets": ranking.selected,
        "features": {s.target: s.selected for s in selections},
    }
    for selection in selections:
        ds = development_rows(builder.build(selection.target, selection.selected), window)
        folder = out / selection.target
        train_family("xgboost", selection.target, ds, selection.selected, PARAMS.train, PARAMS.seed,
                     asof="2020-01-01", out_dir=folder, optuna_storage=None,
                     forward_returns=forward_returns_for(builder, ds))
        choices[selection.target] = {name: json.loads((folder / name).read_text())
                                     for name in ("threshold.json", "calibrator.json", "metrics.json")}
        choices[selection.target]["model_params"] = json.loads((folder / "metadata.json").read_text())["model_params"]
    return choices, window


def test_scrambling_the_evaluation_window_changes_no_choice(tmp_path: Path) -> None:
    market = generate_market(PARAMS.synthetic)
    before, window = _choices(market.sep, market.tickers, tmp_path / "before")
    dates = market.sep["date"]
    inside = ((dates >= window.start) & (dates <= window.end)).to_numpy()
    assert inside.sum() > 1000  # the window really holds prices to scramble
    factor = np.exp(np.random.default_rng(3).normal(0.0, 0.2, int(inside.sum())))
    scrambled = market.sep.copy()
    for column in PRICES:
        values = scrambled[column].to_numpy(dtype=float, copy=True)
        values[inside] *= factor
        scrambled[column] = values.astype(scrambled[column].dtype)
    after, same_window = _choices(scrambled, market.tickers, tmp_path / "after")
    assert same_window == window
    assert before["targets"] and all(before["features"].values())
    assert after == before
