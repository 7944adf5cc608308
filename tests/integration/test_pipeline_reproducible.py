"""The default pipeline (every stage, every family) on a small market, run twice: a fresh clone's
`dvc repro` reproduces the committed state byte for byte, every run recorded exactly its stage's
DVC data dependencies as inputs, and `sepflow reproduce` re-creates a run of every stage kind from
those recorded inputs alone (its worktree holds nothing else, so a file a stage opened without
recording it fails the reproduction: that is how train@ensemble's unrecorded member models were
found). tests/tracking/test_reproduce.py reproduces train@xgboost and checks the refusals."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

OUTPUT_FOLDERS = ("data", "models", "reports")
INPUT_TAG = "sepflow.input_md5."
# `sepflow reproduce` reruns a run of every stage kind: data, research, training (train@xgboost is
# reproduced in tests/tracking/test_reproduce.py), the ensemble's training from other families'
# models, a walk-forward and the ensemble's walk-forward from the members' outputs.
STAGE_KINDS = ("synthesize", "ingest", "filter_sep", "build_features", "rank_targets", "select_features",
               "train@ensemble", "walk_forward@dummy", "walk_forward@ensemble")


def test_a_fresh_clone_reproduces_every_output_and_every_run_reproduces(repo_copy: Callable, tmp_path: Path) -> None:
    repo = repo_copy()
    repo.run("dvc", "repro")
    repo.commit("the committed state")
    committed = _outputs(repo.root)
    assert any(path.startswith("models/lstm/") for path in committed)

    clone = type(repo)(tmp_path / "clone")  # no DVC cache, no MLflow or Optuna database: everything reruns
    repo.run("git", "clone", "-q", str(repo.root), str(clone.root))
    assert "Running stage 'walk_forward_ensemble'" in clone.run("dvc", "repro").stdout
    assert clone.run("git", "status", "--porcelain").stdout == ""
    rebuilt = _outputs(clone.root)
    differing = sorted(path for path in committed.keys() | rebuilt.keys() if committed.get(path) != rebuilt.get(path))
    assert not differing, f"outputs that differ between two runs: {differing}"

    # Every run recorded as inputs exactly the files of its stage's DVC data deps.
    data_deps = _data_deps(repo.root)
    for run in repo.stage_runs():
        dvc_stage = run.data.tags.get("sepflow.dvc_stage")
        if dvc_stage is None:  # a per-target run nested in a stage's run records no inputs of its own
            continue
        recorded = {key.removeprefix(INPUT_TAG) for key in run.data.tags if key.startswith(INPUT_TAG)}
        assert recorded == data_deps[dvc_stage], dvc_stage
    for stage in STAGE_KINDS:
        (run,) = repo.stage_runs(stage)
        done = repo.run("sepflow", "reproduce", run.info.run_id, check=False)
        assert done.returncode == 0 and "reproduced" in done.stdout, (stage, done.stdout, done.stderr)


def _outputs(root: Path) -> dict[str, str]:
    """md5 of every file under the pipeline's output folders (DVC's own bookkeeping left out)."""
    return {path.relative_to(root).as_posix(): hashlib.md5(path.read_bytes()).hexdigest()
            for folder in OUTPUT_FOLDERS for path in sorted((root / folder).rglob("*"))
            if path.is_file() and path.name != ".gitignore"}


def _data_deps(root: Path) -> dict[str, set[str]]:
    """Each stage's non-code deps in dvc.yaml as files (folders expanded, foreach stages and
    ``${params}`` resolved)."""
    params = yaml.safe_load((root / "params.yaml").read_text())

    def resolve(dep: str, item: str | None) -> str:
        def value(match: re.Match) -> str:
            if match.group(1) == "item":
                return str(item)
            node = params
            for key in match.group(1).split("."):
                node = node[key]
            return str(node)
        return re.sub(r"\$\{([\w.]+)\}", value, dep)

    def files(dep: str) -> set[str]:
        path = root / dep
        if path.is_dir():
            return {p.relative_to(root).as_posix() for p in path.rglob("*") if p.is_file() and p.name != ".gitignore"}
        return {dep}

    stages: dict[str, set[str]] = {}
    for name, stage in yaml.safe_load((root / "dvc.yaml").read_text())["stages"].items():
        for item, body in ([(key, stage["do"]) for key in stage["foreach"]] if "foreach" in stage else [(None, stage)]):
            deps = {resolve(dep if isinstance(dep, str) else next(iter(dep)), item) for dep in body.get("deps", [])}
            stages[f"{name}@{item}" if item else name] = set().union(*(files(d) for d in deps if not d.startswith("src/")))
    return stages
