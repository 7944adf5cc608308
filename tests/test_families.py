"""The names params are checked against match what sepflow.models implements."""

from __future__ import annotations

import subprocess
import sys

import optuna
import pytest

from sepflow.errors import ConfigError
from sepflow.families import FAMILY_NAMES, SCORINGS, TASKS, TUNABLE
from sepflow.models import FAMILIES
from sepflow.models.base import SepflowModel
from sepflow.models.tuning import search_space


def test_every_named_family_is_implemented_and_no_other() -> None:
    assert sorted(FAMILIES) == sorted(FAMILY_NAMES)
    assert set(SCORINGS) == set(TASKS)


@pytest.mark.parametrize("family", TUNABLE)
def test_every_tunable_family_has_a_search_space(family: str) -> None:
    trial = optuna.create_study().ask()
    assert search_space(family, trial, "classification", n_estimators_range=(5, 10))


def test_an_unnamed_family_cannot_register() -> None:
    with pytest.raises(ConfigError, match="not named"):
        type("Rogue", (SepflowModel,), {"family": "rogue"})


def test_reading_params_imports_no_model_library() -> None:
    """The params layer stays light: a stage that only reads params.yaml loads no model code."""
    code = ("import sys, sepflow.config; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('sepflow', 'xgboost', 'lightgbm', 'sklearn', 'tensorflow', 'mlflow')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "sepflow.models" not in loaded and "xgboost" not in loaded and "tensorflow" not in loaded
