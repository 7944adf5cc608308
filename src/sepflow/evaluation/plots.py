"""Charts for MLflow (PNG) — DVC plots read the CSV/JSON written beside them."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI or a server
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from sepflow.io import atomic_path  # noqa: E402


def bar_chart(values: pd.Series, path: str | Path, *, title: str, xlabel: str) -> Path:
    """Horizontal bars, largest on top; written atomically as PNG."""
    ordered = values.sort_values()
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.28 * len(ordered) + 1)))
    colors = ["#2b8cbe" if v >= 0 else "#e34a33" for v in ordered.to_numpy()]
    ax.barh([str(i) for i in ordered.index], ordered.to_numpy(), color=colors)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    return _save(fig, path)


def line_chart(frame: pd.DataFrame, path: str | Path, *, x: str, title: str, ylabel: str) -> Path:
    """One line per column of ``frame`` other than ``x``; written atomically as PNG."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for column in (c for c in frame.columns if c != x):
        ax.plot(pd.to_datetime(frame[x]), frame[column].to_numpy(dtype=float), label=str(column), linewidth=1.2)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.autofmt_xdate()
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically, without a timestamp in its metadata, and close it."""
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path
