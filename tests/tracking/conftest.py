"""Registry fixtures: an empty SQLite store per test, and versions tagged as the stages tag them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sepflow.tracking.registry import CANDIDATE, model_name

# add_version(family, target, walk_forward metrics or None, test ROC-AUC) → the new version number.
AddVersion = Callable[..., int]


@pytest.fixture
def registry_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty store named by ``MLFLOW_TRACKING_URI`` (as a server would be), cwd in ``tmp_path``."""
    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def add_version(registry_store: str, tmp_path: Path) -> AddVersion:
    """Register a version without a model behind it, tagged like ``register_trained`` (family,
    target, test headline) plus, when given, the walk-forward stage's ``sepflow.wf.*`` tags.
    Like training, it points ``candidate`` at the new version."""
    client = MlflowClient()
    (tmp_path / "artifacts").mkdir(exist_ok=True)

    def add(family: str, target: str = "dir_5d", walk_forward: Mapping[str, float] | None = None,
            test_auc: float = 0.55) -> int:
        name = model_name(family, target)
        try:
            client.create_registered_model(name)
        except MlflowException:  # already registered
            pass
        tags = {"sepflow.family": family, "sepflow.target": target, "sepflow.headline_metric": "roc_auc",
                "sepflow.metric.test.roc_auc": repr(float(test_auc))}
        if walk_forward is not None:
            tags |= {f"sepflow.wf.{k}": repr(float(v)) for k, v in walk_forward.items()}
            tags["sepflow.wf.run_id"] = "0123456789abcdef"
        number = client.create_model_version(name, source=str(tmp_path / "artifacts"), tags=tags).version
        client.set_registered_model_alias(name, CANDIDATE, number)
        return int(number)

    return add
