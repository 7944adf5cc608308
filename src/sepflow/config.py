"""Typed params: one pydantic model per ``params.yaml`` section, loaded once per stage.

Unknown keys are errors, so a typo in ``dvc exp run -S`` fails loudly instead of being ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sepflow.errors import ConfigError
from sepflow.features.spec import FeatureParams, TargetParams
from sepflow.ranking.params import RankingParams, SelectionParams
from sepflow.sep.schema import ValidationPolicy
from sepflow.sep.synthetic import SyntheticParams
from sepflow.sep.universe import UniverseParams
from sepflow.tracking.gate import PromotionParams
from sepflow.validation.calendar import EvaluationWindow, evaluation_window
from sepflow.training.params import EvaluationParams, TrainParams, WalkForwardParams


class IngestParams(BaseModel):
    """``params.yaml: ingest``: where prices come from."""

    model_config = ConfigDict(extra="forbid")

    # The synthetic market's folder (written by the `synthesize` stage) or a path to your own file.
    source: str = "data/synthetic"
    tickers: str | None = None
    asof: str | None = None


class Params(BaseModel):
    """All of ``params.yaml``."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 42
    synthetic: SyntheticParams = Field(default_factory=SyntheticParams)
    ingest: IngestParams = Field(default_factory=IngestParams)
    validation: ValidationPolicy = Field(default_factory=ValidationPolicy)
    universe: UniverseParams = Field(default_factory=UniverseParams)
    features: FeatureParams = Field(default_factory=FeatureParams)
    targets: TargetParams = Field(default_factory=TargetParams)
    ranking: RankingParams = Field(default_factory=RankingParams)
    selection: SelectionParams = Field(default_factory=SelectionParams)
    train: TrainParams = Field(default_factory=TrainParams)
    walk_forward: WalkForwardParams = Field(default_factory=WalkForwardParams)
    evaluation: EvaluationParams = Field(default_factory=EvaluationParams)
    promotion: PromotionParams = Field(default_factory=PromotionParams)

    def evaluation_window(self, calendar: Any) -> EvaluationWindow:
        """The date rule on ``calendar`` (``trading_calendar``) for these params: the walk-forward's
        window, ending where the longest horizon's book returns run out, embargoed by that horizon."""
        longest = max(self.targets.horizons) + self.evaluation.execution_lag_days
        return evaluation_window(calendar, window_days=self.walk_forward.window_days,
                                 embargo_days=self.walk_forward.embargo_for(longest), label_days=longest)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params; a bad value raises one ConfigError naming the key."""
    path = Path(path)
    try:
        raw: Any = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: params file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc
