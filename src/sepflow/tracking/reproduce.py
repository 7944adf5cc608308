"""Reproduce an old MLflow run: its commit in a temporary git worktree, its inputs restored by
the md5s it recorded, its DVC stage rerun, its metrics compared with the ones it logged.

Inputs are restored from the DVC cache by the run's ``sepflow.input_md5.*`` tags rather than by
the commit's ``dvc.lock``: a run is usually committed *before* its lock file is (run, then
commit the results), so the lock at the run's commit describes the previous results.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sepflow.errors import SepflowError
from sepflow.io import file_md5
from sepflow.tracking.lineage import _git, repo_root
from sepflow.tracking.runs import tracking_uri

__all__ = [
    "REPRODUCES_TAG",
    "TOLERANCES",
    "MetricComparison",
    "Reproduction",
    "RunLineage",
    "compare_metrics",
    "format_comparison",
    "read_lineage",
    "reproduce",
    "restore_inputs",
    "run_metrics",
    "temporary_worktree",
    "tolerance_for",
]

INPUT_TAG = "sepflow.input_md5."
REPRODUCES_TAG = "sepflow.reproduces"
PARENT_TAG = "mlflow.parentRunId"

# Absolute tolerance per model family (the part of a stage name after "@"); every other stage must
# match exactly. The LSTM gives identical weights on the same machine and library versions (see
# sepflow.models.lstm), but oneDNN picks TensorFlow's CPU kernels per instruction set, moving
# probabilities by ~1e-7: enough to flip a thresholded prediction near 0.5 or the epoch early
# stopping keeps. 0.02 bounds what that does to a test-segment metric; more means a real change.
TOLERANCES: dict[str, float] = {"lstm": 0.02}


@dataclass(frozen=True)
class RunLineage:
    """Where a stage run came from: enough to rerun it."""

    run_id: str
    stage: str  # sepflow's name for it, e.g. train@xgboost
    dvc_stage: str  # the dvc.yaml stage to rerun (train_ensemble runs train@ensemble)
    commit: str
    inputs: dict[str, str]  # path (relative to the DVC root, or absolute) → md5
    experiment_id: str


def _refuse(message: str) -> SepflowError:
    return SepflowError(f"reproduce: {message}")


def read_lineage(client: MlflowClient, run_id: str) -> tuple[Run, RunLineage]:
    """The run and its lineage; refuses runs that are unknown, untagged, unfinished or from a dirty tree."""
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise _refuse(f"no MLflow run {run_id!r} in {client.tracking_uri}") from None
    tags = run.data.tags
    if "sepflow.stage" not in tags or "sepflow.git_commit" not in tags:
        parent = tags.get(PARENT_TAG)
        hint = f"; it is nested in run {parent}, reproduce that one" if parent else ""
        raise _refuse(f"run {run_id} has no sepflow lineage tags (sepflow.stage, sepflow.git_commit){hint}")
    stage, commit, dirty = tags["sepflow.stage"], tags["sepflow.git_commit"], tags.get("sepflow.git_dirty")
    if commit == "unknown":
        raise _refuse(f"run {run_id} ({stage}) ran outside a git repository; there is no commit to check out")
    if dirty == "true":
        raise _refuse(f"run {run_id} ({stage}) came from a dirty tree at {commit[:12]} (uncommitted code, "
                      "params or dvc.yaml); its commit alone cannot reproduce it")
    if dirty != "false":
        raise _refuse(f"run {run_id} ({stage}) records no dirty flag; cannot tell whether {commit[:12]} reproduces it")
    if run.info.status != "FINISHED":
        raise _refuse(f"run {run_id} ({stage}) ended {run.info.status}; only a finished run has metrics to compare")
    inputs = {key[len(INPUT_TAG):]: md5 for key, md5 in tags.items() if key.startswith(INPUT_TAG)}
    lineage = RunLineage(run_id, stage, tags.get("sepflow.dvc_stage", stage), commit, inputs,
                         run.info.experiment_id)
    return run, lineage


def _children(client: MlflowClient, runs: list[Run]) -> list[Run]:
    """The runs nested in any of ``runs`` (tag filters take no IN: one search each)."""
    return [child for run in runs for child in client.search_runs(
        [run.info.experiment_id], f"tags.`{PARENT_TAG}` = '{run.info.run_id}'")]


def run_metrics(client: MlflowClient, run: Run) -> dict[str, float]:
    """The run's metrics plus its nested runs', those keyed ``<nested run name>/<metric>``."""
    metrics = dict(run.data.metrics)
    for child in _children(client, [run]):
        metrics.update({f"{child.info.run_name}/{key}": value for key, value in child.data.metrics.items()})
    return metrics


# -- comparing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricComparison:
    """One metric, as recorded and as reproduced (None where that run lacks it)."""

    metric: str
    recorded: float | None
    reproduced: float | None
    tolerance: float

    @property
    def diff(self) -> float:
        """|reproduced − recorded|; NaN when either is missing or NaN, 0 for the same infinity."""
        if self.recorded is None or self.reproduced is None:
            return math.nan
        if self.recorded == self.reproduced:
            return 0.0
        return abs(self.reproduced - self.recorded)

    @property
    def ok(self) -> bool:
        """Both present and within tolerance; NaN reproduces NaN (an undefined metric stays undefined)."""
        if self.recorded is None or self.reproduced is None:
            return False
        if math.isnan(self.recorded) or math.isnan(self.reproduced):
            return math.isnan(self.recorded) and math.isnan(self.reproduced)
        return self.diff <= self.tolerance


def compare_metrics(
    recorded: Mapping[str, float], reproduced: Mapping[str, float], tolerance: float = 0.0,
) -> list[MetricComparison]:
    """Every metric of either run, sorted by name, with whether it reproduced within ``tolerance``."""
    return [MetricComparison(name, recorded.get(name), reproduced.get(name), tolerance)
            for name in sorted(set(recorded) | set(reproduced))]


def format_comparison(rows: list[MetricComparison]) -> str:
    """A text table: metric, recorded, reproduced, |diff|, ok."""
    width = max([len("metric"), *(len(row.metric) for row in rows)])

    def number(value: float | None) -> str:
        return "missing" if value is None else f"{value:.10g}"

    lines = [f"{'metric':<{width}}  {'recorded':>16}  {'reproduced':>16}  {'|diff|':>10}  ok"]
    for row in rows:
        lines.append(f"{row.metric:<{width}}  {number(row.recorded):>16}  {number(row.reproduced):>16}  "
                     f"{row.diff:>10.3g}  {'yes' if row.ok else 'NO'}")
    return "\n".join(lines)


def tolerance_for(stage: str) -> float:
    """The absolute tolerance for ``stage``'s metrics: its family's in ``TOLERANCES``, else 0 (exact)."""
    family = stage.rpartition("@")[2] if "@" in stage else ""
    return TOLERANCES.get(family, 0.0)


# -- the worktree ---------------------------------------------------------------------------------


def _git_checked(args: list[str], cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise _refuse(f"`git {' '.join(args)}` failed in {cwd}: {detail[0]}")
    return done.stdout.strip()


@contextmanager
def temporary_worktree(git_root: Path, commit: str, *, keep: bool = False) -> Iterator[Path]:
    """``commit`` checked out (detached) in a new worktree of ``git_root``; removed afterwards unless ``keep``."""
    folder = Path(tempfile.mkdtemp(prefix="sepflow-reproduce-"))
    tree = folder / "worktree"
    try:
        _git_checked(["worktree", "add", "--detach", str(tree), commit], git_root)
    except SepflowError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    try:
        yield tree
    finally:
        if not keep:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=git_root, capture_output=True,
                           check=False)
            shutil.rmtree(folder, ignore_errors=True)
            # If remove failed, the folder is gone now; drop git's record of it too.
            subprocess.run(["git", "worktree", "prune"], cwd=git_root, capture_output=True, check=False)


@contextmanager
def _quiet_dvc() -> Iterator[None]:
    logger = logging.getLogger("dvc")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _producers(project: Path, paths: list[str]) -> dict[str, str]:
    """The pipeline stage (at the worktree's commit) whose command writes each path, where one does."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    found: dict[str, str] = {}
    try:
        repo = Repo(str(project))
    except DvcException:  # not a DVC project: nothing to name
        return found
    with repo:
        for stage in (s for s in repo.index.stages if s.cmd):  # a `dvc add`ed file has no stage to rerun
            for out in stage.outs:
                prefix = out.def_path.rstrip("/")
                for path in paths:
                    if path == prefix or path.startswith(f"{prefix}/"):
                        found[path] = stage.name if Path(stage.path) == project / "dvc.yaml" else \
                            f"{Path(stage.path).relative_to(project)}:{stage.name}"
    return found


def restore_inputs(inputs: Mapping[str, str], project: Path, dvc_root: Path, *, commit: str = "") -> None:
    """Put every recorded input (path → md5) into ``project`` with exactly that md5.

    Files already there with the right md5 (tracked by git, or external paths) are kept; the rest
    are copied from ``dvc_root``'s DVC cache, pulled first from its default remote when the cache
    lacks them. Refuses, naming the files, when an input is nowhere to be found or differs.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc_data.hashfile.hash_info import HashInfo

    pending: dict[str, str] = {}
    for path, md5 in sorted(inputs.items()):
        target = project / path  # an absolute path stays itself
        if target.is_file() and file_md5(target) == md5:
            continue
        if Path(path).is_absolute():
            state = "is missing" if not target.is_file() else f"has md5 {file_md5(target)}"
            raise _refuse(f"external input {path} {state}; the run read md5 {md5}")
        pending[path] = md5
    if not pending:
        return
    with Repo(str(dvc_root)) as repo:
        cache, remote = repo.cache.local, repo.config["core"].get("remote")
        absent = {path: md5 for path, md5 in pending.items() if not cache.exists(md5)}
        if absent and remote:
            try:
                with _quiet_dvc():  # DVC warns of each missing object; the refusal below names them once
                    repo.cloud.pull([HashInfo("md5", md5) for md5 in sorted(set(absent.values()))])
            except DvcException as exc:
                raise _refuse(f"pulling {', '.join(absent)} from DVC remote {remote!r} failed: {exc}") from None
            absent = {path: md5 for path, md5 in absent.items() if not cache.exists(md5)}
        if absent:
            producers = _producers(project, list(absent))
            files = ", ".join(f"{path} (md5 {md5})" for path, md5 in absent.items())
            where = f"nor on DVC remote {remote!r}" if remote else "and no DVC remote is configured"
            rebuild = sorted(set(producers.values()))
            how = f"rebuild with `dvc repro {' '.join(rebuild)}`" if rebuild else "restore the file(s)"
            at = f" at commit {commit[:12]}" if commit else ""
            raise _refuse(f"input data not in the DVC cache {repo.cache.local_cache_dir} {where}: {files}; "
                          f"{how}{at}, or `dvc push` it from a machine that has it")
        for path, md5 in pending.items():
            target = project / path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cache.oid_to_path(md5), target)
            if (got := file_md5(target)) != md5:
                raise _refuse(f"{path}: DVC cache object {md5} holds md5 {got}; the cache is corrupt "
                              "(remove the object and pull or rebuild it)")


def _prepare(project: Path, lineage: RunLineage, dvc_root: Path) -> None:
    """Point the worktree's DVC at the main cache, restore the inputs, check the stage can run."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    with Repo(str(dvc_root)) as main:
        cache_dir = main.cache.local_cache_dir
    with Repo(str(project)) as repo, repo.config.edit("local") as config:
        config["cache"]["dir"] = cache_dir  # outputs the rerun writes land beside the originals
    restore_inputs(lineage.inputs, project, dvc_root, commit=lineage.commit)
    with Repo(str(project)) as repo:
        try:
            (stage,) = repo.stage.collect(lineage.dvc_stage)
        except (DvcException, ValueError):
            raise _refuse(f"run {lineage.run_id}: commit {lineage.commit[:12]}'s dvc.yaml has no single stage "
                          f"{lineage.dvc_stage!r} to rerun") from None
        missing = [dep.def_path for dep in stage.deps if not os.path.exists(dep.fs_path)]
    if missing:
        raise _refuse(f"run {lineage.run_id} recorded no md5 for {', '.join(missing)}, which stage "
                      f"{lineage.dvc_stage} needs; its data cannot be restored exactly")


def _rerun(project: Path, worktree: Path, lineage: RunLineage, uri: str) -> None:
    """``dvc repro`` the one stage in the worktree, with the commit's code and the original tracking store."""
    bin_dir = str(Path(sys.executable).parent)  # the `sepflow` the stage command names lives beside us
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "PATH": os.pathsep.join(filter(None, [bin_dir, os.environ.get("PATH")])),
        # The commit's code, not the installed (editable) checkout's: PYTHONPATH precedes site-packages.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(worktree / "src"), os.environ.get("PYTHONPATH")])),
    }
    env.pop("DVC_ROOT", None)  # DVC then sets it to the worktree: studies and scratch stay there
    env.pop("DVC_STAGE", None)
    done = subprocess.run([sys.executable, "-m", "dvc", "repro", "--single-item", "--force", lineage.dvc_stage],
                          cwd=project, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in (done.stdout + "\n" + done.stderr).splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if line.startswith("sepflow: error:")),
                      lines[-1] if lines else f"exit {done.returncode}")
        raise _refuse(f"`dvc repro {lineage.dvc_stage}` failed at commit {lineage.commit[:12]}: {reason}")


