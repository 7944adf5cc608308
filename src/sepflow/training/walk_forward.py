"""Walk-forward validation: refit a family fold after fold inside the evaluation window and test it.

The evaluation window (``sepflow.validation.calendar``) is tiled by the folds' test blocks; no
row inside it fed any choice (target, features, hyperparameters), so what the folds earn is
out-of-sample evidence. For each ``WalkForward`` fold:

- the fold's training rows end an embargo of trading dates (at least the horizon plus the
  execution lag) before the test block, and every row whose label reaches into the block is
  purged;
- the last ``validation_fraction`` of those trading dates become the fold's validation tail,
  purged and embargoed in trading dates too: early stopping, the calibrator, the decision
  threshold (and an ensemble's weights) are fitted there, never on the test block;
- the family is refit with the constructor params it was trained with (``sklearn.base.clone``
  of the development model: the tuned values, the seed). Row-wise models fit on every k-th
  date (``max_samples_per_symbol``); a sequence model fits on consecutive trading days (its
  ``window_stride`` thins the windows) so its windows mean what they mean in production;
- every row of the test block is predicted, sequence models included.

Every out-of-sample prediction carries a ranking ``score`` (P(up), the expected ordinal class
of a 3-class label, or the predicted return). Evidence, with its error bars:

- **IC.** Per-date rank IC against the target horizon's forward return on every test date;
  its mean, Newey–West standard error and t-statistic, and ``n_dates``. Neighbouring h-day
  returns overlap by h − 1 days; Bartlett weights over only h − 1 lags still leave null
  t-statistics ~20 % too wide (measured in tests/evaluation/test_statistics.py), so 2h lags.
- **Book.** h staggered sub-books, each rebalanced every h trading days and entered
  ``execution_lag_days`` after the signal (``staggered_book``), give one daily return per
  trading day: long-short on the score's top and bottom ``quantile`` by default (market
  neutral) or long-flat on the decided calls, paying ``fee_bps + slippage_bps`` on turnover.
  Its net Sharpe (daily, annualised with 252) comes with its standard error, the
  Probabilistic Sharpe Ratio and the Deflated Sharpe Ratio over ``n_trials`` candidates, and
  ``n_periods`` (daily returns).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from joblib import delayed
from sklearn.base import clone

from sepflow.errors import ConfigError, DataValidationError
from sepflow.evaluation.calibration import reliability_table
from sepflow.evaluation.metrics import (
    classification_metrics,
    daily_information_coefficients,
    information_coefficients,
)
from sepflow.evaluation.statistics import newey_west, sharpe_ratio_stats
from sepflow.evaluation.trading import TRADING_DAYS, max_drawdown, sortino_ratio, staggered_book
from sepflow.features.dataset import Dataset
from sepflow.features.targets import LABEL3_CLASSES
from sepflow.models import EnsembleModel, SepflowModel
from sepflow.progress import parallel_map, quiet
from sepflow.ranking.targets import panel_frame
from sepflow.training.artifacts import TrainedModel, decide
from sepflow.training.params import TrainParams, WalkForwardParams
from sepflow.training.train import (
    SegmentContext,
    calibrated,
    context_length,
    fit_decision_rule,
    ranking_score,
    segment_output,
)
from sepflow.validation.calendar import EvaluationWindow
from sepflow.validation.splits import WalkForward

__all__ = [
    "OUTPUT_COLUMNS", "PREDICTION_COLUMNS", "Evidence", "WalkForwardResult", "date_grid", "refit", "validation_tail",
    "walk_forward", "walk_forward_ensemble",
]

PREDICTION_COLUMNS = ["ticker", "date", "target", "fold", "prediction", "probability", "score", "forward_return"]
# Raw (uncalibrated) outputs per fold on the validation tail and the test block: what an
# ensemble's walk-forward combines instead of refitting every member again.
OUTPUT_COLUMNS = ["ticker", "date", "target", "fold", "segment"]


@dataclass(frozen=True)
class Evidence:
    """What a walk-forward is judged against, and where it may test."""

    window: EvaluationWindow
    forward_returns: np.ndarray  # per row of the dataset: the target horizon's realised return (IC)
    daily_returns: pd.DataFrame  # ticker, date, return: close-to-close to the next trading date (the book)
    execution_lag: int  # trading dates between the signal's close and the book's entry
    n_trials: int  # candidates tried (families x candidate targets): the Deflated Sharpe's N
    prices: np.ndarray | None = None  # per row: the close, for price-space RMSE


@dataclass(frozen=True)
class WalkForwardResult:
    """Out-of-sample predictions, raw outputs, metrics per fold and overall, and plot data."""

    target: str
    predictions: pd.DataFrame  # PREDICTION_COLUMNS
    outputs: pd.DataFrame  # OUTPUT_COLUMNS + out_0 ...
    folds: pd.DataFrame  # one row per fold: dates, sizes and that fold's metrics
    overall: dict[str, float]
    equity: pd.DataFrame  # per book day: gross, net and equal-weight benchmark equity
    rolling_ic: pd.DataFrame  # per date: rank IC and its rolling mean
    calibration: pd.DataFrame  # classifiers: the reliability curve of P(up / BULLISH); empty for regression


@dataclass(frozen=True)
class _Fold:
    number: int
    fit: np.ndarray  # row positions, trading-daily
    validation: np.ndarray  # the validation tail, trading-daily
    test: np.ndarray
    record: dict[str, Any]


@dataclass(frozen=True)
class _FoldOutput:
    fold: _Fold
    validation: np.ndarray  # rows the decision rule (and ensemble weights) are fitted on
    validation_output: np.ndarray
    test_output: np.ndarray


def walk_forward(
    trained: TrainedModel, ds: Dataset, evidence: Evidence, wf: WalkForwardParams, train: TrainParams,
    *, rolling_window: int = 63,
) -> WalkForwardResult:
    """Walk ``trained``'s family forward over the evaluation window of ``ds`` (its target's dataset)."""
    if isinstance(trained.model, EnsembleModel):
        raise ConfigError("walk-forward: an ensemble combines its members' walk-forward outputs; "
                          "use walk_forward_ensemble")
    plan = _Plan.make(trained, ds, evidence, wf)
    rows = [refit_rows(trained.model, fold.fit, fold.validation, plan.grid) for fold in plan.folds]
    # A sequence model's folds are fitted in wf.n_jobs processes: TensorFlow keeps about one
    # core busy on the LSTM's small matrices, so two fits at once use both. Its trained weights
    # do not depend on the process or its thread count (a test compares n_jobs 1 and 2), while
    # its predictions may (thread-sharded matrix products), so the outputs are computed here.
    # Row-wise families fit one fold at a time on their own threads.
    parallel = context_length(trained.model) > 1 and getattr(trained.model, "device", "cpu") == "cpu"
    models = parallel_map(
        [delayed(_fitted)(trained.model, plan.X.iloc[fit], plan.y.iloc[fit], plan.X.iloc[stop], plan.y.iloc[stop])
         for fit, stop, _ in rows],
        n_jobs=wf.n_jobs if parallel else 1, desc=f"walk-forward {plan.target}", unit="fold",
    )
    outputs = [
        _FoldOutput(fold, decision_rows, segment_output(model, plan.X, plan.X.iloc[decision_rows]),
                    segment_output(model, plan.X, plan.X.iloc[fold.test]))
        for fold, model, (_, _, decision_rows) in zip(plan.folds, models, rows, strict=True)
    ]
    return _judge(plan, trained.model, outputs, evidence, wf, train, rolling_window)


def refit(
    template: SepflowModel, X: pd.DataFrame, y: pd.Series, fit: np.ndarray, validation: np.ndarray, grid: np.ndarray,
) -> tuple[SepflowModel, np.ndarray]:
    """One step of the procedure walk-forward judges: ``template``'s family, with its constructor
    params (the tuned values, the seed: ``sklearn.base.clone``), refit on rows ``fit`` with early
    stopping on ``validation`` (as ``refit_rows`` picks them). Returns the model and the
    validation rows its decision rule is fitted on (those on the date ``grid``)."""
    fit, stop, decision = refit_rows(template, fit, validation, grid)
    return _fitted(template, X.iloc[fit], y.iloc[fit], X.iloc[stop], y.iloc[stop]), decision


def refit_rows(
    template: SepflowModel, fit: np.ndarray, validation: np.ndarray, grid: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows a refit fits on, stops early on, and fits its decision rule on (in that order).

    A sequence model's windows are consecutive trading days, as in production; row-wise models
    fit on the date ``grid`` (whole dates, so cross-sections stay complete). The decision rule
    is fitted on the validation rows on the grid.
    """
    on_grid = validation[np.isin(validation, grid)]
    if context_length(template) > 1:
        return fit, validation, on_grid
    return fit[np.isin(fit, grid)], on_grid, on_grid


