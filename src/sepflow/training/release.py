"""The release refit: the procedure walk-forward judged, run once more on every labelled row.

Walk-forward judges a procedure, not one fitted model: refit the family with its development
choices (features, tuned params, seed) on the rows before a block, keep a validation tail for
early stopping, the calibrator and the decision rule (an ensemble: its weights), then trade.
The model that goes to the registry is that procedure's next step: the same refit on every
labelled row up to the as-of date (a sliding window: its last ``train_days`` dates), with its
own validation tail (the last ``walk_forward.validation_fraction`` of those dates, purged and
embargoed as in every fold) and no test block: its out-of-sample evidence is the walk-forward's.

``release_fit`` refits a family, ``release_ensemble`` re-weights the members' releases on the
same validation tail (read from their saved outputs, so no member is predicted twice), and
``write_release`` writes a trained folder (``sepflow.training.artifacts``) that loads, serves
and registers like any other, carrying the walk-forward metrics in its ``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sepflow.errors import ConfigError
from sepflow.evaluation.calibration import ProbabilityCalibrator
from sepflow.features.dataset import Dataset
from sepflow.io import json_ready
from sepflow.models import EnsembleModel, SepflowModel
from sepflow.ranking.targets import panel_frame
from sepflow.training.artifacts import (
    CALIBRATOR_FILE,
    FEATURES_FILE,
    INPUT_EXAMPLE_FILE,
    METADATA_FILE,
    METRICS_FILE,
    THRESHOLD_FILE,
    TrainedModel,
    calibrator_to_json,
    load_trained,
    read_segment_outputs,
    segment_outputs_frame,
    write_trained,
)
from sepflow.training.params import TrainParams, WalkForwardParams
from sepflow.training.train import (
    EXAMPLE_ROWS,
    HEADLINE,
    SegmentContext,
    calibrated,
    fit_decision_rule,
    segment_metrics,
    segment_output,
)
from sepflow.training.walk_forward import Evidence, date_grid, refit, validation_tail

__all__ = ["RELEASE", "ReleaseFit", "release_ensemble", "release_fit", "write_release"]

RELEASE = "release"  # the folder under models/ and the registry tag value sepflow.procedure


@dataclass(frozen=True)
class _Rows:
    """Every labelled row of the dataset, split into the release's fit rows and validation tail."""

    X: pd.DataFrame
    y: pd.Series
    groups: pd.DataFrame  # date, label_end, forward_return
    fit: np.ndarray
    validation: np.ndarray  # the whole tail (a sequence model's early stopping)
    decision: np.ndarray  # the tail's rows on the date grid: decision rule, calibrator, ensemble weights
    grid: np.ndarray
    embargo: int

    @classmethod
    def make(cls, ds: Dataset, features: list[str], evidence: Evidence, wf: WalkForwardParams) -> _Rows:
        X, y, groups = panel_frame(ds)
        X = X[features]
        groups["forward_return"] = np.asarray(evidence.forward_returns, dtype=float)
        dates = groups["date"].to_numpy()
        rows = np.arange(len(dates))
        if wf.window == "sliding":  # the folds' training window: the last train_days dates
            first = np.unique(dates)[-wf.train_days:][0]
            rows = rows[dates >= first]
        embargo = wf.embargo_for(int(ds.meta["horizon"]) + evidence.execution_lag)
        fit, validation = validation_tail(groups, rows, wf.validation_fraction, embargo)
        grid = rows if not wf.max_samples_per_symbol else date_grid(dates, wf.max_samples_per_symbol)
        return cls(X, y, groups, fit, validation, validation[np.isin(validation, grid)], grid, embargo)

    def context(self, rows: np.ndarray) -> SegmentContext:
        return SegmentContext(dates=self.groups["date"].to_numpy()[rows],
                              tickers=self.X.index.get_level_values("ticker").to_numpy()[rows],
                              returns=self.groups["forward_return"].to_numpy()[rows])

    def record(self) -> dict[str, Any]:
        """Where the release's rows lie, for its metadata."""
        dates = self.groups["date"].to_numpy()

        def span(rows: np.ndarray) -> dict[str, Any]:
            return {"start": pd.Timestamp(dates[rows].min()).date().isoformat(),
                    "end": pd.Timestamp(dates[rows].max()).date().isoformat(),
                    "n_rows": len(rows), "n_dates": len(np.unique(dates[rows]))}

        return {"fit": span(self.fit), "validation": span(self.validation),
                "decision_rows": len(self.decision), "embargo_days": self.embargo}


@dataclass(frozen=True)
class ReleaseFit:
    """The refit model with its decision rule, fitted on the release's validation tail."""

    model: SepflowModel
    calibrator: ProbabilityCalibrator | None
    rule: dict[str, Any]
    features: list[str]
    validation_index: pd.MultiIndex  # the decision rows (ticker, date)
    validation_output: np.ndarray  # the model's raw outputs there (an ensemble's release reads them)
    metrics: dict[str, float]  # on the decision rows
    rows: dict[str, Any]  # _Rows.record()
    example: pd.DataFrame  # the last few validation rows' features: the registered input example
    ensemble: dict[str, Any] | None = None


