"""The promotion gate's rule: a candidate's walk-forward metrics must beat a reference's by a margin.

Pure: versions come in as ``VersionMetrics`` (read from registry tags by ``registry``), a
``GateDecision`` and a text table come out. Kept apart from ``registry`` so that ``config`` can
hold ``PromotionParams`` without importing MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sepflow.models import FAMILIES

__all__ = [
    "LOWER_IS_BETTER",
    "NO_SKILL",
    "GateDecision",
    "MetricCheck",
    "PromotionParams",
    "VersionMetrics",
    "judge",
    "side_by_side",
]

METRIC_TAG = "sepflow.metric."
WALK_FORWARD_TAG = "sepflow.wf."
# Walk-forward tags that are not metrics.
_WALK_FORWARD_NON_METRICS = frozenset({"run_id"})

# Errors: smaller is better. Every other metric: larger is better.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss", "brier"})
# What a model without skill scores. A reference whose metric is undefined (the dummy's constant
# predictions have no rank IC; a position that never changes has no Sharpe) is held to this.
NO_SKILL: Mapping[str, float] = {
    "net_sharpe": 0.0, "gross_sharpe": 0.0, "ic": 0.0, "rank_ic": 0.0, "icir": 0.0, "rank_icir": 0.0,
    "roc_auc": 0.5,
}


class PromotionParams(BaseModel):
    """``params.yaml: promotion``: which walk-forward metrics gate ``sepflow promote``, by what margin."""

    model_config = ConfigDict(extra="forbid")

    metrics: list[str] = Field(default_factory=lambda: ["net_sharpe", "rank_ic"])
    # Per metric: how much the candidate must improve on the reference (a metric left out: 0).
    min_delta: dict[str, float] = Field(default_factory=lambda: {"net_sharpe": 0.0, "rank_ic": 0.0})
    # Whose version (same target) is the reference while a model has no production version; null: none.
    baseline_family: str | None = "dummy"

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one walk-forward metric")
        if len(set(value)) != len(value):
            raise ValueError(f"metrics listed twice in {value}")
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
        if value is not None and value not in FAMILIES:
            raise ValueError(f"unknown family {value!r}; families: {sorted(FAMILIES)}")
        return value

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
    return {key[len(prefix):]: float(value) for key, value in tags.items()
            if key.startswith(prefix) and key[len(prefix):] not in skip}


@dataclass(frozen=True)
class VersionMetrics:
    """A registered version and its metrics, as its tags record them.

    ``metrics``: the training segments' (``"test.roc_auc"`` → value, from ``sepflow.metric.*``);
    ``walk_forward``: the walk-forward stage's overall metrics (``"net_sharpe"`` → value, from
    ``sepflow.wf.*``), empty until that stage has evaluated the version.
    """

    name: str
    version: int
    family: str | None
    target: str | None
    headline: str | None
    metrics: dict[str, float]
    walk_forward: dict[str, float]

    @classmethod
    def from_tags(cls, name: str, version: int, tags: Mapping[str, str]) -> VersionMetrics:
        """Read a version's ``sepflow.*`` tags."""
        return cls(
            name, int(version), tags.get("sepflow.family"), tags.get("sepflow.target"),
            tags.get("sepflow.headline_metric"), _floats(tags, METRIC_TAG),
            _floats(tags, WALK_FORWARD_TAG, _WALK_FORWARD_NON_METRICS),
        )

    @property
    def label(self) -> str:
        """``name vN``."""
        return f"{self.name} v{self.version}"


