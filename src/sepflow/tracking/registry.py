"""Model registry: register a trained folder, move aliases, gate promotions and leave an audit trail.

Names are ``<family>-<target>`` (``model_name``). ``register_trained`` logs the folder as a pyfunc
model, registers a new version, tags it with its origin and metrics, and points the
``candidate`` alias at it. ``promote`` moves another alias (``production`` by default) to a
version once a gate allows it (``walk_forward_gate``: the candidate's walk-forward evidence must be
significant on its own and beat a reference walked on the same window; the rule lives in
``sepflow.tracking.gate``), and writes who, when, why and what it replaced on the version.
Rolling back is promoting an older version: the same gate judges it, so a worse one needs
``force`` and a reason.
"""

from __future__ import annotations

import getpass
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

import sepflow
from sepflow.errors import ConfigError, SepflowError
from sepflow.tracking.gate import (
    METRIC_TAG,
    WALK_FORWARD_TAG,
    GateDecision,
    PromotionParams,
    VersionMetrics,
    judge,
    side_by_side,
)
from sepflow.training.artifacts import TrainedModel
from sepflow.training.pyfunc import ARTIFACT_KEY, ENTRY_POINT, predict_records
from sepflow.training.routing import RoutedModel, load_served

__all__ = [
    "CANDIDATE",
    "PRODUCTION",
    "Gate",
    "PromotionRefused",
    "PromotionResult",
    "latest_version",
    "logged_model_id",
    "model_name",
    "promote",
    "record_walk_forward",
    "register_trained",
    "version_metrics",
    "walk_forward_gate",
]

# sepflow's own code, logged with every model (MLflow puts it on sys.path when loading), so a
# registered model loads where sepflow is not installed; and the libraries that code imports.
SEPFLOW_CODE = Path(sepflow.__file__).parent
SERVING_MODULES = ("numpy", "pandas", "pyarrow", "sklearn", "pydantic", "yaml", "joblib", "tqdm")

CANDIDATE = "candidate"
PRODUCTION = "production"
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


# Scanning every installed distribution takes a second; a stage registers several models.
_distributions = cache(packages_distributions)


def _pip_requirements(trained: TrainedModel | RoutedModel) -> list[str]:
    """Pinned distributions behind the libraries the model recorded and those sepflow's serving code
    imports (resolving pip's inference is slow). sepflow itself is not on an index: its code travels
    with the model (``code_paths``)."""
    distributions = _distributions()
    pins = {"mlflow": version("mlflow")}
    for module in [*trained.metadata["libraries"], *SERVING_MODULES]:
        for dist in distributions.get(module, []):
            if dist != "sepflow":
                try:
                    pins[dist] = version(dist)
                except PackageNotFoundError:
                    continue
    return sorted(f"{dist}=={pin}" for dist, pin in pins.items())


def _version_tags(trained: TrainedModel | RoutedModel, run_id: str) -> dict[str, str]:
    meta = trained.metadata
    tags = {
        "sepflow.family": meta["family"], "sepflow.target": meta["target"], "sepflow.task": meta["task"],
        "sepflow.artifact_name": meta["artifact_name"], "sepflow.asof": meta["asof"],
        "sepflow.run_id": run_id, "sepflow.headline_metric": trained.metrics["headline"],
        "sepflow.scope": meta.get("scope", "pooled"),
        # development: fitted before the evaluation window; release: refit on every labelled row
        # after walk-forward judged the procedure (sepflow.training.release)
        "sepflow.procedure": meta.get("procedure", "development"),
    }
    for segment in SEGMENTS:
        for metric, value in trained.metrics[segment].items():
            if value is not None:
                tags[f"{METRIC_TAG}{segment}.{metric}"] = repr(float(value))
    if trained.metrics["overfit_margin"] is not None:
        tags[f"{METRIC_TAG}overfit_margin"] = repr(float(trained.metrics["overfit_margin"]))
    return tags


