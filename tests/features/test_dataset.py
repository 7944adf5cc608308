"""assemble_features_frame and DatasetBuilder: file round trip, filters, drop counts, refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sepflow.errors import ConfigError, DataValidationError
from sepflow.features.dataset import Dataset, DatasetBuilder, assemble_features_frame
from sepflow.features.spec import (
    FeatureParams,
    TargetParams,
    feature_names,
    feature_signature,
)
from sepflow.features.targets import LABEL3_CLASSES
from sepflow.io import write_json, write_panel
from sepflow.sep.synthetic import SyntheticParams, generate_market
from sepflow.sep.universe import UniverseParams, filter_universe

FPARAMS = FeatureParams(sma_windows=[5, 20], lookback_52w=60)
TPARAMS = TargetParams(horizons=[1, 5])



@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_panel) -> tuple[str, str, pd.DataFrame, dict]:
    frame, manifest = assemble_features_frame(tiny_panel(), FPARAMS, TPARAMS)
    root = tmp_path_factory.mktemp("processed")
    write_panel(frame, root / "features.parquet")
    write_json(manifest, root / "features_manifest.json")
    return str(root / "features.parquet"), str(root / "features_manifest.json"), frame, manifest


def test_frame_layout(files) -> None:
    _, _, frame, _ = files
    names = feature_names(FPARAMS)
    assert list(frame.columns[:3]) == ["ticker", "date", "in_universe"]
    assert list(frame.columns[3 : 3 + len(names)]) == names
    assert list(frame.columns[3 + len(names) :]) == [
        "return_1d", "dir_1d", "label3_1d", "label_end_1d", "return_5d", "dir_5d", "label3_5d", "label_end_5d",
    ]  # fmt: skip


def test_build_from_file(files) -> None:
    path, manifest_path, frame, _ = files
    ds = DatasetBuilder(path, manifest_path, expected_signature=feature_signature(FPARAMS)).build(
        "dir_5d", ["rsi_14", "ret_5d", "macd"]
    )
    assert isinstance(ds, Dataset)
    assert list(ds.X.columns) == ["rsi_14", "ret_5d", "macd"] and ds.feature_names == (
        "rsi_14",
        "ret_5d",
        "macd",
    )
    assert (ds.X.dtypes == np.float32).all() and ds.y.dtype == np.float32
    assert (
        len(ds.X) == len(ds.y) == len(ds.dates) == len(ds.tickers) == len(ds.label_end) == ds.meta["n_rows"]
    )
    assert not ds.X.isna().any().any() and not ds.y.isna().any() and not ds.label_end.isna().any()
    assert (ds.label_end > ds.dates).all()
    assert isinstance(ds.X.index, pd.RangeIndex)
    meta = ds.meta
    assert meta["kind"] == "classification" and meta["horizon"] == 5 and meta["classes"] == [0.0, 1.0]
    assert meta["n_rows_in"] == len(frame)
    assert meta["n_rows_in"] - sum(meta["dropped"].values()) == meta["n_rows"]
    assert meta["dropped"]["not_in_universe"] == int((~frame["in_universe"]).sum())
    assert meta["n_tickers"] == 4 and meta["date_min"] < meta["date_max"]


def test_file_and_frame_give_the_same_dataset(files) -> None:
    path, manifest_path, frame, manifest = files
    from_file = DatasetBuilder(path, manifest_path).build("label3_1d")
    from_frame = DatasetBuilder.from_frame(frame, manifest).build("label3_1d")
    pd.testing.assert_frame_equal(from_file.X, from_frame.X)
    pd.testing.assert_series_equal(from_file.y, from_frame.y)
    pd.testing.assert_series_equal(from_file.label_end, from_frame.label_end, check_dtype=False)
    assert list(from_file.y.cat.categories) == list(LABEL3_CLASSES) and from_file.y.cat.ordered
    assert from_file.feature_names == tuple(manifest["feature_names"])
    assert from_file.meta == from_frame.meta


def test_filters_can_be_switched_off(files) -> None:
    _, _, frame, manifest = files
    builder = DatasetBuilder.from_frame(frame, manifest)
    everything = builder.build("return_1d", ["ret_1d"], universe_only=False, dropna=False)
    assert everything.meta["n_rows"] == len(frame) and everything.meta["dropped"] == {}
    assert everything.y.isna().sum() == 4 and everything.X["ret_1d"].isna().sum() == 4
    universe = builder.build("return_1d", ["ret_1d"], dropna=False)
    assert universe.meta["n_rows"] == int(frame["in_universe"].sum())
    without_column = DatasetBuilder.from_frame(frame.drop(columns=["in_universe"]), manifest).build(
        "return_1d"
    )
    assert (
        "not_in_universe" not in without_column.meta["dropped"] and not without_column.meta["universe_only"]
    )


@pytest.mark.parametrize(
    "target, features, error",
    [
        ("nope_5d", None, ConfigError),
        ("dir_5d", ["rsi_14", "unknown"], ConfigError),
        ("dir_5d", ["rsi_14", "rsi_14"], ConfigError),
        ("dir_5d", [], ConfigError),
    ],
)
def test_bad_requests_are_refused(files, target, features, error) -> None:
    _, _, frame, manifest = files
    with pytest.raises(error):
        DatasetBuilder.from_frame(frame, manifest).build(target, features)


def test_stale_or_tampered_features_are_refused(files, tmp_path) -> None:
    path, manifest_path, frame, _ = files
    with pytest.raises(DataValidationError, match="signature"):
        DatasetBuilder(path, manifest_path, expected_signature=feature_signature(FeatureParams()))
    write_panel(frame.drop(columns=["macd"]), tmp_path / "missing.parquet")
    with pytest.raises(DataValidationError, match="missing"):
        DatasetBuilder(tmp_path / "missing.parquet", manifest_path)
    write_panel(frame.astype({"rsi_14": "float64"}), tmp_path / "retyped.parquet")
    with pytest.raises(DataValidationError, match="rsi_14"):
        DatasetBuilder(tmp_path / "retyped.parquet", manifest_path)


def test_assembled_frame_at_or_before_a_date_ignores_later_prices(tiny_panel) -> None:
    sep = tiny_panel(seed=3)
    cutoff = sep["date"].iloc[100]
    later = (sep["date"] > cutoff).to_numpy()
    moved = sep.copy()
    factors = np.random.default_rng(4).uniform(0.5, 1.5, (later.sum(), 1))
    prices = ["open", "high", "low", "close", "closeadj", "volume"]
    moved.loc[later, prices] = moved.loc[later, prices].to_numpy() * factors
    before, manifest = assemble_features_frame(sep, FPARAMS, TPARAMS)
    after, _ = assemble_features_frame(moved, FPARAMS, TPARAMS)
    names = manifest["feature_names"]
    past = ~later
    np.testing.assert_array_equal(
        after.loc[past, names].to_numpy().view(np.uint32), before.loc[past, names].to_numpy().view(np.uint32)
    )
    for target, spec in manifest["targets"].items():
        ended = (before[spec["label_end"]] <= cutoff).to_numpy()
        assert ended.any() and after.loc[ended, target].equals(before.loc[ended, target]), target


# --- point-in-time universe: train/serve parity ----------------------------------------------


UNIVERSE = UniverseParams(min_history_days=60, liquidity_window=20)


@pytest.fixture(scope="module")
def market():
    return generate_market(SyntheticParams(n_tickers=40, n_days=400, seed=11))


def pipeline_frame(sep: pd.DataFrame, tickers: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """What filter_sep then build_features produce from these prices."""
    universe = filter_universe(sep, tickers, UNIVERSE)
    return assemble_features_frame(universe.sep, FeatureParams(), TPARAMS)


def test_features_on_data_cut_at_any_date_equal_the_full_run(market) -> None:
    """Train/serve parity: the frame built from prices up to T equals the full run's rows up to T
    (membership and every feature, cross-sectional ranks included), at month ends, mid-month,
    the first day of a month and the day before the end."""
    full, manifest = pipeline_frame(market.sep, market.tickers)
    names = manifest["feature_names"]
    assert full["in_universe"].any() and not full["in_universe"].all()
    calendar = pd.DatetimeIndex(np.sort(market.sep["date"].unique()))
    month = calendar.to_numpy().astype("datetime64[M]")
    month_end = calendar[np.r_[month[1:] != month[:-1], True]]
    month_start = calendar[np.r_[True, month[1:] != month[:-1]]]
    for cut in [month_end[4], calendar[170], month_start[10], calendar[287], month_end[-2], calendar[-2]]:
        part = market.sep.loc[market.sep["date"] <= cut].reset_index(drop=True)
        got, _ = pipeline_frame(part, market.tickers)
        expected = full.loc[full["date"] <= cut].reset_index(drop=True)
        keys = ["ticker", "date", "in_universe"]
        pd.testing.assert_frame_equal(got[keys].astype({"ticker": str}), expected[keys].astype({"ticker": str}))
        members = expected["in_universe"].to_numpy()
        assert members.sum() > 100 and expected.loc[members, "ret_20d_xs"].notna().sum() > 100
        np.testing.assert_array_equal(
            got.loc[members, names].to_numpy().view(np.uint32),
            expected.loc[members, names].to_numpy().view(np.uint32),
            err_msg=f"features of in-universe rows differ when the data ends on {cut:%Y-%m-%d}",
        )
        # Out of the universe too: per-ticker features match and every _xs is NaN.
        np.testing.assert_array_equal(got[names].to_numpy().view(np.uint32), expected[names].to_numpy().view(np.uint32))
        assert got.loc[~members, [n for n in names if n.endswith("_xs")]].isna().all().all()


def test_removing_a_never_eligible_ticker_changes_no_other_ticker(market) -> None:
    full, manifest = pipeline_frame(market.sep, market.tickers)
    ever = full.groupby("ticker", observed=True)["in_universe"].any()
    never = sorted(ever.index[~ever])
    assert never, "the synthetic market has penny, illiquid and OTC names that never qualify"
    assert set(never) <= set(full["ticker"].astype(str))  # kept in the panel, marked out
    gone = never[0]
    part = market.sep.loc[(market.sep["ticker"] != gone).to_numpy()].reset_index(drop=True)
    got, _ = pipeline_frame(part, market.tickers)
    expected = full.loc[(full["ticker"] != gone).to_numpy()].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        got.astype({"ticker": str}), expected.astype({"ticker": str}), check_exact=True
    )
