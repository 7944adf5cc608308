"""Model folders are byte-reproducible: fitting and saving the same model in two fresh processes
gives the same files (DVC hashes them), and what they hold loads back and predicts."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sepflow.models import load_model

FIT_AND_SAVE = """
import sys
import numpy as np, pandas as pd
from sepflow.models import make_model
rng = np.random.default_rng(0)
index = pd.MultiIndex.from_product([["A", "B"], pd.bdate_range("2021-01-04", periods=40)], names=["ticker", "date"])
X = pd.DataFrame(rng.normal(size=(80, 3)), index=index, columns=["a", "b", "c"])
y = (X["a"] + rng.normal(size=80) > 0).astype(int)
params = {"dummy": {}, "random_forest": {"n_estimators": 5, "n_jobs": 1},
          "lstm": {"sequence_length": 3, "units1": 2, "units2": 2, "epochs": 1}}[sys.argv[1]]
make_model(sys.argv[1], "classification", **params).fit(X, y).save(sys.argv[2])
"""


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("family", ["dummy", "random_forest", "lstm"])
def test_fitting_and_saving_in_two_processes_gives_the_same_bytes(family: str, tmp_path: Path) -> None:
    for name in ("first", "second"):
        subprocess.run([sys.executable, "-c", FIT_AND_SAVE, family, str(tmp_path / name)], check=True,
                       capture_output=True)
    assert _digests(tmp_path / "first") == _digests(tmp_path / "second")
    archives = [p for p in (tmp_path / "first").rglob("*") if zipfile.is_zipfile(p)]
    assert archives  # the skops / .keras archive is there, and its entries carry no write time
    for archive in archives:
        assert {info.date_time for info in zipfile.ZipFile(archive).infolist()} == {(1980, 1, 1, 0, 0, 0)}
    index = pd.MultiIndex.from_product([["A"], pd.bdate_range("2021-03-01", periods=4)], names=["ticker", "date"])
    proba = load_model(tmp_path / "second").predict_proba(pd.DataFrame(np.zeros((4, 3)), index=index,
                                                                       columns=["a", "b", "c"]))
    assert proba.shape == (4, 2) and np.allclose(proba.sum(axis=1), 1.0)
