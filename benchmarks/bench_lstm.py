"""The LSTM on the planted market: walk-forward rank IC against the truth's on the same rows, and
what it costs.

    .venv/bin/python benchmarks/bench_lstm.py                       # the defaults, the three default targets
    .venv/bin/python benchmarks/bench_lstm.py --target return_10d \
        --lstm '{"sequence_length": 60, "units1": 128, "units2": 64, "epochs": 2, "patience": 1, "window_stride": 20}'

The default synthetic market (``params.yaml: synthetic``) goes through the universe filter and
the features; the LSTM is trained by ``train_family`` on the date rule's development region (400
rows per ticker, as ``params.yaml: train``) and walked forward over the evaluation window (4
expanding folds of 63 test dates, every row). The truth is ``expected_return_<h>d`` of the
synthetic market. Features per target: the ones ``select_features`` chose in the committed state
(``reports/selection/<target>/selected_features.txt``). Figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd

from sepflow.config import load_params
from sepflow.evaluation.metrics import information_coefficients
from sepflow.features.dataset import DatasetBuilder, assemble_features_frame
from sepflow.features.targets import daily_returns
from sepflow.sep.synthetic import generate_market
from sepflow.sep.universe import filter_universe
from sepflow.training.artifacts import load_trained
from sepflow.training.params import TrainParams
from sepflow.training.train import forward_returns_for, train_family
from sepflow.training.walk_forward import Evidence, WalkForwardParams, walk_forward
from sepflow.validation.calendar import development_rows, evaluation_window, trading_calendar

REPO = Path(__file__).resolve().parents[1]
WALK = WalkForwardParams(window="expanding", train_days=504, test_days=63, n_folds=4, max_samples_per_symbol=None)
LAG = 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", nargs="+", default=["return_10d", "return_30d", "label3_30d"])
    parser.add_argument("--lstm", default="{}", help="JSON: LSTM params over params.yaml's train.lstm")
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml")
    lstm = {**params.train.lstm, **json.loads(args.lstm)}
    train = TrainParams.model_validate({"max_samples_per_symbol": params.train.max_samples_per_symbol, "lstm": lstm})
    market = generate_market(params.synthetic)
    universe = filter_universe(market.sep, market.tickers, params.universe)
    frame, manifest = assemble_features_frame(universe.sep, params.features, params.targets)
    builder = DatasetBuilder.from_frame(frame, manifest)
    truth = market.truth.assign(date=pd.to_datetime(market.truth["date"])).set_index(["ticker", "date"])
    returns = daily_returns(universe.sep, params.targets)
    print(f"LSTM {json.dumps(lstm)}\n\n| target | rank IC (t) | truth's rank IC | ratio | train s | walk-forward s |")
    print("|---|---:|---:|---:|---:|---:|")
    for target in args.target:
        features = (REPO / "reports" / "selection" / target / "selected_features.txt").read_text().split()
        ds = builder.build(target, features)
        horizon = int(ds.meta["horizon"])
        window = evaluation_window(trading_calendar(builder), window_days=WALK.window_days,
                                   embargo_days=WALK.embargo_for(horizon + LAG), label_days=horizon + LAG)
        development = development_rows(ds, window)
        evidence = Evidence(window=window, forward_returns=forward_returns_for(builder, ds), daily_returns=returns,
                            execution_lag=LAG, n_trials=1)
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            train_family("lstm", target, development, features, train, params.seed,
                         asof=str(market.sep["date"].max().date()), out_dir=Path(folder), optuna_storage=None,
                         forward_returns=forward_returns_for(builder, development))
            trained = time.perf_counter() - started
            started = time.perf_counter()
            result = walk_forward(load_trained(Path(folder)), ds, evidence, WALK, train)
            walked = time.perf_counter() - started
        rows = result.predictions
        expected = truth[f"expected_return_{horizon}d"].reindex(pd.MultiIndex.from_frame(rows[["ticker", "date"]]))
        oracle = information_coefficients(rows["date"], rows["forward_return"], expected.to_numpy())["rank_ic"]
        overall = result.overall
        print(f"| {target} | {overall['rank_ic']:.3f} ({overall['rank_ic_tstat']:.1f}) | {oracle:.3f} | "
              f"{overall['rank_ic'] / oracle:.2f} | {trained:.1f} | {walked:.1f} |", flush=True)


if __name__ == "__main__":
    main()
