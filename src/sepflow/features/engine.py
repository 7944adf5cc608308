"""Where features are computed: in this process, or partitioned by ticker on a Dask cluster.

Per-ticker features only ever look at one ticker's rows, so the panel can be cut at ticker
boundaries and each part computed anywhere; the cross-sectional ``_xs`` columns need every
in-universe ticker of a date and are added afterwards over the whole panel, with the same
``in_universe`` mask the local engine uses. Both engines therefore give byte-identical output.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sepflow.distributed import dask_client
from sepflow.features.indicators import add_cross_sectional, build_features, universe_mask
from sepflow.features.spec import FeatureParams
from sepflow.progress import progress


def ticker_partitions(sep: pd.DataFrame, n_parts: int) -> list[pd.DataFrame]:
    """Cut a panel sorted by ticker into about ``n_parts`` row-balanced slices at ticker boundaries."""
    tickers = sep["ticker"].to_numpy()
    starts = np.flatnonzero(np.r_[True, tickers[1:] != tickers[:-1]]) if len(sep) else np.array([0])
    targets = np.linspace(0, len(sep), n_parts + 1)[1:-1]
    cuts = np.unique(starts[np.searchsorted(starts, targets)].clip(max=len(sep)))
    bounds = [0, *[int(c) for c in cuts if 0 < c < len(sep)], len(sep)]
    return [sep.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def compute_features(sep: pd.DataFrame, params: FeatureParams) -> pd.DataFrame:
    """``build_features`` on the configured engine (``_xs`` ranked among ``in_universe`` rows)."""
    if params.engine == "local":
        return build_features(sep, params)
    from distributed import as_completed

    with dask_client(params.dask) as client:
        n_workers = max(1, len(client.scheduler_info()["workers"]))
        parts = ticker_partitions(sep, n_workers * params.dask.partitions_per_worker)
        futures = client.map(build_features, client.scatter(parts), params=params, cross_sectional=False,
                             pure=False)
        for _ in progress(as_completed(futures), desc="features", total=len(futures), unit="part"):
            pass  # the bar advances as partitions finish; gather keeps their order
        frames = client.gather(futures)
    frame = pd.concat(frames, ignore_index=True)
    return add_cross_sectional(frame, params, universe_mask(sep))