def release_fit(
    trained: TrainedModel, ds: Dataset, evidence: Evidence, wf: WalkForwardParams, train: TrainParams,
) -> ReleaseFit:
    """Refit ``trained``'s family (its development choices) on every labelled row of ``ds``."""
    if isinstance(trained.model, EnsembleModel):
        raise ConfigError("release: an ensemble re-weights its members' releases; use release_ensemble")
    rows = _Rows.make(ds, trained.features, evidence, wf)
    model, decision = refit(trained.model, rows.X, rows.y, rows.fit, rows.validation, rows.grid)
    output = segment_output(model, rows.X, rows.X.iloc[decision])
    return _decided(model, rows, output, ds, train)


def release_ensemble(
    trained: TrainedModel, ds: Dataset, member_folders: Mapping[str, Path], evidence: Evidence,
    wf: WalkForwardParams, train: TrainParams,
) -> tuple[ReleaseFit, dict[str, str]]:
    """The ensemble's release: its members' releases (``member_folders``: family → release folder),
    weighted on their outputs on the shared validation tail. Returns it and the members skipped."""
    if not isinstance(trained.model, EnsembleModel):
        raise ConfigError("release_ensemble: the trained model is not an ensemble")
    rows = _Rows.make(ds, trained.features, evidence, wf)
    index = {"validation": rows.X.index[rows.decision]}
    members, outputs, skipped = {}, {}, {}
    for family in trained.model.members:
        folder = member_folders.get(family)
        member = None if folder is None or not Path(folder).is_dir() else load_trained(folder)
        saved = None if member is None else read_segment_outputs(folder, index, two_dimensional=trained.task != "regression")
        if member is None:
            skipped[family] = "no release"
        elif member.features != trained.features or saved is None:
            skipped[family] = "released on other features or rows"
        else:
            members[family], outputs[family] = member.model, saved["validation"]
    if not members:
        raise ConfigError(f"release ensemble {ds.meta['target']}: no member has a usable release: {skipped}")
    ensemble = EnsembleModel(members, task=trained.task, alpha=trained.model.alpha)
    ensemble.fit_weights(ensemble.predictions_frame(outputs, index["validation"]), rows.y.iloc[rows.decision])
    fit = _decided(ensemble, rows, ensemble.combine(outputs), ds, train)
    record = {"members": list(members), "weights": ensemble.weights_, "skipped": skipped}
    return ReleaseFit(**{**fit.__dict__, "ensemble": record}), skipped


def _decided(model: SepflowModel, rows: _Rows, output: np.ndarray, ds: Dataset, train: TrainParams) -> ReleaseFit:
    """The calibrator and decision rule on the validation tail, and the model's metrics there."""
    horizon = int(ds.meta["horizon"])
    context = rows.context(rows.decision)
    y = rows.y.iloc[rows.decision].to_numpy()
    calibrator, rule = fit_decision_rule(model, output, y, context, horizon, train)
    metrics = segment_metrics(model, y, calibrated(calibrator, output), rule["threshold"], context, horizon, train)
    return ReleaseFit(model=model, calibrator=calibrator, rule=rule, features=list(rows.X.columns),
                      validation_index=rows.X.index[rows.decision], validation_output=output, metrics=metrics,
                      rows=rows.record(), example=rows.X.iloc[rows.decision[-EXAMPLE_ROWS:]])


def write_release(
    fit: ReleaseFit, development: TrainedModel, walk_forward: Mapping[str, float], out_dir: Path,
) -> None:
    """Write ``fit`` as a trained folder at ``out_dir``: the development model's records, updated
    with where the release's rows lie, and ``walk_forward`` (the evidence that judged the
    procedure) in its ``metrics.json``."""
    headline = HEADLINE[fit.model.task]
    metrics = {"train": {}, "validation": fit.metrics, "test": {}, "headline": headline, "overfit_margin": None,
               "walk_forward": dict(walk_forward)}
    metadata = {
        **development.metadata, "procedure": RELEASE, "segments": fit.rows, "embargo_days": fit.rows["embargo_days"],
        "development": {"artifact_name": development.metadata["artifact_name"],
                        "segments": development.metadata["segments"]},
        "data": {**development.metadata["data"], "date_min": fit.rows["fit"]["start"],
                 "date_max": fit.rows["validation"]["end"],
                 "rows_used": fit.rows["fit"]["n_rows"] + fit.rows["validation"]["n_rows"]},
        "ensemble": fit.ensemble,
    }
    example = fit.example.reset_index()
    example["date"] = example["date"].dt.strftime("%Y-%m-%d")
    files = {
        CALIBRATOR_FILE: calibrator_to_json(fit.calibrator),
        THRESHOLD_FILE: json_ready(fit.rule),
        FEATURES_FILE: {"features": fit.features, "feature_signature": metadata["data"]["feature_signature"]},
        METRICS_FILE: json_ready(metrics),
        METADATA_FILE: json_ready(metadata),
        INPUT_EXAMPLE_FILE: example.to_dict(orient="list"),
    }
    outputs = segment_outputs_frame({"validation": fit.validation_output}, {"validation": fit.validation_index})
    write_trained(out_dir, fit.model, files, outputs)

