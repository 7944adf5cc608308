"""One MLflow run per stage execution, with lineage tags; FAILED when the stage raises."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.sources import LocalArtifactDatasetSource
from mlflow.entities import DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from sepflow.errors import Terminated
from sepflow.io import write_json
from sepflow.tracking.lineage import git_state, input_md5s, params_digest, repo_root

EXPERIMENT = "sepflow"
EXPERIMENT_ENV = {"DVC_EXP_NAME": "sepflow.dvc_exp_name", "DVC_EXP_BASELINE_REV": "sepflow.dvc_exp_baseline_rev"}
INPUT_TAG = "sepflow.input_md5."  # + the input's path: its md5, as dvc.lock records it
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
    # Read first (set_tracking_uri exports it); empty counts as unset, as in tracking_uri.
    server = bool(os.environ.get("MLFLOW_TRACKING_URI"))
    mlflow.set_tracking_uri(tracking_uri(root))
    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        location = None if server else (root / "mlartifacts").as_uri()
        try:
            experiment_id = mlflow.create_experiment(EXPERIMENT, artifact_location=location)
        except MlflowException as exc:
            # Another process (a teammate, a parallel queued experiment) created it since we looked.
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment_id = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
    else:
        experiment_id = experiment.experiment_id
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
    stage (``sepflow.dvc_stage``, which ``sepflow reproduce`` reruns). An exception marks the
    run FAILED, Ctrl-C or SIGTERM KILLED, and propagates; no run is left RUNNING. Under
    ``mlflow run`` see :func:`_start_run`.
    """
    configure_tracking()
    # DVC names the stage it runs; it can differ from ``stage`` (train_ensemble runs train@ensemble).
    dvc_stage = os.environ.get("DVC_STAGE")
    digests = input_md5s(inputs)
    lineage = {
        "sepflow.stage": stage,
        **({"sepflow.dvc_stage": dvc_stage} if dvc_stage else {}),
        # Under `dvc exp run`: which experiment, branched from which commit (DVC sets both).
        **{tag: os.environ[env] for env, tag in EXPERIMENT_ENV.items() if os.environ.get(env)},
        **{f"sepflow.{k}": v for k, v in git_state().items()},
        "sepflow.params_digest": params_digest(params),
        **{f"{INPUT_TAG}{path}": md5 for path, md5 in digests.items()},
        **(tags or {}),
    }
    run = _start_run(stage, lineage)
    try:
        mlflow.log_params(flatten(params))
        _log_inputs(run.info.run_id, digests)
        yield run
    except BaseException as exc:
        stopped = isinstance(exc, KeyboardInterrupt | Terminated)  # stopped from outside, not failed
        mlflow.end_run(status="KILLED" if stopped else "FAILED")
        raise
    mlflow.end_run(status="FINISHED")


def _start_run(stage: str, tags: Mapping[str, str]) -> mlflow.ActiveRun:
    """A new run in the sepflow experiment, except under ``mlflow run`` (MLflow Projects).

    ``mlflow run`` creates a run first, in the experiment it was given (``--experiment-name``,
    else MLflow's default), and exports its id as ``MLFLOW_RUN_ID`` to the command it launches;
    ``mlflow.start_run()`` would resume it, and refuse to once we set the sepflow experiment.
    A stage launched directly by ``mlflow run -e STAGE`` logs into that run (the project run *is*
    the stage run); a stage that ``dvc repro`` runs under ``mlflow run -e pipeline`` gets its own
    run nested in it (one run per stage, as ever). Either way the run lives in the project run's
    experiment, so the MLflow UI shows them together.
    """
    project_run = os.environ.pop("MLFLOW_RUN_ID", None)  # popped: a new run must not resume it
    if not project_run:
        return mlflow.start_run(run_name=stage, tags=tags)
    mlflow.set_experiment(experiment_id=mlflow.get_run(project_run).info.experiment_id)  # nested runs follow
    if os.environ.get("DVC_STAGE"):
        return mlflow.start_run(run_name=stage, tags=tags, parent_run_id=project_run)
    return mlflow.start_run(run_id=project_run, run_name=stage, tags=tags)


def _log_inputs(run_id: str, digests: Mapping[str, str]) -> None:
    """Every input file as an MLflow dataset of the run (the UI's Datasets column), its digest the
    md5 DVC records for it (the file is not read: only its path and digest are logged)."""
    datasets = [
        DatasetInput(MetaDataset(LocalArtifactDatasetSource(path), name=path, digest=md5)._to_mlflow_entity(),
                     tags=[InputTag(MLFLOW_DATASET_CONTEXT, "input")])
        for path, md5 in sorted(digests.items())
    ]
    if datasets:
        MlflowClient().log_inputs(run_id, datasets=datasets)


def write_report(summary: Mapping[str, Any], path: str | Path) -> None:
    """Write a stage's report and log it to the active run.

    Reports are tracked in git, so they hold no run id or timestamp: the same inputs give the same
    bytes. The run that wrote one is the stage run with the same ``sepflow.input_md5.*`` tags.
    """
    write_json(dict(summary), path)
    mlflow.log_artifact(str(path))


def write_metrics(summary: Mapping[str, Any], path: str | Path, info_path: str | Path) -> None:
    """Write a stage's report in two files, both logged to the active run: ``path`` holds its
    numbers (the DVC metrics file, so `dvc metrics diff` compares numbers only) and ``info_path``
    every other value (dates, names, flags: what the numbers are about)."""
    numbers, info = _split_numbers(summary)
    write_report(numbers, path)
    write_report(info, info_path)


def _split_numbers(tree: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    numbers: dict[str, Any] = {}
    info: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            inner_numbers, inner_info = _split_numbers(value)
            if inner_numbers or not inner_info:  # an empty count table ({} dropped) is still a metric
                numbers[key] = inner_numbers
            if inner_info:
                info[key] = inner_info
        elif isinstance(value, int | float) and not isinstance(value, bool):
            numbers[key] = value
        else:
            info[key] = value
    return numbers, info
