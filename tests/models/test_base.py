"""The adapter contract shared by every family: registry, scikit-learn API, input checks, saving."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.base import clone, is_classifier, is_regressor

from sepflow.errors import ConfigError, DataValidationError, SepflowError
from sepflow.models import FAMILIES, EnsembleModel, SepflowModel, load_model, make_model
from sepflow.models.boosting import XGBoostModel
from sepflow.models.dummy import DummyModel

FAMILY_NAMES = ["dummy", "random_forest", "xgboost", "lightgbm", "lstm", "mlp"]


def test_registry_holds_every_family() -> None:
    assert set(FAMILIES) == {*FAMILY_NAMES, "ensemble"}
    with pytest.raises(ConfigError, match="unknown family"):
        make_model("catboost", "classification")
    with pytest.raises(ConfigError, match="bad params"):
        make_model("xgboost", "classification", n_trees=3)
    with pytest.raises(ConfigError, match="task must be"):
        make_model("dummy", "ranking")


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_clone_and_get_params_round_trip(fast_params, family: str) -> None:
    model = make_model(family, "multiclass", **fast_params[family])
    params = model.get_params()
    twin = clone(model)
    assert type(twin) is type(model) and twin is not model
    assert twin.get_params() == params
    rebuilt = type(model)().set_params(**params)
    assert rebuilt.get_params() == params
    assert is_classifier(model) and is_regressor(clone(model).set_params(task="regression"))


def test_clone_of_an_ensemble_clones_its_members(panel) -> None:
    member = make_model("dummy", "classification").fit(*panel.part("classification", "train"))
    ensemble = EnsembleModel({"floor": member}, alpha=0.5)
    twin = clone(ensemble)
    assert twin.get_params(deep=False)["alpha"] == 0.5
    assert twin.members["floor"] is not member and not hasattr(twin.members["floor"], "classes_")


def test_adapter_json_records_what_a_reader_needs(panel, tmp_path: Path) -> None:
    model = make_model("xgboost", "multiclass", n_estimators=5, scale_pos_weight="auto")
    model.fit(*panel.part("multiclass", "train"))
    adapter = json.loads((model.save(tmp_path / "m") / "adapter.json").read_text())
    assert adapter["family"] == "xgboost" and adapter["task"] == "multiclass"
    assert adapter["classes"] == ["BEARISH", "BULLISH", "NEUTRAL"]
    assert adapter["feature_names"] == list(panel.X.columns)
    assert adapter["params"] == model.get_params()
    assert adapter["files"] == ["model.ubj"]
    assert {"python", "numpy", "sklearn", "xgboost", "sepflow"} <= set(adapter["libraries"])
    assert adapter["state"] == {"n_iterations": 5, "scale_pos_weight": None}


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_loading_never_unpickles(
    panel, fast_params, tmp_path: Path, family: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = make_model(family, "classification", **fast_params[family])
    model.fit(*panel.part("classification", "train"))
    folder = model.save(tmp_path / family)
    assert not [p for p in folder.rglob("*") if p.suffix in {".pkl", ".pickle", ".joblib", ".pt"}]

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle used while loading")

    for target, name in [(pickle, "load"), (pickle, "loads"), (joblib, "load")]:
        monkeypatch.setattr(target, name, refuse)
    X_test = panel.X[panel.test]
    np.testing.assert_array_equal(load_model(folder).predict_proba(X_test), model.predict_proba(X_test))


def test_saving_replaces_an_existing_folder_whole(panel, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "stale.txt").write_text("from an earlier run")
    make_model("dummy", "regression").fit(*panel.part("regression", "train")).save(folder)
    assert {p.name for p in folder.iterdir()} == {"adapter.json", "model.skops"}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging folders left behind


def test_load_checks_folder_and_family(panel, tmp_path: Path) -> None:
    with pytest.raises(SepflowError, match="not a saved model folder"):
        load_model(tmp_path)
    folder = make_model("dummy", "regression").fit(*panel.part("regression", "train")).save(tmp_path / "d")
    assert isinstance(DummyModel.load(folder), DummyModel)
    with pytest.raises(SepflowError, match="not a XGBoostModel"):
        XGBoostModel.load(folder)


def test_malicious_skops_types_are_refused(panel, tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.tree import DecisionTreeRegressor

    X, y = panel.part("regression", "train")
    model = make_model("dummy", "regression").fit(X, y)
    folder = model.save(tmp_path / "d")
    # A dummy file asking skops to build a compiled tree (trusted for forests only) must not load.
    model.estimator_.extra = DecisionTreeRegressor(max_depth=1).fit(X.fillna(0), y).tree_
    sio.dump(model.estimator_, folder / "model.skops")
    with pytest.raises(SepflowError, match="never saves"):
        load_model(folder)


def test_inputs_are_checked(panel) -> None:
    X, y = panel.part("classification", "train")
    model = make_model("dummy", "classification").fit(X, y)
    with pytest.raises(DataValidationError, match="columns differ"):
        model.predict(X[X.columns[::-1]])
    with pytest.raises(DataValidationError, match="DataFrame"):
        model.predict(X.to_numpy())
    with pytest.raises(DataValidationError, match="missing values"):
        make_model("dummy", "classification").fit(X, y.astype(float).where(y.index != y.index[3]))
    with pytest.raises(DataValidationError, match="exactly 2 classes"):
        make_model("dummy", "classification").fit(X, panel.targets["multiclass"][panel.train])
    with pytest.raises(DataValidationError, match="not aligned"):
        make_model("dummy", "classification").fit(X, y.iloc[::-1])
    X_val, y_val = panel.part("classification", "val")
    with pytest.raises(DataValidationError, match="never occur in training"):
        make_model("xgboost", "classification").fit(X, y, eval_set=(X_val, y_val + 5))


def test_predict_proba_exists_only_for_classifiers() -> None:
    assert hasattr(make_model("random_forest", "classification"), "predict_proba")
    assert not hasattr(make_model("random_forest", "regression"), "predict_proba")
    assert issubclass(FAMILIES["lstm"], SepflowModel)