def register_trained(out_dir: Path, model_name: str, run_id: str, tags: Mapping[str, str] | None = None) -> int:
    """Log ``out_dir`` (a trained folder: ``train_family``'s, a release, or a per-symbol one whose
    model routes each ticker to its own) to run ``run_id`` as a pyfunc model, register it as a new
    version of ``model_name`` (with its origin and metrics as tags, and ``tags``), point
    ``candidate`` at it and return the version number."""
    out_dir = Path(out_dir)
    trained = load_served(out_dir)
    example = trained.input_example()
    signature = infer_signature(example, predict_records(trained, example))
    with _inside_run(run_id):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(ENTRY_POINT), artifacts={ARTIFACT_KEY: str(out_dir)},
            registered_model_name=model_name, signature=signature, input_example=example,
            pip_requirements=_pip_requirements(trained), code_paths=[str(SEPFLOW_CODE)],
        )
        # The segment metrics on the model itself: its page shows them, search_logged_models finds them.
        mlflow.log_metrics(_segment_metrics(trained), model_id=info.model_id)
    registered = str(info.registered_model_version)
    client = MlflowClient()
    client.update_model_version(model_name, registered, description=_description(trained))
    for key, value in {**_version_tags(trained, run_id), **(tags or {})}.items():
        client.set_model_version_tag(model_name, registered, key, value)
    client.set_registered_model_alias(model_name, CANDIDATE, registered)
    return int(registered)


def _segment_metrics(trained: TrainedModel | RoutedModel) -> dict[str, float]:
    return {f"{segment}.{metric}": float(value) for segment in SEGMENTS
            for metric, value in trained.metrics.get(segment, {}).items()
            if isinstance(value, int | float) and math.isfinite(value)}


def _description(trained: TrainedModel | RoutedModel) -> str:
    """A version's Markdown description: what it is, the dates it learned from, its headline."""
    meta, metrics = trained.metadata, trained.metrics
    if meta.get("scope") == "per_symbol":
        learned = f"one model per ticker ({len(meta['tickers'])} tickers), each on its own development rows"
    elif meta.get("procedure") == "release":
        segments = meta["segments"]
        learned = (f"refit on every labelled row, {segments['fit']['start']} to {segments['validation']['end']} "
                   f"(validation tail from {segments['validation']['start']}), after walk-forward judged the "
                   "procedure")
    else:
        data = meta["data"]
        learned = (f"trained on {data['date_min']} to {data['date_max']} (the development region, "
                   f"{data['n_tickers']} tickers)")
    headline = metrics.get("headline")
    scores = ", ".join(f"{segment} {metrics[segment][headline]:.4f}" for segment in ("validation", "test")
                       if isinstance(metrics.get(segment, {}).get(headline), int | float))
    return (f"**{meta['family']}** on **{meta['target']}** ({meta['task']}), as of {meta['asof']}: {learned}; "
            f"{len(trained.features)} features."
            + (f"\n\nHeadline {headline}: {scores}." if scores else ""))


def logged_model_id(name: str, version_number: int) -> str | None:
    """The MLflow 3 LoggedModel behind a registered version (None for versions registered without one)."""
    return _model_id(MlflowClient().get_model_version(name, str(version_number)))


def _model_id(version: ModelVersion) -> str | None:
    # The SQL registry leaves ModelVersion.model_id empty; the source names the model: models:/<model_id>.
    source = version.source or ""
    return version.model_id or (source.removeprefix("models:/") if source.startswith("models:/m-") else None)


def latest_version(name: str, procedure: str) -> int | None:
    """The newest version of ``name`` whose ``sepflow.procedure`` tag is ``procedure``
    (``development`` or ``release``); None when there is none."""
    versions = MlflowClient().search_model_versions(f"name = '{name}'")
    found = [int(v.version) for v in versions if v.tags.get("sepflow.procedure", "development") == procedure]
    return max(found, default=None)


