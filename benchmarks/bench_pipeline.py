"""The whole default pipeline, timed: a full `dvc repro` in a fresh clone, a no-op rerun, and a
rerun after one family's hyperparameter changed (only that family's stages should run).

    .venv/bin/python benchmarks/bench_pipeline.py            # clones HEAD into a temporary folder
    .venv/bin/python benchmarks/bench_pipeline.py --keep     # and leaves the clone for inspection

Prints wall times and each stage's MLflow run duration. Figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(args: list[str], cwd: Path) -> tuple[float, str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed, done.stdout


def _stage_durations(root: Path, since_ms: int) -> dict[str, float]:
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("sepflow")
    runs = client.search_runs([experiment.experiment_id], f"attributes.start_time >= {since_ms}")
    return {r.data.tags["sepflow.stage"]: (r.info.end_time - r.info.start_time) / 1000
            for r in runs if "sepflow.stage" in r.data.tags and r.info.end_time}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sepflow-bench-")) / "repo"
    try:
        subprocess.run(["git", "clone", "-q", str(REPO), str(root)], check=True)
        started = int(time.time() * 1000)
        full, _ = _run(["dvc", "repro"], root)
        stages = _stage_durations(root, started)
        noop, _ = _run(["dvc", "repro"], root)
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["train"]["xgboost"]["n_estimators"] = int(params["train"]["xgboost"]["n_estimators"]) + 50
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        one_family, out = _run(["dvc", "repro"], root)
        reran = sorted(line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage"))
        print(f"{'stage':<28}{'seconds':>9}")
        for stage, seconds in sorted(stages.items(), key=lambda item: -item[1]):
            print(f"{stage:<28}{seconds:>9.1f}")
        print(f"{'sum of stage runs':<28}{sum(stages.values()):>9.1f}")
        print(f"full dvc repro (fresh clone, wall): {full:.1f} s")
        print(f"no-op dvc repro (wall): {noop:.1f} s")
        print(f"after train.xgboost.n_estimators += 50 (wall): {one_family:.1f} s; reran {reran}")
    finally:
        if args.keep:
            print(f"clone kept at {root}")
        else:
            shutil.rmtree(root.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
