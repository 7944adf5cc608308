"""The dask engine gives exactly the local engine's output."""

from __future__ import annotations

import pandas as pd
import pytest

from sepflow.features.dataset import assemble_features_frame
from sepflow.features.engine import compute_features, ticker_partitions
from sepflow.features.spec import FeatureParams, TargetParams, feature_signature
from sepflow.sep.synthetic import SyntheticParams, generate_market
from sepflow.sep.universe import UniverseParams, filter_universe


@pytest.fixture(scope="module")
def sep() -> pd.DataFrame:
    """The universe panel build_features reads: with ``in_universe``, some tickers never in it."""
    market = generate_market(SyntheticParams(n_tickers=40, n_days=400))
    universe = filter_universe(market.sep, market.tickers, UniverseParams(min_history_days=60, liquidity_window=20))
    return universe.sep.assign(ticker=universe.sep["ticker"].astype("str"))


def test_partitions_cut_at_ticker_boundaries(sep: pd.DataFrame) -> None:
    parts = ticker_partitions(sep, 5)
    assert len(parts) == 5
    assert sum(len(p) for p in parts) == len(sep)
    assert pd.concat(parts).index.equals(sep.index)
    seen = [set(p["ticker"]) for p in parts]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1:])


def test_engine_is_not_part_of_the_signature() -> None:
    assert feature_signature(FeatureParams(engine="dask")) == feature_signature(FeatureParams())


@pytest.mark.slow
def test_dask_engine_matches_local_on_a_two_worker_cluster(sep: pd.DataFrame) -> None:
    local = FeatureParams()
    distributed = FeatureParams(engine="dask", dask={"n_workers": 2, "partitions_per_worker": 3})
    expected = compute_features(sep, local)
    got = compute_features(sep, distributed)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    # The cross-sectional ranks are taken among in-universe rows in both engines.
    assert expected.loc[~sep["in_universe"].to_numpy(), "ret_5d_xs"].isna().all()
    assert expected.loc[sep["in_universe"].to_numpy(), "ret_5d_xs"].notna().any()
    frame_local, manifest_local = assemble_features_frame(sep, local, TargetParams())
    frame_dask, manifest_dask = assemble_features_frame(sep, distributed, TargetParams())
    pd.testing.assert_frame_equal(frame_dask, frame_local, check_exact=True)
    assert manifest_dask == manifest_local