def record_walk_forward(
    name: str, version_number: int, metrics: Mapping[str, float], window: Mapping[str, str], run_id: str,
    *, log_from: str | None = None,
) -> None:
    """Tag version ``version_number`` of ``name`` with the walk-forward evidence that judged its
    procedure (``sepflow.wf.<metric>``), the evaluation window (``window``: ``eval_start``,
    ``eval_end`` as ISO dates) and the walk-forward run ``run_id``: what the promotion gate reads.
    The evidence is also logged as metrics of the version's model (``wf.<metric>``), through run
    ``log_from`` (default ``run_id``; MLflow logs a model's metrics through a run, which shows them
    too), and appended to the version's description."""
    tags = {f"{WALK_FORWARD_TAG}{key}": repr(float(value)) for key, value in metrics.items()}
    tags.update({f"{WALK_FORWARD_TAG}{key}": value for key, value in window.items()})
    tags[f"{WALK_FORWARD_TAG}run_id"] = run_id
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version_number), key, value)
    version = client.get_model_version(name, str(version_number))
    # The evidence as metrics of the model (its page, search_logged_models), from the walk-forward run.
    finite = {f"wf.{key}": float(value) for key, value in metrics.items() if math.isfinite(value)}
    if model_id := _model_id(version):
        client.log_batch(log_from or run_id, metrics=[Metric(key, value, int(time.time() * 1000), 0, model_id=model_id)
                                          for key, value in finite.items()])
    client.update_model_version(name, str(version_number), description=(
        f"{version.description or ''}\n\n{_evidence_line(metrics, window)}").strip())


def _evidence_line(metrics: Mapping[str, float], window: Mapping[str, str]) -> str:
    """The walk-forward evidence in one Markdown line, each figure with its error bar."""
    get = lambda key: metrics.get(key, math.nan)  # noqa: E731
    return (f"Walk-forward {window['eval_start']} to {window['eval_end']}: rank IC {get('rank_ic'):.4f} ± "
            f"{get('rank_ic_se'):.4f} (t {get('rank_ic_tstat'):.2f}, {get('n_dates'):.0f} dates); net Sharpe "
            f"{get('net_sharpe'):.2f} ± {get('net_sharpe_se'):.2f} (PSR {get('psr'):.2f}, DSR {get('dsr'):.2f} over "
            f"{get('n_trials'):.0f} candidates, {get('n_periods'):.0f} daily returns).")


def version_metrics(name: str, version_number: int) -> VersionMetrics:
    """Metrics of version ``version_number`` of registered model ``name``, read from its tags."""
    try:
        tags = MlflowClient().get_model_version(name, str(version_number)).tags
    except MlflowException as exc:
        raise SepflowError(f"registry: {name} has no version {version_number}") from exc
    return VersionMetrics.from_tags(name, int(version_number), tags)


def _alias_version(client: MlflowClient, name: str, alias: str) -> int | None:
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


# Gate(candidate) → its verdict, with the reference the gate chose.
Gate = Callable[[VersionMetrics], GateDecision]


def _walk_forward_reference(
    client: MlflowClient, candidate: VersionMetrics, params: PromotionParams,
) -> tuple[VersionMetrics | None, str | None, tuple[str, ...]]:
    """The reference: the model's production version if it is walk-forward tested, else the
    baseline family's production or candidate version for the same target, preferring the one
    walked on the candidate's evaluation window (else the first tested one, which the gate then
    refuses for its window). A version is never its own reference; untested versions are skipped
    with a note (which refuses: a version stood in for one that could not be judged)."""
    seen = {(candidate.name, candidate.version)}

    def look(name: str, alias: str) -> tuple[VersionMetrics | None, str | None]:
        """The version ``alias`` names if walk-forward tested, else a note saying why not (None: no version)."""
        number = _alias_version(client, name, alias)
        if number is None or (name, number) in seen:
            return None, None
        seen.add((name, number))
        found = version_metrics(name, number)
        if found.walk_forward:
            return found, None
        return None, f"{found.label} (@{alias}) has no walk-forward metrics"

    places = [(candidate.name, PRODUCTION)]
    if params.baseline_family and candidate.target:
        baseline = model_name(params.baseline_family, candidate.target)
        places += [(baseline, PRODUCTION), (baseline, CANDIDATE)]
    looked = [(alias, *look(name, alias)) for name, alias in places]
    tested = [(i, version, alias) for i, (alias, version, _) in enumerate(looked) if version is not None]
    # The model's own production version comes first whatever its window; among the baseline's, one
    # walked on the candidate's window goes first.
    same = [t for t in tested if t[0] > 0 and candidate.window is not None and t[1].window == candidate.window]
    chosen = None
    if tested:
        chosen = tested[0] if tested[0][0] == 0 or not same else same[0]
    stop = len(looked) if chosen is None else chosen[0]
    notes = [note for _, _, note in looked[:stop] if note]
    if chosen is not None:
        return chosen[1], chosen[2], tuple(notes)
    if params.baseline_family and not candidate.target:
        notes.append(f"{candidate.label} has no sepflow.target tag, so no {params.baseline_family} baseline")
    return None, None, tuple(notes)


