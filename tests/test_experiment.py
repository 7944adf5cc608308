"""`sepflow run`: flags → `dvc exp run -S` overrides and stage targets, checked before DVC starts."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from dvc.utils.hydra import apply_overrides

from sepflow.cli import main
from sepflow.config import Params, load_params
from sepflow.errors import ConfigError
from sepflow.experiment import RunRequest, pipeline_families, plan_experiment

REPO = Path(__file__).resolve().parents[1]
PIPELINE: dict[str, Any] = {"stages": {
    "train": {"foreach": {"dummy": "dummy", "xgboost": "boosting", "lstm": "lstm"}},
    "walk_forward": {"foreach": {"dummy": "dummy", "xgboost": "boosting"}},
    "train_ensemble": {"cmd": "sepflow stage train --family ensemble"},
}}


def plan(**flags: Any):
    return plan_experiment(RunRequest(**flags), Params(), PIPELINE)


def test_no_flags_runs_the_whole_pipeline_unchanged() -> None:
    p = plan()
    assert p.overrides == () and p.stages == () and p.command() == ["dvc", "exp", "run"]


@pytest.mark.parametrize(("flags", "overrides"), [
    ({"symbols": ["AAPL", "BRK.B"]}, ['++universe.symbols=["AAPL","BRK.B"]']),
    ({"targets": ["dir_5d", "return_1d"]}, ['++ranking.targets=["dir_5d","return_1d"]']),
    ({"targets": ["return_5d"], "features": ["ret_5d", "rsi_14"]},
     ['++ranking.targets=["return_5d"]', "++selection.manual=null",
      '++selection.manual={return_5d:["ret_5d","rsi_14"]}']),
    ({"top_n_targets": 2}, ["++ranking.top_n=2"]),
    ({"top_m_features": 8}, ["++selection.top_m=8"]),
    ({"n_splits": 4}, ["++ranking.n_splits=4", "++selection.n_splits=4", "++train.n_splits=4"]),
    ({"embargo_days": 10}, ["++ranking.embargo_days=10", "++selection.embargo_days=10", "++train.embargo_days=10",
                            "++walk_forward.embargo_days=10"]),
    ({"fee_bps": 2.5}, ["++train.fee_bps=2.5"]),
    ({"slippage_bps": 1}, ["++train.slippage_bps=1.0"]),
    ({"seed": 7}, ["++seed=7"]),
])
def test_each_flag_sets_its_params(flags: dict[str, Any], overrides: list[str]) -> None:
    p = plan(**flags)
    assert list(p.overrides) == overrides and p.stages == ()


def test_families_set_the_ensemble_members_and_pick_their_stages() -> None:
    p = plan(families=["xgboost", "lstm"])
    assert p.overrides == ('++train.families=["xgboost","lstm"]',)
    assert p.stages == ("train@xgboost", "walk_forward@xgboost", "train@lstm")  # lstm: no walk_forward@ here
    p = plan(families=["dummy", "ensemble"], name="dummy-ens")
    assert p.overrides == ('++train.families=["dummy"]',)
    assert p.command() == ["dvc", "exp", "run", "-n", "dummy-ens", "-S", '++train.families=["dummy"]',
                           "train@dummy", "walk_forward@dummy", "train_ensemble"]


def test_the_real_pipeline_names_every_family() -> None:
    trained, walked = pipeline_families(yaml.safe_load((REPO / "dvc.yaml").read_text()))
    assert trained == walked == ["dummy", "random_forest", "xgboost", "lightgbm", "lstm"]


@pytest.mark.parametrize(("flags", "message"), [
    ({"symbols": ["AAPL", "BAD TICKER"]}, "--symbols: ['BAD TICKER'] are not ticker symbols"),
    ({"symbols": ['A"B']}, "--symbols"),
    ({"symbols": []}, "--symbols: give at least one value"),
    ({"families": ["xgboost", "catboost"]}, "--families: unknown ['catboost']"),
    ({"families": ["ensemble"]}, "--families: the ensemble needs at least one member"),
    ({"families": ["dummy", "dummy"]}, "--families: ['dummy'] given more than once"),
    ({"targets": ["dir_3d"]}, "--targets: unknown ['dir_3d']"),
    ({"features": ["ret_5d"]}, "--features needs --targets"),
    ({"targets": ["dir_5d"], "features": ["ret_5d", "alpha_101"]}, "--features: unknown ['alpha_101']"),
    ({"targets": ["dir_5d"], "top_n_targets": 2}, "--top-n-targets: has no effect with --targets"),
    ({"targets": ["dir_5d"], "features": ["ret_5d"], "top_m_features": 3}, "--top-m-features: has no effect"),
    ({"top_n_targets": 0}, "--top-n-targets: must be a number of at least 1"),
    ({"top_m_features": 0}, "--top-m-features: must be a number of at least 1"),
    ({"n_splits": 1}, "--n-splits: must be a number of at least 2"),
    ({"embargo_days": -1}, "--embargo: must be a number of at least 0"),
    ({"fee_bps": -0.5}, "--fee-bps: must be a number of at least 0"),
    ({"slippage_bps": -1}, "--slippage-bps: must be a number of at least 0"),
    ({"seed": -3}, "--seed: must be a number of at least 0"),
    ({"fee_bps": float("nan")}, "--fee-bps: must be a number of at least 0, got nan"),
    ({"name": "my exp"}, "--name: 'my exp' is not a usable experiment name"),
    ({"name": "a..b"}, "--name"),
])
def test_bad_flags_are_one_error_naming_the_flag(flags: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        plan(**flags)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_overrides_give_the_params_they_say(tmp_path: Path) -> None:
    """The -S values applied as `dvc exp run -S` applies them: TRUE, NULL stay tickers; manual is replaced."""
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    apply_overrides(params, ["+selection.manual.dir_5d=[ret_1d]"])  # an old fixed list the run must replace
    p = plan_experiment(RunRequest(symbols=["TRUE", "NULL", "BRK.B"], families=["dummy", "xgboost"],
                                   targets=["return_5d"], features=["ret_5d", "ret_20d"], n_splits=4,
                                   embargo_days=7, fee_bps=2.5, slippage_bps=0, seed=7),
                        load_params(params), yaml.safe_load((REPO / "dvc.yaml").read_text()))
    apply_overrides(params, list(p.overrides))
    got = load_params(params)  # still valid params
    assert got.universe.symbols == ["TRUE", "NULL", "BRK.B"]
    assert got.train.families == ["dummy", "xgboost"] and got.ranking.targets == ["return_5d"]
    assert got.selection.manual == {"return_5d": ["ret_5d", "ret_20d"]}
    assert got.ranking.n_splits == got.selection.n_splits == got.train.n_splits == 4
    assert (got.ranking.embargo_days, got.selection.embargo_days, got.train.embargo_days,
            got.walk_forward.embargo_days) == (7, 7, 7, 7)
    assert (got.train.fee_bps, got.train.slippage_bps, got.seed) == (2.5, 0.0, 7)
    assert got.synthetic.seed == load_params(REPO / "params.yaml").synthetic.seed  # data, not model
    assert "# sepflow parameters" in params.read_text()  # DVC edits in place, comments kept


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_dry_run_prints_the_command_and_runs_nothing(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (project / "params.yaml").read_text()
    code = main(["run", "--targets", "return_5d", "--features", "ret_5d", "ret_20d", "--families", "dummy",
                 "--seed", "7", "--name", "tiny-exp", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0 and out.count("\n") == 1
    assert shlex.split(out) == [
        "dvc", "exp", "run", "-n", "tiny-exp", "-S", '++train.families=["dummy"]',
        "-S", '++ranking.targets=["return_5d"]', "-S", "++selection.manual=null",
        "-S", '++selection.manual={return_5d:["ret_5d","ret_20d"]}', "-S", "++seed=7",
        "train@dummy", "walk_forward@dummy",
    ]
    assert (project / "params.yaml").read_text() == before
    assert not (project / ".dvc").exists()


def test_run_refuses_bad_flags_before_dvc(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--families", "catboost"]) == 2  # no --dry-run: DVC would run if the check passed
    err = capsys.readouterr().err
    assert err.startswith("sepflow: error: --families: unknown ['catboost']") and err.count("\n") == 1
