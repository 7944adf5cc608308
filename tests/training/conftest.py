"""A small synthetic market with a planted signal, and train params that keep every fit fast.

Shared through fixtures: the suite runs with ``--import-mode=importlib``, so test modules
cannot import helpers from this folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest

from sepflow.features.dataset import Dataset, DatasetBuilder, assemble_features_frame
from sepflow.features.spec import FeatureParams, TargetParams
from sepflow.features.targets import daily_returns
from sepflow.sep.synthetic import SyntheticParams, generate_market
from sepflow.sep.universe import UniverseParams, filter_universe
from sepflow.training.artifacts import TrainedModel, load_trained
from sepflow.training.params import TrainParams, WalkForwardParams
from sepflow.training.train import forward_returns_for, train_family
from sepflow.training.walk_forward import Evidence
from sepflow.validation.calendar import development_rows, evaluation_window, trading_calendar

optuna.logging.set_verbosity(optuna.logging.WARNING)

FEATURES = ["ret_5d", "ret_20d", "ret_60d", "sma_ratio_20", "sma_ratio_50", "rsi_14", "ret_20d_xs", "rvol_20"]

FAST: dict[str, Any] = {
    "tuning": {"n_trials": {"random_forest": 2, "xgboost": 2, "lightgbm": 2}, "storage": None,
               "n_estimators_range": [5, 15]},
    "random_forest": {"n_jobs": 1},
    "xgboost": {"n_estimators": 20, "early_stopping_rounds": 5, "n_jobs": 1},
    "lightgbm": {"n_estimators": 20, "early_stopping_rounds": 5, "n_jobs": 1},
    "lstm": {"sequence_length": 5, "units1": 4, "units2": 2, "epochs": 1, "batch_size": 256, "patience": 1},
}


@pytest.fixture(scope="session")
def universe_sep() -> pd.DataFrame:
    """30 tickers × 400 days of the synthetic market, universe-filtered (``in_universe`` per row)."""
    market = generate_market(SyntheticParams(n_tickers=30, n_days=400, signal_strength=3))
    return filter_universe(market.sep, market.tickers, UniverseParams(min_history_days=60, liquidity_window=20)).sep


@pytest.fixture(scope="session")
def builder(universe_sep: pd.DataFrame) -> DatasetBuilder:
    """About 4,600 usable rows over 16 tickers for the features below."""
    frame, manifest = assemble_features_frame(universe_sep, FeatureParams(), TargetParams(horizons=[5]))
    return DatasetBuilder.from_frame(frame, manifest)


@pytest.fixture(scope="session")
def daily(universe_sep: pd.DataFrame) -> pd.DataFrame:
    """ticker, date, return: what a daily book earns on each name."""
    return daily_returns(universe_sep, TargetParams(horizons=[5]))


@pytest.fixture(scope="session")
def features() -> list[str]:
    return list(FEATURES)


@pytest.fixture(scope="session")
def fast_params() -> TrainParams:
    """Two trials per tuned family, tiny boosters and a one-epoch LSTM."""
    return TrainParams.model_validate(FAST)


# Walk-forward tests: three 40-date folds on 5-day targets, entered a day after the signal.
WF = WalkForwardParams(train_days=120, test_days=40, n_folds=3, max_samples_per_symbol=None)
LAG = 1

Developed = Callable[..., tuple[TrainedModel, Dataset, Evidence]]


@pytest.fixture(scope="session")
def walk_params() -> WalkForwardParams:
    return WF


@pytest.fixture(scope="session")
def developed(builder: DatasetBuilder, features: list[str], fast_params: TrainParams, daily: pd.DataFrame) -> Developed:
    """``developed(family, target, folder, params=fast_params, member_dirs=None)``: a development
    model (trained on the rows before the evaluation window only, into ``folder``), the full
    dataset to walk and the evidence (window, forward and daily returns) to judge it by."""

    def develop(family: str, target: str, folder: Path, params: TrainParams = fast_params,
                member_dirs: dict[str, Path] | None = None) -> tuple[TrainedModel, Dataset, Evidence]:
        ds = builder.build(target, features)
        window = evaluation_window(trading_calendar(builder), window_days=WF.window_days,
                                   embargo_days=WF.embargo_for(5 + LAG), label_days=5 + LAG)
        evidence = Evidence(window=window, forward_returns=forward_returns_for(builder, ds), daily_returns=daily,
                            execution_lag=LAG, n_trials=4)
        development = development_rows(ds, window)
        train_family(family, target, development, features, params, 7, asof="2020-01-02", out_dir=folder,
                     optuna_storage=None, forward_returns=forward_returns_for(builder, development),
                     member_dirs=member_dirs)
        return load_trained(folder), ds, evidence

    return develop
