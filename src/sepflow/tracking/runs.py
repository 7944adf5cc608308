"""One MLflow run per stage execution, with lineage tags; FAILED when the stage raises."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow

from sepflow.io import write_json
from sepflow.tracking.lineage import git_state, input_md5s, params_digest, repo_root

EXPERIMENT = "sepflow"
_MAX_PARAM_LENGTH = 6000  # MLflow's limit for one param value


def tracking_uri(root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the SQLite database ``mlflow.db`` at the repo root (absolute)."""
    if env := os.environ.get("MLFLOW_TRACKING_URI"):
        return env
    return f"sqlite:///{(root or repo_root()) / 'mlflow.db'}"


def configure_tracking(root: Path | None = None) -> str:
    """Point MLflow at the project's store and experiment; return the experiment id.

    With the SQLite default, artifacts go to ``mlartifacts/`` beside the database, resolved
    once at experiment creation, so runs from DVC's temporary copies land in the same place.
    """
    root = root or repo_root()
    server = "MLFLOW_TRACKING_URI" in os.environ  # read first: set_tracking_uri exports it
    mlflow.set_tracking_uri(tracking_uri(root))
    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        mlflow.set_experiment(experiment_id=experiment.experiment_id)
        return experiment.experiment_id
    location = None if server else (root / "mlartifacts").as_uri()
    experiment_id = mlflow.create_experiment(EXPERIMENT, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params → ``section.key`` strings, the shape MLflow stores."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:_MAX_PARAM_LENGTH]
    return flat


@contextlib.contextmanager
def stage_run(
    stage: str,
    *,
    params: Mapping[str, Any],
    inputs: Sequence[str | Path] = (),
    tags: Mapping[str, str] | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """Open the MLflow run of one stage execution.

    Logs the stage's params (flattened) and tags the run with the stage name, git commit,
    dirty flag, params digest and the md5 of each input file; under DVC also the dvc.yaml
    stage (``sepflow.dvc_stage``, which ``sepflow reproduce`` reruns). Any exception marks the
    run FAILED and propagates; no run is left RUNNING.
    """
    configure_tracking()
    # DVC names the stage it runs; it can differ from ``stage`` (train_ensemble runs train@ensemble).
    dvc_stage = os.environ.get("DVC_STAGE")
    lineage = {
        "sepflow.stage": stage,
        **({"sepflow.dvc_stage": dvc_stage} if dvc_stage else {}),
        **{f"sepflow.{k}": v for k, v in git_state().items()},
        "sepflow.params_digest": params_digest(params),
        **{f"sepflow.input_md5.{path}": md5 for path, md5 in input_md5s(inputs).items()},
        **(tags or {}),
    }
    run = mlflow.start_run(run_name=stage, tags=lineage)
    try:
        mlflow.log_params(flatten(params))
        yield run
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run(status="FINISHED")


def write_report(summary: Mapping[str, Any], path: str | Path) -> None:
    """Write a stage's metrics report (with the id of the run producing it) and log it to that run.

    The run id lives in reports only, never in data outputs, so data stays byte-identical.
    """
    run = mlflow.active_run()
    write_json({**summary, "mlflow_run_id": run.info.run_id if run else None}, path)
    mlflow.log_artifact(str(path))