def _runs_since(client: MlflowClient, lineage: RunLineage, since_ms: int) -> list[Run]:
    """Stage runs of ``lineage``'s stage and commit started at or after ``since_ms``, newest first."""
    experiment = client.get_experiment_by_name("sepflow")
    experiments = sorted({lineage.experiment_id, *([experiment.experiment_id] if experiment else [])})
    query = (f"tags.`sepflow.stage` = '{lineage.stage}' and tags.`sepflow.git_commit` = '{lineage.commit}' "
             f"and attributes.start_time >= {since_ms}")
    return client.search_runs(experiments, query, order_by=["attributes.start_time DESC"])


def _aliases(client: MlflowClient) -> dict[str, dict[str, str]]:
    """Every registered model's aliases (alias → version)."""
    found: dict[str, dict[str, str]] = {}
    token = None
    while True:
        page = client.search_registered_models(max_results=200, page_token=token)
        found.update({model.name: {a: str(v) for a, v in model.aliases.items()} for model in page})
        token = page.token
        if not token:
            return found


def _restore_aliases(client: MlflowClient, before: Mapping[str, Mapping[str, str]], run_ids: set[str]) -> list[str]:
    """Move back every alias the rerun moved (one now naming a version logged by ``run_ids``)."""
    moved = []
    for name, now in _aliases(client).items():
        was = before.get(name, {})
        for alias, version in now.items():
            if was.get(alias) == version or client.get_model_version(name, version).run_id not in run_ids:
                continue  # untouched, or moved by someone else meanwhile
            if alias in was:
                client.set_registered_model_alias(name, alias, was[alias])
                moved.append(f"{name}@{alias} back to v{was[alias]}")
            else:
                client.delete_registered_model_alias(name, alias)
                moved.append(f"{name}@{alias} removed")
    return moved