@dataclass(frozen=True)
class MetricCheck:
    """One gated metric: does ``candidate`` improve on ``reference`` by more than ``margin``?

    ``no_skill`` marks a reference value that stands in for an undefined one (see ``NO_SKILL``).
    """

    metric: str
    candidate: float
    reference: float
    margin: float
    no_skill: bool = False

    @property
    def delta(self) -> float:
        """Candidate minus reference."""
        return self.candidate - self.reference

    @property
    def passed(self) -> bool:
        """Whether the improvement (sign-corrected for errors) exceeds the margin; False when undefined."""
        improvement = -self.delta if self.metric in LOWER_IS_BETTER else self.delta
        return bool(math.isfinite(improvement) and improvement > self.margin)


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict on a candidate: the reference it was held to (None: nothing to compare
    with) and the alias that named it, one check per gated metric, and notes saying what is missing."""

    allowed: bool
    reference: VersionMetrics | None
    reference_alias: str | None
    checks: tuple[MetricCheck, ...]
    notes: tuple[str, ...]

    @property
    def reference_label(self) -> str:
        """``name vN (@alias)``, or ``no reference``."""
        if self.reference is None:
            return "no reference"
        alias = f" (@{self.reference_alias})" if self.reference_alias else ""
        return f"{self.reference.label}{alias}"

    def summary(self) -> str:
        """One line: the first note, else which metrics failed (or that all passed)."""
        if self.notes:
            return self.notes[0]
        failed = [c.metric for c in self.checks if not c.passed]
        if failed:
            return f"{', '.join(failed)} not better than {self.reference_label} by more than the margin"
        return f"every gated metric beats {self.reference_label} by more than its margin"


def judge(
    candidate: VersionMetrics,
    reference: VersionMetrics | None,
    params: PromotionParams,
    *,
    reference_alias: str | None = None,
    notes: tuple[str, ...] = (),
) -> GateDecision:
    """Hold ``candidate``'s walk-forward metrics to ``reference``'s plus each metric's margin.

    Refused when the candidate lacks a gated metric (or it is undefined), when there is no
    reference, or when any metric fails. ``notes`` (why the reference is what it is) are kept.
    """
    found = list(notes)
    if not candidate.walk_forward:
        found.insert(0, f"{candidate.label} has no walk-forward metrics: run `dvc repro walk_forward@"
                        f"{candidate.family or '<family>'}` first")
    else:
        missing = [m for m in params.metrics if not math.isfinite(candidate.walk_forward.get(m, math.nan))]
        if missing:
            found.insert(0, f"{candidate.label} has no defined walk-forward {', '.join(missing)}")
    if reference is None:
        found.append("nothing to compare with")
    checks = []
    for metric in params.metrics:
        theirs = math.nan if reference is None else reference.walk_forward.get(metric, math.nan)
        stand_in = reference is not None and not math.isfinite(theirs) and metric in NO_SKILL
        if stand_in:
            theirs = NO_SKILL[metric]
        elif reference is not None and not math.isfinite(theirs):
            found.append(f"{reference.label} has no defined walk-forward {metric} to compare with")
        checks.append(MetricCheck(metric, candidate.walk_forward.get(metric, math.nan), theirs,
                                  params.margin(metric), stand_in))
    allowed = not found and all(c.passed for c in checks)
    return GateDecision(allowed, reference, reference_alias, tuple(checks), tuple(found))


def _number(value: float, signed: bool = False) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def side_by_side(candidate: VersionMetrics, decision: GateDecision) -> str:
    """A text table of the walk-forward metrics: candidate, reference, delta, margin and verdict per
    gated metric, then the other walk-forward metrics (ungated), the notes and the verdict."""
    theirs_all = decision.reference.walk_forward if decision.reference else {}
    ref_label = decision.reference_label
    width = max(12, len(candidate.label), len(ref_label)) + 2
    lines = [f"{'walk-forward':<16}{candidate.label:>{width}}{ref_label:>{width}}{'delta':>10}{'margin':>10}  result"]
    for check in decision.checks:
        theirs = _number(check.reference) + ("*" if check.no_skill else "")
        margin = ("<" if check.metric in LOWER_IS_BETTER else ">") + _number(check.margin, signed=True)
        lines.append(f"{check.metric:<16}{_number(check.candidate):>{width}}{theirs:>{width}}"
                     f"{_number(check.delta, signed=True):>10}{margin:>10}  {'pass' if check.passed else 'FAIL'}")
    gated = {c.metric for c in decision.checks}
    for metric in sorted((set(candidate.walk_forward) | set(theirs_all)) - gated):
        mine, theirs = candidate.walk_forward.get(metric, math.nan), theirs_all.get(metric, math.nan)
        lines.append(f"{metric:<16}{_number(mine):>{width}}{_number(theirs):>{width}}"
                     f"{_number(mine - theirs, signed=True):>10}{'':>10}  (not gated)")
    lines.extend(f"* {ref_label} has no defined {c.metric}; the no-skill value {NO_SKILL[c.metric]:g} stands in"
                 for c in decision.checks if c.no_skill)
    lines.extend(f"note: {note}" for note in decision.notes)
    lines.append(f"gate: {'pass' if decision.allowed else 'refused'} ({decision.summary()})")
    return "\n".join(lines)
