"""Feature and target parameters (the ``features:`` and ``targets:`` sections of params.yaml).

The ordered feature names and their one-line definitions are derived from the params here,
so ``indicators.build_features``, the manifest and the signature agree by construction.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sepflow.distributed import DaskParams  # shared with train.engine: dask

# Bump whenever a formula in indicators.py or targets.py changes meaning or numerics, so
# a features file built by older code no longer matches the signature a stage expects.
# 2: ``_xs`` rank among in-universe rows only (NaN off the universe); delisting returns in targets.
FEATURE_CODE_VERSION = "2"
EXECUTION_SETTINGS = {"engine", "dask"}


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_windows(windows: list[int], minimum: int, what: str) -> list[int]:
    if len(set(windows)) != len(windows):
        raise ValueError(f"{what} must not repeat a window: {windows}")
    if any(w < minimum for w in windows):
        raise ValueError(f"{what} must be >= {minimum}: {windows}")
    return windows


class MACDParams(_Params):
    fast: int = Field(12, ge=1)
    slow: int = Field(26, ge=2)
    signal: int = Field(9, ge=1)

    @model_validator(mode="after")
    def _fast_below_slow(self) -> MACDParams:
        if self.fast >= self.slow:
            raise ValueError(f"macd.fast ({self.fast}) must be below macd.slow ({self.slow})")
        return self


class BollingerParams(_Params):
    window: int = Field(20, ge=2)
    num_std: float = Field(2.0, gt=0)


class CrossSectionalParams(_Params):
    """Per-date rank (pct, average ties) or z-score of some per-ticker features, suffix ``_xs``,
    among the rows in the universe that date (``in_universe``); NaN on the other rows."""

    method: Literal["rank", "zscore"] = "rank"
    features: list[str] = ["ret_5d", "ret_20d", "ret_60d", "rvol_20", "log_dollar_volume_20"]

    @field_validator("features")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError(f"cross_sectional.features repeats a name: {names}")
        return names


class WeeklyParams(_Params):
    """Features on W-FRI weekly bars; windows count weekly bars."""

    enabled: bool = True
    return_windows: list[int] = [1, 4, 13]
    sma_windows: list[int] = [10, 40]
    rsi_window: int = Field(14, ge=1)
    vol_window: int = Field(13, ge=2)

    @field_validator("return_windows", "sma_windows")
    @classmethod
    def _windows(cls, windows: list[int]) -> list[int]:
        return _check_windows(windows, 1, "weekly windows")


class FeatureParams(_Params):
    """Windows count the ticker's own rows; a feature is NaN until its window is full.

    ``engine`` and ``dask`` say where the work runs, not what it computes: they are left out
    of the feature signature, and both engines give identical output.
    """

    engine: Literal["local", "dask"] = "local"
    dask: DaskParams = DaskParams()

    return_windows: list[int] = [1, 5, 10, 20, 60]
    sma_windows: list[int] = [5, 10, 20, 50, 200]
    rsi_window: int = Field(14, ge=1)
    macd: MACDParams = MACDParams()
    bollinger: BollingerParams = BollingerParams()
    atr_window: int = Field(14, ge=1)
    vol_windows: list[int] = [20, 60]
    volume_z_window: int = Field(20, ge=2)
    dollar_volume_window: int = Field(20, ge=1)
    lookback_52w: int = Field(252, ge=1, description="trading days in the '52-week' high/low")
    cross_sectional: CrossSectionalParams = CrossSectionalParams()
    weekly: WeeklyParams = WeeklyParams()

    @field_validator("return_windows", "sma_windows")
    @classmethod
    def _windows(cls, windows: list[int]) -> list[int]:
        return _check_windows(windows, 1, "windows")

    @field_validator("vol_windows")
    @classmethod
    def _vol_windows(cls, windows: list[int]) -> list[int]:
        return _check_windows(windows, 2, "vol_windows")

    @model_validator(mode="after")
    def _xs_names_exist(self) -> FeatureParams:
        known = set(base_feature_definitions(self))
        unknown = [name for name in self.cross_sectional.features if name not in known]
        if unknown:
            raise ValueError(
                f"cross_sectional.features names unknown features {unknown}; choose among {sorted(known)}"
            )
        return self


class TargetParams(_Params):
    """Forward-looking targets; horizons count the ticker's own rows (trading days).

    ``delisting_return``: see ``targets`` (the CRSP delisting convention)."""

    horizons: list[int] = [1, 5, 10, 30]
    price_column: Literal["closeadj", "close"] = "closeadj"
    label3_threshold: float = Field(
        0.5, gt=0, description="band half-width: in daily sigmas (volatility) or as a return (sqrt, constant)"
    )
    label3_scaling: Literal["volatility", "sqrt", "constant"] = Field(
        "volatility",
        description=(
            "volatility: threshold * trailing daily vol * sqrt(h), a move that is large for that stock; "
            "sqrt: threshold * sqrt(h); constant: threshold"
        ),
    )
    label3_vol_window: int = Field(20, ge=2, description="trailing rows (up to t) of the volatility band")
    delisting_return: float | None = Field(
        0.0,
        gt=-1.0,
        description=(
            "CRSP-style return from a delisted name's last price to what holders finally got, compounded "
            "into the targets of its last h rows (its last row's return_1d is this value). A ticker is "
            "delisted when its last price comes before the panel's last date. 0.0: exit at the last price "
            "(the synthetic market's delistings, which end a price path at random, with no shock); -0.30: "
            "the usual plug for delistings of unknown reason, after Shumway (1997, Journal of Finance "
            "52(1), 'The Delisting Bias in CRSP Data'), who finds performance-related delistings' missing "
            "returns average about -30%; null: no delisting return, those rows keep NaN targets "
            "(survivorship-biased)"
        ),
    )

    @field_validator("horizons")
    @classmethod
    def _horizons(cls, horizons: list[int]) -> list[int]:
        return _check_windows(horizons, 1, "horizons")

    def threshold(self, horizon: int) -> float:
        """The ±band around zero that separates NEUTRAL from BULLISH/BEARISH at ``horizon``;
        with ``volatility`` scaling, per unit of the row's trailing daily volatility."""
        scale = 1.0 if self.label3_scaling == "constant" else math.sqrt(horizon)
        return self.label3_threshold * scale


