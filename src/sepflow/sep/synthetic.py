"""A deterministic synthetic equity market in the Sharadar schema, with a planted, known signal.

This is the embedded default data source: it needs no vendor file, and because
the process that generates the returns is known, the pipeline can be checked
against the truth (a model should find the signal at ``signal_strength > 0`` and
nothing at ``signal_strength = 0``, where any apparent skill is leakage).

Return-generating process
-------------------------
Everything lives on a T x N grid (market trading days x tickers). The log
return of the total-return series (``closeadj``) of ticker i on day t is::

    r[t,i] = mu_m + beta_i * sigma_m[t] * z[t]          market: drift plus shock
           + lambda_i * sigma_f * w[t, sector_i]        sector factor (ETFs load 0)
           + alpha[t,i]                                 the planted, predictable part
           + u[t,i],   u[t,i] = sigma[t,i] * eps[t,i]   idiosyncratic shock

- ``z``, ``w``, ``eps`` are Student-t(``tail_df``) draws scaled to unit variance
  (fat tails).
- Stochastic volatility: ``log sigma_m[t]`` and ``log sigma[t,i]`` are stationary
  AR(1) processes (persistence ``vol_persistence``, stationary sd ``vol_of_vol``)
  around ``market_vol`` and the ticker's base vol, shifted so that the mean
  *variance* equals the base variance. Volatility clusters; it is not predictable
  in mean.
- Every ticker has the same drift ``mu_m`` whatever its beta, so a market with
  ``signal_strength = 0`` has no cross-sectional predictability at all.
- Planted signal, using only information at the end of day t-1::

      alpha[t,i] = signal_strength * (s[t-1,i] - reversal_rho * u[t-1,i])

  with a persistent drift that under-reacts to news, and a short-term reversal of
  yesterday's idiosyncratic shock. Each idiosyncratic shock keeps feeding the
  drift, which decays at ``phi = momentum_phi``::

      s[t,i] = phi * s[t-1,i] + momentum_scale * sqrt(1 - phi**2) * u[t,i]
      s[0,i] = momentum_scale * u[0,i]

  so ``s`` has stationary sd ``momentum_scale * base_vol_i`` (in mean variance).
  Because ``s`` is built from the ticker's own past shocks, its price history
  reveals it, blurred by the market and sector factors, the alpha itself and
  stochastic volatility: trailing-return (momentum) features estimate it, and the
  signal is learnable rather than hidden. ``alpha`` is 0 on the first day of the grid.

Truth
-----
``truth.expected_return_{h}d`` at (ticker i, date t) is the true conditional
expectation, given everything known at the end of day t (the shocks, hence
``s``, included), of the forward **log** total return ``log closeadj[t+h] - log
closeadj[t]``, where t+h counts h trading days of the market calendar (a halted,
missing row still counts as a day; the latent path continues past a ticker's
last row)::

    E_t[r(t, t+h)] = h * mu_m
                   + signal_strength * (s[t,i] * (1 - phi**h) / (1 - phi) - reversal_rho * u[t,i])

(the drift term sums E_t[s[t+j-1]] = phi**(j-1) s[t], as shocks after t have
mean 0; the reversal only enters day t+1). Prices are rounded to 4 decimals, so the
realised log returns of ``closeadj`` differ from the latent ones by rounding.

Sharadar semantics
------------------
``close``/``open``/``high``/``low`` and ``volume`` are split-adjusted to the latest
share basis; ``closeunadj`` is as traded; ``closeadj`` is split- and
dividend-adjusted: on each ex-date the history before it is multiplied by
``1 - dividend / close_prev``, so ``closeadj == close`` on each ticker's last row.
Dividends are modelled as that fraction of the previous close, paid before the
ex-date's open, which makes the ``closeadj`` log return exactly ``r``. Prices
are float64 rounded to 4 decimals with a floor of 0.0001 (rounding is monotone,
so ``low <= open, close <= high`` survives it).

Universe and events
-------------------
The calendar is Monday-Friday business days (no exchange holidays). About 72%
of the tickers are domestic common stocks (a few labelled Primary/Secondary
Class), among them disjoint sets of penny names (first price 0.3-3), illiquid
names (median dollar volume 2e3-5e4), OTC names and split names (2:1, 3:1,
1:10 reverse); the rest are ETFs (NYSEARCA, no sector), ADRs, Canadian
commons, preferreds (high-yield payers) and warrants. Some tickers list late
(IPO), some are delisted early; about 0.3% of listed rows are missing (halts),
never a ticker's first, last or split row. Open sits on the ex-dividend
previous close plus an overnight part of the day's move; high and low extend
beyond open and close in proportion to the day's volatility; dollar volume is
lognormal around a ticker's base level and rises with volatility.

Calibration at the defaults (seed 42, common stocks): the mean per-date rank IC
of the truth against realised returns is about 0.10 / 0.16 / 0.21 / 0.27 at
1 / 5 / 10 / 30 days; a plain 60-day momentum reaches about 0.07 / 0.15 / 0.19 /
0.24 and yesterday's return about -0.05 at 1 day. Learnable, not given away: the
models walked forward on it recover roughly 0.6-0.9 of the truth's 5-day rank IC
(``tests/integration/test_model_quality.py``), and nothing in the null market.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.random import PCG64, Generator
from pydantic import BaseModel, ConfigDict, Field, model_validator

HORIZONS: tuple[int, ...] = (1, 5, 10, 30)

SECTORS: dict[str, tuple[str, str]] = {
    "Basic Materials": ("Chemicals", "Gold"),
    "Communication Services": ("Telecom Services", "Internet Content & Information"),
    "Consumer Cyclical": ("Specialty Retail", "Auto Parts"),
    "Consumer Defensive": ("Packaged Foods", "Beverages - Non-Alcoholic"),
    "Energy": ("Oil & Gas E&P", "Oil & Gas Midstream"),
    "Financial Services": ("Banks - Regional", "Asset Management"),
    "Healthcare": ("Biotechnology", "Medical Devices"),
    "Industrials": ("Aerospace & Defense", "Specialty Industrial Machinery"),
    "Real Estate": ("REIT - Residential", "REIT - Office"),
    "Technology": ("Software - Application", "Semiconductors"),
    "Utilities": ("Utilities - Regulated Electric", "Utilities - Renewable"),
}
_SECTOR_NAMES = tuple(SECTORS)
_STATES = ("California", "New York", "Texas", "Massachusetts", "Illinois", "Florida", "Washington", "Delaware")
_ADR_COUNTRIES = ("United Kingdom", "Japan", "China", "Germany", "Netherlands", "Brazil", "India")
_PROVINCES = ("Ontario", "British Columbia", "Alberta", "Quebec")
_NAME_SUFFIXES = ("Inc", "Corp", "Holdings Inc", "Group Inc", "Technologies Inc", "Co")

# Internal kinds; each maps to a Sharadar category string.
_DOMESTIC, _PRIMARY, _SECONDARY, _CANADIAN, _ADR, _ETF, _PREFERRED, _WARRANT = range(8)
CATEGORIES: tuple[str, ...] = (
    "Domestic Common Stock",
    "Domestic Common Stock Primary Class",
    "Domestic Common Stock Secondary Class",
    "Canadian Common Stock",
    "ADR Common Stock",
    "ETF",
    "Domestic Preferred Stock",
    "Domestic Warrant",
)
_SPLIT_RATIOS = (2.0, 3.0, 0.1)  # new shares per old share: 2:1, 3:1, 1:10 reverse
_DIVIDEND_PERIOD = 63  # trading days between quarterly ex-dates


class SyntheticParams(BaseModel):
    """``params.yaml: synthetic``: size, seed and the knobs of the return-generating process."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(42, description="Seed of the PCG64 generator; same seed, same market.")
    n_tickers: int = Field(160, ge=30, description="Number of tickers (all categories together).")
    start: dt.date = Field(dt.date(2017, 1, 2), description="First business day of the calendar.")
    n_days: int = Field(1600, ge=300, description="Number of business days (Mon-Fri) in the calendar.")
    signal_strength: float = Field(1.5, ge=0.0, description="Scale of the planted alpha; 0 is a pure null market.")

    momentum_phi: float = Field(0.98, gt=0.0, lt=1.0, description="AR(1) persistence of the drift s.")
    momentum_scale: float = Field(
        0.05, ge=0.0, description="Stationary sd of s per unit of the ticker's base idiosyncratic vol."
    )
    reversal_rho: float = Field(0.05, ge=0.0, description="Share of yesterday's idiosyncratic shock reversed today.")
    market_drift: float = Field(0.0003, description="Daily expected log return mu_m, the same for every ticker.")
    market_vol: float = Field(0.01, gt=0.0, description="Daily market vol (root mean variance).")
    sector_vol: float = Field(0.006, ge=0.0, description="Daily vol of each sector factor.")
    vol_persistence: float = Field(0.98, ge=0.0, lt=1.0, description="AR(1) persistence of log volatility.")
    vol_of_vol: float = Field(0.3, ge=0.0, description="Stationary sd of log volatility.")
    tail_df: float = Field(4.0, gt=2.0, description="Degrees of freedom of the Student-t innovations.")

    frac_etf: float = Field(0.10, ge=0.0, le=0.5, description="Share of ETFs (NYSEARCA).")
    frac_adr: float = Field(0.06, ge=0.0, le=0.5, description="Share of ADR common stocks.")
    frac_preferred: float = Field(0.05, ge=0.0, le=0.5, description="Share of domestic preferred stocks.")
    frac_warrant: float = Field(0.04, ge=0.0, le=0.5, description="Share of domestic warrants.")
    frac_canadian: float = Field(0.03, ge=0.0, le=0.5, description="Share of Canadian common stocks.")
    frac_share_class: float = Field(
        0.04, ge=0.0, le=0.5, description="Share of domestic common stocks labelled Primary/Secondary Class."
    )
    frac_penny: float = Field(0.08, ge=0.0, le=0.3, description="Share of tickers that are penny domestic commons.")
    frac_illiquid: float = Field(
        0.08, ge=0.0, le=0.3, description="Share of tickers that are illiquid domestic commons."
    )
    frac_otc: float = Field(0.04, ge=0.0, le=0.3, description="Share of tickers that are domestic commons on OTC.")
    frac_split: float = Field(0.04, ge=0.0, le=0.3, description="Share of tickers with one split (at least 3 split).")
    frac_ipo: float = Field(0.12, ge=0.0, le=0.5, description="Share of tickers whose first price comes late.")
    frac_delisted: float = Field(0.08, ge=0.0, le=0.5, description="Share of tickers delisted before the end.")
    missing_rate: float = Field(0.003, ge=0.0, le=0.1, description="Probability that a listed day's row is missing.")

    @model_validator(mode="after")
    def _check_room(self) -> SyntheticParams:
        kinds, special = _plan_counts(self)
        if sum(kinds.values()) + sum(special) > self.n_tickers:
            raise ValueError(
                f"n_tickers={self.n_tickers} leaves too few plain domestic common stocks for the category,"
                " penny, illiquid, OTC and split fractions"
            )
        return self


