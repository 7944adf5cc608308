"""The promotion gate's rule: a candidate must show significant walk-forward skill of its own and beat
a reference that was walked forward on the same evaluation window.

Pure: versions come in as ``VersionMetrics`` (read from registry tags by ``registry``), a
``GateDecision`` and a text table come out. Kept apart from ``registry`` so that ``config`` can
hold ``PromotionParams`` without importing MLflow.

Every rule must pass (``judge``):

* **significance** (the candidate alone): each ``promotion.significance`` metric is at least its
  value (at most, for errors such as ``rmse``), e.g. Newey–West rank-IC t-stat ≥ 2 and
  probabilistic Sharpe ratio ≥ 0.95; a missing or undefined value fails;
* **min_periods**: the candidate's net Sharpe rests on at least ``min_periods`` daily book returns;
* **same window**: the reference's ``sepflow.wf.eval_start``/``eval_end`` equal the candidate's;
* **beat the reference**: for each of ``promotion.metrics``, candidate − reference > ``min_delta``
  (reference − candidate for errors). A reference metric that is undefined (the dummy's constant
  predictions have no rank IC) is never replaced by a number: that metric is judged on the
  candidate's significance alone (it passes only if every significance rule passes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sepflow.families import FAMILY_NAMES

__all__ = [
    "EVIDENCE",
    "LOWER_IS_BETTER",
    "STANDARD_ERRORS",
    "WALK_FORWARD_METRICS",
    "GateDecision",
    "MetricCheck",
    "PromotionParams",
    "ThresholdCheck",
    "VersionMetrics",
    "judge",
    "side_by_side",
]

METRIC_TAG = "sepflow.metric."
WALK_FORWARD_TAG = "sepflow.wf."
# Walk-forward tags that are not metrics: the evaluation window (ISO dates) and the stage's run.
WINDOW_TAGS = ("eval_start", "eval_end")
_WALK_FORWARD_NON_METRICS = frozenset({"run_id", *WINDOW_TAGS})

# Errors and costs: smaller is better. Every other metric: larger is better.
LOWER_IS_BETTER = frozenset({"rmse", "rmse_price", "mae", "log_loss", "brier", "turnover"})
# A metric → the tag holding its standard error (shown as ``value ± se``).
STANDARD_ERRORS: Mapping[str, str] = {"rank_ic": "rank_ic_se", "net_sharpe": "net_sharpe_se"}
# Sample sizes: evidence to read, not skill to beat.
COUNTS = frozenset({"n_dates", "n_periods", "n_trials", "n_folds"})
# Probabilities (probabilistic and deflated Sharpe ratio): a threshold must lie in [0, 1].
PROBABILITIES = frozenset({"psr", "dsr"})
# Every metric the walk-forward stage tags (``sepflow.wf.<name>``); params may name only these.
WALK_FORWARD_METRICS = frozenset({
    # prediction quality (classification, regression)
    "accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier",
    "rmse", "rmse_price", "mae", "direction_accuracy", "direction_balanced_accuracy",
    # information coefficients (rank IC: Newey–West standard error and t-stat over daily ICs)
    "ic", "rank_ic", "icir", "rank_icir", "rank_ic_se", "rank_ic_tstat", "n_dates",
    # the daily staggered book (annualised Sharpe; PSR vs 0; DSR over n_trials candidates)
    "net_sharpe", "net_sharpe_se", "gross_sharpe", "sortino", "psr", "dsr", "n_trials", "n_periods",
    "turnover", "max_drawdown", "n_folds",
})
# Rows the side-by-side table always shows (standard errors ride along with their metric).
EVIDENCE = ("rank_ic", "rank_ic_tstat", "n_dates", "net_sharpe", "psr", "dsr", "n_trials", "n_periods")
_NOT_TO_BEAT = frozenset(STANDARD_ERRORS.values()) | COUNTS
_NOT_THRESHOLDS = frozenset(STANDARD_ERRORS.values()) | {"n_periods", "n_trials", "n_folds"}


def _unknown(names: list[str] | set[str], allowed: frozenset[str], what: str) -> None:
    unknown = sorted(set(names) - WALK_FORWARD_METRICS)
    if unknown:
        raise ValueError(f"unknown walk-forward metrics {unknown}; known: {sorted(WALK_FORWARD_METRICS)}")
    refused = sorted(set(names) - allowed)
    if refused:
        raise ValueError(f"{refused} {what}")


class PromotionParams(BaseModel):
    """``params.yaml: promotion``: the candidate's own significance rules, and which walk-forward
    metrics it must beat the reference on, by what margin."""

    model_config = ConfigDict(extra="forbid")

    # The candidate alone: each metric ≥ value (≤ for errors); missing or undefined fails. {}: none.
    significance: dict[str, float] = Field(default_factory=lambda: {"rank_ic_tstat": 2.0, "psr": 0.95})
    # The candidate's n_periods (daily book returns behind its net Sharpe) must be at least this; 0: no rule.
    min_periods: int = 250
    metrics: list[str] = Field(default_factory=lambda: ["net_sharpe", "rank_ic"])
    # Per metric: how much the candidate must improve on the reference (a metric left out: 0).
    min_delta: dict[str, float] = Field(default_factory=lambda: {"net_sharpe": 0.0, "rank_ic": 0.0})
    # Whose version (same target) is the reference while a model has no production version; null: none.
    baseline_family: str | None = "dummy"

    @field_validator("significance")
    @classmethod
    def _significance(cls, value: dict[str, float]) -> dict[str, float]:
        _unknown(set(value), WALK_FORWARD_METRICS - _NOT_THRESHOLDS,
                 "cannot be significance rules (n_periods: use min_periods; standard errors and n_trials/n_folds are "
                 "not evidence of skill by themselves)")
        bad = {k: v for k, v in value.items() if not math.isfinite(v)}
        if bad:
            raise ValueError(f"significance thresholds must be finite numbers, got {bad}")
        outside = {k: v for k, v in value.items() if k in PROBABILITIES and not 0.0 <= v <= 1.0}
        if outside:
            raise ValueError(f"{sorted(outside)} are probabilities: thresholds must lie in [0, 1], got {outside}")
        return value

    @field_validator("min_periods", mode="before")
    @classmethod
    def _periods(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"must be a whole number of daily book returns, 0 or more (0: no rule); got {value!r}")
        return value

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one walk-forward metric")
        if len(set(value)) != len(value):
            raise ValueError(f"metrics listed twice in {value}")
        _unknown(value, WALK_FORWARD_METRICS - _NOT_TO_BEAT,
                 "are standard errors or sample sizes, not skill to beat the reference on")
        return value

    @field_validator("min_delta")
    @classmethod
    def _finite(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not math.isfinite(v)}
        if bad:
            raise ValueError(f"margins must be finite numbers, got {bad}")
        return value

    @field_validator("baseline_family")
    @classmethod
    def _family(cls, value: str | None) -> str | None:
        if value is not None and value not in FAMILY_NAMES:
            raise ValueError(f"unknown family {value!r}; families: {sorted(FAMILY_NAMES)}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _margins_follow_metrics(cls, data: object) -> object:
        """``metrics`` given without ``min_delta``: margin 0 for each (not the default metrics' margins)."""
        if isinstance(data, dict) and isinstance(data.get("metrics"), list) and "min_delta" not in data:
            return {**data, "min_delta": {m: 0.0 for m in data["metrics"] if isinstance(m, str)}}
        return data

    @model_validator(mode="after")
    def _margins_of_gated_metrics(self) -> PromotionParams:
        stray = sorted(set(self.min_delta) - set(self.metrics))
        if stray:
            raise ValueError(f"min_delta names metrics the gate does not use: {stray} (metrics: {self.metrics})")
        return self

    def margin(self, metric: str) -> float:
        """The improvement ``metric`` must exceed."""
        return float(self.min_delta.get(metric, 0.0))


def _floats(tags: Mapping[str, str], prefix: str, skip: frozenset[str] = frozenset()) -> dict[str, float]:
    """Numeric tags under ``prefix``; a value that is not a number is left out (read as undefined)."""
    out = {}
    for key, value in tags.items():
        name = key[len(prefix):]
        if key.startswith(prefix) and name not in skip:
            try:
                out[name] = float(value)
            except ValueError:
                continue
    return out


@dataclass(frozen=True)
class VersionMetrics:
    """A registered version and its metrics, as its tags record them.

    ``metrics``: the training segments' (``"test.roc_auc"`` → value, from ``sepflow.metric.*``);
    ``walk_forward``: the walk-forward stage's overall metrics and their evidence (``"net_sharpe"``,
    ``"net_sharpe_se"``, ``"psr"``, ``"n_periods"`` → value, from ``sepflow.wf.*``; the stage omits
    undefined values), empty until that stage has evaluated the version; ``eval_start`` and
    ``eval_end``: the ISO dates of its evaluation window (``sepflow.wf.eval_start``/``eval_end``).
    """

    name: str
    version: int
    family: str | None
    target: str | None
    headline: str | None
    metrics: dict[str, float]
    walk_forward: dict[str, float]
    eval_start: str | None = None
    eval_end: str | None = None

    @classmethod
    def from_tags(cls, name: str, version: int, tags: Mapping[str, str]) -> VersionMetrics:
        """Read a version's ``sepflow.*`` tags."""
        return cls(
            name, int(version), tags.get("sepflow.family"), tags.get("sepflow.target"),
            tags.get("sepflow.headline_metric"), _floats(tags, METRIC_TAG),
            _floats(tags, WALK_FORWARD_TAG, _WALK_FORWARD_NON_METRICS),
            tags.get(f"{WALK_FORWARD_TAG}eval_start"), tags.get(f"{WALK_FORWARD_TAG}eval_end"),
        )

    @property
    def label(self) -> str:
        """``name vN``."""
        return f"{self.name} v{self.version}"

    @property
    def window(self) -> tuple[str, str] | None:
        """``(eval_start, eval_end)``, or None when either tag is missing."""
        if self.eval_start and self.eval_end:
            return self.eval_start, self.eval_end
        return None

    def value(self, metric: str) -> float:
        """The walk-forward ``metric``; NaN when missing or undefined."""
        return self.walk_forward.get(metric, math.nan)


def _window_text(version: VersionMetrics | None) -> str:
    if version is None:
        return "-"
    return f"{version.window[0]}..{version.window[1]}" if version.window else "unknown"


@dataclass(frozen=True)
class ThresholdCheck:
    """One of the candidate's own rules: ``metric`` at least ``threshold`` (at most, for errors).

    ``rule`` names where it comes from: ``significance`` or ``min_periods``. Missing or undefined fails.
    """

    metric: str
    value: float
    threshold: float
    rule: str

    @property
    def passed(self) -> bool:
        """Whether the value is defined and on the right side of the threshold."""
        if not math.isfinite(self.value):
            return False
        return self.value <= self.threshold if self.metric in LOWER_IS_BETTER else self.value >= self.threshold

    @property
    def description(self) -> str:
        """The rule, e.g. ``≥ 2 (significance)``."""
        return f"{'≤' if self.metric in LOWER_IS_BETTER else '≥'} {self.threshold:g} ({self.rule})"

    def failure(self) -> str:
        """Why it failed, in a few words."""
        shown = "undefined" if not math.isfinite(self.value) else f"{self.value:.4g}"
        return f"{self.metric} {shown}, needs {self.description}"


@dataclass(frozen=True)
class MetricCheck:
    """One metric the candidate must beat the reference on.

    ``reference``: the reference's value, NaN when the reference leaves it undefined, None when
    there is no reference. An undefined reference value is not replaced by a number: the metric is
    then judged on the candidate's significance alone (``significance_passed``: whether every
    significance rule passed and there was at least one).
    """

    metric: str
    candidate: float
    reference: float | None
    margin: float
    significance_passed: bool = False

    @property
    def reference_undefined(self) -> bool:
        """The reference exists but has no defined value for this metric."""
        return self.reference is not None and not math.isfinite(self.reference)

    @property
    def delta(self) -> float:
        """Candidate minus reference (NaN when either is undefined or there is no reference)."""
        return math.nan if self.reference is None else self.candidate - self.reference

    @property
    def passed(self) -> bool:
        """A defined reference: the improvement (sign-corrected for errors) exceeds the margin. An
        undefined one: the candidate's significance passed. No reference, or no candidate value: False."""
        if self.reference is None or not math.isfinite(self.candidate):
            return False
        if self.reference_undefined:
            return self.significance_passed
        improvement = -self.delta if self.metric in LOWER_IS_BETTER else self.delta
        return bool(math.isfinite(improvement) and improvement > self.margin)

    @property
    def description(self) -> str:
        """The rule, e.g. ``Δ > +0.0500 (min_delta)``."""
        if self.reference is None:
            return "no reference to beat"
        if self.reference_undefined:
            return "reference undefined: judged on the candidate's significance alone"
        if self.metric in LOWER_IS_BETTER:
            return f"Δ < {-self.margin:+.4f} (min_delta)"
        return f"Δ > {self.margin:+.4f} (min_delta)"

    def failure(self, reference_label: str) -> str:
        """Why it failed, in a few words."""
        if self.reference_undefined:
            return f"{self.metric}: undefined for {reference_label}, and the candidate's significance does not carry it"
        return f"{self.metric} not better than {reference_label} by more than {self.margin:g} (min_delta)"


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict on a candidate.

    ``reference`` (None: nothing to compare with) and the alias that named it; ``requirements``:
    the candidate's own rules (significance, min_periods); ``same_window``: whether the reference was
    walked on the candidate's evaluation window (None without a reference); ``checks``: one per
    metric to beat; ``notes``: what is missing or mismatched (each one refuses).
    """

    allowed: bool
    reference: VersionMetrics | None
    reference_alias: str | None
    checks: tuple[MetricCheck, ...]
    notes: tuple[str, ...]
    requirements: tuple[ThresholdCheck, ...] = ()
    same_window: bool | None = None

    @property
    def reference_label(self) -> str:
        """``name vN (@alias)``, or ``no reference``."""
        if self.reference is None:
            return "no reference"
        alias = f" (@{self.reference_alias})" if self.reference_alias else ""
        return f"{self.reference.label}{alias}"

    @property
    def failures(self) -> tuple[str, ...]:
        """Every reason for a refusal: the notes, then each failed rule named."""
        return (*self.notes,
                *(r.failure() for r in self.requirements if not r.passed),
                *(c.failure(self.reference_label) for c in self.checks
                  if not c.passed and c.reference is not None and math.isfinite(c.candidate)))

    def summary(self) -> str:
        """One line: every failed rule (or that all passed)."""
        if self.failures:
            return "; ".join(self.failures)
        beaten = [c.metric for c in self.checks if not c.reference_undefined]
        alone = [c.metric for c in self.checks if c.reference_undefined]
        parts = ["significant on its own"]
        if beaten:
            parts.append(f"beats {self.reference_label} on {', '.join(beaten)} on the same window")
        if alone:
            parts.append(f"{', '.join(alone)}: undefined for {self.reference_label}, judged on significance alone")
        return "; ".join(parts)


def judge(
    candidate: VersionMetrics,
    reference: VersionMetrics | None,
    params: PromotionParams,
    *,
    reference_alias: str | None = None,
    notes: tuple[str, ...] = (),
) -> GateDecision:
    """Test ``candidate``'s walk-forward evidence, then hold it to ``reference`` on the same window.

    Refused when: a significance or min_periods rule fails (missing or undefined values fail);
    the candidate lacks a metric to beat; there is no reference; the reference was walked on
    another window (or either window is unknown); or a metric does not beat the reference by its
    margin. An undefined reference metric passes only on the candidate's significance (and not at
    all when ``params.significance`` is empty). ``notes`` (why the reference is what it is) refuse too.
    """
    found = list(notes)
    if not candidate.walk_forward:
        found.insert(0, f"{candidate.label} has no walk-forward metrics: run `dvc repro walk_forward@"
                        f"{candidate.family or '<family>'}` first")
    else:
        missing = [m for m in params.metrics if not math.isfinite(candidate.value(m))]
        if missing:
            found.insert(0, f"{candidate.label} has no defined walk-forward {', '.join(missing)}")
    requirements = [ThresholdCheck(m, candidate.value(m), float(v), "significance")
                    for m, v in params.significance.items()]
    if params.min_periods > 0:
        requirements.append(ThresholdCheck("n_periods", candidate.value("n_periods"), float(params.min_periods),
                                           "min_periods"))
    significant = bool(params.significance) and all(r.passed for r in requirements if r.rule == "significance")

    same_window = None
    if reference is None:
        found.append("nothing to compare with")
    else:
        same_window = candidate.window is not None and candidate.window == reference.window
        if candidate.window is None:
            found.append(f"{candidate.label} has no evaluation window (sepflow.wf.eval_start/eval_end): re-walk it "
                         f"with `dvc repro walk_forward@{candidate.family or '<family>'}`")
        elif not same_window:
            found.append(_other_window(candidate, reference))
        undefined = [m for m in params.metrics if not math.isfinite(reference.value(m))]
        if undefined and not params.significance:
            found.append(f"{reference.label} has no defined {', '.join(undefined)} and promotion.significance is "
                         "empty: nothing to judge the candidate on")
    checks = tuple(
        MetricCheck(m, candidate.value(m), None if reference is None else reference.value(m), params.margin(m),
                    significant)
        for m in params.metrics
    )
    allowed = not found and all(r.passed for r in requirements) and all(c.passed for c in checks)
    return GateDecision(allowed, reference, reference_alias, checks, tuple(found), tuple(requirements),
                        same_window)


def _other_window(candidate: VersionMetrics, reference: VersionMetrics) -> str:
    family = reference.family or "<family>"
    line = (f"{reference.label} was walked on another window ({_window_text(reference)}) than {candidate.label} "
            f"({_window_text(candidate)}): re-walk it with `dvc repro walk_forward@{family}`")
    if reference.name == candidate.name:
        # The stage walks the version train@family registered last, which is the candidate, not this one.
        line += (f" (that walks the version train@{family} registered last, so {reference.label} keeps its window: "
                 "replacing it takes --force --reason)")
    return line


def _number(metric: str, value: float, signed: bool = False) -> str:
    if not math.isfinite(value):
        return "undefined"
    if metric in COUNTS:
        return f"{value:.0f}"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _cell(version: VersionMetrics | None, metric: str) -> str:
    """``value ± se`` (where a standard error is recorded), ``undefined``, or ``-`` without a version."""
    if version is None:
        return "-"
    text = _number(metric, version.value(metric))
    se = version.value(STANDARD_ERRORS[metric]) if metric in STANDARD_ERRORS else math.nan
    return f"{text} ± {se:.4f}" if math.isfinite(se) and text != "undefined" else text


def side_by_side(candidate: VersionMetrics, decision: GateDecision) -> str:
    """A text table of both sides' walk-forward evidence, standard errors included.

    Rows: the evaluation window; each metric to beat (candidate, reference, delta, rule, result);
    each of the candidate's own rules (significance, min_periods); then the rest of the evidence
    (``EVIDENCE``, always shown) and every other walk-forward metric, ungated. Then the notes and
    the verdict, which names every failed rule.
    """
    reference = decision.reference
    ref_label = decision.reference_label
    rows: list[tuple[str, str, str, str, str, str]] = []
    if reference is not None or candidate.window is not None:
        result = "" if decision.same_window is None else ("pass" if decision.same_window else "FAIL")
        rows.append(("window", _window_text(candidate), _window_text(reference) if reference else "-", "",
                     "same window as the reference" if reference else "", result))
    for check in decision.checks:
        rows.append((check.metric, _cell(candidate, check.metric), _cell(reference, check.metric),
                     _number(check.metric, check.delta, signed=True) if math.isfinite(check.delta) else "",
                     check.description, "pass" if check.passed else "FAIL"))
    for requirement in decision.requirements:
        rows.append((requirement.metric, _cell(candidate, requirement.metric), _cell(reference, requirement.metric),
                     "", requirement.description, "pass" if requirement.passed else "FAIL"))
    shown = {row[0] for row in rows}
    theirs = set(reference.walk_forward) if reference else set()
    errors = set(STANDARD_ERRORS.values())
    rest = [m for m in EVIDENCE if m not in shown]
    rest += sorted((set(candidate.walk_forward) | theirs) - shown - set(rest) - errors)
    for metric in rest:
        rows.append((metric, _cell(candidate, metric), _cell(reference, metric), "", "", "(not gated)"))

    header = ("walk-forward", candidate.label, ref_label, "delta", "rule", "result")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) if i in (0, 4) else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row[:5], widths, strict=True))) + f"  {row[5]}"
             for row in [header, *rows]]
    lines = [line.rstrip() for line in lines]
    lines.extend(f"note: {note}" for note in decision.notes)
    lines.append(f"gate: {'pass' if decision.allowed else 'refused'} ({decision.summary()})")
    return "\n".join(lines)
