"""MLproject: an entry point per dvc.yaml stage running the command dvc.yaml runs, typed parameters."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.projects._project_spec import load_project
from mlflow.tracking import MlflowClient

from sepflow.cli import build_parser
from sepflow.tracking.runs import stage_run

REPO = Path(__file__).resolve().parents[1]
MLFLOW_TYPES = {"string", "float", "path", "uri"}


@pytest.fixture()
def project(monkeypatch: pytest.MonkeyPatch):
    """The project as `mlflow run` loads it, in the repo root (path parameters resolve there)."""
    monkeypatch.chdir(REPO)
    return load_project(str(REPO))


def _dvc_commands() -> dict[str, dict[str, str]]:
    """dvc.yaml stage → {foreach key (or "") → its command}."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    found = {}
    for name, stage in stages.items():
        if "foreach" in stage:
            found[name] = {key: stage["do"]["cmd"].replace("${item}", key) for key in stage["foreach"]}
        else:
            found[name] = {"": stage["cmd"]}
    return found


def _spec() -> dict:
    return yaml.safe_load((REPO / "MLproject").read_text())


def test_every_parameter_has_an_mlflow_type() -> None:
    spec = _spec()
    assert (REPO / spec["python_env"]).is_file()
    for name, entry in spec["entry_points"].items():
        for param, declared in entry.get("parameters", {}).items():
            assert isinstance(declared, dict) and declared.get("type") in MLFLOW_TYPES, (name, param, declared)


def test_each_dvc_stage_has_an_entry_point_running_its_command(project, tmp_path: Path) -> None:
    params = str(REPO / "params.yaml")  # a `path` parameter reaches the command absolute
    for stage, commands in _dvc_commands().items():
        entry = project.get_entry_point(stage)
        for family, dvc_cmd in commands.items():
            user = {"family": family} if family else {}
            command = shlex.split(entry.compute_command(user, str(tmp_path)))
            assert command == [*shlex.split(dvc_cmd), "--params", params], stage


def test_entry_commands_format_and_parse(project, tmp_path: Path) -> None:
    pipeline = project.get_entry_point("pipeline")
    assert pipeline.compute_command({}, str(tmp_path)) == "dvc repro dvc.yaml"
    assert pipeline.compute_command({"target": "train@xgboost"}, str(tmp_path)) == "dvc repro train@xgboost"
    required = {"path": "dvc.yaml"}  # validate's only parameter without a default
    for name in _spec()["entry_points"]:
        entry = project.get_entry_point(name)
        user = {key: value for key, value in required.items() if key in entry.parameters}
        argv = shlex.split(entry.compute_command(user, str(tmp_path)))
        if argv[0] == "sepflow":  # sepflow's own parser accepts it: no stale flag or stage name
            build_parser().parse_args(argv[1:])
        else:
            assert name == "pipeline" and argv[:2] == ["dvc", "repro"]


@pytest.mark.parametrize("dvc_stage", [None, "build_features"])
def test_stage_run_under_mlflow_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dvc_stage: str | None) -> None:
    """Launched by `mlflow run -e STAGE`: the stage resumes the project run. Launched by
    `dvc repro` under `mlflow run -e pipeline`: a run nested in it. Both in its experiment."""
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    default = client.get_experiment_by_name("Default").experiment_id
    project = client.create_run(default).info.run_id  # what `mlflow run` creates, then exports:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_RUN_ID", project)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", default)
    if dvc_stage:
        monkeypatch.setenv("DVC_STAGE", dvc_stage)
    else:
        monkeypatch.delenv("DVC_STAGE", raising=False)

    with stage_run("build_features", params={"features": {"windows": [5, 20]}}) as run:
        mlflow.log_metric("rows", 3)
    assert "MLFLOW_RUN_ID" not in os.environ  # nothing later in the process resumes it again
    got = client.get_run(run.info.run_id)
    assert got.info.experiment_id == default and got.info.status == "FINISHED"
    assert got.info.run_name == "build_features" and got.data.tags["sepflow.stage"] == "build_features"
    assert got.data.params == {"features.windows": "[5, 20]"} and got.data.metrics == {"rows": 3.0}
    if dvc_stage:
        assert run.info.run_id != project and got.data.tags["mlflow.parentRunId"] == project
        assert client.get_run(project).info.status == "RUNNING"  # `mlflow run` ends it when `dvc repro` exits
    else:
        assert run.info.run_id == project
