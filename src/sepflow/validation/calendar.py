"""The date rule: where choices are made, where evidence is gathered, what a release fits on.

Three regions on the panel's trading calendar::

    |-- development region --|- embargo -|======= evaluation window =======|- label tail -|
    first date     development_end      start                             end          as-of

- **Evaluation window**: the last ``n_folds`` walk-forward test blocks whose labels (and the
  book's returns, ``execution_lag_days`` later) are all known by the as-of date. Walk-forward
  folds test here and nowhere else; each fold refits on its own past.
- **Development region**: every choice — target ranking, feature selection, tuning, early
  stopping, calibration, thresholds, ensemble weights of the development models — uses only
  rows whose label ends on or before ``development_end``, an embargo of trading dates before
  the window starts. Scrambling every price inside the window therefore changes no choice.
- **As-of date**: the last date with prices. The release refit uses every labelled row up to it.

The window is derived from params and the calendar alone (never from prices), so every stage
computes the same one; stages that respect it print it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sepflow.errors import ConfigError

if TYPE_CHECKING:  # annotations only: the date rule imports no dataset code (the params layer reads it)
    from sepflow.features.dataset import Dataset, DatasetBuilder

__all__ = ["EvaluationWindow", "development_rows", "evaluation_window", "trading_calendar"]


@dataclass(frozen=True)
class EvaluationWindow:
    """The date rule's boundaries (see the module docstring); dates are midnight timestamps."""

    development_end: pd.Timestamp  # choices use rows whose label_end is on or before this date
    start: pd.Timestamp  # first walk-forward test date
    end: pd.Timestamp  # last walk-forward test date
    asof: pd.Timestamp  # last trading date of the panel
    n_dates: int  # trading dates from start to end
    embargo_days: int

    def as_dict(self) -> dict[str, str | int]:
        """JSON-ready: ISO dates and counts."""
        return {
            "development_end": self.development_end.date().isoformat(), "eval_start": self.start.date().isoformat(),
            "eval_end": self.end.date().isoformat(), "asof": self.asof.date().isoformat(),
            "eval_dates": self.n_dates, "embargo_days": self.embargo_days,
        }

    def describe(self) -> str:
        """One line for stage summaries and logs."""
        return (f"choices on labels ending <= {self.development_end.date()}; evaluation window "
                f"{self.start.date()} .. {self.end.date()} ({self.n_dates} dates); as-of {self.asof.date()}")


def evaluation_window(
    calendar: np.ndarray, *, window_days: int, embargo_days: int, label_days: int,
) -> EvaluationWindow:
    """The date rule on ``calendar`` (sorted unique trading dates).

    ``window_days`` trading dates end ``label_days`` dates before the calendar's last date (the
    longest horizon plus the execution lag: the last test date whose book return is known), and
    ``development_end`` lies ``embargo_days`` dates before the window starts.
    """
    calendar = np.asarray(calendar, dtype="datetime64[ns]")
    end = len(calendar) - 1 - label_days
    start = end - window_days + 1
    development_end = start - embargo_days - 1
    if development_end < 0:
        raise ConfigError(
            f"date rule: {len(calendar)} trading dates cannot hold an evaluation window of {window_days} dates, "
            f"an embargo of {embargo_days} and a label tail of {label_days} with any development data before them; "
            "lower walk_forward.n_folds or walk_forward.test_days"
        )
    stamp = lambda i: pd.Timestamp(calendar[i])  # noqa: E731
    return EvaluationWindow(
        development_end=stamp(development_end), start=stamp(start), end=stamp(end), asof=stamp(len(calendar) - 1),
        n_dates=window_days, embargo_days=embargo_days,
    )


def trading_calendar(builder: DatasetBuilder) -> np.ndarray:
    """Sorted unique dates of every row of the features panel (prices only; no label or universe)."""
    target = next(iter(builder.manifest["targets"]))
    rows = builder.build(target, [builder.manifest["feature_names"][0]], universe_only=False, dropna=False)
    return np.unique(rows.dates.to_numpy(dtype="datetime64[ns]"))


def development_rows(ds: Dataset, window: EvaluationWindow) -> Dataset:
    """``ds`` cut to the development region: rows whose label ends on or before ``development_end``."""
    keep = (ds.label_end <= window.development_end).to_numpy()
    if not keep.any():
        raise ConfigError(
            f"date rule: no row of {ds.meta.get('target')!r} has a label ending by {window.development_end.date()}; "
            "the development region is empty"
        )
    rows = np.flatnonzero(keep)
    take = lambda values: values.iloc[rows].reset_index(drop=True)  # noqa: E731
    dates = take(ds.dates)
    meta = {**ds.meta, "n_rows": len(rows), "n_tickers": int(take(ds.tickers).nunique()),
            "date_min": dates.min().date().isoformat(), "date_max": dates.max().date().isoformat(),
            "development_end": window.development_end.date().isoformat(),
            "dropped": {**ds.meta.get("dropped", {}), "after_development_end": int((~keep).sum())}}
    return replace(ds, X=take(ds.X), y=take(ds.y), dates=dates, tickers=take(ds.tickers),
                   label_end=take(ds.label_end), meta=meta)
