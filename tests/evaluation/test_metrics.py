"""Classification, regression and IC metrics against scikit-learn, scipy and hand-worked values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as skm

from sepflow.errors import DataValidationError
from sepflow.evaluation.metrics import (
    classification_metrics,
    daily_information_coefficients,
    information_coefficients,
    regression_metrics,
)


def test_binary_classification_matches_sklearn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, 300)
    proba = np.clip(0.5 * y_true + 0.5 * rng.random(300), 0.01, 0.99)
    y_pred = (proba > 0.5).astype(int)
    got = classification_metrics(y_true, y_pred, proba)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    assert got["precision"] == pytest.approx(skm.precision_score(y_true, y_pred))
    assert got["recall"] == pytest.approx(skm.recall_score(y_true, y_pred))
    assert got["f1"] == pytest.approx(skm.f1_score(y_true, y_pred))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true, proba))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y_true, proba))
    assert got["brier"] == pytest.approx(np.mean((proba - y_true) ** 2))
    assert all(type(v) is float for v in got.values())
    # Two-column probabilities give the same numbers as the positive column alone.
    assert classification_metrics(y_true, y_pred, np.column_stack([1 - proba, proba])) == pytest.approx(got)


def test_direction_labels_use_larger_label_as_positive_and_ordinal_rmse():
    got = classification_metrics([-1, 1, 1, -1], [-1, 1, -1, -1], [0.2, 0.9, 0.4, 0.3])
    assert got["precision"] == 1.0 and got["recall"] == 0.5
    # One miss of size 2 among 4 rows: sqrt(4 / 4).
    assert got["rmse"] == pytest.approx(1.0)
    three_class = classification_metrics([-1, 0, 1, 1], [1, 0, 1, 0])
    assert three_class["rmse"] == pytest.approx(math.sqrt((4 + 0 + 0 + 1) / 4))


def test_multiclass_matches_sklearn_and_one_class_auc_is_nan():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 3, 200)
    proba = rng.dirichlet(np.ones(3), 200)
    y_pred = proba.argmax(axis=1)
    got = classification_metrics(y_true, y_pred, proba)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true, proba, multi_class="ovr"))
    assert got["f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert got["brier"] == pytest.approx(np.mean(np.sum((proba - np.eye(3)[y_true]) ** 2, axis=1)))
    with pytest.warns(UserWarning, match="not in y_true"):  # sklearn's balanced accuracy notes it
        one_class = classification_metrics([1, 1, 1], [1, 0, 1], [0.7, 0.4, 0.8], labels=[0, 1])
    assert math.isnan(one_class["roc_auc"]) and math.isfinite(one_class["log_loss"])


def test_regression_metrics_hand_worked():
    got = regression_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 5.0, 3.0])
    assert got == pytest.approx({"rmse": math.sqrt((4 + 1) / 4), "mae": 3 / 4})
    with pytest.raises(DataValidationError, match="length"):
        regression_metrics([1.0, 2.0], [1.0])
    with pytest.raises(DataValidationError, match="non-finite"):
        regression_metrics([1.0, np.nan], [1.0, 2.0])


def _ic_panel() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    frames = []
    for i, date in enumerate(pd.bdate_range("2023-01-02", periods=30)):
        n = 3 if i == 4 else 12  # date 4 has too few names
        truth = rng.normal(size=n)
        pred = np.round(truth + rng.normal(size=n), 1)  # rounding makes rank ties
        if i == 7:
            pred[:] = 0.5  # a constant cross-section has no IC
        frames.append(pd.DataFrame({"date": date, "y_true": truth, "y_pred": pred}))
    panel = pd.concat(frames, ignore_index=True)
    panel.loc[5, "y_pred"] = np.nan  # missing predictions are dropped
    return panel


def test_per_date_ic_matches_scipy_loop():
    panel = _ic_panel()
    daily = daily_information_coefficients(panel["date"], panel["y_true"], panel["y_pred"], min_names=5)
    clean = panel.dropna()
    expected = {}
    for date, group in clean.groupby("date"):
        if len(group) >= 5 and group["y_pred"].nunique() > 1:
            expected[date] = (
                stats.pearsonr(group["y_true"], group["y_pred"])[0],
                stats.spearmanr(group["y_true"], group["y_pred"])[0],
            )
    dates = list(daily.index)
    assert pd.Timestamp("2023-01-06") not in dates  # the 3-name date
    assert math.isnan(daily.loc[pd.Timestamp("2023-01-11"), "ic"])  # the constant date
    assert daily.loc[pd.Timestamp("2023-01-02"), "n_names"] == 11
    for date, (ic, rank_ic) in expected.items():
        assert daily.loc[date, "ic"] == pytest.approx(ic, abs=1e-12)
        assert daily.loc[date, "rank_ic"] == pytest.approx(rank_ic, abs=1e-12)

    summary = information_coefficients(panel["date"], panel["y_true"], panel["y_pred"])
    ics = np.array([v[0] for v in expected.values()])
    rank_ics = np.array([v[1] for v in expected.values()])
    assert summary["n_dates"] == len(expected) == 28
    assert summary["ic"] == pytest.approx(ics.mean())
    assert summary["rank_ic"] == pytest.approx(rank_ics.mean())
    assert summary["icir"] == pytest.approx(ics.mean() / ics.std(ddof=1))
    assert summary["rank_icir"] == pytest.approx(rank_ics.mean() / rank_ics.std(ddof=1))


def test_icir_hand_worked_and_undefined_cases():
    # Two dates: a perfect rank relation, then one with sum of squared rank gaps 20 (rho 0).
    dates = np.repeat(pd.to_datetime(["2024-01-02", "2024-01-03"]).to_numpy(), 5)
    y_true = np.array([1, 2, 3, 4, 5, 1, 2, 3, 4, 5], dtype=float)
    y_pred = np.array([1, 2, 3, 4, 5, 2, 5, 3, 1, 4], dtype=float)
    got = information_coefficients(dates, y_true, y_pred)
    assert got["rank_ic"] == pytest.approx(0.5)
    assert got["rank_icir"] == pytest.approx(0.5 / np.std([1.0, 0.0], ddof=1))
    one_date = information_coefficients(dates[:5], y_true[:5], y_pred[:5])
    assert one_date["rank_ic"] == pytest.approx(1.0) and math.isnan(one_date["rank_icir"])
