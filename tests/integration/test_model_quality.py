"""Model quality on the default synthetic market: the families find the planted signal (issue 5),
the best comes close to the truth, and nothing is found in a null market (issue 6).

The market is ``params.yaml: synthetic`` (the repository's defaults); its process and the true
expected return ``truth["expected_return_5d"]`` are documented in ``sepflow.sep.synthetic``.
Every family is trained by ``train_family`` on ``return_5d`` on the date rule's development
region and walked forward by ``walk_forward`` over the evaluation window (4 expanding folds of
63 test dates: 252 daily rank ICs and a daily staggered book), then judged on its
out-of-sample walk-forward predictions, and by the promotion gate against the dummy. The training and
walk-forward settings are fixed here, not read from params.yaml, so that speed tweaks there
cannot change what the thresholds below were derived for.

Target: ``return_5d`` (regression), for every family. Issue 6 asks for the rank IC *of the
5-day return*, and a regression on it ranks names by the predicted return itself; ``dir_5d``
would discard the magnitude, and its sign is mostly the market's move, which the
cross-sectional features below cannot predict.

Reduced for time (about 4-5 minutes per market on 2 cores; every family really trains and is refit per
fold): 2-3 Optuna trials per tuned family with 50-300 trees and 300 evenly spaced training rows
per ticker; the LSTM keeps its default settings (20-row windows, 32/16 units, early stopping),
since the LSTM's own bar (0.6 of the truth, issue 14) is about those.

The walk-forward keeps every row (``max_samples_per_symbol: null``) rather than 300 a ticker:
its test blocks are sampled with the same rows, and a sampled panel leaves a handful of names
on most dates, so per-date ICs, their t-statistic and the book would measure the sampling.
For the same reason the tests judge the walk-forward, not ``train_family``'s single test
segment (15% of the dates, sampled rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from sepflow.config import Params, load_params
from sepflow.evaluation.metrics import information_coefficients
from sepflow.features.dataset import DatasetBuilder, assemble_features_frame
from sepflow.features.spec import TargetParams
from sepflow.features.targets import daily_returns
from sepflow.sep.synthetic import generate_market
from sepflow.sep.universe import filter_universe
from sepflow.tracking.gate import PromotionParams, VersionMetrics, judge
from sepflow.training.artifacts import load_trained
from sepflow.training.params import TrainParams
from sepflow.training.train import forward_returns_for, train_family
from sepflow.training.walk_forward import (
    Evidence,
    WalkForwardParams,
    WalkForwardResult,
    walk_forward,
)
from sepflow.validation.calendar import development_rows, evaluation_window, trading_calendar

pytestmark = pytest.mark.slow

PARAMS_FILE = Path(__file__).resolve().parents[2] / "params.yaml"
TARGET = "return_5d"
HORIZON = 5
FAMILIES = ("dummy", "random_forest", "xgboost", "lightgbm", "lstm")
SEED = 42
# The planted alpha is a drift fed by each ticker's idiosyncratic shocks (mean lag ~50 days)
# plus a one-day reversal: trailing returns over 5 days to 13 weeks and the 50-day SMA ratio
# and RSI estimate the drift, ret_1d the reversal; cross-sectional ranks (_xs) strip the market
# factor, and rvol_20_xs tells how large a name's drift can be (it scales with its volatility).
FEATURES = ["ret_1d", "ret_5d_xs", "ret_20d_xs", "ret_60d_xs", "w1_ret_13w", "sma_ratio_50", "rsi_14", "rvol_20_xs"]
TRAIN = TrainParams.model_validate({
    "max_samples_per_symbol": 300,
    "tuning": {"n_trials": {"random_forest": 2, "xgboost": 3, "lightgbm": 3}, "storage": None,
               "n_estimators_range": [50, 300]},
    "random_forest": {"n_jobs": 2},
    "xgboost": {"n_estimators": 300, "early_stopping_rounds": 30, "n_jobs": 2},
    "lightgbm": {"n_estimators": 300, "early_stopping_rounds": 30, "n_jobs": 2},
})  # the LSTM, fees, slippage, segment fractions and calibration: TrainParams defaults (10 bps a trade in all)
WALK = WalkForwardParams(window="expanding", train_days=504, test_days=63, n_folds=4, max_samples_per_symbol=None)
LAG = 1  # the default execution lag
# |t| of 3 is a 0.3% two-sided false alarm per statistic under the null; the null test makes
# ten such checks (5 families x rank IC and Sharpe), about 3% for the whole test.
Z = 3.0

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Walked:
    """Every family's walk-forward on one market, and that market's true expected 5-day return."""

    results: dict[str, WalkForwardResult]
    truth: pd.Series  # expected_return_5d by (ticker, date)
    window: tuple[str, str]  # the evaluation window, ISO dates

    def truth_rank_ic(self, family: str) -> float:
        """Rank IC of the truth against the realised return on exactly ``family``'s prediction rows."""
        rows = self.results[family].predictions
        truth = self.truth.reindex(pd.MultiIndex.from_frame(rows[["ticker", "date"]])).to_numpy()
        return information_coefficients(rows["date"], rows["forward_return"], truth)["rank_ic"]


