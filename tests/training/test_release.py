"""The release refit: the walked-forward procedure on every labelled row, written as a trained folder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sepflow.errors import ConfigError
from sepflow.features.dataset import Dataset
from sepflow.io import read_json
from sepflow.training.artifacts import load_trained
from sepflow.training.release import release_ensemble, release_fit, write_release


@pytest.fixture(scope="module")
def xgb(developed, tmp_path_factory):
    return developed("xgboost", "dir_5d", tmp_path_factory.mktemp("release") / "xgboost")


@pytest.fixture(scope="module")
def xgb_release(xgb, walk_params, fast_params):
    trained, ds, evidence = xgb
    return release_fit(trained, ds, evidence, walk_params, fast_params)


def _unique(ds: Dataset) -> np.ndarray:
    return np.unique(ds.dates)


def test_release_fits_every_labelled_row_up_to_its_embargoed_validation_tail(xgb, xgb_release, walk_params) -> None:
    trained, ds, evidence = xgb
    rows, unique = xgb_release.rows, _unique(ds)
    embargo = walk_params.embargo_for(5 + evidence.execution_lag)
    assert rows["embargo_days"] == embargo
    # The tail ends on the last labelled date (the evaluation window included: its evidence is spent).
    assert rows["validation"]["end"] == pd.Timestamp(unique[-1]).date().isoformat()
    assert rows["fit"]["start"] == pd.Timestamp(unique[0]).date().isoformat()
    n_dates = len(unique)
    assert rows["validation"]["n_dates"] == round(n_dates * walk_params.validation_fraction)
    # Fit rows end `embargo` trading dates before the tail, and no fit label reaches into it.
    tail_start = np.searchsorted(unique, np.datetime64(rows["validation"]["start"]))
    assert pd.Timestamp(rows["fit"]["end"]) <= pd.Timestamp(unique[tail_start - embargo - 1])
    fit_labels = ds.label_end[ds.dates <= pd.Timestamp(rows["fit"]["end"])]
    assert fit_labels.max() < pd.Timestamp(rows["validation"]["start"])
    # The same choices as the development model: its constructor params, refit.
    assert xgb_release.model.get_params() == trained.model.get_params()
    assert xgb_release.features == trained.features


def test_written_release_loads_serves_and_carries_the_evidence(xgb, xgb_release, tmp_path) -> None:
    trained, ds, _ = xgb
    evidence = {"rank_ic": 0.12, "rank_ic_tstat": 3.1, "net_sharpe": 1.4, "n_periods": 120.0}
    write_release(xgb_release, trained, evidence, tmp_path / "release")
    loaded = load_trained(tmp_path / "release")
    assert loaded.metrics["walk_forward"] == evidence
    assert loaded.metrics["test"] == {} and loaded.metrics["validation"]["roc_auc"] is not None
    assert loaded.metadata["procedure"] == "release"
    assert loaded.metadata["development"]["artifact_name"] == trained.metadata["artifact_name"]
    assert loaded.metadata["segments"]["validation"]["end"] == pd.Timestamp(_unique(ds)[-1]).date().isoformat()
    example = loaded.input_example()
    assert len(example) == 5 and list(example.columns) == ["ticker", "date", *trained.features]
    frame = loaded.predict_frame(example.set_index(["ticker", "date"]))
    assert frame["calibrated_probability"].between(0, 1).all()
    # The decision rule is the release's own, fitted on its validation tail's rows only.
    assert xgb_release.rule["n_rows"] <= len(xgb_release.validation_index)
    assert xgb_release.validation_index.get_level_values("date").min() >= pd.Timestamp(
        xgb_release.rows["validation"]["start"])
    assert read_json(tmp_path / "release" / "threshold.json")["threshold"] == xgb_release.rule["threshold"]


def test_release_is_deterministic(xgb, xgb_release, walk_params, fast_params, tmp_path) -> None:
    trained, ds, evidence = xgb
    again = release_fit(trained, ds, evidence, walk_params, fast_params)
    np.testing.assert_array_equal(again.validation_output, xgb_release.validation_output)
    write_release(xgb_release, trained, {}, tmp_path / "a")
    write_release(again, trained, {}, tmp_path / "b")
    for name in ("threshold.json", "calibrator.json", "metadata.json", "input_example.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_future_prices_move_the_release_but_not_the_development_choices(xgb, walk_params, fast_params) -> None:
    """The release is meant to learn from the evaluation window's rows (the development model,
    and every choice, never saw them): scrambling them changes the release's fit, not its params."""
    trained, ds, evidence = xgb
    rng = np.random.default_rng(3)
    late = (ds.dates >= evidence.window.start).to_numpy()
    y = ds.y.copy()
    y.iloc[np.flatnonzero(late)] = rng.permutation(y.to_numpy()[late])
    scrambled = Dataset(X=ds.X, y=y, dates=ds.dates, tickers=ds.tickers, label_end=ds.label_end,
                        feature_names=ds.feature_names, meta=ds.meta)
    before = release_fit(trained, ds, evidence, walk_params, fast_params)
    after = release_fit(trained, scrambled, evidence, walk_params, fast_params)
    assert after.model.get_params() == before.model.get_params()
    assert not np.array_equal(after.validation_output, before.validation_output)


