"""The date rule: the evaluation window, the development region, and who may use which rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sepflow.config import Params
from sepflow.errors import ConfigError
from sepflow.features.dataset import Dataset
from sepflow.validation.calendar import development_rows, evaluation_window

CALENDAR = pd.bdate_range("2020-01-01", periods=300).to_numpy()


def test_window_ends_where_the_longest_label_runs_out_and_development_ends_an_embargo_before() -> None:
    window = evaluation_window(CALENDAR, window_days=60, embargo_days=10, label_days=31)
    end = len(CALENDAR) - 1 - 31
    assert window.end == CALENDAR[end] and window.start == CALENDAR[end - 59]
    assert window.development_end == CALENDAR[end - 59 - 11]
    assert window.asof == CALENDAR[-1] and window.n_dates == 60
    assert window.as_dict()["eval_dates"] == 60


def test_params_derive_the_same_window_for_every_stage() -> None:
    params = Params.model_validate({"walk_forward": {"test_days": 20, "n_folds": 3, "embargo_days": 5},
                                    "targets": {"horizons": [1, 5, 10]}, "evaluation": {"execution_lag_days": 1}})
    window = params.evaluation_window(CALENDAR)
    assert window.n_dates == 60
    assert window.end == CALENDAR[len(CALENDAR) - 1 - 11]  # longest horizon 10 + lag 1
    assert window.embargo_days == 11


def test_renamed_max_folds_is_refused_with_the_new_name() -> None:
    with pytest.raises(ValueError, match="n_folds"):
        Params.model_validate({"walk_forward": {"max_folds": 3}})


def test_a_window_that_leaves_no_development_data_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="lower walk_forward.n_folds"):
        evaluation_window(CALENDAR[:50], window_days=40, embargo_days=10, label_days=5)


def test_development_rows_keep_only_labels_ending_by_the_development_end() -> None:
    dates = pd.Series(np.repeat(CALENDAR[:100], 2))
    label_end = pd.Series(np.repeat(CALENDAR[5:105], 2))
    ds = Dataset(X=pd.DataFrame({"f": np.arange(200.0)}), y=pd.Series(np.arange(200.0)), dates=dates,
                 tickers=pd.Series(["A", "B"] * 100), label_end=label_end, feature_names=("f",),
                 meta={"target": "return_5d", "dropped": {}})
    window = evaluation_window(CALENDAR[:120], window_days=30, embargo_days=5, label_days=5)
    kept = development_rows(ds, window)
    assert (kept.label_end <= window.development_end).all()
    assert len(kept.y) == int((label_end <= window.development_end).sum())
    assert kept.meta["dropped"]["after_development_end"] == 200 - len(kept.y)