def _fitted(
    template: SepflowModel, X: pd.DataFrame, y: pd.Series, X_stop: pd.DataFrame, y_stop: pd.Series,
) -> SepflowModel:
    """``template``'s family with its constructor params, fitted (quietly: this may run in a worker)."""
    model = clone(template)
    with quiet():
        model.fit(X, y, eval_set=(X_stop, y_stop))
    return model


def walk_forward_ensemble(
    trained: TrainedModel, ds: Dataset, member_outputs: Mapping[str, pd.DataFrame], evidence: Evidence,
    wf: WalkForwardParams, train: TrainParams, *, rolling_window: int = 63,
) -> tuple[WalkForwardResult, dict[str, str]]:
    """The ensemble's walk-forward: in each fold its weights are fitted on the members' outputs on
    that fold's validation tail and applied to their test outputs (each member refit per fold by
    its own walk-forward; ``member_outputs``: family → that walk's ``outputs``). Returns the
    result and the members skipped (with why)."""
    if not isinstance(trained.model, EnsembleModel):
        raise ConfigError("walk_forward_ensemble: the trained model is not an ensemble")
    plan = _Plan.make(trained, ds, evidence, wf)
    keys = {fold.number: {"validation": plan.keys(fold.validation[np.isin(fold.validation, plan.grid)]),
                          "test": plan.keys(fold.test)} for fold in plan.folds}
    aligned, skipped = {}, {}
    for family in trained.model.members:
        frame = member_outputs.get(family)
        found = None if frame is None else _aligned_outputs(frame[frame["target"] == plan.target], keys)
        if found is None:
            skipped[family] = "no walk-forward outputs" if frame is None else "walked on other rows or folds"
        else:
            aligned[family] = found
    if not aligned:
        raise ConfigError(f"walk-forward ensemble {plan.target}: no member has usable walk-forward outputs: {skipped}")
    ensemble = EnsembleModel({f: trained.model.members[f] for f in aligned}, task=trained.model.task,
                             alpha=trained.model.alpha)
    two_dimensional = trained.task != "regression"
    outputs = []
    for fold in plan.folds:
        by_segment = {segment: {f: _shape(aligned[f][fold.number][segment], two_dimensional) for f in aligned}
                      for segment in ("validation", "test")}
        validation = fold.validation[np.isin(fold.validation, plan.grid)]
        ensemble.fit_weights(ensemble.predictions_frame(by_segment["validation"], plan.X.index[validation]),
                             plan.y.iloc[validation])
        outputs.append(_FoldOutput(fold, validation, ensemble.combine(by_segment["validation"]),
                                   ensemble.combine(by_segment["test"])))
    return _judge(plan, ensemble, outputs, evidence, wf, train, rolling_window), skipped


