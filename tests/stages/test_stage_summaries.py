"""Each stage ends with its summary table on stdout: ingest and filter_sep called directly on a small CSV."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import yaml

from sepflow.progress import ENV
from sepflow.stages import filter_sep, ingest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "sp500_5yr_slice.csv"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """cwd in ``tmp_path`` with its own MLflow store and a params file reading the fixture CSV."""
    previous = mlflow.get_tracking_uri()
    for name in ("DVC_ROOT", "DVC_STAGE", "MLFLOW_RUN_ID", ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "ingest": {"source": str(FIXTURE)},
        "universe": {"min_history_days": 20, "liquidity_window": 10},
    }))
    yield tmp_path
    mlflow.set_tracking_uri(previous)


def test_ingest_and_filter_print_their_summaries(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ingest.main("params.yaml")
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == "== ingest =="
    table = dict(re.fullmatch(r"  (\S.*?) {2,}(\S.*)", line).groups() for line in lines[1:])
    assert list(table) == ["source", "rows in", "rows out", "dropped", "tickers", "dates", "as of", "outputs"]
    assert table["dropped"] == "high_below_low=1, missing_value=1"
    assert int(table["rows in"].replace(",", "")) == int(table["rows out"].replace(",", "")) + 2
    assert table["tickers"] == "3"
    assert table["outputs"] == "data/raw/sep.parquet, data/raw/tickers.parquet, reports/ingest.json, reports/ingest_info.json"
    assert "==" not in err  # the summary goes to stdout, and no bar is drawn off a terminal

    filter_sep.main("params.yaml")
    out = capsys.readouterr().out
    assert out.startswith("== filter_sep ==\n")
    assert "  outputs           data/interim/sep_common.parquet, reports/filter_sep.json, reports/filter_sep_info.json\n" in out
    assert len(out.splitlines()) <= 15
