"""PurgedKFold and WalkForward: leakage properties on random panels, sklearn use, a noise test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, RandomizedSearchCV, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from sepflow.errors import ConfigError, DataValidationError
from sepflow.validation.splits import PurgedKFold, WalkForward

PROPERTY_SETTINGS = settings(max_examples=50, derandomize=True, deadline=None)


@st.composite
def random_panels(draw: st.DrawFn) -> pd.DataFrame:
    """Random tickers on a calendar with market-wide and per-ticker gaps; label horizons 1..10 days."""
    seed = draw(st.integers(0, 2**32 - 1))
    n_dates = draw(st.integers(30, 70))
    n_tickers = draw(st.integers(1, 5))
    rng = np.random.default_rng(seed)
    calendar = pd.bdate_range("2021-01-04", periods=n_dates + 10)
    market_open = rng.random(n_dates) < 0.9
    frames = []
    for ticker in range(n_tickers):
        rows = np.flatnonzero(market_open & (rng.random(n_dates) < 0.8))
        horizon = rng.integers(1, 11, size=len(rows))
        frames.append(pd.DataFrame({
            "ticker": f"T{ticker}", "date": calendar[rows], "label_end": calendar[rows + horizon],
        }))
    panel = pd.concat(frames, ignore_index=True)
    # Shuffle rows: splits work on positions and must not rely on the panel's sort order.
    return panel.sample(frac=1.0, random_state=seed % 1000).reset_index(drop=True)


def _purged_kfold_reference(panel: pd.DataFrame, n_splits: int, embargo_days: int) -> list[tuple[set, set]]:
    """The definition, row by row: the test block, purge by overlap with the test labels' span
    on both sides, embargo after."""
    unique_dates = sorted(panel["date"].unique())
    folds = []
    for block in np.array_split(np.arange(len(unique_dates)), n_splits):
        test_start, test_end = unique_dates[block[0]], unique_dates[block[-1]]
        in_block = (panel["date"] >= test_start) & (panel["date"] <= test_end)
        labels_end = panel.loc[in_block, "label_end"].max()
        embargo = set(unique_dates[block[-1] + 1: block[-1] + 1 + embargo_days])
        test, train = set(), set()
        for i, row in enumerate(panel.itertuples()):
            if test_start <= row.date <= test_end:
                test.add(i)
            elif not (row.date <= labels_end and row.label_end >= test_start) and row.date not in embargo:
                train.add(i)
        folds.append((train, test))
    return folds


@PROPERTY_SETTINGS
@given(panel=random_panels(), n_splits=st.integers(2, 6), embargo_days=st.integers(0, 5))
def test_purged_kfold_never_trains_on_overlapping_or_embargoed_rows(panel, n_splits, embargo_days):
    unique_dates = np.sort(panel["date"].unique())
    if len(unique_dates) < n_splits:
        with pytest.raises(ConfigError):
            list(PurgedKFold(n_splits, embargo_days).split(panel, groups=panel))
        return
    reference = _purged_kfold_reference(panel, n_splits, embargo_days)
    cv = PurgedKFold(n_splits, embargo_days)
    if any(not train for train, _ in reference):
        with pytest.raises(ConfigError, match="no training rows"):
            list(cv.split(panel, groups=panel))
        return

    folds = list(cv.split(panel, groups=panel))
    assert len(folds) == cv.get_n_splits() == n_splits
    dates, label_end = panel["date"].to_numpy(), panel["label_end"].to_numpy()
    tested_dates = []
    for (train, test), (ref_train, ref_test) in zip(folds, reference, strict=True):
        assert set(train) == ref_train and set(test) == ref_test
        assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
        assert not set(train) & set(test)
        test_start, test_end = dates[test].min(), dates[test].max()
        # No training label interval [date, label_end] overlaps the test labels' span, on either side.
        assert not np.any((dates[train] <= label_end[test].max()) & (label_end[train] >= test_start))
        after = unique_dates[unique_dates > test_end][:embargo_days]
        assert not np.isin(dates[train], after).any()
        tested_dates.extend(np.unique(dates[test]))
    # Every date is tested exactly once across the folds, and test blocks are contiguous.
    assert sorted(tested_dates) == list(unique_dates)
    ranges = cv.fold_ranges_
    assert (ranges[["n_train", "n_test", "n_purged", "n_embargoed"]].sum(axis=1) == len(panel)).all()
    pd.testing.assert_frame_equal(ranges, cv.fold_date_ranges(panel["date"], panel["label_end"]))


@PROPERTY_SETTINGS
@given(
    panel=random_panels(), test_days=st.integers(1, 8), step_days=st.none() | st.integers(1, 8),
    train_days=st.none() | st.integers(3, 15), embargo_days=st.integers(0, 5),
)
def test_walk_forward_trains_strictly_before_each_test_block(
    panel, test_days, step_days, train_days, embargo_days
):
    cv = WalkForward(test_days, step_days=step_days, train_days=train_days, embargo_days=embargo_days)
    unique_dates = np.sort(panel["date"].unique())
    dates, label_end = panel["date"].to_numpy(), panel["label_end"].to_numpy()
    step = step_days or test_days
    starts = list(range(cv.min_train_days + embargo_days, len(unique_dates) - test_days + 1, step))
    if not starts:
        with pytest.raises(ConfigError, match="cannot hold"):
            cv.get_n_splits(groups=panel)
        return
    first_allowed = [0 if train_days is None else max(0, s - embargo_days - train_days) for s in starts]
    expected_trains = [
        set(np.flatnonzero(
            (dates >= unique_dates[lo]) & (dates < unique_dates[s - embargo_days]) & (label_end < unique_dates[s])
        ))
        for s, lo in zip(starts, first_allowed, strict=True)
    ]
    if any(not train for train in expected_trains):
        with pytest.raises(ConfigError, match="no training rows"):
            list(cv.split(panel, groups=panel))
        return

    folds = list(cv.split(panel, groups=panel))
    assert len(folds) == cv.get_n_splits(groups=panel) == len(starts)
    for (train, test), s, expected in zip(folds, starts, expected_trains, strict=True):
        assert set(train) == expected
        assert not set(train) & set(test)
        test_start = unique_dates[s]
        assert np.array_equal(np.unique(dates[test]), unique_dates[s: s + test_days])
        assert (dates[train] < test_start).all() and (label_end[train] < test_start).all()
        embargo = unique_dates[s - embargo_days: s] if embargo_days else unique_dates[:0]
        assert not np.isin(dates[train], embargo).any()


def _small_panel(n_dates: int = 60, horizon: int = 5) -> pd.DataFrame:
    calendar = pd.bdate_range("2022-01-03", periods=n_dates + horizon)
    return pd.DataFrame({
        "ticker": np.repeat(["AAA", "BBB", "CCC"], n_dates),
        "date": np.tile(calendar[:n_dates], 3),
        "label_end": np.tile(calendar[horizon:], 3),
    })


def test_purged_kfold_works_as_cv_in_cross_val_score():
    panel = _small_panel()
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(len(panel), 3)), rng.integers(0, 2, len(panel))
    cv = PurgedKFold(n_splits=4, embargo_days=5)
    scores = cross_val_score(LogisticRegression(), X, y, cv=cv, groups=panel[["date", "label_end"]])
    assert len(scores) == 4 and np.isfinite(scores).all()
    # Horizon 5: the 5 dates before each later block are purged (labels reaching in), and so are the
    # 5 after each earlier block (dated inside its test labels), which the embargo of 5 also covers.
    assert cv.fold_ranges_["n_purged"].tolist() == [15, 30, 30, 15]
    assert cv.fold_ranges_["n_embargoed"].tolist() == [0, 0, 0, 0]


def test_walk_forward_works_in_randomized_search_and_with_keyword_dates():
    panel = _small_panel()
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(len(panel), 3)), rng.integers(0, 2, len(panel))
    cv = WalkForward(test_days=10, train_days=20, embargo_days=2)
    search = RandomizedSearchCV(LogisticRegression(), {"C": [0.1, 1.0, 10.0]}, n_iter=2, cv=cv, random_state=0)
    search.fit(X, y, groups=panel[["date", "label_end"]])
    assert search.n_splits_ == 3
    by_keyword = list(cv.split(X, dates=panel["date"], label_end=panel["label_end"]))
    by_groups = list(cv.split(X, groups=panel))
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(by_keyword, by_groups))
    # Horizon 5 > embargo 2: the 3 training dates nearest the test block are purged.
    assert (cv.fold_ranges_["n_purged"] == 9).all()
    assert (cv.fold_ranges_["n_embargoed"] == 6).all()


def test_bad_inputs_raise_sepflow_errors():
    panel = _small_panel(20)
    with pytest.raises(ConfigError, match="label_end"):
        list(PurgedKFold(3).split(panel, groups=panel[["date"]]))
    with pytest.raises(ConfigError, match="required"):
        list(PurgedKFold(3).split(panel))
    with pytest.raises(DataValidationError, match="before date"):
        list(PurgedKFold(3).split(panel, dates=panel["label_end"], label_end=panel["date"]))
    with pytest.raises(DataValidationError, match="missing"):
        list(PurgedKFold(3).split(panel, groups=panel.assign(label_end=pd.NaT)))
    with pytest.raises(DataValidationError, match="rows"):
        list(PurgedKFold(3).split(panel.iloc[:5], groups=panel))
    with pytest.raises(ConfigError, match="exceeds"):
        list(PurgedKFold(30).split(panel, groups=panel))
    with pytest.raises(ConfigError):
        PurgedKFold(1)
    with pytest.raises(ConfigError):
        WalkForward(test_days=5, train_days=3, min_train_days=10)


def _random_walk_noise_panel(seed: int, n_tickers: int = 400, n_dates: int = 200, horizon: int = 10):
    """Label: sign of the h-day forward move of a random walk (pure noise, overlapping windows).

    Features: the date index and the ticker (scaled so neighbours are the same ticker). A
    nearest-neighbour model can only score by finding training rows whose label windows
    overlap the test row's, i.e. by leakage.
    """
    rng = np.random.default_rng(seed)
    calendar = pd.bdate_range("2020-01-01", periods=n_dates)
    prices = np.cumsum(rng.normal(size=(n_tickers, n_dates)), axis=1)
    forward_move = prices[:, horizon:] - prices[:, :-horizon]
    n_rows = n_dates - horizon
    day = np.tile(np.arange(n_rows), n_tickers)
    ticker = np.repeat(np.arange(n_tickers), n_rows)
    X = np.column_stack([day, ticker * 1000.0])
    y = (forward_move.ravel() > 0).astype(int)
    groups = pd.DataFrame({"date": calendar[day], "label_end": calendar[day + horizon]})
    return X, y, groups


def test_purging_removes_spurious_skill_that_shuffled_kfold_reports():
    X, y, groups = _random_walk_noise_panel(seed=7)
    model = KNeighborsClassifier(n_neighbors=15)
    purged = cross_val_score(model, X, y, cv=PurgedKFold(5, embargo_days=10), groups=groups, scoring="roc_auc")
    leaky = cross_val_score(model, X, y, cv=KFold(5, shuffle=True, random_state=0), scoring="roc_auc")
    assert abs(purged.mean() - 0.5) < 0.03
    assert leaky.mean() > 0.55


def test_purged_kfold_purges_after_the_block_where_a_test_label_outlasts_the_embargo():
    """A ticker with missing days stretches its test label past the embargo: the rows it spans
    after the block are purged too (a one-sided purge trained on them)."""
    calendar = pd.bdate_range("2022-01-03", periods=12)
    panel = pd.DataFrame({"date": calendar[:10], "label_end": calendar[1:11]})
    panel.loc[4, "label_end"] = calendar[9]  # fold 1 tests dates 4..5 (3 folds of 10 dates: 4, 3, 3)
    train, test = list(PurgedKFold(3, embargo_days=1).split(panel, groups=panel))[0]
    assert list(test) == [0, 1, 2, 3]
    train, test = list(PurgedKFold(3, embargo_days=1).split(panel, groups=panel))[1]
    assert list(test) == [4, 5, 6]
    assert list(train) == [0, 1, 2]  # 3: its label reaches the block; 7: embargo; 8, 9: inside row 4's label


def test_walk_forward_anchors_its_first_block_on_the_first_test_date():
    calendar = pd.bdate_range("2022-01-03", periods=40)
    panel = pd.DataFrame({"date": calendar, "label_end": calendar})
    splitter = WalkForward(test_days=5, embargo_days=2, min_train_days=10, first_test_date=calendar[23])
    folds = list(splitter.split(panel, groups=panel))
    assert [int(test[0]) for _, test in folds] == [23, 28, 33]
    assert splitter.get_n_splits(dates=panel["date"]) == 3
    with pytest.raises(ConfigError, match="first test date"):
        list(WalkForward(test_days=5, embargo_days=2, min_train_days=10, first_test_date=calendar[11]).split(
            panel, groups=panel))
