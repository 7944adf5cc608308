"""`sepflow promote` and `sepflow models` against a throwaway registry named by MLFLOW_TRACKING_URI."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sepflow.cli import EXIT_BAD_INPUT, EXIT_REFUSED, main

XGB = "xgboost-dir_5d"


@pytest.fixture
def params_file(registry_store: str, tmp_path: Path) -> Path:
    """params.yaml in the working folder: the gate wants net Sharpe better by more than 0.05."""
    path = tmp_path / "params.yaml"
    path.write_text("promotion:\n  metrics: [net_sharpe, rank_ic]\n  min_delta: {net_sharpe: 0.05}\n")
    return path


def _production(name: str = XGB) -> int:
    return int(MlflowClient().get_model_version_by_alias(name, "production").version)


def _audit(version: int, name: str = XGB) -> dict[str, str]:
    tags = MlflowClient().get_model_version(name, str(version)).tags
    return {k.removeprefix("sepflow."): v for k, v in tags.items() if k.startswith("sepflow.promot")
            or k == "sepflow.previous_version"}


def test_promote_against_the_dummy_then_production(add_version, params_file: Path, capsys) -> None:
    add_version("dummy", walk_forward={"net_sharpe": 0.2, "rank_ic": float("nan")})
    add_version("xgboost", walk_forward={"net_sharpe": 0.6, "rank_ic": 0.03, "n_folds": 4})
    assert main(["promote", XGB]) == 0
    out = capsys.readouterr().out
    assert "dummy-dir_5d v1 (@candidate)" in out and "0.0000*" in out  # no-skill stand-in for its rank IC
    assert "promoted xgboost-dir_5d v1 to @production (was nothing; gate passed" in out
    assert _production() == 1
    assert _audit(1)["promotion_reference"] == "dummy-dir_5d v1" and _audit(1)["previous_version"] == "none"

    # Better net Sharpe, but by 0.04 < the 0.05 margin: refused, table on stdout, one line on stderr.
    add_version("xgboost", walk_forward={"net_sharpe": 0.64, "rank_ic": 0.05, "n_folds": 4})
    assert main(["promote", XGB, "--alias", "candidate"]) == EXIT_REFUSED
    captured = capsys.readouterr()
    assert "xgboost-dir_5d v2" in captured.out and "xgboost-dir_5d v1 (@production)" in captured.out
    net_sharpe = next(line for line in captured.out.splitlines() if line.startswith("net_sharpe"))
    assert net_sharpe.split()[1:] == ["0.6400", "0.6000", "+0.0400", ">+0.0500", "FAIL"]
    assert captured.err.startswith("sepflow: refused: ") and captured.err.count("\n") == 1
    assert _production() == 1 and "promoted_at" not in _audit(2)

    add_version("xgboost", walk_forward={"net_sharpe": 0.7, "rank_ic": 0.04, "n_folds": 4})
    assert main(["promote", XGB]) == 0  # v3, the candidate, beats v1 on both
    assert _production() == 3
    assert _audit(3)["previous_version"] == "1" and _audit(3)["promotion_forced"] == "false"


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


def test_models_lists_aliases_and_metrics(add_version, params_file: Path, capsys) -> None:
    assert main(["models"]) == 0
    assert capsys.readouterr().out.startswith("no registered models in sqlite:///")

    add_version("xgboost", walk_forward={"net_sharpe": 0.5, "rank_ic": 0.02}, test_auc=0.56)
    add_version("xgboost", walk_forward={"net_sharpe": 0.9, "rank_ic": 0.04}, test_auc=0.58)
    add_version("xgboost", test_auc=0.57)  # trained, not yet walk-forward tested
    add_version("dummy", walk_forward={"net_sharpe": 0.1, "rank_ic": float("nan")}, test_auc=0.5)
    MlflowClient().set_registered_model_alias(XGB, "production", "2")

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "version", "aliases", "family", "target", "wf", "net_sharpe", "wf",
                                "rank_ic", "test", "headline"]
    assert [line.split() for line in lines[1:]] == [
        ["dummy-dir_5d", "1", "candidate", "dummy", "dir_5d", "0.1000", "n/a", "roc_auc", "0.5000"],
        [XGB, "3", "candidate", "xgboost", "dir_5d", "-", "-", "roc_auc", "0.5700"],
        [XGB, "2", "production", "xgboost", "dir_5d", "0.9000", "0.0400", "roc_auc", "0.5800"],
    ]
    assert main(["models", "--all"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split()[:3] == [XGB, "1", "-"]