def walk_forward_gate(params: PromotionParams) -> Gate:
    """The gate ``sepflow promote`` uses (the rule: ``sepflow.tracking.gate.judge``).

    The candidate's walk-forward evidence must pass ``params.significance`` and ``min_periods`` on its
    own, and every metric in ``params.metrics`` must beat the reference's by more than its
    ``min_delta`` on the same evaluation window; a reference metric that is undefined is judged on
    the candidate's significance alone. The reference is the model's current ``production``
    version, else the ``baseline_family``'s version for the same target (its ``production``, else
    its ``candidate``; the one walked on the candidate's window first), skipping versions without
    walk-forward metrics. No reference, or a candidate without the metrics: refused.
    """

    def gate(candidate: VersionMetrics) -> GateDecision:
        reference, alias, notes = _walk_forward_reference(MlflowClient(), candidate, params)
        return judge(candidate, reference, params, reference_alias=alias, notes=notes)

    return gate


class PromotionRefused(SepflowError):
    """The gate refused a promotion; ``comparison`` holds the side-by-side table."""

    def __init__(self, message: str, decision: GateDecision, comparison: str) -> None:
        super().__init__(message)
        self.decision = decision
        self.comparison = comparison


@dataclass(frozen=True)
class PromotionResult:
    """What ``promote`` did: ``alias`` now names ``version`` of ``model_name`` (it named
    ``previous_version``). ``changed`` is False when the alias already named that version."""

    model_name: str
    version: int
    alias: str
    previous_version: int | None
    forced: bool
    reason: str
    comparison: str
    changed: bool = True


def promote(
    model_name: str,
    *,
    gate: Gate,
    version: int | None = None,
    alias_from: str = CANDIDATE,
    to: str = PRODUCTION,
    force: bool = False,
    reason: str | None = None,
    user: str | None = None,
) -> PromotionResult:
    """Point alias ``to`` at ``version`` (default: the version ``alias_from`` names).

    ``gate(candidate)`` must allow it, unless ``force=True`` with a non-empty ``reason``. The
    version is tagged ``sepflow.promoted_at``, ``sepflow.promoted_by``, ``sepflow.promoted_to``,
    ``sepflow.promotion_reason``, ``sepflow.previous_version``, ``sepflow.promotion_forced`` and
    ``sepflow.promotion_reference``. A refusal raises ``PromotionRefused`` carrying the side-by-side
    table (both sides' evidence with standard errors, and the rules that failed). Promoting the
    version the alias already names changes and tags nothing.
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
    if previous == candidate.version:
        return PromotionResult(model_name, previous, to, previous, False, "", "", changed=False)
    decision = gate(candidate)
    comparison = side_by_side(candidate, decision)
    if not decision.allowed and not force:
        raise PromotionRefused(
            f"registry: the gate refuses {candidate.label} as {to!r}: {decision.summary()}; "
            "override with force and a reason (sepflow promote --force --reason TEXT)", decision, comparison,
        )
    forced = force and not decision.allowed
    why = (reason or "").strip() or "gate passed"
    audit: Mapping[str, Any] = {
        "sepflow.promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "sepflow.promoted_by": user or _current_user(),
        "sepflow.promoted_to": to,
        "sepflow.promotion_reason": why,
        "sepflow.previous_version": "none" if previous is None else str(previous),
        "sepflow.promotion_forced": "true" if forced else "false",
        "sepflow.promotion_reference": decision.reference.label if decision.reference else "none",
    }
    for key, value in audit.items():
        client.set_model_version_tag(model_name, str(candidate.version), key, value)
    client.set_registered_model_alias(model_name, to, str(candidate.version))
    return PromotionResult(model_name, candidate.version, to, previous, forced, why, comparison)


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "unknown"
