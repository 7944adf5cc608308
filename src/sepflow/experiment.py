"""`sepflow run`: the pipeline as one DVC experiment, with a few domain knobs set from flags.

Each flag becomes ``dvc exp run -S`` overrides of ``params.yaml`` keys, so the experiment's
params are recorded by DVC (``dvc exp show``) and the run can be brought back exactly
(``dvc exp apply``). Everything is checked before DVC starts: a bad flag is one error line
naming the flag, not a failed stage ten minutes in.

``-S`` values use Hydra's override grammar: ``++key=value`` sets a key whether or not
``params.yaml`` spells it out, lists are ``[...]``, and every string is quoted (unquoted
``TRUE`` or ``NULL`` would become a bool or null).
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sepflow.config import Params, load_params
from sepflow.errors import ConfigError
from sepflow.features.spec import feature_names, target_columns

__all__ = ["ENSEMBLE", "ExperimentPlan", "RunRequest", "load_plan", "pipeline_families", "plan_experiment"]

ENSEMBLE = "ensemble"
ENSEMBLE_STAGE = "train_ensemble"
# Characters a ticker may hold: letters, digits and the class/exchange separators (BRK.B, BF-B, ...).
_SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
# A git ref component, which is what DVC stores an experiment name as.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*$")
_SECTIONS = ("ranking", "selection", "train")  # each runs purged cross-validation of its own
# Number flags: (flag, RunRequest field, type, lowest value, the params.yaml keys it sets).
_NUMBERS: tuple[tuple[str, str, type, float, tuple[str, ...]], ...] = (
    ("--top-n-targets", "top_n_targets", int, 1, ("ranking.top_n",)),
    ("--top-m-features", "top_m_features", int, 1, ("selection.top_m",)),
    ("--n-splits", "n_splits", int, 2, tuple(f"{s}.n_splits" for s in _SECTIONS)),
    ("--embargo", "embargo_days", int, 0, tuple(f"{s}.embargo_days" for s in (*_SECTIONS, "walk_forward"))),
    ("--fee-bps", "fee_bps", float, 0, ("train.fee_bps",)),  # walk-forward books use train's costs
    ("--slippage-bps", "slippage_bps", float, 0, ("train.slippage_bps",)),
    ("--seed", "seed", int, 0, ("seed",)),  # not synthetic.seed: the market is data, not model
)


@dataclass(frozen=True)
class RunRequest:
    """What the user asked ``sepflow run`` for; None leaves ``params.yaml`` as it is."""

    symbols: Sequence[str] | None = None
    families: Sequence[str] | None = None
    targets: Sequence[str] | None = None
    features: Sequence[str] | None = None
    top_n_targets: int | None = None
    top_m_features: int | None = None
    n_splits: int | None = None
    embargo_days: int | None = None
    fee_bps: float | None = None
    slippage_bps: float | None = None
    seed: int | None = None
    name: str | None = None


@dataclass(frozen=True)
class ExperimentPlan:
    """The ``dvc exp run`` call: ``-S`` overrides, stage targets (none: every stage) and name."""

    overrides: tuple[str, ...]
    stages: tuple[str, ...]
    name: str | None

    def command(self, dvc: str = "dvc") -> list[str]:
        """The argument list, with ``dvc`` as the executable."""
        args = [dvc, "exp", "run"]
        if self.name:
            args += ["-n", self.name]
        for override in self.overrides:
            args += ["-S", override]
        return args + list(self.stages)

    def shell(self) -> str:
        """The command as one line a shell runs unchanged."""
        return shlex.join(self.command())


def _quoted(value: str) -> str:
    # Double quotes read cleanly inside the shell's single quotes; callers validate values first,
    # so none holds a quote or backslash to escape.
    return f'"{value}"'


def _list(values: Sequence[str]) -> str:
    return "[" + ",".join(_quoted(v) for v in values) + "]"


def _distinct(flag: str, values: Sequence[str]) -> list[str]:
    values = list(values)
    if not values:
        raise ConfigError(f"{flag}: give at least one value")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ConfigError(f"{flag}: {repeated} given more than once")
    return values


def _known(flag: str, values: Sequence[str], known: Sequence[str], where: str) -> list[str]:
    values = _distinct(flag, values)
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ConfigError(f"{flag}: unknown {unknown}; known ({where}): {list(known)}")
    return values


def pipeline_families(pipeline: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The families with a ``train@`` stage and those with a ``walk_forward@`` stage in ``dvc.yaml``."""
    stages = pipeline.get("stages") or {}

    def keys(stage: str) -> list[str]:
        foreach = (stages.get(stage) or {}).get("foreach")
        if isinstance(foreach, (Mapping, list)):  # {family: module} or [family, ...]
            return [str(k) for k in foreach]
        raise ConfigError(f"dvc.yaml: stage {stage} has no literal foreach list of families")

    return keys("train"), keys("walk_forward")


