"""Shared fixtures: a temporary copy of the repository to run DVC in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# A market small enough for seconds-long DVC runs, still with every realism feature.
TINY_PARAMS: dict[str, dict[str, Any]] = {
    "synthetic": {"n_tickers": 36, "n_days": 420, "signal_strength": 3.0},
    "universe": {"min_history_days": 60, "liquidity_window": 20},
    "targets": {"horizons": [1, 5]},
    "ranking": {"families": ["lightgbm", "xgboost"], "max_samples_per_symbol": 120, "top_n": 2,
                "min_predictability_score": -1.0},  # plumbing, not signal: always keep the top 2
    "selection": {"families": ["lightgbm", "xgboost"], "max_samples_per_symbol": 150, "top_m": 6,
                  "permutation_rows": 500},
    "train": {
        "tuning": {"n_trials": {"random_forest": 1, "xgboost": 2, "lightgbm": 2}},
        "random_forest": {"n_estimators": 30, "n_jobs": 1},
        "xgboost": {"n_estimators": 60, "early_stopping_rounds": 10, "n_jobs": 1},
        "lightgbm": {"n_estimators": 60, "early_stopping_rounds": 10, "n_jobs": 1},
        "lstm": {"sequence_length": 10, "units1": 8, "units2": 4, "epochs": 1, "batch_size": 256, "patience": 1},
    },
    "walk_forward": {"train_days": 120, "test_days": 40, "n_folds": 2, "max_samples_per_symbol": None},
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first (stable order otherwise): with ``make test``'s ``--dist worksteal`` the long
    tests start early, and a worker that runs out of work takes half of the other's remaining
    queue of quick ones, so no long test starts last while the other worker sits idle."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


class RepoCopy:
    """A git+DVC copy of the working tree in a temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        self.env.pop("MLFLOW_TRACKING_URI", None)
        self.env.pop("DVC_ROOT", None)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(args, cwd=self.root, env=self.env, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def set_params(self, update: dict[str, Any]) -> None:
        path = self.root / "params.yaml"
        params = _merge(yaml.safe_load(path.read_text()), update)
        path.write_text(yaml.safe_dump(params, sort_keys=False))

    def stage_runs(self, stage: str | None = None) -> list:
        """The MLflow runs in this copy's database, optionally of one stage."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{self.root / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("sepflow")
        query = f"tags.`sepflow.stage` = '{stage}'" if stage else ""
        return client.search_runs([experiment.experiment_id], query)

    def commit(self, message: str = "test") -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message, "--allow-empty")


@pytest.fixture()
def repo_copy(tmp_path: Path) -> Callable[..., RepoCopy]:
    """Factory: copy the tracked and untracked-but-not-ignored files, git init, tiny params, commit."""

    def make(params: dict[str, Any] | None = None) -> RepoCopy:
        tracked = subprocess.run(["git", "ls-files", "--cached", "-z"], cwd=REPO, capture_output=True,
                                 text=True, check=True).stdout.split("\0")
        untracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard", "-z"], cwd=REPO,
                                   capture_output=True, text=True, check=True).stdout.split("\0")
        # Uncommitted source counts (tests see work in progress), stray pipeline results do not.
        files = tracked + [f for f in untracked if not f.startswith(("data/", "models/", "reports/"))]
        root = tmp_path / "repo"
        for name in filter(None, files):
            source = REPO / name
            if source.is_file():
                target = root / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        copy = RepoCopy(root)
        copy.run("git", "init", "-q", "-b", "main")
        copy.run("git", "config", "user.email", "tests@sepflow.invalid")
        copy.run("git", "config", "user.name", "sepflow tests")
        copy.set_params(_merge(yaml.safe_load(yaml.safe_dump(TINY_PARAMS)), params or {}))
        copy.commit("copy of the working tree")
        return copy

    return make


@pytest.fixture()
def named_research() -> Callable[..., dict[str, Any]]:
    """Params naming the targets and their features (the ranking and selection bypasses), for
    tests about later stages: `dvc repro` then skips the two slowest research stages' work."""

    def make(*targets: str) -> dict[str, Any]:
        features = ["ret_5d", "ret_20d", "ret_60d", "sma_ratio_20", "rsi_14", "ret_20d_xs", "rvol_20"]
        return {"ranking": {"targets": list(targets)}, "selection": {"manual": dict.fromkeys(targets, features)}}

    return make
