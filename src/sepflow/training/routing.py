"""A per-symbol folder read back: one trained folder per ticker, and the model that routes rows to them.

``models/<family>/<target>/`` of a ``train.scope: per_symbol`` run holds only::

    per_symbol/
      index.json     the routing manifest: tickers → folders and seeds, skipped tickers with their
                     reasons, the features, summary metrics and every library the models need
      metrics.csv    one row per ticker: status, reason, rows used and each segment's metrics
      <ticker>/      that ticker's ``train_family`` folder (layout in ``sepflow.training.artifacts``)

``load_served`` reads either layout: a pooled folder gives a ``TrainedModel``, a per-symbol one a
``RoutedModel``. Both offer ``predict_frame``, ``input_example``, ``task``, ``features``,
``metrics`` and ``metadata``, which is all that prediction, the pyfunc and the registry use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sepflow.errors import DataValidationError, SepflowError
from sepflow.io import read_json
from sepflow.models.base import TaskKind
from sepflow.training.artifacts import TrainedModel, check_columns, load_trained

__all__ = [
    "INDEX_FILE",
    "PER_SYMBOL_DIR",
    "TABLE_FILE",
    "RoutedModel",
    "is_per_symbol",
    "load_routed",
    "load_served",
    "ticker_folder",
]

PER_SYMBOL_DIR = "per_symbol"
INDEX_FILE = "index.json"
TABLE_FILE = "metrics.csv"
# Tickers whose examples make up the routed model's input example (each brings a few rows).
EXAMPLE_TICKERS = 3
# A ticker names a folder as it is; anything that could climb out of per_symbol/ or hide is refused.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def ticker_folder(ticker: str) -> str:
    """The folder name of ``ticker``'s model under ``per_symbol/`` (the ticker itself)."""
    if not _SAFE_NAME.fullmatch(ticker):
        raise DataValidationError(
            f"per_symbol: ticker {ticker!r} cannot name a model folder; it must match {_SAFE_NAME.pattern}"
        )
    return ticker


def is_per_symbol(folder: Path) -> bool:
    """Whether ``folder`` (``models/<family>/<target>``) holds per-symbol models."""
    return (Path(folder) / PER_SYMBOL_DIR / INDEX_FILE).is_file()


@dataclass(frozen=True)
class RoutedModel:
    """Per-ticker trained models behind one ``predict_frame`` that sends each ticker's rows to its own.

    ``metadata`` is the routing manifest (``index.json``); ``metrics`` its summary over tickers.
    """

    folder: Path
    models: dict[str, TrainedModel]
    features: list[str]
    metrics: dict[str, Any]
    metadata: dict[str, Any]

    @property
    def task(self) -> TaskKind:
        return self.metadata["task"]

    def input_example(self) -> pd.DataFrame:
        """The saved example rows of the first few tickers, one after another."""
        tickers = list(self.models)[:EXAMPLE_TICKERS]
        return pd.concat([self.models[t].input_example() for t in tickers], ignore_index=True)

    def predict_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        """Predictions indexed like ``X`` (indexed by ticker, date), each ticker's rows by its own model.

        Columns as ``TrainedModel.predict_frame``. A ticker without a model (never trained, or
        skipped in training) is refused by name, never predicted by another ticker's model.
        """
        check_columns(X, self.features)
        if "ticker" not in X.index.names:
            raise DataValidationError(
                "per_symbol: X must be indexed by (ticker, date) so that each row reaches its ticker's model"
            )
        if len(X) == 0:
            raise DataValidationError("per_symbol: X has no rows to predict")
        codes, tickers = pd.factorize(X.index.get_level_values("ticker"), sort=True)
        unknown = [str(t) for t in tickers if t not in self.models]
        if unknown:
            skipped = self.metadata.get("skipped", {})
            why = "; ".join(f"{t} was skipped in training: {skipped[t]}" for t in unknown[:3] if t in skipped)
            raise DataValidationError(
                f"per_symbol: no model for ticker(s) {unknown[:5]} ({len(unknown)} in all) in "
                f"{self.folder}; it routes {len(self.models)} tickers" + (f" ({why})" if why else "")
            )
        order = np.argsort(codes, kind="stable")
        bounds = np.cumsum(np.bincount(codes, minlength=len(tickers)))[:-1]
        parts = [self.models[t].predict_frame(X.iloc[rows]) for t, rows in zip(tickers, np.split(order, bounds),
                                                                              strict=True)]
        # Back to X's row order: row k of the concatenation is row order[k] of X.
        return pd.concat(parts).iloc[np.argsort(order, kind="stable")]


def load_routed(folder: Path) -> RoutedModel:
    """Load a per-symbol folder (``models/<family>/<target>``) written by ``train_per_symbol``."""
    folder = Path(folder)
    if not is_per_symbol(folder):
        raise SepflowError(f"per_symbol: {folder} holds no {PER_SYMBOL_DIR}/{INDEX_FILE} routing manifest")
    index = read_json(folder / PER_SYMBOL_DIR / INDEX_FILE)
    models = {ticker: load_trained(folder / PER_SYMBOL_DIR / entry["folder"])
              for ticker, entry in index["tickers"].items()}
    odd = [t for t, m in models.items() if m.features != index["features"] or m.task != index["task"]]
    if odd or not models:
        raise SepflowError(
            f"per_symbol: {folder / PER_SYMBOL_DIR / INDEX_FILE} disagrees with the models of {odd} "
            f"(features or task), or routes no ticker"
        )
    return RoutedModel(folder=folder, models=models, features=list(index["features"]),
                       metrics=index["metrics"], metadata=index)


def load_served(folder: Path) -> TrainedModel | RoutedModel:
    """The model a ``models/<family>/<target>`` folder serves: routed per ticker, or pooled."""
    return load_routed(folder) if is_per_symbol(folder) else load_trained(folder)
