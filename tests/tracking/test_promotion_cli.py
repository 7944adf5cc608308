"""`sepflow promote` and `sepflow models` against a throwaway registry named by MLFLOW_TRACKING_URI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sepflow.cli import EXIT_BAD_INPUT, EXIT_REFUSED, main

XGB = "xgboost-dir_5d"
NAN = float("nan")


@pytest.fixture
def params_file(registry_store: str, tmp_path: Path) -> Path:
    """params.yaml in the working folder, written before the gate grew significance rules: the gate
    wants net Sharpe better by more than 0.05 (significance and min_periods: the defaults)."""
    path = tmp_path / "params.yaml"
    path.write_text("promotion:\n  metrics: [net_sharpe, rank_ic]\n  min_delta: {net_sharpe: 0.05}\n")
    return path


def _production(name: str = XGB) -> int:
    return int(MlflowClient().get_model_version_by_alias(name, "production").version)


def _audit(version: int, name: str = XGB) -> dict[str, str]:
    tags = MlflowClient().get_model_version(name, str(version)).tags
    return {k.removeprefix("sepflow."): v for k, v in tags.items() if k.startswith("sepflow.promot")
            or k == "sepflow.previous_version"}


def _row(out: str, metric: str) -> list[str]:
    return next(line for line in out.splitlines() if line.split()[:1] == [metric]).split()


def test_promote_against_the_dummy_then_production(add_version, params_file: Path, capsys) -> None:
    add_version("dummy", walk_forward={"net_sharpe": 0.2, "rank_ic": NAN, "psr": 0.6, "dsr": 0.3})
    add_version("xgboost", walk_forward={"net_sharpe": 0.6, "rank_ic": 0.03, "n_folds": 4})
    assert main(["promote", XGB]) == 0
    out = capsys.readouterr().out
    assert "dummy-dir_5d v1 (@candidate)" in out
    # The dummy has no rank IC: shown as undefined, never as 0, and judged on significance alone.
    assert _row(out, "rank_ic")[:5] == ["rank_ic", "0.0300", "±", "0.0100", "undefined"]
    assert "reference undefined: judged on the candidate's significance alone  pass" in out
    assert "promoted xgboost-dir_5d v1 to @production (was nothing; gate passed" in out
    assert _production() == 1
    assert _audit(1)["promotion_reference"] == "dummy-dir_5d v1" and _audit(1)["previous_version"] == "none"

    # Better net Sharpe, but by 0.04 < the 0.05 margin: refused, table on stdout, one line on stderr.
    add_version("xgboost", walk_forward={"net_sharpe": 0.64, "rank_ic": 0.05, "n_folds": 4})
    assert main(["promote", XGB, "--alias", "candidate"]) == EXIT_REFUSED
    captured = capsys.readouterr()
    assert "xgboost-dir_5d v2" in captured.out and "xgboost-dir_5d v1 (@production)" in captured.out
    assert _row(captured.out, "net_sharpe")[1:] == ["0.6400", "±", "0.3000", "0.6000", "±", "0.3000", "+0.0400",
                                                    "Δ", ">", "+0.0500", "(min_delta)", "FAIL"]
    assert captured.err.startswith("sepflow: refused: ") and captured.err.count("\n") == 1
    assert "net_sharpe not better than xgboost-dir_5d v1 (@production) by more than 0.05 (min_delta)" in captured.err
    assert _production() == 1 and "promoted_at" not in _audit(2)
    assert main(["promote", XGB, "--json"]) == EXIT_REFUSED  # the same refusal, for a script
    refusal = json.loads(capsys.readouterr().out)
    assert refusal["promoted"] is False and refusal["reference"] == "xgboost-dir_5d v1 (@production)"
    assert any("net_sharpe not better" in failure for failure in refusal["failures"])

    add_version("xgboost", walk_forward={"net_sharpe": 0.7, "rank_ic": 0.04, "n_folds": 4})
    assert main(["promote", XGB, "--json"]) == 0  # v3, the candidate, beats v1 on both
    assert json.loads(capsys.readouterr().out) == {
        "model": XGB, "promoted": True, "version": 3, "alias": "production", "previous_version": 1, "forced": False,
        "reason": json.loads(json.dumps(_audit(3)["promotion_reason"]))}
    assert _production() == 3
    assert _audit(3)["previous_version"] == "1" and _audit(3)["promotion_forced"] == "false"


def test_noise_is_refused_with_both_sides_evidence(add_version, params_file: Path, capsys) -> None:
    """The real-data case the point-estimate gate let through: rank IC 0.019 at t = 0.44."""
    add_version("dummy", walk_forward={"net_sharpe": 0.1, "net_sharpe_se": 0.9, "rank_ic": NAN, "psr": 0.55,
                                       "dsr": 0.2, "n_periods": 7, "n_dates": 7})
    add_version("xgboost", walk_forward={"net_sharpe": 1.1, "net_sharpe_se": 0.95, "rank_ic": 0.019,
                                         "rank_ic_se": 0.0432, "rank_ic_tstat": 0.44, "psr": 0.87, "dsr": 0.41,
                                         "n_periods": 7, "n_dates": 7})
    assert main(["promote", XGB]) == EXIT_REFUSED
    captured = capsys.readouterr()
    out = captured.out
    assert _row(out, "rank_ic") == ["rank_ic", "0.0190", "±", "0.0432", "undefined", "reference", "undefined:",
                                    "judged", "on", "the", "candidate's", "significance", "alone", "FAIL"]
    assert _row(out, "net_sharpe")[1:7] == ["1.1000", "±", "0.9500", "0.1000", "±", "0.9000"]
    assert _row(out, "rank_ic_tstat")[1:] == ["0.4400", "undefined", "≥", "2", "(significance)", "FAIL"]
    assert _row(out, "psr")[1:] == ["0.8700", "0.5500", "≥", "0.95", "(significance)", "FAIL"]
    assert _row(out, "n_periods")[1:] == ["7", "7", "≥", "250", "(min_periods)", "FAIL"]
    assert _row(out, "n_dates")[1:] == ["7", "7", "(not", "gated)"]
    assert _row(out, "dsr")[1:] == ["0.4100", "0.2000", "(not", "gated)"]
    assert _row(out, "window")[1:] == ["2016-01-04..2020-12-31", "2016-01-04..2020-12-31", "same", "window", "as",
                                       "the", "reference", "pass"]
    assert out.splitlines()[-1].startswith("gate: refused (rank_ic_tstat 0.44, needs ≥ 2 (significance); ")
    err = captured.err
    assert err.count("\n") == 1 and "rank_ic_tstat 0.44, needs ≥ 2 (significance)" in err
    assert "psr 0.87, needs ≥ 0.95 (significance)" in err and "n_periods 7, needs ≥ 250 (min_periods)" in err
    assert ("rank_ic: undefined for dummy-dir_5d v1 (@candidate), and the candidate's significance does not carry "
            "it") in err
    assert "production" not in MlflowClient().get_registered_model(XGB).aliases

    # The override still works, and is on record.
    assert main(["promote", XGB, "--force", "--reason", "paper trading only"]) == 0
    assert _audit(1)["promotion_forced"] == "true" and _audit(1)["promotion_reason"] == "paper trading only"


def test_another_window_is_refused_with_the_rewalk(add_version, params_file: Path, capsys) -> None:
    add_version("dummy", walk_forward={"net_sharpe": 0.0, "rank_ic": NAN}, window=("2015-01-02", "2019-12-31"))
    add_version("xgboost", walk_forward={"net_sharpe": 0.8, "rank_ic": 0.04})
    assert main(["promote", XGB]) == EXIT_REFUSED
    captured = capsys.readouterr()
    assert _row(captured.out, "window")[1:3] == ["2016-01-04..2020-12-31", "2015-01-02..2019-12-31"]
    assert _row(captured.out, "window")[-1] == "FAIL"
    assert ("dummy-dir_5d v1 was walked on another window (2015-01-02..2019-12-31) than xgboost-dir_5d v1 "
            "(2016-01-04..2020-12-31): re-walk it with `dvc repro walk_forward@dummy`") in captured.err

    # Re-walked: the new dummy version (its candidate) shares the window and becomes the reference.
    add_version("dummy", walk_forward={"net_sharpe": 0.0, "rank_ic": NAN})
    MlflowClient().set_registered_model_alias("dummy-dir_5d", "production", "1")
    assert main(["promote", XGB, "--version", "1"]) == 0
    assert _audit(1)["promotion_reference"] == "dummy-dir_5d v2"


def test_force_needs_a_reason_and_is_audited(add_version, params_file: Path, capsys) -> None:
    add_version("xgboost", walk_forward={"net_sharpe": 0.6, "rank_ic": 0.03})
    assert main(["promote", XGB]) == EXIT_REFUSED  # no production, no dummy: nothing to compare with
    assert "nothing to compare with" in capsys.readouterr().out

    assert main(["promote", XGB, "--force"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err == "sepflow: error: promote: --force needs --reason TEXT (it is written to the version's audit tags)\n"
    assert main(["promote", XGB, "--force", "--reason", "   "]) == EXIT_BAD_INPUT

    assert main(["promote", XGB, "--force", "--reason", "first model, no baseline yet"]) == 0
    assert "forced past the gate; reason: first model, no baseline yet" in capsys.readouterr().out
    audit = _audit(1)
    assert audit["promotion_forced"] == "true" and audit["promotion_reason"] == "first model, no baseline yet"
    assert audit["previous_version"] == "none" and audit["promoted_by"] and audit["promoted_to"] == "production"

    with pytest.raises(SystemExit) as info:  # argparse: one way to name the version
        main(["promote", XGB, "--version", "1", "--alias", "candidate"])
    assert info.value.code == EXIT_BAD_INPUT


def test_bad_gate_settings_are_bad_input(add_version, params_file: Path, capsys) -> None:
    add_version("xgboost", walk_forward={"net_sharpe": 0.6, "rank_ic": 0.03})
    params_file.write_text("promotion:\n  significance: {sharpe_t: 2.0}\n")
    assert main(["promote", XGB]) == EXIT_BAD_INPUT
    assert "promotion.significance: Value error, unknown walk-forward metrics ['sharpe_t']" in capsys.readouterr().err
    params_file.write_text("promotion:\n  min_periods: -5\n")
    assert main(["promote", XGB]) == EXIT_BAD_INPUT
    assert "promotion.min_periods" in capsys.readouterr().err
    assert "production" not in MlflowClient().get_registered_model(XGB).aliases


def test_rollback_is_promoting_an_older_version(add_version, params_file: Path, capsys) -> None:
    add_version("dummy", walk_forward={"net_sharpe": 0.0, "rank_ic": 0.0})
    add_version("xgboost", walk_forward={"net_sharpe": 0.5, "rank_ic": 0.02})
    add_version("xgboost", walk_forward={"net_sharpe": 0.8, "rank_ic": 0.04})
    assert main(["promote", XGB, "--version", "1"]) == 0
    assert main(["promote", XGB]) == 0
    assert _production() == 2

    # v1 is worse than production v2, so going back needs a reason on record.
    assert main(["promote", XGB, "--version", "1"]) == EXIT_REFUSED
    assert _production() == 2
    assert main(["promote", XGB, "--version", "1", "--force", "--reason", "v2 misbehaves live"]) == 0
    assert _production() == 1
    audit = _audit(1)
    assert audit["previous_version"] == "2" and audit["promotion_reason"] == "v2 misbehaves live"
    assert audit["promotion_forced"] == "true" and audit["promotion_reference"] == "xgboost-dir_5d v2"
    assert "(was v2; forced past the gate" in capsys.readouterr().out

    assert main(["promote", XGB, "--version", "1"]) == 0  # already production
    assert "v1 already holds @production; nothing changed" in capsys.readouterr().out
    assert main(["promote", XGB, "--version", "9"]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == "sepflow: error: registry: xgboost-dir_5d has no version 9\n"


def test_models_lists_aliases_and_evidence(add_version, params_file: Path, capsys) -> None:
    assert main(["models"]) == 0
    assert capsys.readouterr().out.startswith("no registered models in sqlite:///")

    add_version("xgboost", walk_forward={"net_sharpe": 0.5, "rank_ic": 0.02}, test_auc=0.56)
    add_version("xgboost", walk_forward={"net_sharpe": 0.9, "rank_ic": 0.04, "rank_ic_tstat": 2.5, "dsr": 0.71},
                test_auc=0.58)
    add_version("xgboost", test_auc=0.57)  # trained, not yet walk-forward tested
    add_version("dummy", walk_forward={"net_sharpe": 0.1, "rank_ic": NAN, "psr": 0.6, "dsr": 0.3}, test_auc=0.5)
    MlflowClient().set_registered_model_alias(XGB, "production", "2")

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "version", "aliases", "family", "target", "wf", "rank_ic±se", "t", "wf",
                                "net_sharpe±se", "psr", "dsr", "n", "test", "headline"]
    assert [line.split() for line in lines[1:]] == [
        ["dummy-dir_5d", "1", "candidate", "dummy", "dir_5d", "-", "-", "0.10±0.30", "0.60", "0.30", "500",
         "roc_auc", "0.5000"],
        [XGB, "3", "candidate", "xgboost", "dir_5d", "-", "-", "-", "-", "-", "-", "roc_auc", "0.5700"],
        [XGB, "2", "production", "xgboost", "dir_5d", "0.0400±0.0100", "2.50", "0.90±0.30", "0.98", "0.71", "500",
         "roc_auc", "0.5800"],
    ]
    assert main(["models", "--all"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split()[:3] == [XGB, "1", "-"]
    # --json: every row with every metric, undefined ones as null (strict JSON).
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    dummy = next(row for row in rows if row["family"] == "dummy")
    assert "rank_ic" not in dummy["walk_forward"] and dummy["walk_forward"]["psr"] == 0.6  # undefined: left out
    production = next(row for row in rows if row["aliases"] == ["production"])
    assert production["name"] == XGB and production["version"] == 2 and production["walk_forward"]["dsr"] == 0.71

    # A gated metric outside the evidence columns gets its own.
    params_file.write_text("promotion:\n  metrics: [net_sharpe, turnover]\n")
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-4:] == ["wf", "turnover", "test", "headline"]
    assert lines[-1].split()[-3:] == ["0.2000", "roc_auc", "0.5800"]