@dataclass(frozen=True)
class SyntheticMarket:
    """SEP prices, the TICKERS table, and the true expected forward log returns (rows aligned with ``sep``)."""

    sep: pd.DataFrame
    tickers: pd.DataFrame
    truth: pd.DataFrame


@dataclass(frozen=True)
class _Universe:
    """Per-ticker attributes, all arrays in ticker (sorted) order."""

    ticker: np.ndarray
    name: np.ndarray
    exchange: np.ndarray
    location: np.ndarray
    permaticker: np.ndarray
    kind: np.ndarray
    sector: np.ndarray  # index into _SECTOR_NAMES, -1 for ETFs
    industry: np.ndarray  # 0 or 1 within the sector
    beta: np.ndarray
    sector_loading: np.ndarray
    base_vol: np.ndarray
    price0: np.ndarray  # close on the first listed day
    dollar_volume: np.ndarray
    dividend_yield: np.ndarray  # per quarter, 0 for non-payers
    dividend_phase: np.ndarray
    first: np.ndarray  # calendar index of the first and last listed day
    last: np.ndarray
    split_day: np.ndarray  # calendar index, -1 where none
    split_ratio: np.ndarray  # new shares per old share


def _count(frac: float, n: int) -> int:
    """At least one of every requested kind, so small test markets still show it."""
    return max(1, round(frac * n)) if frac > 0 else 0