def test_the_ensemble_release_weights_its_members_releases(xgb, xgb_release, developed, walk_params, fast_params,
                                                           tmp_path) -> None:
    member, ds, evidence = xgb
    dummy, _, _ = developed("dummy", "dir_5d", tmp_path / "dummy")
    params = fast_params.model_copy(update={"families": ["dummy", "xgboost", "ensemble"]})
    ensemble, _, _ = developed("ensemble", "dir_5d", tmp_path / "ensemble", params,
                               member_dirs={"dummy": tmp_path / "dummy", "xgboost": member.folder})
    write_release(xgb_release, member, {}, tmp_path / "release" / "xgboost")
    write_release(release_fit(dummy, ds, evidence, walk_params, fast_params), dummy, {}, tmp_path / "release" / "dummy")
    folders = {"dummy": tmp_path / "release" / "dummy", "xgboost": tmp_path / "release" / "xgboost"}
    fit, skipped = release_ensemble(ensemble, ds, folders, evidence, walk_params, fast_params)
    assert skipped == {}
    assert set(fit.ensemble["weights"]) == {"dummy", "xgboost"}
    assert sum(fit.ensemble["weights"].values()) == pytest.approx(1.0)
    # The members are the releases, not the development models.
    np.testing.assert_array_equal(fit.model.members["xgboost"].predict_proba(xgb_release.example),
                                  xgb_release.model.predict_proba(xgb_release.example))
    write_release(fit, ensemble, {"rank_ic": 0.1}, tmp_path / "release" / "ensemble")
    assert load_trained(tmp_path / "release" / "ensemble").metadata["ensemble"]["members"] == ["dummy", "xgboost"]
    # A member without a release is skipped and named; with none left it is an error.
    _, skipped = release_ensemble(ensemble, ds, {"xgboost": folders["xgboost"]}, evidence, walk_params, fast_params)
    assert skipped == {"dummy": "no release"}
    with pytest.raises(ConfigError, match="no member"):
        release_ensemble(ensemble, ds, {}, evidence, walk_params, fast_params)


def test_a_sliding_window_releases_on_its_last_train_days(xgb, walk_params, fast_params) -> None:
    trained, ds, evidence = xgb
    sliding = walk_params.model_copy(update={"window": "sliding", "train_days": 150})
    fit = release_fit(trained, ds, evidence, sliding, fast_params)
    assert fit.rows["fit"]["n_dates"] + fit.rows["embargo_days"] + fit.rows["validation"]["n_dates"] == 150


def test_release_refuses_an_ensemble(xgb, developed, walk_params, fast_params, tmp_path) -> None:
    member, ds, evidence = xgb
    params = fast_params.model_copy(update={"families": ["xgboost", "ensemble"]})
    ensemble, _, _ = developed("ensemble", "dir_5d", tmp_path / "ensemble", params,
                               member_dirs={"xgboost": member.folder})
    with pytest.raises(ConfigError, match="release_ensemble"):
        release_fit(ensemble, ds, evidence, walk_params, fast_params)
