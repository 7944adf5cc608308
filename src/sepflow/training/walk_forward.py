"""Walk-forward validation: retrain a family period after period and predict the next one.

A single test segment flatters; a model earns trust when it is refit on an expanding (or
sliding) window of the past and tested on the period that follows, again and again. For each
``WalkForward`` fold (``sepflow.validation.splits``):

- the fold's training rows end ``embargo`` unique dates before the test block, and every row
  whose label reaches into the test block is purged;
- the last ``validation_fraction`` of those training dates become the fold's validation tail
  (purged and embargoed the same way): early stopping, the calibrator and the decision
  threshold are fitted there, never on the test block;
- the family is refit with the constructor params it was trained with (``sklearn.base.clone``
  of the trained model: the tuned values, the seed), so the walk-forward judges the
  configuration that ``train@FAMILY`` registered;
- the test block is predicted (an LSTM looks back on earlier feature rows only).

Every out-of-sample prediction carries a ranking ``score`` (P(up), the expected ordinal class
of a 3-class label, or the predicted return) that is scored against the realised forward
return of the target's horizon: IC, rank IC, ICIR, and a book that trades every
``horizon``-th test date (non-overlapping holdings, annualised with 252 / horizon). The book is
long-short on the score's top and bottom ``quantile`` by default (market neutral: a long-only
book would credit every model with the market's drift) and pays ``fee_bps + slippage_bps``
on turnover. Regression targets also report direction metrics from the sign of the prediction
and, given prices, the RMSE in price space: ``close_t * (1 + return)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from sepflow.errors import ConfigError
from sepflow.evaluation.metrics import (
    classification_metrics,
    daily_information_coefficients,
    information_coefficients,
)
from sepflow.evaluation.trading import TRADING_DAYS, backtest, performance_summary
from sepflow.features.dataset import Dataset
from sepflow.features.targets import LABEL3_CLASSES
from sepflow.progress import progress
from sepflow.ranking.targets import panel_frame
from sepflow.training.artifacts import TrainedModel, decide
from sepflow.training.params import TrainParams, WalkForwardParams
from sepflow.training.train import (
    SegmentContext,
    calibrated,
    context_length,
    fit_decision_rule,
    holding_rows,
    ranking_score,
    segment_output,
)
from sepflow.validation.splits import WalkForward

__all__ = ["PREDICTION_COLUMNS", "WalkForwardParams", "WalkForwardResult", "walk_forward", "wf_tags"]

PREDICTION_COLUMNS = ["ticker", "date", "target", "fold", "prediction", "probability", "score", "forward_return"]


@dataclass(frozen=True)
class WalkForwardResult:
    """Out-of-sample predictions (``PREDICTION_COLUMNS``), metrics per fold and overall, and plot data."""

    target: str
    predictions: pd.DataFrame
    folds: pd.DataFrame  # one row per fold: dates, sizes and that fold's metrics
    overall: dict[str, float]
    equity: pd.DataFrame  # per holding date: gross, net and buy-and-hold equity
    rolling_ic: pd.DataFrame  # per date: rank IC and its rolling mean


def walk_forward(
    trained: TrainedModel,
    ds: Dataset,
    forward_returns: np.ndarray,
    wf: WalkForwardParams,
    train: TrainParams,
    *,
    prices: np.ndarray | None = None,
    rolling_window: int = 63,
) -> WalkForwardResult:
    """Walk ``trained``'s family forward over ``ds`` (the dataset of ``trained``'s target).

    ``forward_returns`` holds the target horizon's realised return for every row of ``ds``
    (``forward_returns_for``); ``prices`` (optional, per row) the close at each row's date, for
    price-space RMSE. ``train`` supplies calibration, fees and slippage.
    """
    meta = trained.metadata
    if meta.get("family") == "ensemble":
        raise ConfigError("walk-forward: the ensemble has no walk-forward of its own; walk its members")
    if ds.meta.get("target") != meta["target"]:
        raise ConfigError(f"walk-forward: dataset is for {ds.meta.get('target')!r}, the model for {meta['target']!r}")
    horizon = int(ds.meta["horizon"])
    X_all, y_all, groups = panel_frame(ds)
    X_all = X_all[trained.features]
    returns = np.asarray(forward_returns, dtype=float)
    close = None if prices is None else np.asarray(prices, dtype=float)
    grid = None if not wf.max_samples_per_symbol else _date_grid(ds.dates.to_numpy(), wf.max_samples_per_symbol)
    # Folds fit on the date grid. A sequence model reads its windows from the rows it is given, so
    # it also predicts on the grid, with grid rows as context (evenly spaced windows, as it was
    # fitted); other models predict every row of the test block.
    sequence = grid is not None and context_length(trained.model) > 1
    history = X_all.iloc[grid] if sequence else X_all
    splitter = wf.splitter(horizon)
    folds = list(splitter.split(X_all, groups=groups))
    ranges = splitter.fold_ranges_
    first = 0 if wf.max_folds is None else max(0, len(folds) - wf.max_folds)
    dates = groups["date"].to_numpy()
    tickers = X_all.index.get_level_values("ticker").to_numpy()

    regression = trained.task == "regression"
    parts, fold_rows = [], []
    for number in progress(range(first, len(folds)), desc=f"walk-forward {meta['target']}", unit="fold"):
        train_rows, test_rows = folds[number]
        if grid is not None:
            train_rows = train_rows[np.isin(train_rows, grid)]
        if sequence:
            test_rows = test_rows[np.isin(test_rows, grid)]
        fit_rows, validation_rows = _validation_tail(groups, train_rows, wf.validation_fraction, splitter.embargo_days)
        model = clone(trained.model)  # the trained constructor params (tuned values, seed), unfitted
        model.fit(X_all.iloc[fit_rows], y_all.iloc[fit_rows],
                  eval_set=(X_all.iloc[validation_rows], y_all.iloc[validation_rows]))
        context = SegmentContext(dates=dates[validation_rows], tickers=tickers[validation_rows],
                                 returns=returns[validation_rows])
        calibrator, rule = fit_decision_rule(
            model, segment_output(model, history, X_all.iloc[validation_rows]),
            y_all.iloc[validation_rows].to_numpy(), context, horizon, train,
        )
        output = calibrated(calibrator, segment_output(model, history, X_all.iloc[test_rows]))
        part = _prediction_frame(model.task, model.classes_ if model.task != "regression" else None, output,
                                 rule["threshold"], y_all.iloc[test_rows].to_numpy(), returns[test_rows])
        part.insert(0, "ticker", tickers[test_rows])
        part.insert(1, "date", dates[test_rows])
        part.insert(2, "target", meta["target"])
        part.insert(3, "fold", number)
        part["_label"] = y_all.iloc[test_rows].to_numpy()
        part["_close"] = np.nan if close is None else close[test_rows]
        parts.append(part)
        record = ranges.iloc[number].to_dict()
        record.update(n_fit=len(fit_rows), n_validation=len(validation_rows), threshold=rule["threshold"])
        record["fit_end"] = pd.Timestamp(dates[fit_rows].max())
        record["train_label_end"] = pd.Timestamp(groups["label_end"].to_numpy()[train_rows].max())
        fold_rows.append({**record, **_metrics(part, trained, horizon, _book(part, horizon, wf, train, regression))})

    predictions = pd.concat(parts, ignore_index=True)
    book = _book(predictions, horizon, wf, train, regression)
    overall = _metrics(predictions, trained, horizon, book)
    overall["n_folds"] = float(len(parts))
    equity = _equity(predictions, book, horizon)
    rolling = daily_information_coefficients(predictions["date"], predictions["forward_return"],
                                             predictions["score"])[["rank_ic"]]
    rolling["rolling_rank_ic"] = rolling["rank_ic"].rolling(rolling_window, min_periods=rolling_window // 3).mean()
    return WalkForwardResult(
        target=meta["target"], predictions=predictions[PREDICTION_COLUMNS], folds=pd.DataFrame(fold_rows),
        overall=overall, equity=equity, rolling_ic=rolling.reset_index(),
    )


def _date_grid(dates: np.ndarray, max_per_ticker: int) -> np.ndarray:
    """Row positions on every k-th unique date, k chosen so a ticker listed throughout keeps about
    ``max_per_ticker`` rows. Whole dates are kept: every name of a kept date stays, so per-date
    cross-sections (IC, books) stay complete, unlike a per-ticker sample."""
    unique = np.unique(dates)
    stride = max(1, int(np.ceil(len(unique) / max_per_ticker)))
    return np.flatnonzero(np.searchsorted(unique, dates) % stride == 0)


def _validation_tail(
    groups: pd.DataFrame, train_rows: np.ndarray, fraction: float, embargo: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The fold's training rows split into (fit, validation): the last ``fraction`` of its dates,
    purged by label end and embargoed like any other boundary (one WalkForward fold over them)."""
    window = groups.iloc[train_rows]
    n_dates = window["date"].nunique()
    n_validation = max(1, round(n_dates * fraction))
    if n_dates - n_validation - embargo < 1:
        raise ConfigError(
            f"walk-forward: a fold's {n_dates} training dates cannot hold a validation tail of {n_validation} "
            f"dates and an embargo of {embargo}; raise walk_forward.train_days"
        )
    inner = WalkForward(test_days=n_validation, embargo_days=embargo, min_train_days=n_dates - n_validation - embargo)
    fit, validation = next(inner.split(window, groups=window))
    return train_rows[fit], train_rows[validation]


