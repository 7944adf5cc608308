"""Dummy, random forest, XGBoost and LightGBM: learning, round trips, determinism, boosting details."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb
from sklearn.metrics import accuracy_score, root_mean_squared_error

from sepflow.errors import ConfigError
from sepflow.models import SepflowModel, load_model, make_model

TASKS = ("classification", "multiclass", "regression")
TREE_FAMILIES = ("dummy", "random_forest", "xgboost", "lightgbm")
TREES = TREE_FAMILIES[1:]
# The scikit-learn MLP is not a tree, but it shares the contract tested here (beats the floor, seeded).
LEARNERS = (*TREES, "mlp")


def _fit(panel, fast_params: dict, family: str, task: str, **params: object) -> SepflowModel:
    X, y = panel.part(task, "train")
    return make_model(family, task, **{**fast_params[family], **params}).fit(
        X, y, eval_set=panel.part(task, "val"),
    )


def _output(model: SepflowModel, X) -> np.ndarray:
    return model.predict(X) if model.task == "regression" else model.predict_proba(X)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("family", LEARNERS)
def test_tree_families_beat_the_dummy_on_a_later_period(panel, fast_params, family: str, task: str) -> None:
    X_test, y_test = panel.part(task, "test")
    model, floor = _fit(panel, fast_params, family, task), _fit(panel, fast_params, "dummy", task)
    predicted = model.predict(X_test)
    assert predicted.shape == (len(X_test),)
    if task == "regression":
        floor_rmse = root_mean_squared_error(y_test, floor.predict(X_test))
        assert root_mean_squared_error(y_test, predicted) < 0.8 * floor_rmse
        return
    assert set(predicted) <= set(model.classes_)
    assert accuracy_score(y_test, predicted) > accuracy_score(y_test, floor.predict(X_test)) + 0.15
    proba = model.predict_proba(X_test)
    assert proba.shape == (len(X_test), len(model.classes_))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_multiclass_keeps_original_labels_sorted(panel, fast_params) -> None:
    model = _fit(panel, fast_params, "lightgbm", "multiclass")
    assert model.classes_.tolist() == ["BEARISH", "BULLISH", "NEUTRAL"]
    assert not hasattr(make_model("lightgbm", "regression"), "predict_proba")


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("family", (*TREE_FAMILIES, "mlp"))
def test_two_fits_with_one_seed_predict_identically(panel, fast_params, family: str, task: str) -> None:
    X_test = panel.part(task, "test")[0]
    params = {"subsample": 0.8, "colsample_bytree": 0.8} if family in ("xgboost", "lightgbm") else {}
    first, second = (_fit(panel, fast_params, family, task, random_state=7, **params) for _ in range(2))
    np.testing.assert_array_equal(_output(first, X_test), _output(second, X_test))


@pytest.mark.parametrize("task", TASKS)
def test_forest_outputs_do_not_depend_on_n_jobs(panel, fast_params, task: str) -> None:
    """Threads would add the trees in finishing order (last-bit noise); predictions sum in one thread."""
    X_test = panel.part(task, "test")[0]
    one, two = (_fit(panel, fast_params, "random_forest", task, random_state=7, n_jobs=n) for n in (1, 2))
    for _ in range(3):
        np.testing.assert_array_equal(_output(two, X_test), _output(one, X_test))


NATIVE = {
    "dummy": {"model.skops"},
    "random_forest": {"model.skops"},
    "xgboost": {"model.ubj"},
    "lightgbm": {"model.txt"},
}


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("family", TREE_FAMILIES)
def test_save_load_round_trip_is_exact_and_native(
    panel, fast_params, tmp_path: Path, family: str, task: str,
) -> None:
    model = _fit(panel, fast_params, family, task)
    folder = model.save(tmp_path / family)
    assert {p.name for p in folder.iterdir()} == NATIVE[family] | {"adapter.json"}
    loaded = load_model(folder)
    assert type(loaded) is type(model)
    assert loaded.get_params() == model.get_params()
    X_test = panel.part(task, "test")[0]
    np.testing.assert_array_equal(loaded.predict(X_test), model.predict(X_test))
    np.testing.assert_array_equal(_output(loaded, X_test), _output(model, X_test))
    if family != "dummy":
        np.testing.assert_array_equal(loaded.feature_importances_, model.feature_importances_)


def test_native_booster_files_alone_predict_like_the_adapter(panel, fast_params, tmp_path: Path) -> None:
    X_test = panel.part("classification", "test")[0]
    features = X_test.to_numpy(dtype=np.float32)
    for family, reader in [
        ("xgboost", lambda f: xgb.Booster(model_file=f).inplace_predict(features)),
        ("lightgbm", lambda f: lgb.Booster(model_file=f).predict(features)),
    ]:
        model = _fit(panel, fast_params, family, "classification", n_estimators=200)
        folder = model.save(tmp_path / family)
        # The file holds only the kept rounds, so the library's default predict uses them all.
        native = reader(folder / NATIVE[family].pop())
        np.testing.assert_array_equal(native, model.predict_proba(X_test)[:, 1])


@pytest.mark.parametrize("family", ["xgboost", "lightgbm"])
def test_early_stopping_predicts_with_the_best_round(panel, family: str) -> None:
    noise = panel.targets["classification"].sample(frac=1.0, random_state=0).set_axis(panel.X.index)
    X, y = panel.X[panel.train], noise[panel.train]
    stopped = make_model(family, "classification", n_estimators=300, early_stopping_rounds=10, learning_rate=0.3)
    stopped.fit(X, y, eval_set=(panel.X[panel.val], noise[panel.val]))
    assert stopped.n_iterations_ < 300
    full = make_model(family, "classification", n_estimators=stopped.n_iterations_, learning_rate=0.3).fit(X, y)
    X_test = panel.X[panel.test]
    np.testing.assert_allclose(stopped.predict_proba(X_test), full.predict_proba(X_test), rtol=0, atol=1e-12)
    without_eval = make_model(family, "classification", n_estimators=30).fit(X, y)
    assert without_eval.n_iterations_ == 30


@pytest.mark.parametrize("family", ["xgboost", "lightgbm"])
def test_scale_pos_weight_auto_is_negatives_over_positives_of_training_rows(panel, family: str) -> None:
    X, y = panel.part("classification", "train")
    model = make_model(family, "classification", n_estimators=5, scale_pos_weight="auto").fit(X, y)
    assert model.scale_pos_weight_ == pytest.approx((y == 0).sum() / (y == 1).sum())
    multi = make_model(family, "multiclass", n_estimators=5, scale_pos_weight="auto")
    assert multi.fit(*panel.part("multiclass", "train")).scale_pos_weight_ is None
    with pytest.raises(ConfigError, match="binary classification only"):
        weighted = make_model(family, "regression", n_estimators=5, scale_pos_weight=2.0)
        weighted.fit(*panel.part("regression", "train"))


@pytest.mark.parametrize("family", TREES)
def test_gain_importances_find_the_planted_features(panel, fast_params, family: str) -> None:
    importances = _fit(panel, fast_params, family, "classification").feature_importances_
    assert importances.shape == (panel.X.shape[1],)
    assert importances.sum() == pytest.approx(1.0)
    assert set(np.argsort(importances)[-2:]) == {0, 1}


def test_forest_imputes_with_training_medians_only(panel) -> None:
    X, y = panel.part("classification", "train")
    model = make_model("random_forest", "classification", n_estimators=5).fit(X, y)
    np.testing.assert_allclose(
        model.estimator_.named_steps["impute"].statistics_, np.nanmedian(X.to_numpy(), axis=0), rtol=1e-6,
    )
    with pytest.raises(ConfigError, match="class_weight"):
        make_model("random_forest", "regression", class_weight="balanced").fit(*panel.part("regression", "train"))


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("family", TREES)
def test_contributions_are_treeshap_values(panel, fast_params, family: str, task: str) -> None:
    """SHAP values per row, output and feature; for regression they add up to prediction − bias."""
    model = _fit(panel, fast_params, family, task)
    X_test = panel.part(task, "test")[0]
    shap = model.contributions(X_test)
    outputs = len(model.classes_) if task == "multiclass" else 1
    assert shap.shape == (len(X_test), outputs, X_test.shape[1]) and np.isfinite(shap).all()
    if task == "regression":
        residual = model.predict(X_test) - shap[:, 0, :].sum(axis=1)
        np.testing.assert_allclose(residual, residual[0], atol=1e-4)  # the constant bias term
