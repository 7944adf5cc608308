"""Stage `synthesize`: the built-in synthetic market, written as a Sharadar-style SEP folder.

Outputs ``data/synthetic/SHARADAR_SEP_<asof>.parquet`` and ``SHARADAR_TICKERS.parquet`` (the
default ``ingest.source``) and ``data/raw/synthetic_truth.parquet`` (the true expected returns).
"""

from __future__ import annotations

import shutil

import mlflow

from sepflow.catalog import SYNTHETIC_SEP, SYNTHETIC_TRUTH
from sepflow.config import load_params
from sepflow.io import write_panel
from sepflow.sep.synthetic import generate_market
from sepflow.summary import print_summary
from sepflow.tracking.runs import stage_run


def main(params_path: str = "params.yaml") -> None:
    params = load_params(params_path)
    with stage_run("synthesize", params={"synthetic": params.synthetic.model_dump()}):
        market = generate_market(params.synthetic)
        asof = market.sep["date"].max().strftime("%Y-%m-%d")
        # Build the folder beside its final place, then swap it in: never a half-written source.
        staging = SYNTHETIC_SEP.with_name(f".{SYNTHETIC_SEP.name}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        write_panel(market.sep, staging / f"SHARADAR_SEP_{asof}.parquet")
        write_panel(market.tickers, staging / "SHARADAR_TICKERS.parquet")
        shutil.rmtree(SYNTHETIC_SEP, ignore_errors=True)
        staging.rename(SYNTHETIC_SEP)
        write_panel(market.truth, SYNTHETIC_TRUTH)
        mlflow.log_metrics({
            "rows": len(market.sep),
            "tickers": market.tickers.shape[0],
            "days": market.sep["date"].nunique(),
        })
    print_summary("synthesize", {"rows": len(market.sep), "tickers": market.tickers.shape[0],
                                 "days": market.sep["date"].nunique(), "as of": asof,
                                 "outputs": [f"{SYNTHETIC_SEP}/", SYNTHETIC_TRUTH]})