def _prediction_frame(
    task: str, classes: np.ndarray | None, output: np.ndarray, threshold: float | None,
    y: np.ndarray, returns: np.ndarray,
) -> pd.DataFrame:
    """``prediction`` (decided class as 0/1, -1/0/1 for 3-class labels, or the return), ``probability``
    (P(up) or P(BULLISH); NaN for regression), the ranking ``score``, and every class's calibrated
    probability in hidden ``_p<i>`` columns for the metrics."""
    if task == "regression":
        return pd.DataFrame({"prediction": output, "probability": np.nan, "score": output, "forward_return": returns})
    decided = decide(output, classes, threshold)
    if task == "classification":
        prediction, probability = (decided == classes[1]).astype(float), output[:, 1]
    else:
        prediction = np.array([LABEL3_CLASSES.index(c) - 1 for c in decided], dtype=float)
        probability = output[:, classes.tolist().index(LABEL3_CLASSES[-1])]
    score, _ = ranking_score(task, classes, output, y, returns)
    frame = pd.DataFrame({"prediction": prediction, "probability": probability, "score": score,
                          "forward_return": returns})
    for i in range(output.shape[1]):
        frame[f"_p{i}"] = output[:, i]
    return frame


def _metrics(frame: pd.DataFrame, trained: TrainedModel, horizon: int, book: pd.DataFrame) -> dict[str, float]:
    """Prediction quality, IC and the performance of ``book`` (``_book`` of the same rows)."""
    y = frame["_label"].to_numpy()
    metrics: dict[str, float] = {}
    if trained.task == "regression":
        pred = frame["prediction"].to_numpy()
        metrics["rmse"] = float(np.sqrt(np.mean((pred - y) ** 2)))
        metrics.update(_direction_metrics(y, pred))
        if frame["_close"].notna().all():
            metrics["rmse_price"] = float(np.sqrt(np.mean((frame["_close"].to_numpy() * (pred - y)) ** 2)))
    else:
        classes = trained.model.classes_
        proba = frame[[f"_p{i}" for i in range(len(classes))]].to_numpy()
        decided = _decided_labels(frame, classes, trained.task)
        metrics.update(classification_metrics(y, decided, proba, labels=classes))
    known = frame["forward_return"].notna()
    metrics.update(information_coefficients(frame.loc[known, "date"], frame.loc[known, "forward_return"],
                                            frame.loc[known, "score"]))
    metrics["rank_ic_tstat"] = _rank_ic_tstat(frame[known], horizon)
    summary = performance_summary(book, periods_per_year=TRADING_DAYS / horizon)
    metrics.update(net_sharpe=summary["sharpe"], gross_sharpe=summary["gross_sharpe"], sortino=summary["sortino"],
                   max_drawdown=summary["max_drawdown"], turnover=summary["avg_turnover"],
                   n_periods=summary["n_periods"])
    return {key: float(value) for key, value in metrics.items()}


