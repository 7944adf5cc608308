"""Decision threshold for the up class, tuned on validation rows only.

With forward returns (and the rows' dates and tickers) the objective is the net Sharpe of
the long/flat strategy of ``sepflow.evaluation.trading`` after fees and slippage; without
them it is balanced accuracy. Ties go to the threshold nearest 0.5, then to the lower one,
so the same inputs always give the same threshold.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score

from sepflow.errors import ConfigError, DataValidationError
from sepflow.evaluation.trading import TRADING_DAYS, backtest

__all__ = ["DEFAULT_GRID", "ThresholdChoice", "tune_threshold"]

DEFAULT_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)


class ThresholdChoice(NamedTuple):
    """Unpacks as ``(threshold, score, objective)``; objective is ``net_sharpe`` or ``balanced_accuracy``."""

    threshold: float
    score: float
    objective: str


def _positive_probability(proba: Any) -> np.ndarray:
    arr = np.asarray(proba, dtype=float)
    if arr.ndim == 2 and arr.shape[1] == 2:
        arr = arr[:, 1]
    if arr.ndim != 1:
        raise DataValidationError(
            f"thresholds: need P(up) per row (1-D, or 2 columns), got shape {np.shape(proba)}"
        )
    return arr


def tune_threshold(
    proba_val: Any, y_val: Any, *, forward_returns: Any = None, dates: Any = None, tickers: Any = None,
    fee_bps: float = 0.0, slippage_bps: float = 0.0, grid: Any = None,
    periods_per_year: float = TRADING_DAYS,
) -> ThresholdChoice:
    """Pick the threshold on ``grid`` (default 0.05 … 0.95 by 0.01) that maximises the objective.

    Rows predict the up class (the larger label of ``y_val``) when ``P(up) > threshold``.
    ``forward_returns`` are the 1-day forward returns of the rows (see ``trading``). A grid
    point whose score is undefined (e.g. never invested, so no Sharpe) loses to any defined
    one; if none is defined the score is NaN and the tie rule picks the threshold.
    """
    p = _positive_probability(proba_val)
    y = np.asarray(y_val)
    if len(y) != len(p):
        raise DataValidationError(f"thresholds: {len(p)} probabilities but {len(y)} labels")
    thresholds = np.unique(np.asarray(DEFAULT_GRID if grid is None else grid, dtype=float))
    if len(thresholds) == 0:
        raise ConfigError("thresholds: the grid is empty")

    if forward_returns is None:
        objective = "balanced_accuracy"
        labels = np.unique(y)
        positive, negative = labels[-1], labels[0]
        scores = np.array([balanced_accuracy_score(y, np.where(p > t, positive, negative)) for t in thresholds])
    else:
        if dates is None or tickers is None:
            raise ConfigError("thresholds: forward_returns need dates= and tickers= to build the daily book")
        objective = "net_sharpe"
        frame = pd.DataFrame({
            "ticker": np.asarray(tickers), "date": np.asarray(dates),
            "signal": p, "forward_return": np.asarray(forward_returns, dtype=float),
        })
        scores = np.array([
            backtest(frame, threshold=t, fee_bps=fee_bps, slippage_bps=slippage_bps,
                     periods_per_year=periods_per_year).summary["sharpe"]
            for t in thresholds
        ])

    # Rank by score (undefined last), then distance to 0.5, then the threshold itself.
    # Rounding keeps 0.49 and 0.51 equally near 0.5 despite binary floating point.
    nearness = np.round(np.abs(thresholds - 0.5), 12)
    order = np.lexsort((thresholds, nearness, -np.nan_to_num(scores, nan=-np.inf)))
    best = order[0]
    return ThresholdChoice(float(thresholds[best]), float(scores[best]), objective)