def _walk(params: Params, signal_strength: float, out: Path) -> Walked:
    market = generate_market(params.synthetic.model_copy(update={"signal_strength": signal_strength}))
    universe = filter_universe(market.sep, market.tickers, params.universe)
    targets = TargetParams(horizons=[HORIZON])
    frame, manifest = assemble_features_frame(universe.sep, params.features, targets)
    builder = DatasetBuilder.from_frame(frame, manifest)
    ds = builder.build(TARGET, FEATURES)
    window = evaluation_window(trading_calendar(builder), window_days=WALK.window_days,
                               embargo_days=WALK.embargo_for(HORIZON + LAG), label_days=HORIZON + LAG)
    development = development_rows(ds, window)
    evidence = Evidence(window=window, forward_returns=forward_returns_for(builder, ds),
                        daily_returns=daily_returns(universe.sep, targets), execution_lag=LAG, n_trials=len(FAMILIES))
    asof = str(market.sep["date"].max().date())
    results = {}
    for family in FAMILIES:
        folder = out / family
        train_family(family, TARGET, development, FEATURES, TRAIN, SEED, asof=asof, out_dir=folder,
                     optuna_storage=None, forward_returns=forward_returns_for(builder, development))
        results[family] = walk_forward(load_trained(folder), ds, evidence, WALK, TRAIN)
    truth = market.truth.assign(date=pd.to_datetime(market.truth["date"])).set_index(["ticker", "date"])
    return Walked(results=results, truth=truth[f"expected_return_{HORIZON}d"],
                  window=(window.start.date().isoformat(), window.end.date().isoformat()))


def _version(walked: Walked, family: str, version: int) -> VersionMetrics:
    """``family``'s walk-forward as the registry would hold it (undefined metrics left out)."""
    overall = {k: v for k, v in walked.results[family].overall.items() if math.isfinite(v)}
    return VersionMetrics(f"{family}-{TARGET}", version, family, TARGET, None, {}, overall, *walked.window)


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(PARAMS_FILE)


@pytest.fixture(scope="module")
def planted(params: Params, tmp_path_factory: pytest.TempPathFactory) -> Walked:
    assert params.synthetic.signal_strength > 0, "the default synthetic market must carry a signal"
    return _walk(params, params.synthetic.signal_strength, tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="module")
def null(params: Params, tmp_path_factory: pytest.TempPathFactory) -> Walked:
    """The same market (same seed, same shocks) with signal_strength 0."""
    return _walk(params, 0.0, tmp_path_factory.mktemp("null"))


def _no_skill(value: float) -> float:
    """A rank IC, t-statistic or Sharpe that is undefined (constant predictions: no position) is no skill."""
    return 0.0 if math.isnan(value) else value


def test_planted_signal_is_found(planted: Walked) -> None:
    """One test for every check on the planted market, so that xdist never builds it twice.

    Every family beats the dummy: the dummy predicts one constant, so its rank IC is undefined
    (no skill), and a family beats it when its walk-forward rank IC is ``Z`` Newey–West standard
    errors above zero. The truth is the best any model could do; the best family's walk-forward
    rank IC must reach half of the truth's rank IC over the same prediction rows. And the
    promotion gate, with its default rules, promotes at least one family against the dummy."""
    dummy = planted.results["dummy"].overall
    assert _no_skill(dummy["rank_ic"]) == 0.0
    summary = {family: {key: round(result.overall[key], 3)
                        for key in ("rank_ic", "rank_ic_tstat", "net_sharpe", "net_sharpe_se", "psr")}
               for family, result in planted.results.items()}
    for family in FAMILIES[1:]:
        overall = planted.results[family].overall
        assert overall["n_dates"] >= 250, summary  # every test date of the window counts
        assert overall["rank_ic"] > 0 and overall["rank_ic_tstat"] >= Z, (family, summary)

    best = max(FAMILIES[1:], key=lambda family: planted.results[family].overall["rank_ic"])
    model_ic = planted.results[best].overall["rank_ic"]
    truth_ic = planted.truth_rank_ic(best)
    assert truth_ic > 0.05, truth_ic  # the planted signal is there to be found on these rows
    assert model_ic >= 0.5 * truth_ic, (best, model_ic, truth_ic)
    # The sequence model is a serious one: 0.6 of the truth on its own prediction rows.
    lstm_ic = planted.results["lstm"].overall["rank_ic"]
    assert lstm_ic >= 0.6 * planted.truth_rank_ic("lstm"), (lstm_ic, planted.truth_rank_ic("lstm"), summary)

    reference = _version(planted, "dummy", 1)
    promoted = [family for family in FAMILIES[1:]
                if judge(_version(planted, family, 1), reference, PromotionParams()).allowed]
    assert promoted, summary


def test_null_market_shows_no_skill(null: Walked) -> None:
    """With signal_strength 0 every name has the same expected return, so any skill would be
    leakage. Rank IC: |t| < ``Z``. Sharpe: within ``Z`` of its standard error around 0 (costs only
    lower the net Sharpe, so it must not exceed ``Z`` of them: a leak would show as a high net
    Sharpe). The gate refuses every family."""
    assert np.allclose(null.truth, null.truth.iloc[0])  # truly nothing to rank
    summary = {family: {key: round(result.overall.get(key, math.nan), 3)
                        for key in ("rank_ic", "rank_ic_tstat", "gross_sharpe", "net_sharpe", "net_sharpe_se")}
               for family, result in null.results.items()}
    reference = _version(null, "dummy", 1)
    for family, result in null.results.items():
        overall = result.overall
        bound = Z * overall["net_sharpe_se"] if math.isfinite(overall["net_sharpe_se"]) else math.inf
        assert abs(_no_skill(overall["rank_ic_tstat"])) < Z, (family, summary)
        assert abs(_no_skill(overall["gross_sharpe"])) < bound, (family, bound, summary)
        assert _no_skill(overall["net_sharpe"]) < bound, (family, bound, summary)
        if family != "dummy":
            assert not judge(_version(null, family, 1), reference, PromotionParams()).allowed, (family, summary)
