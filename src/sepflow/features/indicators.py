"""Vectorised per-ticker features on a SEP panel sorted by ticker then date.

How the work is laid out: the panel's rows go into a (tickers × longest history) float64
matrix, one ticker per matrix row, left-aligned and padded with NaN at the end. Every kernel
runs along axis 1 (prefix sums, scipy's ``lfilter`` for EMAs, ndimage filters for rolling
extremes), which buys three properties at once:

- tickers never mix: a ticker's own features (all but the cross-sectional ``*_xs``) are
  bit-for-bit those of the ticker computed alone;
- causality: the value in column p comes from columns <= p only (trailing windows, causal
  recursions), so a feature at date t uses prices at or before t;
- no Python loop over rows or tickers.

The cross-sectional ``*_xs`` features rank (or z-score) a feature per date among the rows
**in the universe** on that date (the panel's ``in_universe`` column, when it has one) and
are NaN on the other rows. Who is ranked at t is thus decided by point-in-time membership at
t, never by later data, and a ticker outside the universe changes no other ticker's value:
features of the panel cut at any date equal the full panel's up to that date.

When every ticker has the same number of rows the matrix is a reshape (no copy). A ragged
panel (IPOs and delistings: histories from weeks to decades) is cut into buckets of tickers with
similar history lengths (``history_buckets``), each with its own matrix, so padding stays within
``MAX_PADDING`` of the rows and cost and memory follow rows, not tickers × the longest history.
Every kernel works along a matrix row, so a ticker's features do not depend on its bucket.

Windows count the ticker's own rows (trading days). No partial windows: a w-row feature is
NaN until w observations exist, and a NaN inside a window makes that window NaN. EMAs skip
NaN inputs (the state carries over) and start once ``span`` values exist, seeded with their
mean. Price levels never enter a feature except as ratios within one ticker's window, because
closeadj/close levels are back-adjusted with later corporate actions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy.ndimage import maximum_filter1d, minimum_filter1d

from sepflow.errors import DataValidationError
from sepflow.features.manifest import UNIVERSE_COLUMN  # point-in-time membership, from filter_sep
from sepflow.features.spec import FeatureParams, feature_names

PRICE_COLUMNS = ("open", "high", "low", "close", "closeadj", "volume")


# --- the panel contract and its matrix layout ------------------------------------------------


def panel_group_codes(sep: pd.DataFrame, required: Sequence[str]) -> np.ndarray:
    """Ticker index (0..n_tickers-1, in panel order) per row, after checking the input contract.

    Raises DataValidationError when a column is missing, a ticker or date is missing, or rows
    are not sorted by ticker then strictly increasing date.
    """
    missing = [c for c in ("ticker", "date", *required) if c not in sep.columns]
    if missing:
        raise DataValidationError(f"SEP panel lacks columns {missing}; it has {list(sep.columns)}")
    if not pd.api.types.is_datetime64_dtype(sep["date"].dtype):
        raise DataValidationError(f"SEP column 'date' must be a naive datetime64, got {sep['date'].dtype}")
    codes, uniques = pd.factorize(sep["ticker"])
    bad_rows = np.flatnonzero((codes < 0) | sep["date"].isna().to_numpy())
    if bad_rows.size:
        raise DataValidationError(
            f"SEP panel has {bad_rows.size} rows without ticker or date, e.g. rows {bad_rows[:5].tolist()}"
        )
    stamps = sep["date"].to_numpy().view(np.int64)
    step = np.diff(codes)
    unsorted = np.flatnonzero((step < 0) | ((step == 0) & (np.diff(stamps) <= 0)))
    if unsorted.size or not pd.Index(uniques).is_monotonic_increasing:
        at = int(unsorted[0]) if unsorted.size else None
        where = (
            f"first at rows {at}-{at + 1}: {sep.iloc[at : at + 2][['ticker', 'date']].to_dict('records')}"
            if at is not None
            else "tickers are grouped but not in ascending order"
        )
        raise DataValidationError(
            f"SEP panel must be sorted by ticker then strictly increasing date; {where}"
        )
    return codes.astype(np.int64, copy=False)


def calendar_days(dates: pd.Series) -> np.ndarray:
    """Days since 1970-01-01 (floor), as int64."""
    return dates.to_numpy().astype("datetime64[D]").view(np.int64)


@dataclass(frozen=True)
class PanelLayout:
    """Where each panel row sits in a (groups × width) matrix; groups are left-aligned."""

    group: np.ndarray  # row → group index
    position: np.ndarray  # row → index within its group, in panel order
    lengths: np.ndarray  # group → number of rows
    width: int  # longest group
    flat: np.ndarray | None  # row → flat matrix cell; None when the matrix is a plain reshape

    @classmethod
    def from_codes(cls, codes: np.ndarray) -> PanelLayout:
        """Layout for group codes 0..G-1 (every code present); rows keep panel order within a group."""
        n = codes.size
        lengths = np.bincount(codes)
        starts = np.cumsum(lengths) - lengths
        in_order = bool(np.all(codes[1:] >= codes[:-1]))
        if in_order:
            position = np.arange(n) - starts[codes]
        else:
            order = np.argsort(codes, kind="stable")
            position = np.empty(n, dtype=np.int64)
            position[order] = np.arange(n) - np.repeat(starts, lengths)
        width = int(lengths.max()) if n else 0
        rectangular = in_order and bool(np.all(lengths == width))
        flat = None if rectangular else codes * width + position
        return cls(codes, position, lengths, width, flat)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.lengths.size, self.width)

    def to_matrix(self, values: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        """Rows → matrix, NaN where a group has no row. May be a view of ``values``."""
        values = np.asarray(values, dtype=dtype)
        if self.flat is None:
            return values.reshape(self.shape)
        out = np.full(self.shape[0] * self.shape[1], np.nan, dtype=dtype)
        out[self.flat] = values
        return out.reshape(self.shape)

    def to_rows(self, matrix: np.ndarray) -> np.ndarray:
        """Matrix → one value per panel row, in panel order."""
        cells = matrix.reshape(-1)
        return cells if self.flat is None else cells[self.flat]


# --- kernels: (groups × width) float64 matrices in, same shape out ---------------------------


def _lag(x: np.ndarray, k: int) -> np.ndarray:
    """x shifted k columns right (the value k rows earlier in the ticker)."""
    out = np.full_like(x, np.nan)
    if k < x.shape[1]:
        out[:, k:] = x[:, :-k]
    return out


def _ratio(x: np.ndarray, k: int) -> np.ndarray:
    """x / (x k columns earlier)."""
    out = np.full_like(x, np.nan)
    if k < x.shape[1]:
        np.divide(x[:, k:], x[:, :-k], out=out[:, k:])
    return out


def _change(x: np.ndarray, k: int) -> np.ndarray:
    """x / (x k columns earlier) - 1."""
    out = _ratio(x, k)
    out -= 1.0
    return out


def _relative(x: np.ndarray, base: np.ndarray) -> np.ndarray:
    """x / base - 1, written over ``base`` (a temporary of the caller's) to spare an allocation."""
    np.divide(x, base, out=base)
    base -= 1.0
    return base


def _trailing(prefix: np.ndarray, w: int) -> np.ndarray:
    """Trailing w-column sums from inclusive prefix sums: prefix[p] - prefix[p-w]."""
    out = prefix.copy()
    out[:, w:] -= prefix[:, :-w]
    return out


class _Windows:
    """Trailing-window mean and variance of one matrix, sharing prefix sums across windows.

    Values are centred on each ticker's first valid value before summing, which keeps prefix
    sums small for prices that drift little; windows whose values are all equal get a variance
    of exactly zero (rounding in prefix differences would otherwise invent one). A window with
    fewer than w valid values is NaN.
    """

    def __init__(self, x: np.ndarray) -> None:
        valid = ~np.isnan(x)
        first = np.argmax(valid, axis=1)
        self._ref = np.nan_to_num(x[np.arange(x.shape[0]), first])[:, None]
        self._centred = x - self._ref
        self._centred[~valid] = 0.0
        self._count = np.cumsum(valid, axis=1, dtype=np.int32)
        self._incomplete: dict[int, np.ndarray] = {}

    @cached_property
    def _s1(self) -> np.ndarray:
        return np.cumsum(self._centred, axis=1)

    @cached_property
    def _s2(self) -> np.ndarray:
        return np.cumsum(np.square(self._centred), axis=1)

    @cached_property
    def _moves(self) -> np.ndarray:
        moves = np.zeros_like(self._centred)
        np.subtract(self._centred[:, 1:], self._centred[:, :-1], out=moves[:, 1:])
        np.abs(moves, out=moves)
        return np.cumsum(moves, axis=1, out=moves)

    def _partial(self, w: int) -> np.ndarray:
        if w not in self._incomplete:
            self._incomplete[w] = _trailing(self._count, w) < w
        return self._incomplete[w]

    def mean(self, w: int) -> np.ndarray:
        out = _trailing(self._s1, w)
        out /= w
        out += self._ref
        out[self._partial(w)] = np.nan
        return out

    def var(self, w: int, ddof: int) -> np.ndarray:
        """Variance with ``ddof``; needs w >= 2."""
        s1 = _trailing(self._s1, w)
        np.square(s1, out=s1)
        s1 /= w
        out = _trailing(self._s2, w)
        out -= s1
        del s1
        np.maximum(out, 0.0, out=out)
        out /= w - ddof
        out[_trailing(self._moves, w - 1) == 0.0] = 0.0
        out[self._partial(w)] = np.nan
        return out


def _sqrt(x: np.ndarray) -> np.ndarray:
    """Square root in place."""
    return np.sqrt(x, out=x)


def _ema(x: np.ndarray, span: int, alpha: float) -> np.ndarray:
    """EMA y = (1 - alpha) y_prev + alpha x, seeded with the mean of the first ``span`` values.

    NaN inputs are skipped (the state carries over) and give NaN outputs; the result is NaN
    until ``span`` valid values exist. One lfilter call runs every ticker's recursion; when a
    ticker has a NaN before a valid value, valid values are first packed to the left of each
    matrix row so every recursion starts at column 0.
    """
    # Imported here: scipy.signal's import takes 1-2 s, which every stage that only reads
    # features (they import this module through the feature engine) would pay for nothing.
    from scipy.signal import lfilter

    valid = ~np.isnan(x)
    # Columns NaN for every ticker (the warm-up of a lag or of a slower EMA, as tickers are
    # left-aligned) are cut off first, so the usual input needs no packing.
    has_value = valid.any(axis=0)
    if not has_value.any():
        return np.full_like(x, np.nan)
    lead = int(np.argmax(has_value))
    core, valid = x[:, lead:], valid[:, lead:]
    packed_cell = None
    if np.any(valid[:, 1:] & ~valid[:, :-1]):
        rank = np.cumsum(valid, axis=1) - 1
        rank_invalid = valid.sum(axis=1, keepdims=True) + np.cumsum(~valid, axis=1) - 1
        rank = np.where(valid, rank, rank_invalid) + np.arange(core.shape[0])[:, None] * core.shape[1]
        packed_cell = rank.ravel()
        del rank, rank_invalid
        packed = np.empty(core.size)
        packed[packed_cell] = core.ravel()
        core = packed.reshape(core.shape)
    out = np.full_like(x, np.nan)
    smoothed = out[:, lead:]
    if span <= core.shape[1]:
        seed = core[:, :span].mean(axis=1)
        smoothed[:, span - 1] = seed
        if span < core.shape[1]:
            smoothed[:, span:] = lfilter(
                [alpha], [1.0, alpha - 1.0], core[:, span:], axis=1, zi=((1.0 - alpha) * seed)[:, None]
            )[0]
    if packed_cell is not None:
        smoothed[...] = smoothed.ravel()[packed_cell].reshape(core.shape)
        smoothed[~valid] = np.nan
    return out


def _rolling_extreme(x: np.ndarray, w: int, highest: bool) -> np.ndarray:
    """Trailing w-column max (or min); NaN unless all w values exist."""
    fill, filt = (-np.inf, maximum_filter1d) if highest else (np.inf, minimum_filter1d)
    missing = np.isnan(x)
    # origin (w-1)//2 turns ndimage's centred window into the trailing window [p-w+1, p].
    out = filt(np.where(missing, fill, x), size=w, axis=1, origin=(w - 1) // 2)
    count = np.cumsum(~missing, axis=1, dtype=np.int32)
    out[_trailing(count, w) < w] = np.nan
    return out


def _rsi(price: np.ndarray, n: int) -> np.ndarray:
    """Wilder RSI in [0, 100]: smoothed gains / (gains + losses), alpha 1/n, SMA-seeded."""
    change = np.full_like(price, np.nan)
    np.subtract(price[:, 1:], price[:, :-1], out=change[:, 1:])
    gain = _ema(np.maximum(change, 0.0), n, 1.0 / n)
    np.negative(change, out=change)
    np.maximum(change, 0.0, out=change)
    loss = _ema(change, n, 1.0 / n)
    del change
    loss += gain
    gain /= loss
    gain *= 100.0
    return gain


# --- feature blocks: each yields (name, one value per panel row) in definition order --------
# Kernels above return fresh matrices; blocks below reuse them in place where a value is not
# needed again, because on a big panel every avoided temporary is a pass over memory saved.


def _daily_features(
    sep: pd.DataFrame, layout: PanelLayout, p: FeatureParams
) -> Iterator[tuple[str, np.ndarray]]:
    rows = layout.to_rows

    def matrix(column: str) -> np.ndarray:
        return layout.to_matrix(sep[column].to_numpy(dtype=np.float64))

    adj = matrix("closeadj")
    for w in p.return_windows:
        yield f"ret_{w}d", rows(_change(adj, w))
    adj_windows = _Windows(adj)
    for w in p.sma_windows:
        yield f"sma_ratio_{w}", rows(_relative(adj, adj_windows.mean(w)))
    yield f"rsi_{p.rsi_window}", rows(_rsi(adj, p.rsi_window))

    m = p.macd
    line = _ema(adj, m.fast, 2.0 / (m.fast + 1))
    line -= _ema(adj, m.slow, 2.0 / (m.slow + 1))
    signal = _ema(line, m.signal, 2.0 / (m.signal + 1))
    line /= adj
    signal /= adj
    yield "macd", rows(line)
    yield "macd_signal", rows(signal)
    np.subtract(line, signal, out=line)
    yield "macd_hist", rows(line)
    del line, signal

    b = p.bollinger
    # %b = (adj - mid + k sd) / (2 k sd)
    pctb = adj_windows.mean(b.window)
    np.subtract(adj, pctb, out=pctb)
    band = _sqrt(adj_windows.var(b.window, ddof=0))
    band *= b.num_std
    pctb += band
    band *= 2.0
    pctb /= band
    yield f"bb_pctb_{b.window}", rows(pctb)
    del adj_windows, pctb, band

    close, high, low = matrix("close"), matrix("high"), matrix("low")
    prev_close = _lag(close, 1)
    true_range = high - low
    gap_high = np.abs(high - prev_close)
    np.maximum(true_range, gap_high, out=true_range)
    np.subtract(low, prev_close, out=gap_high)
    np.maximum(true_range, np.abs(gap_high, out=gap_high), out=true_range)
    del gap_high
    atr = _ema(true_range, p.atr_window, 1.0 / p.atr_window)
    del true_range
    atr /= close
    yield f"atr_norm_{p.atr_window}", rows(atr)
    del atr

    log_ret = _ratio(adj, 1)
    log_ret_windows = _Windows(np.log(log_ret, out=log_ret))
    del log_ret, adj
    for w in p.vol_windows:
        yield f"rvol_{w}", rows(_sqrt(log_ret_windows.var(w, ddof=1)))
    del log_ret_windows

    volume = matrix("volume")
    w = p.volume_z_window
    vol_windows = _Windows(volume)
    z = vol_windows.mean(w)
    np.subtract(volume, z, out=z)
    z /= _sqrt(vol_windows.var(w, ddof=1))
    yield f"volume_z_{w}", rows(z)
    del vol_windows, z
    # split-adjusted close × split-adjusted volume is the traded value: split factors cancel.
    w = p.dollar_volume_window
    dollar_volume = _Windows(close * volume).mean(w)
    del volume
    yield f"log_dollar_volume_{w}", rows(np.log1p(dollar_volume, out=dollar_volume))
    del dollar_volume

    w = p.lookback_52w
    yield "dist_52w_high", rows(_relative(close, _rolling_extreme(high, w, highest=True)))
    yield "dist_52w_low", rows(_relative(close, _rolling_extreme(low, w, highest=False)))
    del high, low, close
    yield "gap_overnight", rows(_relative(matrix("open"), prev_close))


def _weekly_features(
    sep: pd.DataFrame, layout: PanelLayout, days: np.ndarray, p: FeatureParams
) -> Iterator[tuple[str, np.ndarray]]:
    """Features on W-FRI weekly bars, each daily row seeing the last *completed* bar only.

    A bar (ticker, week ending Friday F) closes at F's close, so it is visible to rows dated
    on or after F: the Friday row sees its own week, a Wednesday row the week before. If
    Friday is a holiday the bar is still first used on the following Monday, because the
    Thursday row cannot know from prices alone that no Friday session follows.
    """
    group = layout.group
    week = (days + 5) // 7  # 1970-01-02 was a Friday: weeks run Saturday..Friday
    new_bar = np.ones(group.size, dtype=bool)
    new_bar[1:] = (group[1:] != group[:-1]) | (week[1:] != week[:-1])
    last_row = np.flatnonzero(np.append(new_bar[1:], True))
    bars = PanelLayout.from_codes(group[last_row])
    close = bars.to_matrix(sep["closeadj"].to_numpy(dtype=np.float64)[last_row])

    # The bar a row sees: its own on the week's Friday, otherwise the ticker's previous bar;
    # none (index n_bars, a NaN appended below) before the ticker's first completed bar.
    seen = np.cumsum(new_bar) - 1
    seen -= days != week * 7 + 1
    first_bar = np.cumsum(bars.lengths) - bars.lengths
    seen[seen < first_bar[group]] = last_row.size

    def rows(m: np.ndarray) -> np.ndarray:
        return np.append(bars.to_rows(m), np.nan)[seen]

    wk = p.weekly
    for w in wk.return_windows:
        yield f"w1_ret_{w}w", rows(_change(close, w))
    close_windows = _Windows(close)
    for w in wk.sma_windows:
        yield f"w1_sma_ratio_{w}w", rows(_relative(close, close_windows.mean(w)))
    del close_windows
    yield f"w1_rsi_{wk.rsi_window}w", rows(_rsi(close, wk.rsi_window))
    log_ret = _ratio(close, 1)
    log_ret_windows = _Windows(np.log(log_ret, out=log_ret))
    yield f"w1_rvol_{wk.vol_window}w", rows(_sqrt(log_ret_windows.var(wk.vol_window, ddof=1)))


def _cross_sectional_rank(values: np.ndarray, dates: PanelLayout) -> np.ndarray:
    """Per-date pct rank in (0, 1] with average ranks for ties, as pandas rank(pct=True).

    Values are float32, so each becomes an order-preserving uint32 key, stored as the high half
    of a uint64 whose low half is its column: one row-wise integer sort yields order and origin.
    """
    v = dates.to_matrix(values, dtype=np.float32)
    v += np.float32(0.0)  # -0.0 → +0.0, so the two tie
    missing = np.isnan(v)
    height, width = v.shape
    keys = np.empty((height, width), dtype=np.uint64)
    halves = keys.view(np.uint32).reshape(height, width, 2)  # little-endian: [..., 1] is high
    # IEEE order → unsigned order: flip every bit of negatives, only the sign bit of the rest.
    flip = (v.view(np.int32) >> 31).view(np.uint32)
    flip |= np.uint32(0x80000000)
    np.bitwise_xor(v.view(np.uint32), flip, out=halves[..., 1])
    del flip, v
    halves[..., 1][missing] = np.uint32(0xFFFFFFFF)  # NaN sorts last; no number maps there
    halves[..., 0] = np.arange(width, dtype=np.uint32)
    keys.sort(axis=1)
    key, column = halves[..., 1], halves[..., 0]

    # Ordinal 1-based ranks first; then each run of equal keys (a tie) gets its mean rank.
    # A run never crosses dates because a matrix row's first cell never continues a run.
    missing_key = key == 0xFFFFFFFF
    count = (width - missing.sum(axis=1, keepdims=True)).astype(np.float32)
    pct = np.arange(1, width + 1, dtype=np.float32) / count
    continues_run = np.zeros((height, width), dtype=bool)
    np.equal(key[:, 1:], key[:, :-1], out=continues_run[:, 1:])
    continues_run[missing_key] = False
    edges = np.diff(continues_run.reshape(-1).view(np.int8), prepend=0, append=0)
    first = np.flatnonzero(edges == 1) - 1  # a run's first cell precedes its first continuation
    length = np.flatnonzero(edges == -1) - first
    if first.size:
        offset = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
        cells = np.repeat(first, length) + offset
        mean_rank = np.repeat(first % width + (length + 1) / 2.0, length)
        pct.reshape(-1)[cells] = mean_rank / count.reshape(-1)[cells // width]
    pct[missing_key] = np.nan

    out = np.empty((height, width), dtype=np.float32)
    cell = np.arange(0, height * width, width, dtype=np.intp)[:, None] + column
    out.reshape(-1)[cell.reshape(-1)] = pct.reshape(-1)
    return dates.to_rows(out)


def _cross_sectional_zscore(values: np.ndarray, date_code: np.ndarray) -> np.ndarray:
    """Per-date (x - mean) / population std over the non-missing values of that date."""
    x = values.astype(np.float64)
    valid = ~np.isnan(x)
    x0 = np.where(valid, x, 0.0)
    count = np.bincount(date_code, weights=valid)
    mean = np.bincount(date_code, weights=x0) / count
    dev = np.where(valid, x - mean[date_code], 0.0)
    std = np.sqrt(np.bincount(date_code, weights=dev * dev) / count)
    z = dev / std[date_code]
    z[~valid] = np.nan
    return z


def _date_codes(days: np.ndarray) -> np.ndarray:
    """Dense 0..D-1 code per row, in calendar order, by a presence table over the day span."""
    offset = days - days.min()
    present = np.zeros(int(offset.max()) + 1, dtype=bool)
    present[offset] = True
    return (np.cumsum(present) - 1)[offset]


# --- entry point ------------------------------------------------------------------------------


def universe_mask(sep: pd.DataFrame) -> np.ndarray | None:
    """The panel's ``in_universe`` flags as a bool array, or None when it has no such column."""
    if UNIVERSE_COLUMN not in sep.columns:
        return None
    flags = sep[UNIVERSE_COLUMN]
    if flags.isna().any():
        raise DataValidationError(f"SEP column {UNIVERSE_COLUMN!r} has {int(flags.isna().sum())} missing values")
    return flags.to_numpy(dtype=bool)


# A bucket's matrix may hold at most this share of padding cells beyond its rows.
MAX_PADDING = 0.25


def history_buckets(lengths: np.ndarray, max_padding: float = MAX_PADDING) -> list[np.ndarray]:
    """Tickers (indices into ``lengths``, ascending) grouped by history length so that each
    group's (tickers × longest history) matrix holds at most ``max_padding`` × its rows in
    padding: the kernels' cost and memory follow rows, not tickers × the longest history.

    Greedy from the longest history down: a bucket takes the next ticker while its padding stays
    within bound. Equal lengths (the usual synthetic panel) give one bucket."""
    order = np.argsort(-lengths, kind="stable")
    buckets: list[np.ndarray] = []
    begin = 0
    while begin < order.size:
        width = int(lengths[order[begin]])
        # Padding of order[begin:end] is end' * width - rows; extend while it stays within bound.
        rows = np.cumsum(lengths[order[begin:]])
        count = np.arange(1, rows.size + 1)
        fits = count * width - rows <= max_padding * rows
        end = begin + int(np.argmin(fits)) if not fits.all() else order.size
        end = max(end, begin + 1)
        buckets.append(np.sort(order[begin:end]))
        begin = end
    return buckets


def build_features(sep: pd.DataFrame, params: FeatureParams, *, cross_sectional: bool = True) -> pd.DataFrame:
    """Features of a SEP panel sorted by ticker then date: ticker, date, then float32 features.

    Columns follow ``spec.feature_names(params)``; row order is the panel's. Infinite values
    (a zero divisor, e.g. a flat Bollinger band) become NaN. The ``_xs`` columns rank among
    the panel's ``in_universe`` rows of each date (every row when it has no such column).
    With ``cross_sectional=False`` the ``_xs`` columns stay NaN: per-ticker work that can
    run on any partition of tickers, completed later by :func:`add_cross_sectional` over
    the whole panel.
    """
    codes = panel_group_codes(sep, PRICE_COLUMNS)
    names = feature_names(params)
    slot = {name: i for i, name in enumerate(names)}
    # One (features × rows) float32 block: each feature is written once, and the DataFrame
    # built on its transpose shares the memory instead of copying it.
    out = np.full((len(names), len(sep)), np.nan, dtype=np.float32)

    non_finite = np.empty(len(sep), dtype=bool)
    if len(sep):
        days = calendar_days(sep["date"])
        lengths = np.bincount(codes)
        starts = np.cumsum(lengths) - lengths
        prices = {c: sep[c].to_numpy(dtype=np.float64) for c in PRICE_COLUMNS}  # once, not per bucket
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for tickers in history_buckets(lengths, MAX_PADDING):
                if tickers.size == lengths.size:  # one bucket: the whole panel, no copy
                    rows, part, part_days, part_codes = slice(None), sep, days, codes
                else:
                    rows = np.concatenate([np.arange(a, a + n) for a, n in zip(starts[tickers], lengths[tickers],
                                                                                  strict=True)])
                    part = pd.DataFrame({c: values[rows] for c, values in prices.items()}, copy=False)
                    part_days, part_codes = days[rows], np.repeat(np.arange(tickers.size), lengths[tickers])
                layout = PanelLayout.from_codes(part_codes)
                for name, values in _daily_features(part, layout, params):
                    out[slot[name], rows] = values
                if params.weekly.enabled:
                    for name, values in _weekly_features(part, layout, part_days, params):
                        out[slot[name], rows] = values
        for row in out:  # infinite values (a zero divisor, e.g. a flat Bollinger band) become NaN
            np.isfinite(row, out=non_finite)
            np.logical_not(non_finite, out=non_finite)
            np.copyto(row, np.float32(np.nan), where=non_finite)

    frame = pd.DataFrame(out.T, columns=names, copy=False)
    # reset_index keeps the key columns as copy-on-write references to the input's, no copy.
    frame.insert(0, "date", sep["date"].reset_index(drop=True))
    frame.insert(0, "ticker", sep["ticker"].reset_index(drop=True))
    return add_cross_sectional(frame, params, universe_mask(sep)) if cross_sectional else frame


def add_cross_sectional(
    features: pd.DataFrame, params: FeatureParams, in_universe: np.ndarray | None = None
) -> pd.DataFrame:
    """Fill the ``_xs`` columns in place: per-date rank or z-score among the rows where
    ``in_universe`` is true (every row when it is None), NaN on the other rows."""
    xs = params.cross_sectional
    if not xs.features or features.empty:
        return features
    members: np.ndarray | None = None
    if in_universe is not None:
        in_universe = np.asarray(in_universe, dtype=bool)
        if in_universe.shape != (len(features),):
            raise DataValidationError(
                f"in_universe has {in_universe.size} flags for {len(features)} feature rows"
            )
        if not in_universe.all():
            members = np.flatnonzero(in_universe)
    if members is not None and members.size == 0:
        for name in xs.features:
            features[f"{name}_xs"] = np.full(len(features), np.nan, dtype=np.float32)
        return features
    days = calendar_days(features["date"])
    if members is not None:
        days = days[members]
    date_code = _date_codes(days)
    dates = PanelLayout.from_codes(date_code) if xs.method == "rank" else None
    with np.errstate(divide="ignore", invalid="ignore"):  # dates with one name or none
        for name in xs.features:
            column = features[name].to_numpy(dtype=np.float32)
            base = column.copy() if members is None else column[members]  # the rank works in place
            if dates is not None:
                values = _cross_sectional_rank(base, dates)
            else:
                values = _cross_sectional_zscore(base, date_code)
            values = np.where(np.isfinite(values), values, np.nan).astype(np.float32)
            if members is not None:
                spread = np.full(len(features), np.nan, dtype=np.float32)
                spread[members] = values
                values = spread
            features[f"{name}_xs"] = values
    return features
