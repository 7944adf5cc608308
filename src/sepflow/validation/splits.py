"""Panel-aware cross-validation by date: purge by label end, embargo around the test period.

Why hand-written: libraries such as ``purgedcv`` or ``skfolio`` split by row position and
assume one row per timestamp. A ticker × date panel holds many rows per date, so a fold
must be a block of *dates* (every ticker's row on a date lands on the same side) and
purging must compare each row's label interval with the fold's date range. Both splitters
here work on the panel's unique dates with ``numpy.searchsorted``; there is no loop over rows.

How the dates reach ``split``: pass ``dates=`` and ``label_end=`` as per-row keyword arrays,
or pass ``groups`` as a DataFrame (or a mapping / structured array) with ``date`` and
``label_end`` columns. The second route is what scikit-learn forwards from
``cross_val_score(..., groups=frame[["date", "label_end"]])`` and ``SearchCV.fit(X, y, groups=...)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sepflow.errors import ConfigError, DataValidationError

__all__ = ["PurgedKFold", "WalkForward"]

FOLD_RANGE_COLUMNS = [
    "fold", "test_start", "test_end", "train_start", "train_end",
    "n_train", "n_test", "n_purged", "n_embargoed",
]


def _as_datetime64(values: Any, name: str) -> np.ndarray:
    if np.ndim(values) != 1:
        raise DataValidationError(f"splits: {name!r} must be one value per row, got shape {np.shape(values)}")
    try:
        return pd.to_datetime(pd.Index(np.asarray(values))).to_numpy(dtype="datetime64[ns]")
    except (TypeError, ValueError) as exc:
        raise DataValidationError(f"splits: {name!r} cannot be read as dates ({exc})") from exc


def _num_rows(X: Any) -> int:
    return int(X.shape[0]) if hasattr(X, "shape") else len(X)


def _lookup(groups: Any, column: str) -> Any:
    try:
        return groups[column]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"splits: groups has no {column!r} column; pass a DataFrame with 'date' and 'label_end' "
            "columns as groups, or dates=/label_end= keyword arrays"
        ) from exc


def _row_dates(X: Any, groups: Any, dates: Any, label_end: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-row (date, label_end) as datetime64[ns], from keywords or from ``groups`` columns."""
    if dates is None and label_end is None:
        if groups is None:
            raise ConfigError(
                "splits: per-row dates and label ends are required; pass groups with 'date' and "
                "'label_end' columns, or dates=/label_end= keyword arrays"
            )
        dates, label_end = _lookup(groups, "date"), _lookup(groups, "label_end")
    elif dates is None or label_end is None:
        raise ConfigError("splits: pass both dates= and label_end=, or neither (and use groups)")
    d = _as_datetime64(dates, "date")
    end = _as_datetime64(label_end, "label_end")
    if len(end) != len(d):
        raise DataValidationError(f"splits: {len(d)} dates but {len(end)} label_end values")
    if X is not None and _num_rows(X) != len(d):
        raise DataValidationError(f"splits: X has {_num_rows(X)} rows but {len(d)} dates were given")
    missing = np.isnat(d) | np.isnat(end)
    if missing.any():
        raise DataValidationError(
            f"splits: {int(missing.sum())} rows have a missing date or label_end "
            f"(row positions {np.flatnonzero(missing)[:5].tolist()}); drop unlabelled rows before splitting"
        )
    backwards = end < d
    if backwards.any():
        raise DataValidationError(
            f"splits: {int(backwards.sum())} rows have label_end before date "
            f"(row positions {np.flatnonzero(backwards)[:5].tolist()})"
        )
    return d, end


@dataclass(frozen=True)
class _Fold:
    train: np.ndarray
    test: np.ndarray
    record: dict[str, Any]


