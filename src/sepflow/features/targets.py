"""Forward-looking targets, each carrying the date of the last price it uses (``label_end``).

For a horizon h counted in the ticker's own rows, the row at t gets

- ``return_<h>d``  price[t+h] / price[t] - 1 (float32);
- ``dir_<h>d``     1.0 if that return > 0 else 0.0 (float32);
- ``label3_<h>d``  BEARISH / NEUTRAL / BULLISH around ±threshold(h) (ordered categorical); by
  default the band is in units of the row's trailing daily volatility (known at t), so
  "BULLISH" means a move that is large *for that stock*. A fixed band would make label3 a
  volatility forecast: volatility clusters, so even a market without alpha would look
  predictable. Rows without a full volatility window have no label3;
- ``label_end_<h>d`` the date of row t+h.

Where row t+h does not exist (the last h rows of a ticker) every target is missing and
``label_end`` is NaT. Where it exists but a price is missing, the targets are missing and
``label_end`` still names the row t+h. Labels are derived from the stored float32 return, so
anyone recomputing them from ``return_<h>d`` gets the same classes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sepflow.features.indicators import PanelLayout, _Windows, panel_group_codes
from sepflow.features.spec import TargetParams

LABEL3_CLASSES = ("BEARISH", "NEUTRAL", "BULLISH")
LABEL3_DTYPE = pd.CategoricalDtype(list(LABEL3_CLASSES), ordered=True)


def _band_unit(price: np.ndarray, layout: PanelLayout, params: TargetParams) -> np.ndarray | np.float64:
    """Per row: the trailing daily volatility (std of log returns over rows up to t), or 1."""
    if params.label3_scaling != "volatility":
        return np.float64(1.0)
    matrix = layout.to_matrix(price)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ret = np.log(matrix[:, 1:] / matrix[:, :-1])
    log_ret = np.concatenate([np.full((matrix.shape[0], 1), np.nan), log_ret], axis=1)
    vol = np.sqrt(_Windows(log_ret).var(params.label3_vol_window, ddof=1))
    vol[vol == 0] = np.nan  # a flat window gives no scale
    return layout.to_rows(vol)


def build_targets(sep: pd.DataFrame, params: TargetParams) -> pd.DataFrame:
    """Targets for a SEP panel sorted by ticker then date: ticker, date, then per horizon
    ``return_<h>d, dir_<h>d, label3_<h>d, label_end_<h>d``; row order is the panel's."""
    codes = panel_group_codes(sep, (params.price_column,))
    layout = PanelLayout.from_codes(codes)
    price = sep[params.price_column].to_numpy(dtype=np.float64)
    dates = sep["date"].to_numpy()
    rows = np.arange(len(sep))
    ticker_rows = layout.lengths[layout.group]
    band_unit = _band_unit(price, layout, params)

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
        threshold = np.float64(params.threshold(h)) * band_unit
        label_codes = np.ones(ret.size, dtype=np.int8)  # NEUTRAL
        label_codes[ret > threshold] = 2
        label_codes[ret < -threshold] = 0
        label_codes[missing | np.isnan(threshold)] = -1
        direction = (ret > 0).astype(np.float32)
        direction[missing] = np.nan
        end = dates[ahead]
        end[~complete] = np.datetime64("NaT")
        columns[f"return_{h}d"] = ret
        columns[f"dir_{h}d"] = direction
        columns[f"label3_{h}d"] = pd.Categorical.from_codes(label_codes, dtype=LABEL3_DTYPE)
        columns[f"label_end_{h}d"] = end
    return pd.DataFrame(columns, copy=False)  # fresh arrays: no need for pandas to copy them
