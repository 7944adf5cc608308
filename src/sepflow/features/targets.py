"""Forward-looking targets, each carrying the date of the last price it uses (``label_end``).

For a horizon h counted in the ticker's own rows, the row at t gets

- ``return_<h>d``  price[t+h] / price[t] - 1 (float32);
- ``dir_<h>d``     1.0 if that return > 0 else 0.0 (float32);
- ``label3_<h>d``  BEARISH / NEUTRAL / BULLISH around ±threshold(h) (ordered categorical);
- ``label_end_<h>d`` the date of row t+h.

Where row t+h does not exist (the last h rows of a ticker) every target is missing and
``label_end`` is NaT. Where it exists but a price is missing, the targets are missing and
``label_end`` still names the row t+h. Labels are derived from the stored float32 return, so
anyone recomputing them from ``return_<h>d`` gets the same classes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sepflow.features.indicators import PanelLayout, panel_group_codes
from sepflow.features.spec import TargetParams

LABEL3_CLASSES = ("BEARISH", "NEUTRAL", "BULLISH")
LABEL3_DTYPE = pd.CategoricalDtype(list(LABEL3_CLASSES), ordered=True)


def build_targets(sep: pd.DataFrame, params: TargetParams) -> pd.DataFrame:
    """Targets for a SEP panel sorted by ticker then date: ticker, date, then per horizon
    ``return_<h>d, dir_<h>d, label3_<h>d, label_end_<h>d``; row order is the panel's."""
    codes = panel_group_codes(sep, (params.price_column,))
    layout = PanelLayout.from_codes(codes)
    price = sep[params.price_column].to_numpy(dtype=np.float64)
    dates = sep["date"].to_numpy()
    rows = np.arange(len(sep))
    ticker_rows = layout.lengths[layout.group]

    # reset_index keeps the key columns as copy-on-write references to the input's, no copy.
    columns: dict[str, object] = {
        "ticker": sep["ticker"].reset_index(drop=True),
        "date": sep["date"].reset_index(drop=True),
    }
    for h in params.horizons:
        complete = layout.position + h < ticker_rows
        ahead = np.where(complete, rows + h, rows)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            change = price[ahead] / price
            change -= 1.0
            ret = change.astype(np.float32)
        del change
        ret[~(complete & np.isfinite(ret))] = np.nan
        missing = np.isnan(ret)
        # np.float64, not a Python float, so the float32 returns are compared in float64
        threshold = np.float64(params.threshold(h))
        label_codes = np.ones(ret.size, dtype=np.int8)  # NEUTRAL
        label_codes[ret > threshold] = 2
        label_codes[ret < -threshold] = 0
        label_codes[missing] = -1
        direction = (ret > 0).astype(np.float32)
        direction[missing] = np.nan
        end = dates[ahead]
        end[~complete] = np.datetime64("NaT")
        columns[f"return_{h}d"] = ret
        columns[f"dir_{h}d"] = direction
        columns[f"label3_{h}d"] = pd.Categorical.from_codes(label_codes, dtype=LABEL3_DTYPE)
        columns[f"label_end_{h}d"] = end
    return pd.DataFrame(columns, copy=False)  # fresh arrays: no need for pandas to copy them