def _family_plan(families: Sequence[str], pipeline: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(the ensemble's members, the stages to run) for ``--families``."""
    trained, walked = pipeline_families(pipeline)
    known = [*trained, ENSEMBLE] if ENSEMBLE_STAGE in (pipeline.get("stages") or {}) else trained
    families = _known("--families", families, known, "dvc.yaml train@ stages")
    members = [f for f in families if f != ENSEMBLE]
    if not members:
        raise ConfigError("--families: the ensemble needs at least one member family (e.g. xgboost lightgbm ensemble)")
    stages: list[str] = []
    for family in members:
        stages.append(f"train@{family}")
        if family in walked:
            stages.append(f"walk_forward@{family}")
    if ENSEMBLE in families:
        stages.append(ENSEMBLE_STAGE)
    return members, stages


def plan_experiment(request: RunRequest, params: Params, pipeline: Mapping[str, Any]) -> ExperimentPlan:
    """Check ``request`` against ``params`` and ``dvc.yaml`` and turn it into a ``dvc exp run`` plan.

    Raises ConfigError naming the flag for any value the pipeline would reject.
    """
    sets: list[tuple[str, str]] = []
    r = request
    if r.symbols is not None:
        symbols = _distinct("--symbols", r.symbols)
        bad = [s for s in symbols if not _SYMBOL.match(s)]
        if bad:
            raise ConfigError(f"--symbols: {bad} are not ticker symbols (letters, digits, '.', '-', '_')")
        sets.append(("universe.symbols", _list(symbols)))
    stages: list[str] = []
    if r.families is not None:
        members, stages = _family_plan(r.families, pipeline)
        sets.append(("train.families", _list(members)))
    if r.features is not None and r.targets is None:
        raise ConfigError("--features needs --targets: the fixed feature list is per target (selection.manual)")
    if r.targets is not None:
        if r.top_n_targets is not None:
            raise ConfigError("--top-n-targets: has no effect with --targets (the target ranking is skipped)")
        known = list(target_columns(params.targets))
        targets = _known("--targets", r.targets, known, "params.yaml targets.horizons")
        sets.append(("ranking.targets", _list(targets)))
        if r.features is not None:
            if r.top_m_features is not None:
                raise ConfigError("--top-m-features: has no effect with --features (the feature selection is skipped)")
            features = _known("--features", r.features, feature_names(params.features), "params.yaml features")
            manual = "{" + ",".join(f"{t}:{_list(features)}" for t in targets) + "}"
            # Hydra merges dicts, so clear the old one first: the lists must replace, not extend, it.
            sets += [("selection.manual", "null"), ("selection.manual", manual)]
    for flag, field, kind, low, keys in _NUMBERS:
        value = getattr(r, field)
        if value is None:
            continue
        if not math.isfinite(value) or value < low:
            raise ConfigError(f"{flag}: must be a number of at least {low:g}, got {value:g}")
        sets += [(key, str(kind(value))) for key in keys]
    if r.name is not None and (not _NAME.match(r.name) or r.name.endswith(".lock")):
        raise ConfigError(f"--name: {r.name!r} is not a usable experiment name (letters, digits, '.', '-', '_')")
    return ExperimentPlan(tuple(f"++{key}={value}" for key, value in sets), tuple(stages), r.name)


def load_plan(request: RunRequest, root: Path) -> ExperimentPlan:
    """``plan_experiment`` against ``root``'s ``params.yaml`` and ``dvc.yaml``."""
    params = load_params(root / "params.yaml")
    path = root / "dvc.yaml"
    try:
        pipeline = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: not found (run sepflow run in the project's repository)") from exc
    return plan_experiment(request, params, pipeline)
