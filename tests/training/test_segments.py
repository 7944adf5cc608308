"""Chronological segments: strict order, no label across a boundary, embargo after each boundary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sepflow.errors import ConfigError, DataValidationError
from sepflow.training.segments import (
    SEGMENTS,
    chronological_segments,
    segments_by_fraction,
)


def panel(n_dates: int, n_tickers: int, horizon: int, seed: int = 0, missing: float = 0.0) -> pd.DataFrame:
    """Rows (ticker, date) on business days, some missing; label_end = the ticker's row ``horizon`` later."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2022-01-03", periods=n_dates)
    frames = []
    for k in range(n_tickers):
        own = dates[rng.random(n_dates) >= missing]
        if len(own) <= horizon:
            continue
        frames.append(pd.DataFrame({"ticker": f"T{k}", "date": own[:-horizon], "label_end": own[horizon:]}))
    return pd.concat(frames, ignore_index=True)


def check_segments(frame: pd.DataFrame, segments, embargo_days: int) -> None:
    dates, ends = frame["date"].to_numpy(), frame["label_end"].to_numpy()
    unique = np.unique(dates)
    bounds = {name: (unique[0] if name == "train" else pd.Timestamp(segments.info[name]["block_start"]),
                     pd.Timestamp(segments.info[name]["block_end"])) for name in SEGMENTS}
    for name in SEGMENTS:
        rows = segments[name]
        assert len(rows) and np.array_equal(rows, np.sort(rows))
        assert len(np.unique(rows)) == len(rows)
        low, high = bounds[name]
        assert (dates[rows] >= low).all() and (dates[rows] <= high).all()
        if name != "test":  # the test segment is open-ended
            assert (ends[rows] <= high).all(), f"a {name} label crosses into the next segment"
        assert segments.info[name]["n_rows"] == len(rows)
    # Strict order, and an embargo of `embargo_days` unique dates after each boundary.
    for before, after in (("train", "validation"), ("validation", "test")):
        last_before = pd.Timestamp(segments.info[before]["block_end"])
        first_after = dates[segments[after]].min()
        assert dates[segments[before]].max() < first_after
        assert ends[segments[before]].max() < first_after
        skipped = ((unique > last_before) & (unique < first_after)).sum()
        assert skipped >= embargo_days
    every_row = np.concatenate([segments[name] for name in SEGMENTS])
    assert len(np.unique(every_row)) == len(every_row)


def test_hand_checked_example() -> None:
    frame = panel(20, 2, horizon=2)  # 18 labelled dates per ticker
    dates = np.unique(frame["date"])
    segments = chronological_segments(frame["date"], frame["label_end"], train_end=dates[9],
                                      validation_end=dates[14], embargo_days=1)
    kept = {name: sorted(set(frame["date"].iloc[segments[name]])) for name in SEGMENTS}
    assert kept["train"] == list(dates[:8])          # dates 8, 9: labels reach dates 10, 11
    assert kept["validation"] == list(dates[11:13])  # date 10 embargoed; 13, 14 purged
    assert kept["test"] == list(dates[16:18])        # date 15 embargoed; nothing purged
    info = segments.info["validation"]
    assert (info["n_embargoed"], info["n_purged"], info["n_rows"], info["n_dates"]) == (2, 4, 4, 2)
    assert info["block_start"] == pd.Timestamp(dates[10]).date().isoformat()
    assert dict(segments).keys() == set(SEGMENTS)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_dates=st.integers(30, 120), n_tickers=st.integers(1, 4), horizon=st.integers(1, 6),
    embargo=st.integers(0, 6), validation=st.floats(0.1, 0.35), test=st.floats(0.1, 0.35),
    missing=st.sampled_from([0.0, 0.1]), seed=st.integers(0, 10_000),
)
def test_property_no_label_crosses_and_embargo_holds(
    n_dates: int, n_tickers: int, horizon: int, embargo: int, validation: float, test: float,
    missing: float, seed: int,
) -> None:
    frame = panel(n_dates, n_tickers, horizon, seed=seed, missing=missing)
    assume(len(frame) > 0)
    try:
        segments = segments_by_fraction(frame["date"], frame["label_end"], validation_fraction=validation,
                                        test_fraction=test, embargo_days=embargo)
    except ConfigError:
        assume(False)  # a segment emptied by purge and embargo is reported, not returned
    check_segments(frame, segments, embargo)


def test_fractions_count_unique_dates() -> None:
    frame = panel(100, 3, horizon=1)
    segments = segments_by_fraction(frame["date"], frame["label_end"], validation_fraction=0.2,
                                    test_fraction=0.1, embargo_days=0)
    blocks = {name: pd.bdate_range(segments.info[name]["block_start"], segments.info[name]["block_end"])
              for name in SEGMENTS}
    assert [len(blocks[name]) for name in SEGMENTS] == [69, 20, 10]  # 99 labelled dates


def test_errors_are_reported() -> None:
    frame = panel(30, 1, horizon=2)
    with pytest.raises(ConfigError, match="validation segment has no rows"):
        segments_by_fraction(frame["date"], frame["label_end"], validation_fraction=0.1, test_fraction=0.2,
                             embargo_days=5)
    with pytest.raises(ConfigError, match="sum below 1"):
        segments_by_fraction(frame["date"], frame["label_end"], validation_fraction=0.5, test_fraction=0.5,
                             embargo_days=0)
    with pytest.raises(ConfigError, match="must come before"):
        chronological_segments(frame["date"], frame["label_end"], train_end="2022-02-01",
                               validation_end="2022-01-20", embargo_days=0)
    backwards = frame.assign(label_end=frame["date"] - pd.Timedelta(days=1))
    with pytest.raises(DataValidationError, match="label_end before date"):
        segments_by_fraction(backwards["date"], backwards["label_end"], validation_fraction=0.2,
                             test_fraction=0.2, embargo_days=0)
