"""A tiny random-walk SEP panel shared by the features tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest


def make_tiny_panel(n_tickers: int = 4, n_days: int = 160, seed: int = 0) -> pd.DataFrame:
    """Sorted SEP-like rows of ``n_tickers`` random walks, with a random ``in_universe`` flag."""
    rng = np.random.default_rng(seed)
    n = n_tickers * n_days
    close = 40.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, (n_tickers, n_days)), axis=1)).ravel()
    dates = pd.bdate_range("2021-01-01", periods=n_days).astype("datetime64[ns]")
    return pd.DataFrame(
        {
            "ticker": pd.array(np.repeat([f"T{i}" for i in range(n_tickers)], n_days), dtype="str"),
            "date": np.tile(dates, n_tickers),
            "open": close * 1.001,
            "high": close * 1.01,
            "low": close * 0.99,
            "close": close,
            "closeadj": close,
            "volume": rng.integers(100, 1000, n).astype(np.float64),
            "in_universe": rng.random(n) > 0.2,
        }
    )


@pytest.fixture(scope="session")
def tiny_panel() -> Callable[..., pd.DataFrame]:
    return make_tiny_panel
