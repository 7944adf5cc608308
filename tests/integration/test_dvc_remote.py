"""The default DVC remote (.dvc/config): `dvc push` / `dvc pull` work out of the box."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from sepflow.io import file_md5
from sepflow.tracking.reproduce import restore_inputs

OUTPUTS = ("data/synthetic", "data/raw/synthetic_truth.parquet")  # the synthesize stage's


def _contents(root: Path) -> dict[str, bytes]:
    files = [p for out in OUTPUTS for p in ([root / out] if (root / out).is_file() else (root / out).rglob("*"))]
    return {str(p.relative_to(root)): p.read_bytes() for p in files if p.is_file()}


def test_push_then_pull_restores_outputs_byte_identical(repo_copy: Callable, tmp_path: Path) -> None:
    repo = repo_copy()
    store = repo.root.parent / "sepflow-dvc-store"  # ../../ from .dvc/: beside the clone, in tmp_path
    assert repo.run("dvc", "remote", "default").stdout.strip() == "local"
    repo.run("dvc", "repro", "synthesize")
    before = _contents(repo.root)
    assert len(before) > 1

    repo.run("dvc", "push", "synthesize")
    assert store.is_relative_to(tmp_path) and any((store / "files/md5").rglob("*"))
    for out in OUTPUTS:
        path = repo.root / out
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.rmtree(repo.root / ".dvc/cache")
    repo.run("dvc", "pull", "synthesize")  # the copy's dvc.lock also names the full pipeline's results
    assert _contents(repo.root) == before

    # `sepflow reproduce` restores a run's inputs from the default remote when the cache lacks them.
    truth = "data/raw/synthetic_truth.parquet"
    md5 = file_md5(repo.root / truth)
    shutil.rmtree(repo.root / ".dvc/cache")
    restore_inputs({truth: md5}, tmp_path / "elsewhere", repo.root)
    assert (tmp_path / "elsewhere" / truth).read_bytes() == before[truth]
