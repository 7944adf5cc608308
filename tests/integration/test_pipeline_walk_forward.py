"""`dvc repro walk_forward@FAMILY` on a tiny market: reports, DVC metrics/plots/params diffs,
version tags read by the promotion gate, both notebooks executed on the run, and `sepflow run`
experiments logging to the same MLflow database. One pipeline run serves all of it (CI time)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from sepflow.io import read_json, read_panel
from sepflow.stages.walk_forward import PLOTS
from sepflow.training.walk_forward import PREDICTION_COLUMNS

pytestmark = pytest.mark.slow


def test_walk_forward_stage_reports_tags_and_diffs(repo_copy: Callable, named_research: Callable,
                                                   execute_notebook: Callable) -> None:
    repo = repo_copy({"train": {"families": ["dummy", "xgboost"]}, **named_research("return_5d", "dir_5d")})
    repo.run("dvc", "repro", "walk_forward@xgboost", "walk_forward@dummy")
    root = repo.root
    targets = read_json(root / "data/processed/selected_targets.json")["targets"]
    out = root / "reports/walk_forward/xgboost"
    predictions = read_panel(out / "predictions.parquet")
    assert list(predictions.columns) == PREDICTION_COLUMNS
    assert sorted(predictions["target"].unique()) == sorted(targets)
    report = read_json(out / "metrics.json")
    folds = read_json(out / "folds.json")
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    (walk_run,) = repo.stage_runs("walk_forward@xgboost")
    for target in targets:
        # DVC metrics: the evidence with its error bars, numbers only; every metric is in folds.json.
        assert set(report[target]) == {"rank_ic", "rank_ic_se", "rank_ic_tstat", "net_sharpe", "net_sharpe_se", "psr",
                                       "dsr", "n_periods", "n_dates", "turnover", "max_drawdown"}
        assert all(isinstance(value, float) for value in report[target].values())
        overall = folds["overall"][target]
        assert overall["n_folds"] == 2 and report[target].items() <= overall.items() and ("roc_auc" in overall or "rmse" in overall)
        assert overall["n_dates"] == folds["date_rule"]["eval_dates"] == 80  # 2 folds x 40 test dates
        assert len(folds["folds"][target]) == 2
        # The gate's input: the evaluated candidate carries the walk-forward evidence and its window.
        # It is the release refit (the judged procedure on every labelled row), not the development model.
        version = client.get_model_version_by_alias(f"xgboost-{target}", "candidate")
        assert float(version.tags["sepflow.wf.rank_ic"]) == pytest.approx(overall["rank_ic"])
        assert version.tags["sepflow.wf.eval_start"] == folds["date_rule"]["eval_start"]
        assert version.tags["sepflow.wf.run_id"] == walk_run.info.run_id
        assert version.tags["sepflow.procedure"] == "release"
        release = read_json(root / "models/release/xgboost" / target / "metrics.json")
        assert release["walk_forward"]["rank_ic"] == pytest.approx(overall["rank_ic"])
        development = client.get_model_version(f"xgboost-{target}", version.tags["sepflow.development_version"])
        assert development.tags["sepflow.procedure"] == "development"
        assert not any(key.startswith("sepflow.wf.") for key in development.tags)  # the gate refuses it
    # train@xgboost: one nested run per target, each registering its development version.
    (parent,) = repo.stage_runs("train@xgboost")
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(r.data.tags["sepflow.target"] for r in children) == sorted(targets)
    for child in children:
        assert {"feature_importance.png", "tuning"} <= {a.path for a in client.list_artifacts(child.info.run_id)}
        name = f"xgboost-{child.data.tags['sepflow.target']}"
        release = client.get_model_version_by_alias(name, "candidate")
        assert client.get_model_version(name, release.tags["sepflow.development_version"]).run_id == child.info.run_id
    assert walk_run.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(walk_run.info.run_id, "walk_forward")}
    assert f"walk_forward/equity_{targets[0]}.png" in artifacts
    assert "walk_forward/predictions.parquet" in artifacts

    # The plot tables: one long CSV per plot, every target, the family named (the top-level plots overlay them).
    for plot, columns in PLOTS.items():
        table = pd.read_csv(out / "plots" / f"{plot}.csv")
        assert tuple(table.columns) == columns and set(table["family"]) == {"xgboost"}
        assert set(table["target"]) == (set(targets) if plot != "calibration" else
                                        {t for t in targets if folds["overall"][t].get("roc_auc") is not None})
    calibration = pd.read_csv(out / "plots" / "calibration.csv")
    assert calibration["observed"].between(0, 1).all() and (calibration["rows"] > 0).all()

    # `dvc metrics show`: numbers only, for every family and target walked (and every stage's report).
    (shown,) = json.loads(repo.run("dvc", "metrics", "show", "--json").stdout).values()
    files = shown["data"]
    for family in ("xgboost", "dummy"):
        assert set(files[f"reports/walk_forward/{family}/metrics.json"]["data"]) == set(targets)
        assert set(files[f"reports/train/{family}.json"]["data"]) == set(targets)
    leaves = [value for content in files.values() for value in _leaves(content["data"])]
    assert len(leaves) > 100 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in leaves)
    repo.run("dvc", "plots", "show", "-o", str(root / "plots_html"))
    page = (root / "plots_html" / "index.html").read_text()
    for entry in yaml.safe_load((root / "dvc.yaml").read_text())["plots"]:  # the families walked, overlaid
        (plot_id,) = entry
        # (Other families' tables are git-tracked leftovers of the committed state, for other targets.)
        drawn = {row["family"] for row in _vega_spec(page, plot_id)["data"]["values"] if row["target"] in targets}
        # The dummy's constant scores have no rank IC to draw.
        assert drawn == ({"xgboost"} if plot_id == "walk_forward_rolling_rank_ic" else {"dummy", "xgboost"}), plot_id

    _check_notebooks(root, repo.run("git", "rev-parse", "HEAD").stdout.strip()[:8], targets, execute_notebook)

    # Code deps are import closures: editing a module marks exactly the stages that import it stale.
    for module, stale in (("src/sepflow/models/lstm.py", {"rank_targets", "select_features", "train@xgboost",
                                                           "walk_forward@xgboost"}),
                          ("src/sepflow/training/release.py", {"walk_forward@xgboost"}),
                          ("src/sepflow/sep/universe.py", None)):  # None: the whole chain
        source = root / module
        original = source.read_text()
        source.write_text(original + "\n# edited\n")
        status = json.loads(repo.run("dvc", "status", "--json", "walk_forward@xgboost", "--with-deps").stdout)
        source.write_text(original)
        if stale is None:
            assert {"filter_sep", "build_features", "walk_forward@xgboost"} <= set(status)
        else:
            assert set(status) == stale, (module, sorted(status))

    # Another validation tail: DVC's diffs across two commits show the walk-forward numbers. (The
    # window's shape — test_days, n_folds — is the date rule every choice obeys: it retrains.)
    repo.commit("first walk-forward")
    repo.set_params({"walk_forward": {"validation_fraction": 0.3}})
    rerun = repo.run("dvc", "repro", "walk_forward@xgboost").stdout
    assert "Running stage 'walk_forward@xgboost'" in rerun and "Running stage 'train@xgboost'" not in rerun
    repo.commit("longer validation tails")
    params_diff = repo.run("dvc", "params", "diff", "HEAD~1", "HEAD").stdout
    assert "walk_forward.validation_fraction" in params_diff
    metrics_diff = repo.run("dvc", "metrics", "diff", "HEAD~1", "HEAD").stdout
    assert "reports/walk_forward/xgboost/metrics.json" in metrics_diff and "rank_ic" in metrics_diff
    repo.run("dvc", "plots", "diff", "HEAD~1", "HEAD", "-o", str(root / "plots_diff"))
    assert (root / "plots_diff" / "index.html").exists()

    # `sepflow run`: a named experiment (dvc exp run -S ...) logging to the same database as `dvc repro`.
    before = len(repo.stage_runs("walk_forward@dummy"))
    done = repo.run("sepflow", "run", "--families", "dummy", "--seed", "7", "--name", "tiny-exp")
    assert "dvc exp show" in done.stdout and "mlflow ui --backend-store-uri" in done.stdout
    ran = {line.split("'")[1] for line in done.stdout.splitlines() if line.startswith("Running stage")}
    # The seed changed: the stages that read it rerun, for the asked family only.
    assert ran == {"rank_targets", "select_features", "train@dummy", "walk_forward@dummy"}
    assert len(repo.stage_runs("walk_forward@dummy")) == before + 1
    # The experiment's name and baseline commit ride on its stage runs.
    (named,) = [r for r in repo.stage_runs("walk_forward@dummy") if r.data.tags.get("sepflow.dvc_exp_name") == "tiny-exp"]
    assert len(named.data.tags["sepflow.dvc_exp_baseline_rev"]) == 40
    params = yaml.safe_load((root / "params.yaml").read_text())  # dvc exp run works in the workspace
    assert params["seed"] == 7 and params["synthetic"]["seed"] == 42 and params["train"]["families"] == ["dummy"]
    shown = json.loads(repo.run("dvc", "exp", "show", "--json").stdout)
    (exp,) = [e for row in shown for e in (row.get("experiments") or []) if e.get("name") == "tiny-exp"]
    (revision,) = exp["revs"]
    assert revision["data"]["params"]["params.yaml"]["data"]["seed"] == 7
    assert "reports/walk_forward/dummy/metrics.json" in revision["data"]["metrics"]


def _check_notebooks(root: Path, commit: str, targets: list[str], execute_notebook: Callable) -> None:
    """Both notebooks run on this pipeline run, and every section found its inputs."""
    explore, figures, printed = execute_notebook(root, "01_explore_data")
    assert "not found" not in printed
    manifest = read_json(root / "data/processed/features_manifest.json")
    assert explore["target"] == targets[0] and explore["tickers"] == explore["coverage"] == manifest["n_tickers"]
    assert explore["days"] > 0 and explore["returns"] == ["daily (closeadj)", "return_1d (forward)",
                                                          "return_5d (forward)"]
    assert explore["feature_ic"] == sorted(manifest["feature_names"])
    selected = read_json(root / "data/processed/selected_features.json")[targets[0]]
    assert explore["shown"] == explore["importance"] == selected
    assert explore["rankings"] == targets
    assert figures == 5  # universe, returns, feature histograms, rank IC bars, rolling rank IC

    compare, figures, printed = execute_notebook(root, "02_compare_runs")
    assert "yet" not in printed and "no equity curves" not in printed
    assert {"train@dummy", "train@xgboost", "walk_forward@dummy", "walk_forward@xgboost"} <= set(compare["stages"])
    expected = sorted([family, target, commit] for family in ("dummy", "xgboost") for target in targets)
    assert compare["train"] == compare["walk_forward"] == expected
    assert set(compare["net_sharpe"]) == {"xgboost"}  # the dummy's constant book has no Sharpe
    # Families walked here have this run's curve (other families' files may be git-tracked leftovers).
    assert compare["curves"]["dummy"] == compare["curves"]["xgboost"] == commit
    assert compare["models"] == sorted([f"{family}-{target}", "candidate"] for family in ("dummy", "xgboost")
                                       for target in targets)
    assert figures == len(targets) + 1  # metrics by commit (one per target), equity curves


def _leaves(tree: dict) -> list:
    return [leaf for value in tree.values() for leaf in (_leaves(value) if isinstance(value, dict) else [value])]


def _vega_spec(page: str, plot_id: str) -> dict:
    """The filled Vega-Lite spec of one plot on `dvc plots show`'s HTML page."""
    match = re.search(rf'<div id = "{plot_id}">\s*<script[^>]*>\s*var spec = (\{{.*?\}});\n', page, re.S)
    assert match, f"{plot_id} is not on the page"
    return json.loads(match.group(1))
