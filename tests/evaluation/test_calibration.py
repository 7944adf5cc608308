"""Calibrators fitted on validation rows fix overconfident probabilities on held-out rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from sepflow.errors import ConfigError, DataValidationError
from sepflow.evaluation.calibration import fit_calibrator, reliability_table


def _overconfident_binary(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """True P(up) = sigmoid(z); the model reports sigmoid(3z), far too sure of itself."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return 1 / (1 + np.exp(-3 * z)), y


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_calibration_on_validation_improves_held_out_brier(method):
    proba_val, y_val = _overconfident_binary(seed=0, n=4000)
    proba_test, y_test = _overconfident_binary(seed=1, n=4000)
    calibrator = fit_calibrator(proba_val, y_val, method=method)
    calibrated = calibrator.transform(proba_test)
    assert calibrated.shape == proba_test.shape
    assert brier_score_loss(y_test, calibrated) < brier_score_loss(y_test, proba_test) - 0.01
    # Two-column input gets two columns back, rows summing to one, same positive column.
    both = calibrator.transform(np.column_stack([1 - proba_test, proba_test]))
    np.testing.assert_allclose(both.sum(axis=1), 1.0)
    np.testing.assert_allclose(both[:, 1], calibrated)


def test_multiclass_one_vs_rest_is_renormalised_and_improves_brier():
    rng = np.random.default_rng(2)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        logits = rng.normal(size=(n, 3))
        true_p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        y = np.array([rng.choice(3, p=row) for row in true_p])
        sharp = np.exp(3 * logits) / np.exp(3 * logits).sum(axis=1, keepdims=True)
        return sharp, y

    (proba_val, y_val), (proba_test, y_test) = sample(3000), sample(3000)
    calibrated = fit_calibrator(proba_val, y_val).transform(proba_test)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)

    def multiclass_brier(p: np.ndarray) -> float:
        return float(np.mean(np.sum((p - np.eye(3)[y_test]) ** 2, axis=1)))

    assert multiclass_brier(calibrated) < multiclass_brier(proba_test) - 0.01


def test_calibrator_rejects_inputs_it_cannot_learn_from():
    with pytest.raises(ConfigError, match="method"):
        fit_calibrator([0.2, 0.8], [0, 1], method="beta")
    with pytest.raises(ConfigError, match="classes"):
        fit_calibrator([0.2, 0.8, 0.6], [1, 1, 1])
    with pytest.raises(DataValidationError, match="both outcomes"):
        fit_calibrator(np.full((3, 3), 1 / 3), [0, 1, 1], classes=[0, 1, 2])
    with pytest.raises(DataValidationError, match=r"\[0, 1\]"):
        fit_calibrator([0.2, 1.5], [0, 1])


def test_reliability_table_bins_predictions_and_measures_observed_frequency():
    p = np.array([0.05, 0.05, 0.15, 0.95, 1.0, np.nan])
    hit = np.array([0, 1, 0, 1, 1, 1], dtype=bool)
    table = reliability_table(p, hit, n_bins=10)
    assert table["bin"].tolist() == [0.0, 0.1, 0.9]  # empty bins are left out; p = 1 lands in the top bin
    assert table["predicted"].tolist() == pytest.approx([0.05, 0.15, 0.975])
    assert table["observed"].tolist() == [0.5, 0.0, 1.0]
    assert table["rows"].tolist() == [2, 1, 2]  # the NaN probability is not counted


def test_reliability_of_calibrated_probabilities_lies_on_the_diagonal():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 200_000)
    table = reliability_table(p, rng.uniform(0, 1, p.size) < p)
    assert np.abs(table["observed"] - table["predicted"]).max() < 0.01
    assert table["rows"].sum() == p.size and len(table) == 10
