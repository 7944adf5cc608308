"""Chronological train / validation / test segments of a panel, purged by label end, with an embargo.

The time axis is cut at two boundaries into ``train = (-inf, train_end]``, ``validation =
(train_end, validation_end]`` and ``test = (validation_end, +inf)``; every ticker's row on a
date lands in the same segment. A row is kept only if its whole label interval ``[date,
label_end]`` lies inside its segment, so no label uses a price from the next segment (purge
by label end). The first ``embargo_days`` unique panel dates after each boundary are dropped
from the next segment as well: their features overlap the previous segment's last labels.
The test segment is open-ended, so its rows are never purged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sepflow.errors import ConfigError, DataValidationError

__all__ = ["SEGMENTS", "Segments", "chronological_segments", "segments_by_fraction"]

SEGMENTS = ("train", "validation", "test")


@dataclass(frozen=True, eq=False)
class Segments(Mapping[str, np.ndarray]):
    """Row positions per segment (``segments["train"]``, sorted ints) and a JSON-ready summary.

    ``info[name]``: ``start``/``end`` (first and last date of the kept rows), ``block_start``/
    ``block_end`` (the segment's dates before purge and embargo), ``n_rows``, ``n_dates``,
    ``n_purged`` and ``n_embargoed``.
    """

    rows: dict[str, np.ndarray]
    info: dict[str, dict[str, Any]]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.rows[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def _datetimes(values: Any, name: str) -> np.ndarray:
    try:
        out = pd.to_datetime(pd.Index(np.asarray(values))).to_numpy(dtype="datetime64[ns]")
    except (TypeError, ValueError) as exc:
        raise DataValidationError(f"segments: {name} cannot be read as dates ({exc})") from exc
    if out.ndim != 1:
        raise DataValidationError(f"segments: {name} must be one value per row, got shape {out.shape}")
    return out


def _row_dates(dates: Any, label_end: Any) -> tuple[np.ndarray, np.ndarray]:
    d, end = _datetimes(dates, "dates"), _datetimes(label_end, "label_end")
    if len(d) != len(end):
        raise DataValidationError(f"segments: {len(d)} dates but {len(end)} label_end values")
    if len(d) == 0:
        raise DataValidationError("segments: no rows to split")
    bad = np.isnat(d) | np.isnat(end) | (end < d)
    if bad.any():
        raise DataValidationError(
            f"segments: {int(bad.sum())} rows have a missing date or label_end, or label_end before date "
            f"(row positions {np.flatnonzero(bad)[:5].tolist()}); drop unlabelled rows first"
        )
    return d, end


def _iso(value: np.datetime64) -> str:
    return pd.Timestamp(value).date().isoformat()


def chronological_segments(
    dates: Any, label_end: Any, *, train_end: Any, validation_end: Any, embargo_days: int,
) -> Segments:
    """Cut rows at ``train_end`` and ``validation_end`` (inclusive upper bounds of train and validation).

    Raises ``ConfigError`` when a segment is left without rows.
    """
    if int(embargo_days) < 0:
        raise ConfigError(f"segments: embargo_days must be >= 0, got {embargo_days}")
    d, end = _row_dates(dates, label_end)
    cut_train, cut_validation = (np.datetime64(pd.Timestamp(b), "ns") for b in (train_end, validation_end))
    if not cut_train < cut_validation:
        raise ConfigError(f"segments: train_end {train_end} must come before validation_end {validation_end}")
    unique = np.unique(d)
    position = np.searchsorted(unique, d)
    # Segment blocks as [first, stop) positions in the unique dates, and each one's upper bound.
    first_validation = int(np.searchsorted(unique, cut_train, side="right"))
    first_test = int(np.searchsorted(unique, cut_validation, side="right"))
    blocks = {
        "train": (0, first_validation, cut_train),
        "validation": (first_validation, first_test, cut_validation),
        "test": (first_test, len(unique), None),
    }
    rows: dict[str, np.ndarray] = {}
    info: dict[str, dict[str, Any]] = {}
    for name, (first, stop, upper) in blocks.items():
        in_block = (position >= first) & (position < stop)
        embargoed = in_block & (position < first + int(embargo_days)) if name != "train" else np.zeros_like(in_block)
        purged = in_block & ~embargoed & (end > upper) if upper is not None else np.zeros_like(in_block)
        kept = np.flatnonzero(in_block & ~embargoed & ~purged)
        if len(kept) == 0:
            raise ConfigError(
                f"segments: the {name} segment has no rows left after purge and embargo "
                f"({int(in_block.sum())} rows before); use a longer panel, other fractions or a shorter embargo"
            )
        rows[name] = kept
        info[name] = {
            "start": _iso(d[kept].min()), "end": _iso(d[kept].max()),
            "block_start": _iso(unique[first]), "block_end": _iso(unique[stop - 1]),
            "n_rows": len(kept), "n_dates": len(np.unique(position[kept])),
            "n_purged": int(purged.sum()), "n_embargoed": int(embargoed.sum()),
        }
    return Segments(rows, info)


def segments_by_fraction(
    dates: Any, label_end: Any, *, validation_fraction: float, test_fraction: float, embargo_days: int,
) -> Segments:
    """Segments whose validation and test blocks hold these fractions of the unique dates (the last ones).

    Fractions count dates before purge and embargo, so the kept segments are a little smaller.
    """
    if not (0 < validation_fraction < 1 and 0 < test_fraction < 1 and validation_fraction + test_fraction < 1):
        raise ConfigError(
            f"segments: fractions must be in (0, 1) and sum below 1, got validation {validation_fraction}, "
            f"test {test_fraction}"
        )
    d, end = _row_dates(dates, label_end)
    unique = np.unique(d)
    n = len(unique)
    n_test, n_validation = int(n * test_fraction + 0.5), int(n * validation_fraction + 0.5)
    if min(n_test, n_validation, n - n_test - n_validation) < 1:
        raise ConfigError(
            f"segments: {n} unique dates cannot hold train, validation ({validation_fraction}) "
            f"and test ({test_fraction}) blocks"
        )
    return chronological_segments(
        d, end, train_end=unique[n - n_test - n_validation - 1], validation_end=unique[n - n_test - 1],
        embargo_days=embargo_days,
    )
