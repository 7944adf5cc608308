"""stage_run: one MLflow run per stage execution with lineage and its inputs as datasets; FAILED on
error, KILLED when stopped from outside."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from sepflow.errors import Terminated
from sepflow.io import file_md5, read_json
from sepflow.tracking.lineage import params_digest, repo_root
from sepflow.tracking.runs import flatten, stage_run, tracking_uri, write_metrics


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    return tmp_path


def test_default_uri_is_sqlite_at_repo_root(project: Path) -> None:
    assert repo_root() == project
    assert tracking_uri() == f"sqlite:///{project / 'mlflow.db'}"


def test_dvc_root_wins(project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    parent = tmp_path_factory.mktemp("parent")
    monkeypatch.setenv("DVC_ROOT", str(parent))
    assert tracking_uri() == f"sqlite:///{parent.resolve() / 'mlflow.db'}"


def test_env_uri_overrides(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking_uri() == "http://127.0.0.1:5999"


def test_run_carries_params_and_lineage(project: Path) -> None:
    data = project / "input.csv"
    data.write_text("a,b\n1,2\n")
    params = {"universe": {"min_price": 5.0, "symbols": None}}
    with stage_run("demo", params=params, inputs=[data]) as run:
        mlflow.log_metric("rows", 1)
    got = MlflowClient().get_run(run.info.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params == {"universe.min_price": "5.0", "universe.symbols": "None"}
    assert got.data.tags["sepflow.stage"] == "demo"
    assert got.data.tags[f"sepflow.input_md5.{data.as_posix()}"] == file_md5(data)
    assert got.data.tags["sepflow.params_digest"] == params_digest(params)
    assert got.data.tags["sepflow.git_commit"] == "unknown" and got.data.tags["sepflow.git_dirty"] == "unknown"
    artifact_uri = got.info.artifact_uri
    assert artifact_uri.startswith((project / "mlartifacts").as_uri())
    # The input is also an MLflow dataset of the run, its digest the md5 DVC records.
    (dataset,) = got.inputs.dataset_inputs
    assert dataset.dataset.name == data.as_posix() and dataset.dataset.digest == file_md5(data)
    assert {tag.key: tag.value for tag in dataset.tags}["mlflow.data.context"] == "input"


def test_failing_stage_marks_run_failed(project: Path) -> None:
    with pytest.raises(ValueError, match="boom"), stage_run("broken", params={}):
        raise ValueError("boom")
    (run,) = MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("sepflow").experiment_id], "tags.`sepflow.stage` = 'broken'"
    )
    assert run.info.status == "FAILED"
    assert mlflow.active_run() is None


def test_a_dvc_experiment_is_named_on_the_run(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVC_EXP_NAME", "momentum-5d")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "0123456789abcdef0123456789abcdef01234567")
    with stage_run("exp", params={}) as run:
        pass
    tags = MlflowClient().get_run(run.info.run_id).data.tags
    assert tags["sepflow.dvc_exp_name"] == "momentum-5d"
    assert tags["sepflow.dvc_exp_baseline_rev"] == "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize("stop", [KeyboardInterrupt, Terminated])
def test_a_stage_stopped_from_outside_ends_killed(project: Path, stop: type[BaseException]) -> None:
    with pytest.raises(stop), stage_run("stopped", params={}):
        raise stop
    (run,) = MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("sepflow").experiment_id], "tags.`sepflow.stage` = 'stopped'"
    )
    assert run.info.status == "KILLED" and mlflow.active_run() is None


def test_flatten() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}) == {"a.b": "1", "a.c.d": "[1, 2]", "e": "x"}


def test_write_metrics_keeps_numbers_and_puts_labels_beside_them(project: Path) -> None:
    summary = {"rows": 10, "share": 0.5, "asof": "2021-12-24", "manual": False, "dropped": {},
               "tickers": {"kept": 3, "first": "AAA"}, "names": ["A", "B"]}
    with stage_run("ingest", params={}):
        write_metrics(summary, project / "m.json", project / "m_info.json")
        logged = mlflow.active_run().info.run_id
    assert read_json(project / "m.json") == {"rows": 10, "share": 0.5, "dropped": {}, "tickers": {"kept": 3}}
    assert read_json(project / "m_info.json") == {"asof": "2021-12-24", "manual": False, "tickers": {"first": "AAA"},
                                                  "names": ["A", "B"]}
    assert {a.path for a in MlflowClient().list_artifacts(logged)} == {"m.json", "m_info.json"}
