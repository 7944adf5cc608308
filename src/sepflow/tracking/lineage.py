"""Where a result came from: git commit, dirty flag, input md5s, params digest."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sepflow.io import file_md5


def repo_root(start: Path | None = None) -> Path:
    """The repository whose MLflow database every stage shares.

    DVC sets ``DVC_ROOT`` for stage commands (for queued experiments it names the parent
    repository, not the temporary copy), so it wins; otherwise the nearest folder with a
    ``dvc.yaml`` above ``start``; otherwise ``start`` itself.
    """
    if env := os.environ.get("DVC_ROOT"):
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").exists():
            return folder
    return here


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.rstrip("\n")  # keep leading spaces: porcelain status columns


# What `dvc repro` itself writes while it runs: the lock file, the .gitignore entries of outputs,
# and the output folders (metrics files there are git-tracked). Edits there are results, not inputs.
_WRITTEN_BY_DVC = re.compile(r"^(dvc\.lock|(.*/)?\.gitignore|(data|models|reports)/.*)$")


def git_state(cwd: Path | None = None) -> dict[str, str]:
    """Commit and dirty flag of the code that is running (``unknown`` outside git).

    Dirty means a tracked file other than DVC's own results differs from the commit: code,
    params.yaml or dvc.yaml, so the commit alone cannot reproduce the run.
    """
    cwd = cwd or Path.cwd()
    commit = _git(["rev-parse", "--verify", "-q", "HEAD"], cwd)
    if commit is None:
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd) or ""
    changed = [line[3:].split(" -> ")[-1] for line in status.splitlines()]
    dirty = any(not _WRITTEN_BY_DVC.match(path) for path in changed)
    return {"git_commit": commit, "git_dirty": "true" if dirty else "false"}


def input_md5s(paths: Iterable[str | Path]) -> dict[str, str]:
    """md5 of every input file (each file of a folder), keyed by path: the digests DVC records."""
    digests: dict[str, str] = {}
    for path in map(Path, paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if file.exists():
                digests[file.as_posix()] = file_md5(file)
    return digests


def params_digest(params: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a params mapping."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