def _ticker_codes(rng: Generator, n: int) -> np.ndarray:
    """Unique 4-letter codes, about a third shortened to 3 letters where that stays unique."""
    codes = rng.choice(26**4, size=n, replace=False)
    shorten = rng.random(n) < 0.35
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    full = ["".join(letters[[(c // 26**k) % 26 for k in (3, 2, 1, 0)]]) for c in codes]
    taken = set(full)
    out = []
    for code, short in zip(full, shorten, strict=True):
        if short and code[1:] not in taken:
            taken.add(code[1:])
            code = code[1:]
        out.append(code)
    return np.array(out, dtype=object)


def _plan_counts(p: SyntheticParams) -> tuple[dict[int, int], list[int]]:
    """Tickers per non-plain kind, and the sizes of the penny, illiquid, OTC and split sets."""
    n = p.n_tickers
    kinds = {
        _ETF: _count(p.frac_etf, n),
        _ADR: _count(p.frac_adr, n),
        _PREFERRED: _count(p.frac_preferred, n),
        _WARRANT: _count(p.frac_warrant, n),
        _CANADIAN: _count(p.frac_canadian, n),
        _PRIMARY: _count(p.frac_share_class / 2, n),
        _SECONDARY: _count(p.frac_share_class / 2, n),
    }
    special = [_count(f, n) for f in (p.frac_penny, p.frac_illiquid, p.frac_otc)]
    special.append(max(3, round(p.frac_split * n)))  # three splits show each of 2:1, 3:1 and 1:10
    return kinds, special


def _build_universe(p: SyntheticParams, rng: Generator, n_days: int) -> _Universe:
    n = p.n_tickers
    counts, sizes = _plan_counts(p)
    kind = np.full(n, _DOMESTIC)
    kind[: sum(counts.values())] = np.repeat(list(counts), list(counts.values()))
    kind = rng.permutation(kind)

    # Penny, illiquid and OTC names and the split names are disjoint sets of plain domestic commons.
    domestic = rng.permutation(np.flatnonzero(kind == _DOMESTIC))
    penny_idx, illiquid_idx, otc_idx, split_idx, _ = np.split(domestic, np.cumsum(sizes))
    penny, illiquid, otc = (np.isin(np.arange(n), idx) for idx in (penny_idx, illiquid_idx, otc_idx))
    is_ = {k: kind == k for k in range(len(CATEGORIES))}

    def log_uniform(lo: float, hi: float) -> np.ndarray:
        return np.exp(rng.uniform(np.log(lo), np.log(hi), n))

    sector = np.where(is_[_ETF], -1, rng.integers(0, len(_SECTOR_NAMES), n))
    industry = rng.integers(0, 2, n)
    beta = np.select(
        [is_[_ETF], is_[_PREFERRED], is_[_WARRANT]],
        [rng.normal(1.0, 0.1, n), 0.2, 1.6],
        np.clip(rng.normal(1.0, 0.3, n), 0.2, 2.2),
    )
    sector_loading = np.select([is_[_ETF], is_[_PREFERRED]], [0.0, 0.3], rng.uniform(0.5, 1.5, n))
    base_vol = np.select(
        [is_[_ETF], is_[_PREFERRED], is_[_WARRANT], penny],
        [0.004, 0.006, 0.05, 0.04],
        rng.lognormal(np.log(0.018), 0.3, n),
    )
    price0 = np.select(
        [penny, is_[_WARRANT], is_[_PREFERRED], is_[_ETF]],
        [log_uniform(0.3, 3.0), log_uniform(0.5, 5.0), rng.normal(25.0, 1.0, n), log_uniform(20.0, 400.0)],
        log_uniform(5.0, 300.0),
    )
    dollar_volume = np.select(
        [illiquid, otc, penny, is_[_WARRANT], is_[_PREFERRED], is_[_ETF], is_[_ADR]],
        [
            log_uniform(2e3, 5e4), log_uniform(1e4, 3e5), log_uniform(5e4, 2e6), log_uniform(1e4, 1e6),
            log_uniform(1e5, 3e6), log_uniform(1e6, 1e9), log_uniform(1e5, 1e8),
        ],
        log_uniform(1e6, 5e8),
    )
    pays = np.select(
        [is_[_PREFERRED], is_[_WARRANT] | penny | illiquid | otc, is_[_ETF]],
        [True, False, rng.random(n) < 0.5],
        rng.random(n) < 0.4,
    )
    annual_yield = np.select(
        [is_[_PREFERRED], is_[_ETF]], [rng.uniform(0.05, 0.07, n), rng.uniform(0.01, 0.025, n)],
        rng.uniform(0.01, 0.04, n),
    )
    dividend_yield = np.where(pays, annual_yield / 4, 0.0)
    dividend_phase = rng.integers(0, _DIVIDEND_PERIOD, n)

    # IPOs and delistings hit disjoint names, so every name is listed for at least 40% of the calendar.
    order = rng.permutation(n)
    n_ipo, n_delisted = _count(p.frac_ipo, n), _count(p.frac_delisted, n)
    first = np.zeros(n, np.int64)
    last = np.full(n, n_days - 1, np.int64)
    first[order[:n_ipo]] = rng.integers(int(0.1 * n_days), int(0.6 * n_days), n_ipo)
    last[order[n_ipo : n_ipo + n_delisted]] = rng.integers(int(0.4 * n_days), int(0.95 * n_days), n_delisted)
    split_day = np.full(n, -1, np.int64)
    split_ratio = np.ones(n)
    split_day[split_idx] = rng.integers(first[split_idx] + 20, last[split_idx] - 20)
    split_ratio[split_idx] = np.resize(_SPLIT_RATIOS, split_idx.size)

    codes = _ticker_codes(rng, n)
    # Sharadar-style suffixes mark preferreds and warrants; the bases are unique, so the tickers are.
    ticker = np.select(
        [is_[_PREFERRED], is_[_WARRANT]], [codes + "-P" + rng.choice(list("ABCDE"), n), codes + "WS"], codes
    )
    title = np.char.capitalize(codes.astype(str)).astype(object)
    suffix = rng.choice(_NAME_SUFFIXES, n)
    name = np.select(
        [is_[_ETF], is_[_PREFERRED], is_[_WARRANT], is_[_ADR], is_[_CANADIAN], is_[_PRIMARY], is_[_SECONDARY]],
        [
            title + " " + rng.choice(["Total Market", "Dividend", "Small Cap", "Bond", "Emerging Markets"], n) + " ETF",
            title + " Corp Preferred Series " + rng.choice(list("ABCDE"), n),
            title + " Inc Warrants",
            title + " PLC",
            title + " Ltd",
            title + " " + suffix + " Class A",
            title + " " + suffix + " Class B",
        ],
        title + " " + suffix,
    )
    exchange = np.select(
        [is_[_ETF], otc, is_[_PREFERRED], is_[_WARRANT]],
        ["NYSEARCA", "OTC", "NYSE", rng.choice(["NASDAQ", "NYSEMKT"], n)],
        rng.choice(["NYSE", "NASDAQ", "NYSEMKT"], n, p=[0.45, 0.45, 0.10]),
    )
    location = np.select(
        [is_[_ADR], is_[_CANADIAN]],
        [rng.choice(_ADR_COUNTRIES, n), rng.choice(_PROVINCES, n) + "; Canada"],
        rng.choice(_STATES, n) + "; U.S.A",
    )
    permaticker = rng.choice(900_000, size=n, replace=False) + 100_000

    by_ticker = np.argsort(ticker, kind="stable")
    return _Universe(
        ticker=ticker[by_ticker], name=name[by_ticker], exchange=exchange[by_ticker],
        location=location[by_ticker], permaticker=permaticker[by_ticker], kind=kind[by_ticker],
        sector=sector[by_ticker], industry=industry[by_ticker], beta=beta[by_ticker],
        sector_loading=sector_loading[by_ticker], base_vol=base_vol[by_ticker], price0=price0[by_ticker],
        dollar_volume=dollar_volume[by_ticker], dividend_yield=dividend_yield[by_ticker],
        dividend_phase=dividend_phase[by_ticker], first=first[by_ticker], last=last[by_ticker],
        split_day=split_day[by_ticker], split_ratio=split_ratio[by_ticker],
    )


def _ar1(shocks: np.ndarray, phi: float, sd: float) -> np.ndarray:
    """Stationary AR(1) along axis 0 driven by ``shocks``: its stationary sd is ``sd`` times theirs,
    and it starts from that law (for shocks of constant variance)."""
    from scipy.signal import (
        lfilter,  # here: every stage reads SyntheticParams, only synthesize needs SciPy
    )

    x = shocks * (sd * np.sqrt(1.0 - phi**2))
    x[0] = shocks[0] * sd
    return lfilter([1.0], [1.0, -phi], x, axis=0)


def _student_t(rng: Generator, df: float, shape: int | tuple[int, ...]) -> np.ndarray:
    """Student-t draws scaled to unit variance."""
    return rng.standard_t(df, shape) * np.sqrt((df - 2.0) / df)


def _price(log_price: np.ndarray) -> np.ndarray:
    # Rounding and the floor are monotone, so they keep low <= open, close <= high.
    return np.maximum(np.round(np.exp(log_price), 4), 1e-4)


def generate_market(params: SyntheticParams) -> SyntheticMarket:
    """Generate the synthetic SEP, TICKERS and truth frames; the same params give identical frames."""
    p = params
    rng = Generator(PCG64(p.seed))
    dates = pd.bdate_range(p.start, periods=p.n_days).as_unit("ns")
    n_days, n = p.n_days, p.n_tickers
    uni = _build_universe(p, rng, n_days)

    # Every draw happens whatever signal_strength is, so a null market shares its shocks with the default one.
    market_shock = _student_t(rng, p.tail_df, n_days)
    sector_shock = _student_t(rng, p.tail_df, (n_days, len(_SECTOR_NAMES)))
    eps = _student_t(rng, p.tail_df, (n_days, n))
    # Subtracting vol_of_vol**2 makes the mean variance equal the base variance.
    market_log_vol = _ar1(rng.standard_normal(n_days), p.vol_persistence, p.vol_of_vol) - p.vol_of_vol**2
    market_sigma = p.market_vol * np.exp(market_log_vol)
    log_vol = _ar1(rng.standard_normal((n_days, n)), p.vol_persistence, p.vol_of_vol) - p.vol_of_vol**2
    sigma = uni.base_vol * np.exp(log_vol)
    gap_noise, high_noise, low_noise, volume_noise = rng.standard_normal((4, n_days, n))
    halted = rng.random((n_days, n)) < p.missing_rate

    shock = sigma * eps
    # Under-reaction: every idiosyncratic shock keeps feeding the drift, so prices reveal it.
    drift = _ar1(shock, p.momentum_phi, p.momentum_scale)
    alpha = np.zeros((n_days, n))
    alpha[1:] = p.signal_strength * (drift[:-1] - p.reversal_rho * shock[:-1])
    r = (
        p.market_drift
        + uni.beta * (market_sigma * market_shock)[:, None]
        + uni.sector_loading * p.sector_vol * sector_shock[:, uni.sector]  # ETFs (sector -1) load 0
        + alpha
        + shock
    )

    day = np.arange(n_days)[:, None]
    listed = (day >= uni.first) & (day <= uni.last)
    ex_date = (
        (day > uni.first) & (day <= uni.last) & (uni.dividend_yield > 0)
        & ((day - uni.dividend_phase) % _DIVIDEND_PERIOD == 0)
    )
    log_keep = np.where(ex_date, np.log1p(-uni.dividend_yield), 0.0)  # log(1 - dividend / previous close)
    log_split = np.where(day == uni.split_day, np.log(uni.split_ratio), 0.0)
    cols = np.arange(n)

    log_close = np.cumsum(r + log_keep, axis=0)
    log_close += np.log(uni.price0) - log_close[uni.first, cols]
    cum_keep = np.cumsum(log_keep, axis=0)
    log_closeadj = log_close + (cum_keep[-1] - cum_keep)  # adjust by every ex-date after the row
    cum_split = np.cumsum(log_split, axis=0)
    log_unadj_factor = cum_split[-1] - cum_split  # latest-basis shares per share held on the row's date
    # Part of the day's move happens overnight; open sits on the ex-dividend previous close.
    log_open = log_close - 0.65 * r + 0.25 * sigma * gap_noise
    log_high = np.maximum(log_open, log_close) + 0.6 * sigma * np.abs(high_noise)
    log_low = np.minimum(log_open, log_close) - 0.6 * sigma * np.abs(low_noise)
    # Volume rises with volatility and with the size of the day's shock; -0.25 recentres on the base level.
    log_dollar_volume = np.log(uni.dollar_volume) + 0.6 * log_vol + 0.4 * np.abs(eps) + 0.4 * volume_noise - 0.25
    closeunadj = _price(log_close + log_unadj_factor)
    shares_traded = np.rint(np.exp(log_dollar_volume) / closeunadj)
    volume = np.round(shares_traded * np.exp(log_unadj_factor), 4)

    # A halt never hides a ticker's first or last day or a split day, so those stay observable.
    keep = listed & ~(halted & (day != uni.first) & (day != uni.last) & (day != uni.split_day))
    keep_t = keep.T

    def rows(values: np.ndarray) -> np.ndarray:
        return values.T[keep_t]  # ticker-major: sorted by ticker, then date

    n_rows = np.count_nonzero(keep_t, axis=1)
    ticker = pd.array(np.repeat(uni.ticker, n_rows), dtype="str")
    date = np.broadcast_to(dates.to_numpy(), (n, n_days))[keep_t]
    sep = pd.DataFrame({
        "ticker": ticker,
        "date": date,
        "open": rows(_price(log_open)),
        "high": rows(_price(log_high)),
        "low": rows(_price(log_low)),
        "close": rows(_price(log_close)),
        "volume": rows(volume),
        "closeadj": rows(_price(log_closeadj)),
        "closeunadj": rows(closeunadj),
        "lastupdated": np.full(date.size, dates[-1].to_datetime64()),
    })

    truth_columns: dict[str, object] = {"ticker": ticker, "date": date}
    for h in HORIZONS:
        persistence = (1.0 - p.momentum_phi**h) / (1.0 - p.momentum_phi)
        expected = h * p.market_drift + p.signal_strength * (drift * persistence - p.reversal_rho * shock)
        truth_columns[f"expected_return_{h}d"] = rows(expected)
    truth = pd.DataFrame(truth_columns)

    sector_name = np.array([*_SECTOR_NAMES, None], dtype=object)[uni.sector]  # -1 picks None (ETFs)
    industry_name = np.array([SECTORS[s] for s in _SECTOR_NAMES] + [(None, None)], dtype=object)
    tickers = pd.DataFrame({
        "table": pd.array(np.full(n, "SEP", dtype=object), dtype="str"),
        "permaticker": uni.permaticker.astype(np.int64),
        "ticker": pd.array(uni.ticker, dtype="str"),
        "name": pd.array(uni.name, dtype="str"),
        "exchange": pd.array(uni.exchange, dtype="str"),
        "isdelisted": pd.array(np.where(uni.last < n_days - 1, "Y", "N").astype(object), dtype="str"),
        "category": pd.array(np.array(CATEGORIES, dtype=object)[uni.kind], dtype="str"),
        "sector": pd.array(sector_name, dtype="str"),
        "industry": pd.array(industry_name[uni.sector, uni.industry], dtype="str"),
        "firstpricedate": dates[uni.first].to_numpy(),
        "lastpricedate": dates[uni.last].to_numpy(),
        "currency": pd.array(np.full(n, "USD", dtype=object), dtype="str"),
        "location": pd.array(uni.location, dtype="str"),
    })
    return SyntheticMarket(sep=sep, tickers=tickers, truth=truth)
