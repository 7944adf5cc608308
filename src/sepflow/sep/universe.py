"""The tradable universe: common-stock filter plus point-in-time price, liquidity and history rules.

Two kinds of rule, because they answer different questions:

* **Static rules** say what a security *is*; a ticker failing one is removed with all its
  rows. They read the TICKERS table, a snapshot taken today, so each is applied only where
  today's value also describes the past:

  - *category* (``categories``; ``keep_unknown`` for sources without TICKERS metadata):
    common stock, ETF, ADR, warrant... does not change over a security's life, so it
    applies to every ticker.
  - *exchange* (``exchanges``) applies only to names **still listed today on a named
    exchange**: ``isdelisted`` is not ``Y`` and the current exchange is not one of
    ``exempt_exchanges`` (``OTC``, ``DELISTED`` by default). For a delisted name, or one
    whose exchange now reads OTC or DELISTED, the snapshot says where it ended, not where
    it traded before: a stock that fell from NYSE to OTC before delisting would otherwise
    lose all its listed years (a survivorship leak). Those names are kept and the
    point-in-time price and liquidity rules decide their membership. A name listed today
    on an exchange outside ``exchanges`` (NYSEARCA, a foreign venue) is still removed
    with its whole history: TICKERS keeps no exchange history to do better.
  - *symbols*: an explicit list, when given.

* **Point-in-time rules** (minimum price, minimum median dollar volume, minimum history)
  depend on the market at a date. Judging them on a ticker's whole history would use
  the future (a stock that later became illiquid would vanish from its liquid past, a
  classic survivorship leak). Instead membership is reviewed at each ticker's last row
  of each calendar month from the trailing ``liquidity_window`` rows up to that row, and
  holds for the rows after it until the next review, like an index reconstitution. A
  row's membership therefore reads only rows strictly before it: the same prices cut at
  any date give the same ``in_universe`` up to that date, also when the data ends
  mid-month. Rows keep their prices (later features need the warm-up) and carry
  ``in_universe``. A ticker that is never in the universe is kept too (marked out on
  every row): whether a name will ever qualify is future information, and dropping it
  would make the panel at a date depend on later prices.

Delisted tickers stay: dropping them would bias every backtest towards survivors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import BaseModel, ConfigDict, Field

from sepflow.errors import DataValidationError
from sepflow.sep.ingest import UNKNOWN
from sepflow.sep.schema import compact_categories

COMMON_STOCK_CATEGORIES = [
    "Domestic Common Stock",
    "Domestic Common Stock Primary Class",
    "Domestic Common Stock Secondary Class",
]


class UniverseParams(BaseModel):
    """``params.yaml: universe``."""

    model_config = ConfigDict(extra="forbid")

    categories: list[str] = Field(default_factory=lambda: list(COMMON_STOCK_CATEGORIES))
    exchanges: list[str] = Field(default_factory=lambda: ["NYSE", "NASDAQ", "NYSEMKT", "BATS"])
    # Current exchanges that say nothing about where a name traded before (it fell there, or
    # was delisted): such names, and every delisted name, skip the exchange rule.
    exempt_exchanges: list[str] = Field(default_factory=lambda: ["OTC", "DELISTED"])
    # Sources without a TICKERS file get category/exchange "Unknown"; keep them unless told otherwise.
    keep_unknown: bool = True
    symbols: list[str] | None = None
    min_price: float = Field(5.0, ge=0)
    min_median_dollar_volume: float = Field(1e6, ge=0)
    liquidity_window: int = Field(63, ge=1)
    min_history_days: int = Field(252, ge=1)


@dataclass(frozen=True)
class UniverseResult:
    """The filtered panel (with ``in_universe``) and every count behind it."""

    sep: pd.DataFrame
    tickers_dropped: dict[str, int]
    rows_dropped: dict[str, int]
    rows_excluded: dict[str, int]
    # Kept tickers out of the universe on every row (point-in-time rules never passed).
    tickers_never_in_universe: int = 0

    def summary(self) -> dict[str, object]:
        in_universe = self.sep["in_universe"].to_numpy()
        return {
            "rows": len(self.sep),
            "tickers": int(self.sep["ticker"].nunique()),
            "rows_in_universe": int(in_universe.sum()),
            "tickers_dropped": dict(sorted(self.tickers_dropped.items())),
            "rows_dropped": dict(sorted(self.rows_dropped.items())),
            "rows_excluded_point_in_time": dict(sorted(self.rows_excluded.items())),
            "tickers_never_in_universe": self.tickers_never_in_universe,
        }


def _static_reasons(tickers_in_sep: pd.Index, tickers: pd.DataFrame, params: UniverseParams) -> pd.Series:
    """For each ticker in the panel: the first static rule it fails, or '' when it passes.

    The exchange rule is skipped for delisted names and names whose current exchange is in
    ``exempt_exchanges`` (see the module docstring).
    """
    columns = [c for c in ("category", "exchange", "isdelisted") if c in tickers.columns]
    meta = tickers.set_index(tickers["ticker"].astype("str"))[columns]
    meta = meta.reindex(tickers_in_sep.astype("str"))
    reason = pd.Series("", index=meta.index, dtype="str")
    category = meta["category"].fillna("").astype("str")
    exchange = meta["exchange"].fillna("").astype("str")
    delisted = (
        meta["isdelisted"].fillna("").astype("str").str.upper().eq("Y")
        if "isdelisted" in meta.columns
        else pd.Series(False, index=meta.index)
    )
    unknown = (category == UNKNOWN) & params.keep_unknown
    still_listed = ~delisted & ~exchange.isin(params.exempt_exchanges)
    reason[(exchange != UNKNOWN) & ~exchange.isin(params.exchanges) & still_listed & ~unknown] = "exchange"
    reason[(category != UNKNOWN) & ~category.isin(params.categories)] = "category"
    reason[(category == UNKNOWN) & ~params.keep_unknown] = "unknown_category"
    if params.symbols is not None:
        reason[~meta.index.isin(params.symbols)] = "not_in_symbols"
    reason[meta["category"].isna()] = "no_tickers_metadata"
    return reason


def point_in_time_membership(sep: pd.DataFrame, params: UniverseParams) -> dict[str, np.ndarray]:
    """Monthly-reviewed exclusion masks per row, using only rows at or before each review date.

    A review sits on a ticker's last row of each calendar month and reads that row and the
    trailing rows before it; a row takes the ticker's latest review strictly before it. So
    a row's membership reads only earlier rows of its own ticker, and cutting the panel at
    any date (mid-month included) leaves every earlier row's membership unchanged.

    ``sep`` is sorted by ticker then date with a categorical ticker. A row is in the universe
    when no mask is set; the masks overlap (a row can fail several rules).
    """
    n = len(sep)
    index_type = np.int32 if n < 2**31 else np.int64  # halves the transient memory on big panels
    rows = np.arange(n, dtype=index_type)
    codes = sep["ticker"].cat.codes.to_numpy()
    month = sep["date"].to_numpy().astype("datetime64[M]").view(np.int64)
    new_ticker = np.r_[True, codes[1:] != codes[:-1]]
    start = np.maximum.accumulate(np.where(new_ticker, rows, 0))
    history = rows - start + 1

    is_review = np.r_[(codes[1:] != codes[:-1]) | (month[1:] != month[:-1]), True]
    del month, new_ticker
    review = np.flatnonzero(is_review).astype(index_type)

    # Sharadar close x volume are both split-adjusted, so their product is the traded dollar value.
    dollar_volume = (sep["close"].to_numpy() * sep["volume"].to_numpy()).astype(np.float32)
    window = params.liquidity_window
    median = np.full(review.size, np.nan, np.float32)
    has_window = history[review] >= window
    if n >= window and has_window.any():
        windows = sliding_window_view(dollar_volume, window)
        median[has_window] = np.median(windows[review[has_window] - window + 1], axis=1)

    # The traded (unadjusted) price decides whether a name is a penny stock at that time.
    fail_price = sep["closeunadj"].to_numpy()[review] < params.min_price
    fail_liquidity = ~(median >= params.min_median_dollar_volume)
    fail_history = history[review] < params.min_history_days

    # Each row inherits the decision of its ticker's latest review strictly before it.
    slot = np.cumsum(is_review, dtype=index_type) - is_review - 1  # index into `review`, -1: none yet
    reviewed = (slot >= 0) & (review[np.maximum(slot, 0)] >= start)

    return {
        "not_reviewed_yet": ~reviewed,
        "history": reviewed & fail_history[slot],
        "price": reviewed & fail_price[slot],
        "liquidity": reviewed & fail_liquidity[slot],
    }


def filter_universe(sep: pd.DataFrame, tickers: pd.DataFrame, params: UniverseParams) -> UniverseResult:
    """Apply the static rules, then mark point-in-time membership; count every drop by reason.

    Only static rules remove tickers. A ticker never in the universe stays, out on every row
    (counted in ``tickers_never_in_universe``), so the panel at a date never depends on
    later prices. Raises DataValidationError when no row is left, or none is ever in the
    universe.
    """
    if not isinstance(sep["ticker"].dtype, pd.CategoricalDtype):
        sep = sep.assign(ticker=sep["ticker"].astype("category"))
    present = sep["ticker"].cat.categories
    reasons = _static_reasons(present, tickers, params).to_numpy()
    codes = sep["ticker"].cat.codes.to_numpy()
    rows_per_ticker = np.bincount(codes, minlength=len(present))

    excluded = point_in_time_membership(sep, params)
    in_universe = ~np.logical_or.reduce(list(excluded.values()))

    dropped = pd.DataFrame({"reason": reasons, "rows": rows_per_ticker})
    dropped = dropped[dropped["reason"] != ""].groupby("reason")["rows"].agg(["size", "sum"])
    keep = (reasons == "")[codes]
    kept = (sep if keep.all() else sep.loc[keep]).assign(in_universe=in_universe[keep]).reset_index(drop=True)
    kept["ticker"] = compact_categories(kept["ticker"])
    loosen = (
        "loosen params.yaml: universe (categories, exchanges, symbols, min_price, "
        "min_median_dollar_volume, min_history_days)"
    )
    if kept.empty:
        raise DataValidationError(
            f"universe filter left no rows (tickers dropped by reason: {dropped['size'].to_dict()}); {loosen}"
        )
    members = kept["in_universe"].to_numpy()
    if not members.any():
        raise DataValidationError(
            f"universe filter kept {kept['ticker'].nunique()} tickers but none is in the universe on any "
            f"date (rows excluded point in time: "
            f"{ {reason: int(mask[keep].sum()) for reason, mask in excluded.items()} }); {loosen}"
        )
    ever_in = np.bincount(kept["ticker"].cat.codes.to_numpy(), weights=members,
                          minlength=len(kept["ticker"].cat.categories)) > 0
    return UniverseResult(
        kept,
        {str(k): int(v) for k, v in dropped["size"].items()},
        {str(k): int(v) for k, v in dropped["sum"].items()},
        {reason: int(mask[keep].sum()) for reason, mask in excluded.items()},
        int((~ever_in).sum()),
    )
