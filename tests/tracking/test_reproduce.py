"""sepflow reproduce: refusals, restoring inputs by md5, comparing metrics, and a whole rerun."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sepflow.cli import main
from sepflow.errors import SepflowError
from sepflow.io import file_md5, read_json
from sepflow.tracking.reproduce import (
    REPRODUCES_TAG,
    compare_metrics,
    format_comparison,
    reproduce,
    restore_inputs,
    tolerance_for,
)

# -- comparing ------------------------------------------------------------------------------------


def test_compare_metrics_exact_by_default() -> None:
    recorded = {"auc": 0.61, "undefined": math.nan, "sharpe": 1.0, "gone": 2.0}
    reproduced = {"auc": 0.61, "undefined": math.nan, "sharpe": 1.01, "new": 3.0}
    rows = {row.metric: row for row in compare_metrics(recorded, reproduced)}
    assert list(rows) == ["auc", "gone", "new", "sharpe", "undefined"]
    assert rows["auc"].ok and rows["auc"].diff == 0.0
    assert rows["undefined"].ok  # NaN reproduces NaN
    assert not rows["sharpe"].ok and rows["sharpe"].diff == pytest.approx(0.01)
    assert not rows["gone"].ok and rows["gone"].reproduced is None and math.isnan(rows["gone"].diff)
    assert not rows["new"].ok and rows["new"].recorded is None


def test_compare_metrics_within_tolerance() -> None:
    rows = compare_metrics({"a": 0.5, "b": 0.5, "c": math.nan, "d": math.inf},
                           {"a": 0.515, "b": 0.53, "c": 0.5, "d": math.inf}, tolerance=0.02)
    assert [row.ok for row in rows] == [True, False, False, True]


def test_tolerance_is_exact_except_for_the_lstm() -> None:
    assert tolerance_for("train@lstm") == tolerance_for("walk_forward@lstm") == 0.02
    assert tolerance_for("train@xgboost") == tolerance_for("train@ensemble") == tolerance_for("build_features") == 0.0


def test_format_comparison() -> None:
    table = format_comparison(compare_metrics({"dir_5d.test.roc_auc": 0.6, "rows": 10.0}, {"dir_5d.test.roc_auc": 0.6}))
    header, auc, rows = table.splitlines()
    assert header.split() == ["metric", "recorded", "reproduced", "|diff|", "ok"]
    assert auc.split() == ["dir_5d.test.roc_auc", "0.6", "0.6", "0", "yes"]
    assert rows.split() == ["rows", "10", "missing", "nan", "NO"]


# -- refusals before anything runs ----------------------------------------------------------------


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MlflowClient, str]:
    """A one-commit git repo with a dvc.yaml (the repo root) and a SQLite tracking store, shared (slow to create)."""
    root = tmp_path_factory.mktemp("project")
    (root / "dvc.yaml").write_text("stages: {}\n")
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "t@sepflow.invalid")
    _git(root, "config", "user.name", "t")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "x")
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    client.create_experiment("sepflow")
    return root, client, _git(root, "rev-parse", "HEAD")


@pytest.fixture()
def project(store: tuple[Path, MlflowClient, str], monkeypatch: pytest.MonkeyPatch) -> tuple[Path, MlflowClient, str]:
    """``store``, with the working directory there and no tracking or DVC overrides in the environment."""
    monkeypatch.chdir(store[0])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    return store


def _run(client: MlflowClient, tags: dict[str, str], status: str = "FINISHED") -> str:
    run = client.create_run(client.get_experiment_by_name("sepflow").experiment_id, tags=tags)
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


@pytest.mark.parametrize(("tags", "status", "message"), [
    ({"sepflow.stage": "train@xgboost", "sepflow.git_dirty": "true"}, "FINISHED", "came from a dirty tree at "),
    ({"sepflow.stage": "train@xgboost", "sepflow.git_dirty": "false", "sepflow.git_commit": "f" * 40}, "FINISHED",
     "came from commit ffffffffffff, which is not in the repository"),
    ({"sepflow.stage": "train@xgboost", "sepflow.git_dirty": "false"}, "FAILED", "ended FAILED"),
    ({"sepflow.stage": "train@xgboost"}, "FINISHED", "records no dirty flag"),
    ({"sepflow.stage": "ingest", "sepflow.git_commit": "unknown", "sepflow.git_dirty": "unknown"}, "FINISHED",
     "ran outside a git repository"),
    ({"mlflow.parentRunId": "abc123"}, "FINISHED", "has no sepflow lineage tags .* nested in run abc123"),
])
def test_refusals(project: tuple[Path, MlflowClient, str], tags: dict[str, str], status: str, message: str) -> None:
    root, client, commit = project
    run_id = _run(client, {"sepflow.git_commit": commit, **tags}, status)
    with pytest.raises(SepflowError, match=f"^reproduce: .*{message}"):
        reproduce(run_id)
    assert len(_git(root, "worktree", "list").splitlines()) == 1  # nothing was checked out


def test_unknown_run_is_one_line(project: tuple[Path, MlflowClient, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reproduce", "0123456789abcdef"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sepflow: error: reproduce: no MLflow run '0123456789abcdef' in sqlite:///")
    assert err.count("\n") == 1


# -- restoring inputs -----------------------------------------------------------------------------


def _dvc(cwd: Path, *args: str) -> None:
    subprocess.run(["dvc", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})


def _cache_object(root: Path, md5: str) -> Path:
    return root / ".dvc/cache/files/md5" / md5[:2] / md5[2:]


def test_restore_inputs_from_cache_and_remote(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "repo", tmp_path / "checkout"
    (root / "data").mkdir(parents=True)
    _git(root, "init", "-q")
    _dvc(root, "init", "-q")
    (root / "data/prices.csv").write_text("ticker,close\nA,1.0\n")
    (root / "code.py").write_text("print(1)\n")
    _dvc(root, "add", "data/prices.csv")
    prices, code = file_md5(root / "data/prices.csv"), file_md5(root / "code.py")

    # From the cache; a file already there with its md5 (git-tracked code) is left alone.
    (elsewhere / "code.py").parent.mkdir(parents=True)
    (elsewhere / "code.py").write_text("print(1)\n")
    restore_inputs({"data/prices.csv": prices, "code.py": code}, elsewhere, root)
    assert file_md5(elsewhere / "data/prices.csv") == prices

    # Not in the cache, no remote: refused, naming the file.
    obj = _cache_object(root, prices)
    obj.chmod(0o644)
    content = obj.read_bytes()
    obj.unlink()
    with pytest.raises(SepflowError, match=r"not in the DVC cache .* no DVC remote is configured: "
                                           rf"data/prices.csv \(md5 {prices}\); restore the file"):
        restore_inputs({"data/prices.csv": prices}, tmp_path / "empty", root)

    # Pushed to the default remote earlier: pulled back.
    obj.parent.mkdir(parents=True, exist_ok=True)
    obj.write_bytes(content)
    _dvc(root, "remote", "add", "--local", "-d", "store", str(tmp_path / "remote"))
    _dvc(root, "push", "-q")
    obj.unlink()
    restore_inputs({"data/prices.csv": prices}, tmp_path / "pulled", root)
    assert file_md5(tmp_path / "pulled/data/prices.csv") == prices and obj.exists()

    # A corrupt cache object is caught by the md5 check.
    obj.chmod(0o644)
    obj.write_text("tampered\n")
    with pytest.raises(SepflowError, match="data/prices.csv: DVC cache object .* the cache is corrupt"):
        restore_inputs({"data/prices.csv": prices}, tmp_path / "corrupt", root)


def test_changed_external_input_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "sep.csv"
    source.write_text("a\n")
    with pytest.raises(SepflowError, match=f"external input {source} has md5 .*; the run read md5 0+$"):
        restore_inputs({str(source): "0" * 32}, tmp_path / "checkout", tmp_path)


# -- the whole ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_reproduce_an_earlier_run_exactly(repo_copy: Callable, named_research: Callable) -> None:
    repo = repo_copy(named_research("dir_5d", "return_5d"))
    repo.run("dvc", "repro", "train@xgboost")
    (first,) = repo.stage_runs("train@xgboost")
    repo.commit("first results")
    repo.set_params({"seed": 7})  # another tuning sample and model seed: other trees
    repo.run("dvc", "repro", "train@xgboost")
    repo.commit("second results")
    (second,) = [r for r in repo.stage_runs("train@xgboost") if r.info.run_id != first.info.run_id]
    assert second.data.tags["sepflow.git_dirty"] == "true"  # params.yaml was edited, not committed, when it ran
    client = MlflowClient(tracking_uri=f"sqlite:///{repo.root / 'mlflow.db'}")
    targets = read_json(repo.root / "data/processed/selected_targets.json")["targets"]
    serving = {t: client.get_model_version_by_alias(f"xgboost-{t}", "candidate").version for t in targets}

    done = repo.run("sepflow", "reproduce", first.info.run_id)
    assert f"reproduce: run {first.info.run_id} → run " in done.stdout and "metrics reproduced exactly" in done.stdout
    (again,) = [r for r in repo.stage_runs("train@xgboost") if r.data.tags.get(REPRODUCES_TAG) == first.info.run_id]
    assert again.info.status == "FINISHED" and again.data.tags["sepflow.git_commit"] == first.data.tags["sepflow.git_commit"]
    assert again.data.tags["sepflow.dvc_stage"] == "train@xgboost"
    assert again.data.metrics == first.data.metrics

    def children(run_id: str) -> dict[str, dict[str, float]]:
        found = client.search_runs([first.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run_id}'")
        return {r.info.run_name: r.data.metrics for r in found}

    recorded, reproduced = children(first.info.run_id), children(again.info.run_id)
    assert sorted(recorded) == sorted(f"xgboost/{t}" for t in targets) and reproduced == recorded
    assert children(second.info.run_id) != recorded  # the seed change mattered: "exactly" means something
    # The rerun registered versions but left candidate where it was; the worktree is gone.
    assert {t: client.get_model_version_by_alias(f"xgboost-{t}", "candidate").version for t in targets} == serving
    assert len(repo.run("git", "worktree", "list").stdout.splitlines()) == 1

    # Refusals: one line each, exit 2.
    dirty = repo.run("sepflow", "reproduce", second.info.run_id, check=False)
    assert dirty.returncode == 2 and dirty.stderr.count("\n") == 1 and "came from a dirty tree" in dirty.stderr
    # Input data gone from the cache and never pushed to the default remote: refused, naming it and its stage.
    path = "data/processed/selected_features.json"
    obj = _cache_object(repo.root, first.data.tags[f"sepflow.input_md5.{path}"])
    obj.unlink()
    missing = repo.run("sepflow", "reproduce", first.info.run_id, check=False)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert f"{path} (md5 " in missing.stderr and "`dvc repro select_features`" in missing.stderr
    assert "nor on DVC remote 'local'" in missing.stderr
    assert len(repo.run("git", "worktree", "list").stdout.splitlines()) == 1  # removed after the refusal too