def base_feature_definitions(params: FeatureParams) -> dict[str, str]:
    """Per-ticker daily and weekly features, in output order, each with its formula."""
    p = params
    defs: dict[str, str] = {}
    for w in p.return_windows:
        defs[f"ret_{w}d"] = f"closeadj[t] / closeadj[t-{w}] - 1"
    for w in p.sma_windows:
        defs[f"sma_ratio_{w}"] = f"closeadj / mean(closeadj, {w}) - 1"
    defs[f"rsi_{p.rsi_window}"] = (
        f"Wilder RSI in [0, 100] on closeadj changes, seeded with the mean of the first {p.rsi_window}"
    )
    m = p.macd
    ema = f"EMA(closeadj, {m.fast}) - EMA(closeadj, {m.slow})"
    defs["macd"] = f"({ema}) / closeadj; EMAs seeded with the mean of their first span values"
    defs["macd_signal"] = f"EMA({ema}, {m.signal}) / closeadj"
    defs["macd_hist"] = "macd - macd_signal"
    b = p.bollinger
    defs[f"bb_pctb_{b.window}"] = (
        f"(closeadj - lower) / (upper - lower), bands mean ± {b.num_std} population std over {b.window}"
    )
    defs[f"atr_norm_{p.atr_window}"] = (
        f"Wilder ATR({p.atr_window}) of split-adjusted high/low/close(t-1), divided by close"
    )
    for w in p.vol_windows:
        defs[f"rvol_{w}"] = f"sample std of log(closeadj[t] / closeadj[t-1]) over {w}"
    w = p.volume_z_window
    defs[f"volume_z_{w}"] = f"(volume - mean(volume, {w})) / sample std(volume, {w})"
    w = p.dollar_volume_window
    defs[f"log_dollar_volume_{w}"] = f"log1p(mean(close * volume, {w})) (split-invariant)"
    w = p.lookback_52w
    defs["dist_52w_high"] = f"close / max(high, {w}) - 1"
    defs["dist_52w_low"] = f"close / min(low, {w}) - 1"
    defs["gap_overnight"] = "open[t] / close[t-1] - 1"
    wk = p.weekly
    if wk.enabled:
        bars = "W-FRI bars of completed weeks (a row sees weeks ending on or before its date)"
        for w in wk.return_windows:
            defs[f"w1_ret_{w}w"] = f"weekly close[b] / close[b-{w}] - 1; {bars}"
        for w in wk.sma_windows:
            defs[f"w1_sma_ratio_{w}w"] = f"weekly close / mean(weekly close, {w}) - 1; {bars}"
        defs[f"w1_rsi_{wk.rsi_window}w"] = f"Wilder RSI on weekly closes; {bars}"
        defs[f"w1_rvol_{wk.vol_window}w"] = f"sample std of weekly log returns; {bars}"
    return defs


def feature_definitions(params: FeatureParams) -> dict[str, str]:
    """Every output feature in output order: per-ticker features, then cross-sectional ones."""
    defs = base_feature_definitions(params)
    xs = params.cross_sectional
    how = "pct rank (average ties)" if xs.method == "rank" else "z-score (population std)"
    for name in xs.features:
        defs[f"{name}_xs"] = (
            f"per-date {how} of {name} over the tickers in the universe that date (in_universe); "
            "NaN on rows outside it"
        )
    return defs


def feature_names(params: FeatureParams) -> list[str]:
    """Ordered feature column names that ``build_features`` writes for ``params``."""
    return list(feature_definitions(params))


def target_columns(params: TargetParams) -> dict[str, dict[str, object]]:
    """Target column name → {kind, horizon, label_end column}, in output order."""
    out: dict[str, dict[str, object]] = {}
    for h in params.horizons:
        end = f"label_end_{h}d"
        out[f"return_{h}d"] = {"kind": "regression", "horizon": h, "label_end": end}
        out[f"dir_{h}d"] = {"kind": "classification", "horizon": h, "label_end": end}
        out[f"label3_{h}d"] = {"kind": "multiclass", "horizon": h, "label_end": end}
    return out


def _canonical_digest(payload: object) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def feature_signature(params: FeatureParams) -> str:
    """sha256 over the feature definitions, the params and FEATURE_CODE_VERSION."""
    return _canonical_digest(
        {
            "code_version": FEATURE_CODE_VERSION,
            "definitions": list(feature_definitions(params).items()),
            "params": params.model_dump(mode="json", exclude=EXECUTION_SETTINGS),
        }
    )


def target_signature(params: TargetParams) -> str:
    """sha256 over the target columns, the params and FEATURE_CODE_VERSION."""
    return _canonical_digest(
        {
            "code_version": FEATURE_CODE_VERSION,
            "targets": list(target_columns(params)),
            "params": params.model_dump(mode="json"),
        }
    )
