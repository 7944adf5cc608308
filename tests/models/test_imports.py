"""Heavy libraries load only where they are used: in a fresh interpreter with every stage module
imported, fitting, saving and loading every family but the LSTM imports neither TensorFlow/Keras
nor PyTorch, nor scipy.signal (1-2 s; only computing EMAs needs it) (a `sys.modules` check, not
a timing). Each stage runs in its own process, so what it
imports is what it pays for."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import json, sys, tempfile
from pathlib import Path

import numpy as np
import pandas as pd

import sepflow.cli
from sepflow.stages import (build_features, filter_sep, ingest, rank_targets, select_features, synthesize, train,
                            walk_forward)
from sepflow.models import load_model, make_model

dates = pd.bdate_range("2021-01-04", periods=60)
index = pd.MultiIndex.from_product([["AAA", "BBB"], dates], names=["ticker", "date"])
X = pd.DataFrame(np.random.default_rng(0).normal(size=(len(index), 3)), index=index, columns=["f0", "f1", "f2"])
y = (X["f0"] > 0).astype(int).to_numpy()
for family in ("dummy", "random_forest", "xgboost", "lightgbm"):
    model = make_model(family, "classification").fit(X, y)
    loaded = load_model(model.save(Path(tempfile.mkdtemp()) / family))
    assert np.allclose(loaded.predict_proba(X), model.predict_proba(X)), family
print(json.dumps(sorted(name for name in ("tensorflow", "keras", "torch", "scipy.signal") if name in sys.modules)))
"""


def test_non_lstm_work_imports_no_tensorflow_no_torch_and_no_scipy_signal() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.splitlines()[-1]) == []