@dataclass(frozen=True)
class _Plan:
    """The dataset cut to the evaluation window's end, and its folds tiling the window."""

    target: str
    task: str
    horizon: int
    X: pd.DataFrame
    y: pd.Series
    groups: pd.DataFrame
    grid: np.ndarray
    folds: list[_Fold]

    @classmethod
    def make(cls, trained: TrainedModel, ds: Dataset, evidence: Evidence, wf: WalkForwardParams) -> _Plan:
        meta = trained.metadata
        if ds.meta.get("target") != meta["target"]:
            raise ConfigError(f"walk-forward: dataset is for {ds.meta.get('target')!r}, the model for {meta['target']!r}")
        if len(evidence.forward_returns) != len(ds.y):
            raise DataValidationError(f"walk-forward: {len(evidence.forward_returns)} forward returns for "
                                      f"{len(ds.y)} rows")
        window = evidence.window
        horizon = int(ds.meta["horizon"])
        rows = np.flatnonzero((ds.dates <= window.end).to_numpy())
        X, y, groups = panel_frame(ds, rows)
        groups["forward_return"] = np.asarray(evidence.forward_returns, dtype=float)[rows]
        groups["price"] = np.nan if evidence.prices is None else np.asarray(evidence.prices, dtype=float)[rows]
        X = X[trained.features]
        splitter = wf.splitter(horizon + evidence.execution_lag, first_test_date=window.start)
        folds = []
        for number, (train_rows, test_rows) in enumerate(splitter.split(X, groups=groups)):
            record = splitter.fold_ranges_.iloc[number].to_dict()
            _check_inside(record, window)
            fit, validation = validation_tail(groups, train_rows, wf.validation_fraction, splitter.embargo_days)
            record.update(n_fit=len(fit), n_validation=len(validation),
                          fit_end=pd.Timestamp(groups["date"].to_numpy()[fit].max()),
                          validation_start=pd.Timestamp(groups["date"].to_numpy()[validation].min()),
                          train_label_end=pd.Timestamp(groups["label_end"].to_numpy()[train_rows].max()))
            folds.append(_Fold(number, fit, validation, test_rows, record))
        dates = groups["date"].to_numpy()
        grid = np.arange(len(dates)) if not wf.max_samples_per_symbol else date_grid(dates, wf.max_samples_per_symbol)
        return cls(meta["target"], trained.task, horizon, X, y, groups, grid, folds)

    def keys(self, rows: np.ndarray) -> pd.MultiIndex:
        return self.X.index[rows]