def _make_fold(
    number: int, dates: np.ndarray, test: np.ndarray, train: np.ndarray,
    purged: np.ndarray, embargoed: np.ndarray,
) -> _Fold:
    if not train.any():
        raise ConfigError(
            f"splits: fold {number} has no training rows left after purge and embargo; "
            "use fewer splits, a shorter embargo or a longer panel"
        )
    train_idx, test_idx = np.flatnonzero(train), np.flatnonzero(test)
    record = {
        "fold": number,
        "test_start": dates[test_idx].min(), "test_end": dates[test_idx].max(),
        "train_start": dates[train_idx].min(), "train_end": dates[train_idx].max(),
        "n_train": len(train_idx), "n_test": len(test_idx),
        "n_purged": int(purged.sum()), "n_embargoed": int(embargoed.sum()),
    }
    return _Fold(train_idx, test_idx, record)


class _DateSplitter(ABC):
    """Shared ``split`` / ``fold_date_ranges``; subclasses define the folds on unique dates."""

    fold_ranges_: pd.DataFrame

    @abstractmethod
    def _folds(self, dates: np.ndarray, label_end: np.ndarray) -> list[_Fold]:
        """Every fold's train/test rows and record, computed from per-row dates and label ends."""

    def split(
        self, X: Any = None, y: Any = None, groups: Any = None, *,
        dates: Any = None, label_end: Any = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train_idx, test_idx)``: sorted int row positions.

        Once iteration starts, ``fold_ranges_`` holds one row per fold (see ``fold_date_ranges``).
        """
        folds = self._folds(*_row_dates(X, groups, dates, label_end))
        self.fold_ranges_ = pd.DataFrame([f.record for f in folds], columns=FOLD_RANGE_COLUMNS)
        for fold in folds:
            yield fold.train, fold.test

    def fold_date_ranges(self, dates: Any, label_end: Any) -> pd.DataFrame:
        """One row per fold: test/train date bounds and row counts (train, test, purged, embargoed).

        ``train_start``/``train_end`` are the first and last dates of the rows actually kept for
        training (in ``PurgedKFold`` the training rows sit on both sides of the test block).
        """
        folds = self._folds(*_row_dates(None, None, dates, label_end))
        return pd.DataFrame([f.record for f in folds], columns=FOLD_RANGE_COLUMNS)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.endswith("_"))
        return f"{type(self).__name__}({params})"


class PurgedKFold(_DateSplitter):
    """K folds of contiguous unique dates, with purging and an embargo after each test block.

    A training row is purged when its label interval ``[date, label_end]`` overlaps the test
    rows' label span ``[test_start, max test label_end]``: before the block, labels that reach
    into it; after the block, rows dated before the last test label ends. Rows dated within the
    next ``embargo_days`` unique panel dates after ``test_end`` are dropped from training as
    well: their features are built from prices that the test rows' labels also use. Set ``embargo_days`` to at least the label
    horizon (in trading days) so no training label after the block shares a price with a test label.
    Every unique date is tested exactly once across the folds.
    """

    def __init__(self, n_splits: int = 5, embargo_days: int = 0) -> None:
        if int(n_splits) < 2:
            raise ConfigError(f"PurgedKFold: n_splits must be at least 2, got {n_splits}")
        if int(embargo_days) < 0:
            raise ConfigError(f"PurgedKFold: embargo_days must be >= 0, got {embargo_days}")
        self.n_splits = int(n_splits)
        self.embargo_days = int(embargo_days)

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """Number of folds (known without the data)."""
        return self.n_splits

    def _folds(self, dates: np.ndarray, label_end: np.ndarray) -> list[_Fold]:
        unique_dates = np.unique(dates)
        if self.n_splits > len(unique_dates):
            raise ConfigError(
                f"PurgedKFold: n_splits={self.n_splits} exceeds the {len(unique_dates)} unique dates"
            )
        position = np.searchsorted(unique_dates, dates)
        folds = []
        for number, block in enumerate(np.array_split(np.arange(len(unique_dates)), self.n_splits)):
            first, last = block[0], block[-1]
            test = (position >= first) & (position <= last)
            # Before the block: a label reaching into it. After the block: a row dated inside some
            # test label's interval (a ticker with missing days stretches its label past the
            # embargo, so the embargo alone does not cover the after-side).
            before = ~test & (dates <= unique_dates[last]) & (label_end >= unique_dates[first])
            after = (position > last) & (dates <= label_end[test].max())
            purged = before | after
            embargoed = (position > last) & (position <= last + self.embargo_days) & ~after
            train = ~(test | purged | embargoed)
            folds.append(_make_fold(number, dates, test, train, purged, embargoed))
        return folds


class WalkForward(_DateSplitter):
    """Walk-forward folds on unique dates: train strictly in the past, then test the next block.

    Test blocks hold ``test_days`` unique dates and start every ``step_days`` (default
    ``test_days``); only whole blocks are tested, so up to ``test_days - 1`` trailing dates may
    go untested. The training window ends ``embargo_days`` unique dates before ``test_start``
    (those dates are the embargo) and holds ``train_days`` unique dates, or every earlier date
    when ``train_days`` is None (expanding window). Within the window a row is purged unless
    its ``label_end`` is strictly before ``test_start``. The first test block starts once
    ``min_train_days`` (default ``train_days``, else ``test_days``) dates fit before the embargo,
    or on the first date at or after ``first_test_date`` when given (the evaluation window's
    start; a window that leaves too few training dates before it is refused).
    """

    def __init__(
        self, test_days: int, step_days: int | None = None, train_days: int | None = None,
        embargo_days: int = 0, min_train_days: int | None = None, first_test_date: Any = None,
    ) -> None:
        self.first_test_date = None if first_test_date is None else pd.Timestamp(first_test_date)
        self.test_days = int(test_days)
        self.step_days = self.test_days if step_days is None else int(step_days)
        self.train_days = None if train_days is None else int(train_days)
        self.embargo_days = int(embargo_days)
        default_min = self.train_days if self.train_days is not None else self.test_days
        self.min_train_days = default_min if min_train_days is None else int(min_train_days)
        for name in ("test_days", "step_days", "min_train_days"):
            if getattr(self, name) < 1:
                raise ConfigError(f"WalkForward: {name} must be at least 1, got {getattr(self, name)}")
        if self.embargo_days < 0:
            raise ConfigError(f"WalkForward: embargo_days must be >= 0, got {self.embargo_days}")
        if self.train_days is not None and self.train_days < self.min_train_days:
            raise ConfigError(
                f"WalkForward: train_days={self.train_days} is shorter than min_train_days={self.min_train_days}"
            )

    def _test_starts(self, unique_dates: np.ndarray) -> np.ndarray:
        n_unique = len(unique_dates)
        first = self.min_train_days + self.embargo_days
        if self.first_test_date is not None:
            anchored = int(np.searchsorted(unique_dates, self.first_test_date.to_datetime64()))
            if anchored < first:
                raise ConfigError(
                    f"WalkForward: the first test date {self.first_test_date.date()} leaves {anchored} earlier dates, "
                    f"fewer than min_train_days + embargo_days = {first}"
                )
            first = anchored
        starts = np.arange(first, n_unique - self.test_days + 1, self.step_days)
        if len(starts) == 0:
            raise ConfigError(
                f"WalkForward: {n_unique} unique dates cannot hold min_train_days + embargo_days + "
                f"test_days = {first + self.test_days}"
            )
        return starts

    def get_n_splits(
        self, X: Any = None, y: Any = None, groups: Any = None, *, dates: Any = None,
    ) -> int:
        """Number of folds; needs the dates (``dates=`` or a ``date`` column in ``groups``)."""
        if dates is None:
            if groups is None:
                raise ConfigError("WalkForward.get_n_splits needs dates= or groups with a 'date' column")
            dates = _lookup(groups, "date")
        return len(self._test_starts(np.unique(_as_datetime64(dates, "date"))))

    def _folds(self, dates: np.ndarray, label_end: np.ndarray) -> list[_Fold]:
        unique_dates = np.unique(dates)
        position = np.searchsorted(unique_dates, dates)
        folds = []
        for number, start in enumerate(self._test_starts(unique_dates)):
            test = (position >= start) & (position < start + self.test_days)
            train_last = start - 1 - self.embargo_days
            train_first = 0 if self.train_days is None else max(0, train_last - self.train_days + 1)
            window = (position >= train_first) & (position <= train_last)
            purged = window & (label_end >= unique_dates[start])
            embargoed = (position > train_last) & (position < start)
            folds.append(_make_fold(number, dates, test, window & ~purged, purged, embargoed))
        return folds
