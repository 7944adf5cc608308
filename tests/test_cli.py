"""The `sepflow` command's own behaviour (the stages are tested where they live)."""

from __future__ import annotations

import pytest

from sepflow.cli import main


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
