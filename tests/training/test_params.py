"""TrainParams: defaults, validation, and the Optuna storage resolved to the repository root."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sepflow.training.params import TrainParams, TuningParams


def test_defaults() -> None:
    params = TrainParams()
    assert params.families == ["dummy", "random_forest", "xgboost", "lightgbm", "lstm", "ensemble"]
    assert params.ensemble_members == ["dummy", "random_forest", "xgboost", "lightgbm", "lstm"]
    assert (params.validation_fraction, params.test_fraction, params.n_splits) == (0.15, 0.15, 3)
    assert params.calibration == "isotonic" and params.max_samples_per_symbol is None
    assert params.tuning.n_trials == {"random_forest": 6, "xgboost": 10, "lightgbm": 10}
    assert params.tuning.scoring["regression"] == "rank_ic"
    assert params.model_params("xgboost")["early_stopping_rounds"] == 30
    assert params.model_params("lstm")["sequence_length"] == 20
    assert params.embargo_for(10) == 10 and params.embargo_for(1) == 5


@pytest.mark.parametrize(
    "section",
    [
        {"familes": ["dummy"]},
        {"families": ["dummy", "dummy"]},
        {"families": ["catboost"]},
        {"validation_fraction": 0.6, "test_fraction": 0.5},
        {"calibration": "beta"},
        {"tuning": {"n_trials": {"lstm": 3}}},
        {"tuning": {"scoring": {"classification": "rank_ic", "multiclass": "roc_auc", "regression": "neg_rmse"}}},
        {"tuning": {"n_estimators_range": [50, 10]}},
    ],
)
def test_bad_sections_are_refused(section: dict) -> None:
    with pytest.raises(ValidationError):
        TrainParams.model_validate(section)


def test_storage_resolves_relative_sqlite_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert TuningParams().resolved_storage() == f"sqlite:///{tmp_path.resolve() / 'optuna.db'}"
    absolute = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert TuningParams(storage=absolute).resolved_storage() == absolute
    assert TuningParams(storage="postgresql://optuna@db/studies").resolved_storage() == "postgresql://optuna@db/studies"
    assert TuningParams(storage=None).resolved_storage() is None
