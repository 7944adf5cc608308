"""Lineage: git commit and the dirty flag, input md5s."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sepflow.io import file_md5
from sepflow.tracking.lineage import git_state, input_md5s


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_dirty_flag_ignores_what_dvc_writes(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@sepflow.invalid")
    _git(tmp_path, "config", "user.name", "t")
    for name in ("params.yaml", "dvc.lock", "reports/ingest.json", "data/.gitignore", "a.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("a\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-q", "-m", "x")
    state = git_state(tmp_path)
    assert len(state["git_commit"]) == 40 and state["git_dirty"] == "false"

    for name in ("dvc.lock", "reports/ingest.json", "data/.gitignore"):
        (tmp_path / name).write_text("b\n")
    (tmp_path / "untracked.py").write_text("")
    assert git_state(tmp_path)["git_dirty"] == "false"
    (tmp_path / "params.yaml").write_text("b\n")
    assert git_state(tmp_path)["git_dirty"] == "true"
    (tmp_path / "params.yaml").write_text("a\n")
    (tmp_path / "a.py").write_text("b\n")  # first line of `git status`: its leading space matters
    assert git_state(tmp_path)["git_dirty"] == "true"


def test_input_md5s_cover_folders(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.csv").write_text("1")
    (tmp_path / "y.csv").write_text("2")
    digests = input_md5s([tmp_path / "d", tmp_path / "y.csv", tmp_path / "missing.csv"])
    assert digests == {
        (tmp_path / "d" / "x.csv").as_posix(): file_md5(tmp_path / "d" / "x.csv"),
        (tmp_path / "y.csv").as_posix(): file_md5(tmp_path / "y.csv"),
    }