def _check_inside(record: Mapping[str, Any], window: EvaluationWindow) -> None:
    """Refuse a fold whose test block leaves the evaluation window: rows before it fed choices."""
    if record["test_start"] < window.start or record["test_end"] > window.end:
        raise ConfigError(
            f"walk-forward: fold {record['fold']} tests {pd.Timestamp(record['test_start']).date()} .. "
            f"{pd.Timestamp(record['test_end']).date()}, outside the evaluation window {window.start.date()} .. "
            f"{window.end.date()}; rows before {window.start.date()} fed the target, feature and tuning choices"
        )


def _aligned_outputs(frame: pd.DataFrame, keys: Mapping[int, Mapping[str, pd.MultiIndex]]) -> dict | None:
    """A member's saved outputs on exactly the ensemble's rows per fold and segment, else None."""
    columns = [c for c in frame.columns if c.startswith("out_")]
    indexed = frame.set_index(["fold", "segment", "ticker", "date"])[columns]
    found: dict[int, dict[str, np.ndarray]] = {}
    for fold, segments in keys.items():
        found[fold] = {}
        for segment, index in segments.items():
            wanted = pd.MultiIndex.from_arrays([np.full(len(index), fold), np.full(len(index), segment),
                                                index.get_level_values("ticker"), index.get_level_values("date")])
            position = indexed.index.get_indexer(wanted)
            if (position < 0).any():
                return None
            found[fold][segment] = indexed.to_numpy(dtype=np.float64)[position]
    return found


def _shape(values: np.ndarray, two_dimensional: bool) -> np.ndarray:
    return values if two_dimensional else values[:, 0]