def _direction_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Accuracy and balanced accuracy of the predicted return's sign as an up/down call."""
    up, called_up = y > 0, pred > 0
    recalls = [np.mean(called_up[up]) if up.any() else np.nan, np.mean(~called_up[~up]) if (~up).any() else np.nan]
    return {"direction_accuracy": float(np.mean(up == called_up)),
            "direction_balanced_accuracy": float(np.nanmean(recalls))}


def _decided_labels(frame: pd.DataFrame, classes: np.ndarray, task: str) -> np.ndarray:
    codes = frame["prediction"].to_numpy()
    if task == "classification":
        return np.where(codes > 0.5, classes[1], classes[0])
    return np.array([LABEL3_CLASSES[int(code) + 1] for code in codes], dtype=object)


def _rank_ic_tstat(frame: pd.DataFrame, horizon: int) -> float:
    """t-statistic of the mean rank IC over every ``horizon``-th date, whose labels do not overlap."""
    daily = daily_information_coefficients(frame["date"], frame["forward_return"], frame["score"])["rank_ic"]
    values = daily.iloc[::horizon].dropna()
    if len(values) < 3 or values.std(ddof=1) == 0:
        return float("nan")
    return float(values.mean() / values.std(ddof=1) * np.sqrt(len(values)))


def _book(
    frame: pd.DataFrame, horizon: int, wf: WalkForwardParams, train: TrainParams, regression: bool,
) -> pd.DataFrame:
    """Daily book on non-overlapping holding dates (every ``horizon``-th date with a known return).

    Long-short ranks names by ``score``; long-flat holds the names the model calls up (the
    fold's validation-tuned rule for classifiers, a positive predicted return for regression).
    """
    rows = holding_rows(frame["date"].to_numpy(), frame["forward_return"].to_numpy(), horizon)
    held = frame.iloc[rows]
    signal, threshold = (held["score"], 0.0) if wf.scheme == "long_short" else (
        held["prediction"], 0.0 if regression else 0.5)
    book_frame = pd.DataFrame({"ticker": held["ticker"].to_numpy(), "date": held["date"].to_numpy(),
                               "signal": signal.to_numpy(), "forward_return": held["forward_return"].to_numpy()})
    return backtest(book_frame, scheme=wf.scheme, quantile=wf.quantile, threshold=threshold,
                    fee_bps=train.fee_bps, slippage_bps=train.slippage_bps,
                    periods_per_year=TRADING_DAYS / horizon).book


def _equity(predictions: pd.DataFrame, book: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Compounded gross and net equity of ``book``, and of holding the whole universe equally weighted."""
    rows = holding_rows(predictions["date"].to_numpy(), predictions["forward_return"].to_numpy(), horizon)
    universe = predictions.iloc[rows].groupby("date")["forward_return"].mean().reindex(book.index).fillna(0.0)
    return pd.DataFrame({
        "date": book.index, "gross": (1 + book["gross"]).cumprod().to_numpy(),
        "net": (1 + book["net"]).cumprod().to_numpy(), "buy_and_hold": (1 + universe).cumprod().to_numpy(),
    })


def wf_tags(overall: dict[str, Any]) -> dict[str, str]:
    """Version tags ``sepflow.wf.<metric>`` for the finite overall metrics."""
    return {f"sepflow.wf.{key}": repr(float(value)) for key, value in overall.items()
            if value is not None and np.isfinite(value)}
