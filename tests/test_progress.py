"""Progress bars: silent off a terminal, drawn when forced, never changing what a loop yields."""

from __future__ import annotations

import io

import numpy as np
import optuna
import pandas as pd
import pytest
from joblib import delayed

from sepflow.errors import ConfigError
from sepflow.progress import (
    ENV,
    enabled,
    epoch_callbacks,
    parallel_map,
    progress,
    quiet,
    trial_callback,
)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)


def test_off_a_terminal_nothing_is_written_and_iteration_is_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    items = [3, 1, 2, "a", None]
    assert not enabled()  # pytest's captured stderr is no terminal
    assert list(progress(items, desc="tickers", unit="ticker")) == items
    with progress(desc="trials", total=4, unit="trial") as bar:
        bar.update(4)
    assert parallel_map([delayed(divmod)(i, 3) for i in range(9)], n_jobs=2, desc="fits", unit="fit") == [
        divmod(i, 3) for i in range(9)
    ]
    assert capsys.readouterr() == ("", "")


def test_forced_on_a_bar_is_written_to_stderr(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(ENV, "1")
    assert list(progress(range(5), desc="walk-forward dir_5d", unit="fold")) == list(range(5))
    out, err = capsys.readouterr()
    assert out == ""
    assert "walk-forward dir_5d" in err and "/5 [" in err  # redrawn at most every 0.1 s: the count may lag


@pytest.mark.parametrize(("value", "terminal", "expected"), [
    ("", True, True), ("auto", True, True), ("", False, False),
    ("0", True, False), ("off", True, False), ("1", False, True), ("yes", False, True),
])
def test_env_overrides_the_terminal_check(monkeypatch: pytest.MonkeyPatch, value: str, terminal: bool,
                                          expected: bool) -> None:
    monkeypatch.setenv(ENV, value)
    monkeypatch.setattr("sys.stderr", FakeTerminal() if terminal else io.StringIO())
    assert enabled() is expected


def test_bad_env_value_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "maybe")
    with pytest.raises(ConfigError, match="SEPFLOW_PROGRESS='maybe' is not one of 0, 1, auto"):
        enabled()


def test_quiet_silences_even_a_forced_bar(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(ENV, "1")
    with quiet():
        with quiet():
            assert not enabled()
        assert list(progress([1, 2], desc="inner", unit="it")) == [1, 2]
        assert epoch_callbacks(3, desc="lstm") == []
    assert enabled()
    assert capsys.readouterr().err == ""


def test_trial_callback_counts_trials_and_shows_the_best(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(ENV, "1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    with progress(desc="tuning xgboost", total=3, unit="trial") as bar:
        study.optimize(lambda t: -(t.suggest_float("x", -1, 1) ** 2), n_trials=3, callbacks=[trial_callback(bar)])
        assert bar.n == 3 and bar.postfix == f"best={study.best_value:.4g}"
    assert "tuning xgboost" in capsys.readouterr().err


def _tiny_panel() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2021-01-01", periods=40)
    index = pd.MultiIndex.from_product([["A", "B", "C"], dates], names=["ticker", "date"])
    X = pd.DataFrame(rng.normal(size=(len(index), 2)).astype(np.float32), index=index, columns=["f1", "f2"])
    return X, pd.Series((X["f1"] > 0).astype(int).to_numpy(), index=index)


@pytest.mark.slow
def test_epoch_bar_leaves_the_fit_unchanged(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from sepflow.models import make_model

    X, y = _tiny_panel()
    params = {"sequence_length": 3, "units1": 4, "units2": 2, "epochs": 3, "batch_size": 32, "patience": 5}
    quiet_fit = make_model("lstm", "classification", **params).fit(X, y, eval_set=(X, y))
    assert capsys.readouterr().err == ""
    monkeypatch.setenv(ENV, "1")
    shown_fit = make_model("lstm", "classification", **params).fit(X, y, eval_set=(X, y))
    err = capsys.readouterr().err
    assert "lstm classification" in err and "epoch" in err
    assert shown_fit.history_.keys() == quiet_fit.history_.keys()
    for key, losses in quiet_fit.history_.items():
        np.testing.assert_allclose(shown_fit.history_[key], losses, atol=1e-6)
    np.testing.assert_allclose(shown_fit.predict_proba(X), quiet_fit.predict_proba(X), atol=1e-6)