# -- the whole -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reproduction:
    """What ``reproduce`` did and found."""

    original: RunLineage
    reproduced_run_id: str
    tolerance: float
    comparisons: list[MetricComparison]
    aliases_restored: list[str]
    kept_worktree: Path | None

    @property
    def ok(self) -> bool:
        """Every metric reproduced within tolerance."""
        return all(row.ok for row in self.comparisons)


def reproduce(
    run_id: str,
    *,
    root: Path | None = None,
    keep_worktree: bool = False,
    echo: Callable[[str], None] = lambda _: None,
) -> Reproduction:
    """Rerun the stage that produced MLflow run ``run_id`` at its commit and compare its metrics.

    The rerun is recorded in the same tracking store, tagged ``sepflow.reproduces=<run_id>``;
    registry aliases it moved (training points ``candidate`` at what it registers) are moved back,
    so reproducing never changes what serves. The worktree is removed afterwards, even on error,
    unless ``keep_worktree``.
    """
    root = root or repo_root()
    uri = tracking_uri(root)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    original, lineage = read_lineage(client, run_id)
    git_root = _git(["rev-parse", "--show-toplevel"], root)
    if git_root is None:
        raise _refuse(f"{root} is not in a git repository")
    if _git(["cat-file", "-e", f"{lineage.commit}^{{commit}}"], Path(git_root)) is None:
        raise _refuse(f"run {run_id} ({lineage.stage}) came from commit {lineage.commit[:12]}, "
                      f"which is not in the repository at {git_root} (fetch it first)")
    recorded = run_metrics(client, original)
    with temporary_worktree(Path(git_root), lineage.commit, keep=keep_worktree) as tree:
        project = tree / root.resolve().relative_to(Path(git_root).resolve())
        echo(f"reproducing run {run_id} ({lineage.dvc_stage}) at commit {lineage.commit[:12]} in {tree}")
        _prepare(project, lineage, root)
        before, started = _aliases(client), int(time.time() * 1000)
        try:
            _rerun(project, tree, lineage, uri)
        finally:
            reruns = _runs_since(client, lineage, started)
            ids = {run.info.run_id for run in [*reruns, *_children(client, reruns)]}
            restored = _restore_aliases(client, before, ids)
    if not reruns:
        raise _refuse(f"`dvc repro {lineage.dvc_stage}` ran but logged no {lineage.stage} run to {uri}")
    rerun = reruns[0]
    client.set_tag(rerun.info.run_id, REPRODUCES_TAG, run_id)
    tolerance = tolerance_for(lineage.stage)
    comparisons = compare_metrics(recorded, run_metrics(client, rerun), tolerance)
    return Reproduction(lineage, rerun.info.run_id, tolerance, comparisons, restored,
                        tree if keep_worktree else None)
