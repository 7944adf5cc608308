"""Registry fixtures: an empty SQLite store per test, and versions tagged as the stages tag them."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sepflow.tracking.registry import CANDIDATE, model_name

# add_version(family, target, walk_forward metrics or None, test ROC-AUC, window, evidence) → the new version number.
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


# The evaluation window the walk-forward stage tags (sepflow.wf.eval_start/eval_end) by default.
WINDOW = ("2016-01-04", "2020-12-31")
# What the walk-forward stage also tags besides the metrics a test names: evidence that passes the
# default gate (Newey–West rank-IC t-stat 3 ≥ 2, PSR 0.98 ≥ 0.95, 500 daily returns ≥ 250).
EVIDENCE = {"rank_ic_se": 0.01, "rank_ic_tstat": 3.0, "n_dates": 500.0, "net_sharpe_se": 0.3, "psr": 0.98,
            "dsr": 0.9, "n_trials": 4.0, "n_periods": 500.0, "turnover": 0.2, "max_drawdown": -0.1}


@pytest.fixture
def add_version(registry_store: str, tmp_path: Path) -> AddVersion:
    """Register a version without a model behind it, tagged like ``register_trained`` (family,
    target, test headline) plus, when given, the walk-forward stage's ``sepflow.wf.*`` tags: the
    metrics given over ``EVIDENCE`` (``evidence=False``: the given ones only), the evaluation
    ``window`` (None: no window tags) and the run id. Undefined values (NaN) are left out, as the
    stage leaves them out; an undefined rank IC takes its standard error and t-stat with it.
    Like training, it points ``candidate`` at the new version."""
    client = MlflowClient()
    (tmp_path / "artifacts").mkdir(exist_ok=True)

    def add(family: str, target: str = "dir_5d", walk_forward: Mapping[str, float] | None = None,
            test_auc: float = 0.55, window: tuple[str, str] | None = WINDOW, evidence: bool = True) -> int:
        name = model_name(family, target)
        try:
            client.create_registered_model(name)
        except MlflowException:  # already registered
            pass
        tags = {"sepflow.family": family, "sepflow.target": target, "sepflow.headline_metric": "roc_auc",
                "sepflow.metric.test.roc_auc": repr(float(test_auc))}
        if walk_forward is not None:
            values = {**(EVIDENCE if evidence else {}), **walk_forward}
            if not math.isfinite(values.get("rank_ic", 0.0)):
                values = {k: v for k, v in values.items() if k not in ("rank_ic_se", "rank_ic_tstat")}
            tags |= {f"sepflow.wf.{k}": repr(float(v)) for k, v in values.items() if math.isfinite(v)}
            if window is not None:
                tags |= {"sepflow.wf.eval_start": window[0], "sepflow.wf.eval_end": window[1]}
            tags["sepflow.wf.run_id"] = "0123456789abcdef"
        number = client.create_model_version(name, source=str(tmp_path / "artifacts"), tags=tags).version
        client.set_registered_model_alias(name, CANDIDATE, number)
        return int(number)

    return add
