"""Model registry: register a trained folder, move aliases, gate promotions and leave an audit trail.

Names are ``<family>-<target>`` (``model_name``). ``register_trained`` logs the folder as a pyfunc
model, registers a new version, tags it with its origin and metrics, and points the
``candidate`` alias at it. ``promote`` moves another alias (``production`` by default) to a
version, after an optional gate, and writes who, when, why and what it replaced on the version.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from sepflow.errors import ConfigError, SepflowError
from sepflow.training.artifacts import TrainedModel, load_trained
from sepflow.training.pyfunc import ARTIFACT_KEY, ENTRY_POINT, predict_records

__all__ = [
    "CANDIDATE",
    "PRODUCTION",
    "Gate",
    "PromotionResult",
    "VersionMetrics",
    "headline_gate",
    "model_name",
    "promote",
    "register_trained",
    "side_by_side",
    "version_metrics",
]

CANDIDATE = "candidate"
PRODUCTION = "production"
METRIC_TAG = "sepflow.metric."
SEGMENTS = ("train", "validation", "test")


def model_name(family: str, target: str) -> str:
    """The registered model name of a family's model for a target."""
    return f"{family}-{target}"


@contextmanager
def _inside_run(run_id: str) -> Iterator[None]:
    active = mlflow.active_run()
    if active is None:
        with mlflow.start_run(run_id=run_id):
            yield
    elif active.info.run_id == run_id:
        yield
    else:
        raise ConfigError(f"registry: run {active.info.run_id} is active; cannot log a model to run {run_id}")


def _pip_requirements(trained: TrainedModel) -> list[str]:
    """Pinned distributions behind the libraries the model recorded (resolving pip's inference is slow)."""
    distributions = packages_distributions()
    pins = {"mlflow": version("mlflow")}
    for module in trained.metadata["libraries"]:
        for dist in distributions.get(module, []):
            if dist != "sepflow":  # not on an index: serving installs it from the repository
                try:
                    pins[dist] = version(dist)
                except PackageNotFoundError:
                    continue
    return sorted(f"{dist}=={pin}" for dist, pin in pins.items())


def _version_tags(trained: TrainedModel, run_id: str) -> dict[str, str]:
    meta = trained.metadata
    tags = {
        "sepflow.family": meta["family"], "sepflow.target": meta["target"], "sepflow.task": meta["task"],
        "sepflow.artifact_name": meta["artifact_name"], "sepflow.asof": meta["asof"],
        "sepflow.run_id": run_id, "sepflow.headline_metric": trained.metrics["headline"],
    }
    for segment in SEGMENTS:
        for metric, value in trained.metrics[segment].items():
            if value is not None:
                tags[f"{METRIC_TAG}{segment}.{metric}"] = repr(float(value))
    if trained.metrics["overfit_margin"] is not None:
        tags[f"{METRIC_TAG}overfit_margin"] = repr(float(trained.metrics["overfit_margin"]))
    return tags


def register_trained(out_dir: Path, model_name: str, run_id: str) -> int:
    """Log ``out_dir`` (a ``train_family`` folder) to run ``run_id`` as a pyfunc model, register it
    as a new version of ``model_name``, point ``candidate`` at it and return the version number."""
    out_dir = Path(out_dir)
    trained = load_trained(out_dir)
    example = trained.input_example()
    signature = infer_signature(example, predict_records(trained, example))
    with _inside_run(run_id):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(ENTRY_POINT), artifacts={ARTIFACT_KEY: str(out_dir)},
            registered_model_name=model_name, signature=signature, input_example=example,
            pip_requirements=_pip_requirements(trained),
        )
    registered = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in _version_tags(trained, run_id).items():
        client.set_model_version_tag(model_name, registered, key, value)
    client.set_registered_model_alias(model_name, CANDIDATE, registered)
    return int(registered)


@dataclass(frozen=True)
class VersionMetrics:
    """A registered version's metrics, read from its ``sepflow.metric.*`` tags (``"test.roc_auc"`` → value)."""

    version: int
    headline: str | None
    metrics: dict[str, float]

    def headline_value(self, segment: str = "test") -> float:
        """The headline metric on ``segment``; NaN when unknown."""
        return self.metrics.get(f"{segment}.{self.headline}", float("nan"))


# Gate(candidate, production or None when nothing serves yet) → True to allow the promotion.
Gate = Callable[[VersionMetrics, VersionMetrics | None], bool]