def _judge(
    plan: _Plan, model: SepflowModel, outputs: list[_FoldOutput], evidence: Evidence, wf: WalkForwardParams,
    train: TrainParams, rolling_window: int,
) -> WalkForwardResult:
    """Calibrate and decide per fold on its validation tail, then score every test row and the book."""
    dates, tickers = plan.groups["date"].to_numpy(), plan.X.index.get_level_values("ticker").to_numpy()
    returns = plan.groups["forward_return"].to_numpy()
    classes = None if model.task == "regression" else model.classes_
    parts, raw, fold_rows = [], [], []
    for out in outputs:
        fold, validation = out.fold, out.validation
        context = SegmentContext(dates=dates[validation], tickers=tickers[validation], returns=returns[validation])
        calibrator, rule = fit_decision_rule(model, out.validation_output, plan.y.iloc[validation].to_numpy(),
                                             context, plan.horizon, train)
        test = fold.test
        part = _prediction_frame(model.task, classes, calibrated(calibrator, out.test_output), rule["threshold"],
                                 plan.y.iloc[test].to_numpy(), returns[test])
        part.insert(0, "ticker", tickers[test])
        part.insert(1, "date", dates[test])
        part.insert(2, "target", plan.target)
        part.insert(3, "fold", fold.number)
        part["_label"] = plan.y.iloc[test].to_numpy()
        part["_close"] = plan.groups["price"].to_numpy()[test]
        parts.append(part)
        for segment, rows, values in (("validation", validation, out.validation_output), ("test", test, out.test_output)):
            values = np.asarray(values, dtype=np.float64).reshape(len(rows), -1)
            raw.append(pd.concat([
                pd.DataFrame({"ticker": tickers[rows], "date": dates[rows], "target": plan.target,
                              "fold": fold.number, "segment": segment}),
                pd.DataFrame(values, columns=[f"out_{k}" for k in range(values.shape[1])]),
            ], axis=1))
        fold_rows.append({**fold.record, "threshold": rule["threshold"],
                          **_fold_metrics(part, plan.horizon, evidence, wf, train, model.task)})

    predictions = pd.concat(parts, ignore_index=True)
    book = _book(predictions, plan.horizon, evidence, wf, train, model.task)
    overall = _quality(predictions, model, plan.horizon)
    overall.update(_evidence(predictions, book, plan.horizon, evidence))
    overall["n_folds"] = float(len(parts))
    rolling = daily_information_coefficients(predictions["date"], predictions["forward_return"],
                                             predictions["score"])[["rank_ic"]]
    rolling["rolling_rank_ic"] = rolling["rank_ic"].rolling(rolling_window, min_periods=rolling_window // 3).mean()
    return WalkForwardResult(
        target=plan.target, predictions=predictions[PREDICTION_COLUMNS], outputs=pd.concat(raw, ignore_index=True),
        folds=pd.DataFrame(fold_rows), overall=overall, equity=_equity(predictions, book, evidence),
        rolling_ic=rolling.reset_index(), calibration=_reliability(predictions, classes, model.task),
    )


def _reliability(predictions: pd.DataFrame, classes: np.ndarray | None, task: str) -> pd.DataFrame:
    """The calibration curve of ``probability`` (P(up) or P(BULLISH)) on the test rows."""
    if task == "regression":
        return reliability_table(np.empty(0), np.empty(0, dtype=bool))
    positive = classes[1] if task == "classification" else LABEL3_CLASSES[-1]
    return reliability_table(predictions["probability"], predictions["_label"].to_numpy() == positive)


def date_grid(dates: np.ndarray, max_per_ticker: int) -> np.ndarray:
    """Row positions on every k-th unique date, k chosen so a ticker listed throughout keeps about
    ``max_per_ticker`` rows. Whole dates are kept: every name of a kept date stays, so per-date
    cross-sections (IC, books) stay complete, unlike a per-ticker sample."""
    unique = np.unique(dates)
    stride = max(1, int(np.ceil(len(unique) / max_per_ticker)))
    return np.flatnonzero(np.searchsorted(unique, dates) % stride == 0)


def validation_tail(
    groups: pd.DataFrame, train_rows: np.ndarray, fraction: float, embargo: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The fold's training rows split into (fit, validation): the last ``fraction`` of its trading
    dates, purged by label end and embargoed like any other boundary (one WalkForward fold over
    them). Called on every training row, so the embargo counts trading dates."""
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


def _quality(frame: pd.DataFrame, model: SepflowModel, horizon: int) -> dict[str, float]:
    """Prediction quality against the labels: classification metrics, or RMSE and direction calls."""
    y = frame["_label"].to_numpy()
    metrics: dict[str, float] = {}
    if model.task == "regression":
        pred = frame["prediction"].to_numpy()
        metrics["rmse"] = float(np.sqrt(np.mean((pred - y) ** 2)))
        metrics.update(_direction_metrics(y, pred))
        if frame["_close"].notna().all():
            metrics["rmse_price"] = float(np.sqrt(np.mean((frame["_close"].to_numpy() * (pred - y)) ** 2)))
    else:
        classes = model.classes_
        proba = frame[[f"_p{i}" for i in range(len(classes))]].to_numpy()
        metrics.update(classification_metrics(y, _decided_labels(frame, classes, model.task), proba, labels=classes))
    return {key: float(value) for key, value in metrics.items()}


def _evidence(frame: pd.DataFrame, book: pd.DataFrame, horizon: int, evidence: Evidence) -> dict[str, float]:
    """IC with its Newey–West error bar, and the daily book's Sharpe with SE, PSR and DSR."""
    known = frame["forward_return"].notna()
    metrics = dict(information_coefficients(frame.loc[known, "date"], frame.loc[known, "forward_return"],
                                            frame.loc[known, "score"]))
    daily = daily_information_coefficients(frame.loc[known, "date"], frame.loc[known, "forward_return"],
                                           frame.loc[known, "score"])["rank_ic"]
    ic = newey_west(daily.to_numpy(), lags=2 * horizon)
    metrics.update(rank_ic=ic.mean, rank_ic_se=ic.se, rank_ic_tstat=ic.tstat, n_dates=float(ic.n))
    net = book["net"].to_numpy(dtype=float)
    sharpe = sharpe_ratio_stats(net, periods_per_year=TRADING_DAYS, n_trials=evidence.n_trials)
    gross = sharpe_ratio_stats(book["gross"].to_numpy(dtype=float), periods_per_year=TRADING_DAYS)
    metrics.update(
        net_sharpe=sharpe.sharpe, net_sharpe_se=sharpe.sharpe_se, psr=sharpe.psr, dsr=sharpe.dsr,
        n_trials=float(evidence.n_trials), n_periods=float(sharpe.n_periods), gross_sharpe=gross.sharpe,
        sortino=sortino_ratio(net, TRADING_DAYS), max_drawdown=max_drawdown(net),
        turnover=float(book["turnover"].mean()) if len(book) else float("nan"),
    )
    return {key: float(value) for key, value in metrics.items()}


def _fold_metrics(
    part: pd.DataFrame, horizon: int, evidence: Evidence, wf: WalkForwardParams, train: TrainParams, task: str,
) -> dict[str, float]:
    """One fold's IC and book, for the per-fold table (the overall figures pool every fold)."""
    known = part["forward_return"].notna()
    ic = information_coefficients(part.loc[known, "date"], part.loc[known, "forward_return"], part.loc[known, "score"])
    book = _book(part, horizon, evidence, wf, train, task)
    stats = sharpe_ratio_stats(book["net"].to_numpy(dtype=float), periods_per_year=TRADING_DAYS)
    gross = sharpe_ratio_stats(book["gross"].to_numpy(dtype=float), periods_per_year=TRADING_DAYS)
    return {"rank_ic": float(ic["rank_ic"]), "ic": float(ic["ic"]), "net_sharpe": stats.sharpe,
            "net_sharpe_se": stats.sharpe_se, "gross_sharpe": gross.sharpe, "n_periods": float(stats.n_periods)}


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


def _book(
    frame: pd.DataFrame, horizon: int, evidence: Evidence, wf: WalkForwardParams, train: TrainParams, task: str,
) -> pd.DataFrame:
    """The daily staggered book of ``frame``'s signals (every test date is a signal date).

    Long-short ranks names by ``score``; long-flat holds the names the model calls up (the
    fold's validation-tuned rule for classifiers, a positive predicted return for regression).
    """
    long_short = wf.scheme == "long_short"
    signals = pd.DataFrame({"ticker": frame["ticker"].to_numpy(), "date": frame["date"].to_numpy(),
                            "signal": frame["score" if long_short else "prediction"].to_numpy()})
    return staggered_book(signals, evidence.daily_returns, horizon=horizon, execution_lag=evidence.execution_lag,
                          scheme=wf.scheme, quantile=wf.quantile,
                          threshold=0.0 if long_short or task != "classification" else 0.5,
                          fee_bps=train.fee_bps, slippage_bps=train.slippage_bps)


def _equity(predictions: pd.DataFrame, book: pd.DataFrame, evidence: Evidence) -> pd.DataFrame:
    """Compounded gross and net equity of ``book``, and of holding the names of each test date
    equally weighted (the benchmark) over the same days."""
    names = predictions[["ticker", "date"]]
    daily = evidence.daily_returns.merge(names, on=["ticker", "date"], how="inner")
    benchmark = daily.groupby("date")["return"].mean().reindex(book.index).fillna(0.0)
    return pd.DataFrame({
        "date": book.index, "gross": (1 + book["gross"]).cumprod().to_numpy(),
        "net": (1 + book["net"]).cumprod().to_numpy(), "benchmark": (1 + benchmark).cumprod().to_numpy(),
    })
