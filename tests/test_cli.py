"""The `sepflow` command's own behaviour (the stages are tested where they live)."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import sepflow
from sepflow import cli
from sepflow.cli import main
from sepflow.errors import SepflowError


def test_per_family_stage_needs_a_family(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stage", "train"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sepflow: error: stage train needs --family") and err.count("\n") == 1


def test_bad_params_file_is_one_line(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("universe:\n  min_price: cheap\n")
    assert main(["stage", "filter_sep", "--params", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "universe.min_price" in err and err.count("\n") == 1


def test_unknown_stage_is_refused() -> None:
    with pytest.raises(SystemExit) as info:
        main(["stage", "backtest_everything"])
    assert info.value.code == 2


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == f"sepflow {sepflow.__version__}\n"


@pytest.mark.parametrize(("error", "code"), [
    (SepflowError("bad"), 2),
    (FileNotFoundError(errno.ENOENT, "No such file", "x.csv"), 2),
    (OSError(errno.ENOSPC, "No space left on device"), 3),
    (MlflowException("RESOURCE_DOES_NOT_EXIST"), 3),
    (requests.exceptions.ConnectionError("connection refused"), 3),
    (ZeroDivisionError("division by zero"), 4),
])
def test_each_failure_has_its_exit_code_and_one_line(monkeypatch, capsys, error: Exception, code: int) -> None:
    def fail(args):
        raise error

    monkeypatch.setattr(cli, "_cmd_validate", fail)
    assert main(["validate", "x.csv"]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sepflow: ")
    assert ("internal error" in err) == (code == 4) and ("infrastructure error" in err) == (code == 3)


def test_debug_after_the_subcommand_shows_the_traceback(monkeypatch, capsys) -> None:
    def fail(args):
        raise SepflowError("bad input here")

    monkeypatch.setattr(cli, "_cmd_validate", fail)
    assert main(["validate", "x.csv", "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err
    assert main(["--debug", "validate", "x.csv"]) == 2  # before it too, and not reset by the subcommand
    assert "Traceback" in capsys.readouterr().err


def test_verbosity_sets_sepflow_logging(monkeypatch, capsys) -> None:
    def talk(args):
        logging.getLogger("sepflow.anything").info("an info line")
        logging.getLogger("sepflow.anything").warning("a warning line")
        return 0

    monkeypatch.setattr(cli, "_cmd_validate", talk)
    main(["validate", "x.csv"])
    err = capsys.readouterr().err
    assert "a warning line" in err and "an info line" not in err
    main(["validate", "x.csv", "-v"])
    assert "sepflow: INFO: an info line" in capsys.readouterr().err
    main(["-q", "validate", "x.csv"])
    assert capsys.readouterr().err == ""


SLOW_STAGE = """
import sys, time
from sepflow import cli
from sepflow.tracking.runs import stage_run

def slow(args):
    with stage_run("slow", params={"x": 1}):
        print("started", flush=True)
        time.sleep(60)
    return 0

cli._cmd_validate = slow
sys.exit(cli.main(["validate", "x.csv"]))
"""


def test_sigterm_ends_the_run_killed_and_exits_143(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    process = subprocess.Popen([sys.executable, "-c", SLOW_STAGE], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "started"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143 and err.strip().endswith("sepflow: terminated (SIGTERM)")
    (run,) = MlflowClient(tracking_uri=uri).search_runs(
        [e.experiment_id for e in MlflowClient(tracking_uri=uri).search_experiments()])
    assert run.info.status == "KILLED"


def test_validate_json_is_the_summary(tmp_path, capsys) -> None:
    rows = ["ticker,date,open,high,low,close,volume"] + [
        f"{t},2024-01-0{d},10,11,9,10.5,1000" for t in ("AAA", "BBB") for d in (2, 3, 4)]
    (tmp_path / "prices.csv").write_text("\n".join(rows) + "\n")
    assert main(["validate", str(tmp_path / "prices.csv"), "--json", "--params", str(tmp_path / "none.yaml")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 6 and summary["tickers"] == 2 and summary["date_max"] == "2024-01-04"
    assert summary["rows_dropped_total"] == 0 and summary["tickers_file_rows"] is None


def test_reproduce_json_lists_every_metric_and_exits_1_when_one_differs(monkeypatch, capsys) -> None:
    from sepflow.tracking import reproduce as reproduce_module

    comparisons = [reproduce_module.MetricComparison("rows", 10.0, 10.0, 0.0),
                   reproduce_module.MetricComparison("test.roc_auc", 0.61, 0.62, 0.0)]

    def fake(run_id, *, keep_worktree, echo):
        echo("rerunning train@xgboost ...")
        return SimpleNamespace(reproduced_run_id="new123", tolerance=0.0, comparisons=comparisons,
                               aliases_restored=[], kept_worktree=None)

    monkeypatch.setattr(reproduce_module, "reproduce", fake)
    assert main(["reproduce", "abc", "--json"]) == 1
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["reproduced"] is False and result["reproduced_run_id"] == "new123"
    assert [m["ok"] for m in result["metrics"]] == [True, False]
    assert "rerunning train@xgboost" in captured.err  # progress stays off stdout


def test_an_unreachable_tracking_server_is_an_infrastructure_error(tmp_path) -> None:
    """A real failure, not a mocked one: nothing listens on the port."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    done = subprocess.run([sys.executable, "-m", "sepflow.cli", "models", "--params", str(params)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("sepflow: infrastructure error: ") and done.stderr.count("\n") == 1