def version_metrics(name: str, version_number: int) -> VersionMetrics:
    """Metrics of version ``version_number`` of registered model ``name``."""
    tags = MlflowClient().get_model_version(name, str(version_number)).tags
    metrics = {key[len(METRIC_TAG):]: float(value) for key, value in tags.items() if key.startswith(METRIC_TAG)}
    return VersionMetrics(int(version_number), tags.get("sepflow.headline_metric"), metrics)


def headline_gate(segment: str = "test", min_delta: float = 0.0) -> Gate:
    """Allow a candidate whose headline metric on ``segment`` beats production's by ``min_delta`` or more.

    When nothing is in production, or its headline is undefined, a candidate with a defined headline passes.
    """

    def gate(candidate: VersionMetrics, production: VersionMetrics | None) -> bool:
        mine = candidate.headline_value(segment)
        theirs = float("nan") if production is None else production.headline_value(segment)
        if not np.isfinite(theirs):
            return bool(np.isfinite(mine))
        return bool(mine >= theirs + min_delta)

    return gate


@dataclass(frozen=True)
class PromotionResult:
    """What ``promote`` did: ``alias`` now names ``version`` of ``model_name`` (it named ``previous_version``)."""

    model_name: str
    version: int
    alias: str
    previous_version: int | None
    forced: bool
    reason: str
    comparison: str


def side_by_side(candidate: VersionMetrics, production: VersionMetrics | None, segment: str = "test") -> str:
    """A small text table of ``segment``'s metrics: candidate, production and their difference."""
    names = sorted({k for k in candidate.metrics if k.startswith(f"{segment}.")}
                   | ({k for k in production.metrics if k.startswith(f"{segment}.")} if production else set()))
    headline = f"{segment}.{candidate.headline}"
    names.sort(key=lambda k: k != headline)  # headline first, the rest alphabetical
    prod_label = f"production v{production.version}" if production else "production (none)"
    lines = [f"{'metric':<28}{f'candidate v{candidate.version}':>16}{prod_label:>20}{'delta':>12}"]
    for key in names:
        mine = candidate.metrics.get(key, float("nan"))
        theirs = production.metrics.get(key, float("nan")) if production else float("nan")
        lines.append(f"{key:<28}{mine:>16.4f}{theirs:>20.4f}{mine - theirs:>12.4f}")
    return "\n".join(lines)


def _alias_version(client: MlflowClient, name: str, alias: str) -> int | None:
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def promote(
    model_name: str,
    *,
    version: int | None = None,
    alias_from: str = CANDIDATE,
    to: str = PRODUCTION,
    gate: Gate | None = None,
    force: bool = False,
    reason: str | None = None,
    user: str | None = None,
) -> PromotionResult:
    """Point alias ``to`` at ``version`` (default: the version ``alias_from`` names).

    ``gate(candidate, production)`` must allow it, unless ``force=True`` with a non-empty
    ``reason``. The version is tagged ``sepflow.promoted_at``, ``sepflow.promoted_by``,
    ``sepflow.promoted_to``, ``sepflow.promotion_reason``, ``sepflow.previous_version`` and
    ``sepflow.promotion_forced``.
    A refusal raises ``SepflowError`` with the two versions' metrics side by side.
    """
    if force and not (reason or "").strip():
        raise ConfigError("registry: force=True needs a non-empty reason (it is written to the audit tags)")
    client = MlflowClient()
    if version is None:
        version = _alias_version(client, model_name, alias_from)
        if version is None:
            raise SepflowError(f"registry: {model_name} has no version with alias {alias_from!r}")
    candidate = version_metrics(model_name, version)
    previous = _alias_version(client, model_name, to)
    production = None if previous is None else version_metrics(model_name, previous)
    comparison = side_by_side(candidate, production)
    allowed = gate is None or gate(candidate, production)
    if not allowed and not force:
        raise SepflowError(
            f"registry: the gate refuses {model_name} v{version} as {to!r}; "
            f"pass force=True with a reason to override\n{comparison}"
        )
    why = (reason or "").strip() or ("gate passed" if gate is not None else "no gate")
    audit: Mapping[str, Any] = {
        "sepflow.promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "sepflow.promoted_by": user or _current_user(),
        "sepflow.promoted_to": to,
        "sepflow.promotion_reason": why,
        "sepflow.previous_version": "none" if previous is None else str(previous),
        "sepflow.promotion_forced": "true" if force and not allowed else "false",
    }
    for key, value in audit.items():
        client.set_model_version_tag(model_name, str(version), key, value)
    client.set_registered_model_alias(model_name, to, str(version))
    return PromotionResult(model_name, int(version), to, previous, force and not allowed, why, comparison)


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "unknown"
