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

Delistings (CRSP convention). A ticker whose last price comes before the panel's last date
is delisted at that price: holders then get ``delisting_return`` (params) on top of it. Its
last h rows, whose row t+h does not exist, get the return to the last price compounded with
the delisting return, ``price[last] / price[t] * (1 + delisting_return) - 1``, with
``label_end`` = the last price's date and dir/label3 derived from that return as usual; the
last row's ``return_1d`` is the delisting return itself, the close-to-close return a daily
backtest books from that row to the next trading date. Without it those rows would lose
their targets and drop out of training and every backtest: survivorship bias towards names
that kept trading. ``delisting_return: null`` turns the convention off.

A ticker still trading on the panel's last date keeps missing targets (``label_end`` NaT)
on its last h rows: its future is unknown. Where row t+h exists but a price is missing,
the targets are missing and ``label_end`` still names the row t+h. Labels are derived from
the stored float32 return, so anyone recomputing them from ``return_<h>d`` gets the same
classes.
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


class _Horizons:
    """Forward returns of one panel, per horizon, with the CRSP delisting convention."""

    def __init__(self, sep: pd.DataFrame, params: TargetParams) -> None:
        codes = panel_group_codes(sep, (params.price_column,))
        self.layout = PanelLayout.from_codes(codes)
        self.price = sep[params.price_column].to_numpy(dtype=np.float64)
        self.dates = sep["date"].to_numpy()
        self.rows = np.arange(len(sep))
        self.ticker_rows = self.layout.lengths[self.layout.group]
        # Delisted tickers: the last price comes before the panel's last date.
        self.last = self.rows - self.layout.position + self.ticker_rows - 1  # each row's ticker's last row
        self.delisting = params.delisting_return
        self.delisted = (
            self.dates[self.last] < self.dates.max()
            if self.delisting is not None and len(sep)
            else np.zeros(len(sep), dtype=bool)
        )

    def forward(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        """(float32 return, label_end) per row at horizon ``h``; NaN / NaT where unknown."""
        rows, delisting = self.rows, self.delisting
        complete = self.layout.position + h < self.ticker_rows
        settled = complete | self.delisted  # incomplete rows of a delisted name end at its last price
        ahead = np.where(complete, rows + h, np.where(self.delisted, self.last, rows))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            change = self.price[ahead] / self.price
            if delisting is not None:
                exits = ~complete & self.delisted
                change[exits] *= 1.0 + delisting  # compounded with the delisting return
            change -= 1.0
            if delisting is not None:
                change[exits & (ahead == rows)] = delisting  # the last row: exactly the delisting return
            ret = change.astype(np.float32)
        del change
        ret[~(settled & np.isfinite(ret))] = np.nan
        end = self.dates[ahead]
        end[~settled] = np.datetime64("NaT")
        return ret, end


def build_targets(sep: pd.DataFrame, params: TargetParams) -> pd.DataFrame:
    """Targets for a SEP panel sorted by ticker then date: ticker, date, then per horizon
    ``return_<h>d, dir_<h>d, label3_<h>d, label_end_<h>d``; row order is the panel's."""
    horizons = _Horizons(sep, params)
    band_unit = _band_unit(horizons.price, horizons.layout, params)

    # reset_index keeps the key columns as copy-on-write references to the input's, no copy.
    columns: dict[str, object] = {
        "ticker": sep["ticker"].reset_index(drop=True),
        "date": sep["date"].reset_index(drop=True),
    }
    for h in params.horizons:
        ret, end = horizons.forward(h)
        missing = np.isnan(ret)
        # np.float64, not a Python float, so the float32 returns are compared in float64
        threshold = np.float64(params.threshold(h)) * band_unit
        label_codes = np.ones(ret.size, dtype=np.int8)  # NEUTRAL
        label_codes[ret > threshold] = 2
        label_codes[ret < -threshold] = 0
        label_codes[missing | np.isnan(threshold)] = -1
        direction = (ret > 0).astype(np.float32)
        direction[missing] = np.nan
        columns[f"return_{h}d"] = ret
        columns[f"dir_{h}d"] = direction
        columns[f"label3_{h}d"] = pd.Categorical.from_codes(label_codes, dtype=LABEL3_DTYPE)
        columns[f"label_end_{h}d"] = end
    return pd.DataFrame(columns, copy=False)  # fresh arrays: no need for pandas to copy them


def daily_returns(sep: pd.DataFrame, params: TargetParams) -> pd.DataFrame:
    """``ticker, date, return``: each row's close-to-close return (``params.price_column``) to the
    ticker's next row, what a daily book earns holding the name from that close.

    Exactly ``build_targets``' ``return_1d`` whatever ``params.horizons`` holds: a delisted name's
    last row carries the delisting return, a live name's last row is NaN (unknown yet).
    """
    ret, _ = _Horizons(sep, params).forward(1)
    return pd.DataFrame(
        {"ticker": sep["ticker"].reset_index(drop=True), "date": sep["date"].reset_index(drop=True), "return": ret},
        copy=False,
    )
