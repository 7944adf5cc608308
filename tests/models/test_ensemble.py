"""Ensemble: non-negative weights summing to 1, fitted on validation predictions only; round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sepflow.errors import ConfigError
from sepflow.models import EnsembleModel, SepflowModel, load_model, make_model


def _members(panel, task: str) -> dict[str, SepflowModel]:
    """A skilled booster, the floor, and a deep forest that can only memorise (noise features only)."""
    X, y = panel.part(task, "train")
    noise_features = ["feat_2", "feat_3", "feat_4"]
    return {
        "xgboost": make_model("xgboost", task, n_estimators=40).fit(X, y),
        "dummy": make_model("dummy", task).fit(X, y),
        "memoriser": make_model("random_forest", task, n_estimators=20).fit(X[noise_features], y),
    }


@pytest.fixture(scope="module")
def binary(panel) -> EnsembleModel:
    return EnsembleModel(_members(panel, "classification"), task="classification").fit(
        *panel.part("classification", "val"),
    )


def test_weights_are_non_negative_sum_to_one_and_favour_the_skilled_member(binary: EnsembleModel) -> None:
    weights = np.array(list(binary.weights_.values()))
    assert (weights >= 0).all()
    assert weights.sum() == pytest.approx(1.0)
    assert binary.weights_["xgboost"] == max(binary.weights_.values())


def test_weights_come_only_from_the_validation_predictions_passed_in(panel, binary: EnsembleModel) -> None:
    y = panel.targets["classification"]
    everything = binary.member_predictions(panel.X)
    val = panel.val
    again = EnsembleModel(binary.members, task="classification").fit_weights(everything[val], y[val])
    assert again.weights_ == binary.weights_
    # Other rows' predictions (here: training rows scrambled) cannot move the weights.
    scrambled = everything.copy()
    scrambled[panel.train] = np.random.default_rng(0).random((int(panel.train.sum()), everything.shape[1]))
    unmoved = EnsembleModel(binary.members, task="classification").fit_weights(scrambled[val], y[val])
    assert unmoved.weights_ == again.weights_
    # Fitted on training rows instead, the memorising forest would take weight it does not deserve.
    on_train = EnsembleModel(binary.members, task="classification")
    on_train.fit_weights(everything[panel.train], y[panel.train])
    assert on_train.weights_["memoriser"] > binary.weights_["memoriser"]


def test_predict_proba_is_the_weighted_average_of_the_members(panel, binary: EnsembleModel) -> None:
    X_test = panel.X[panel.test]
    expected = sum(
        weight * member.predict_proba(X_test[list(member.feature_names_in_)])
        for member, weight in zip(binary.members.values(), binary.weights_.values(), strict=True)
    )
    np.testing.assert_allclose(binary.predict_proba(X_test), expected, rtol=0, atol=1e-12)
    assert set(binary.predict(X_test)) <= {0, 1}


def test_all_zero_ridge_weights_fall_back_to_equal_weights(panel, binary: EnsembleModel) -> None:
    y = panel.targets["classification"][panel.val]
    contrarian = pd.DataFrame({name: 1.0 - y.to_numpy() for name in binary.members}, index=y.index)
    weights = EnsembleModel(binary.members, task="classification").fit_weights(contrarian, y).weights_
    assert weights == {name: pytest.approx(1 / 3) for name in binary.members}


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_multiclass_and_regression_ensembles(panel, task: str) -> None:
    ensemble = EnsembleModel(_members(panel, task), task=task).fit(*panel.part(task, "val"))
    weights = np.array(list(ensemble.weights_.values()))
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1.0)
    X_test = panel.X[panel.test]
    if task == "multiclass":
        predictions = ensemble.member_predictions(X_test)
        assert predictions.columns.names == ["member", "class"]
        proba = ensemble.predict_proba(X_test)
        assert proba.shape == (len(X_test), 3)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
        assert set(ensemble.predict(X_test)) <= set(ensemble.classes_)
    else:
        assert ensemble.predict(X_test).shape == (len(X_test),)


def test_members_may_use_different_feature_subsets(panel) -> None:
    X, y = panel.part("classification", "train")
    members = {
        "two": make_model("lightgbm", "classification", n_estimators=40, min_child_samples=5).fit(
            X[["feat_0", "feat_1"]], y,
        ),
        "all": make_model("dummy", "classification").fit(X, y),
    }
    ensemble = EnsembleModel(members, task="classification").fit(*panel.part("classification", "val"))
    assert list(ensemble.feature_names_in_) == ["feat_0", "feat_1", "feat_2", "feat_3", "feat_4"]
    assert ensemble.predict_proba(panel.X[panel.test]).shape == (int(panel.test.sum()), 2)


def test_save_load_round_trip_keeps_members_native_and_predictions_exact(
    panel, binary: EnsembleModel, tmp_path: Path,
) -> None:
    folder = binary.save(tmp_path / "ensemble")
    assert {p.name for p in folder.iterdir()} == {"adapter.json", "weights.json", "members"}
    assert {p.name for p in (folder / "members").iterdir()} == set(binary.members)
    assert (folder / "members" / "xgboost" / "model.ubj").is_file()
    assert (folder / "members" / "memoriser" / "model.skops").is_file()
    loaded = load_model(folder)
    assert isinstance(loaded, EnsembleModel)
    assert loaded.weights_ == binary.weights_
    X_test = panel.X[panel.test]
    np.testing.assert_array_equal(loaded.predict_proba(X_test), binary.predict_proba(X_test))


def test_misconfigured_ensembles_are_refused(panel, binary: EnsembleModel) -> None:
    regression = make_model("dummy", "regression").fit(*panel.part("regression", "train"))
    mixed = EnsembleModel({"a": binary.members["dummy"], "b": regression}, task="classification")
    with pytest.raises(ConfigError, match="task"):
        mixed.fit(*panel.part("classification", "val"))
    with pytest.raises(ConfigError, match="validation rows"):
        val = panel.part("classification", "val")
        EnsembleModel(binary.members).fit(*val, eval_set=val)
    with pytest.raises(ConfigError, match="member name"):
        EnsembleModel({"../escape": binary.members["dummy"]}).fit(*panel.part("classification", "val"))
