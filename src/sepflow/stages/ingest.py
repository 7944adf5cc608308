"""Stage `ingest`: price source → validated ``data/raw/sep.parquet`` and ``data/raw/tickers.parquet``."""

from __future__ import annotations


import mlflow

from sepflow.catalog import INGEST_INFO, INGEST_REPORT, SEP, TICKERS
from sepflow.config import load_params
from sepflow.io import write_panel
from sepflow.sep.ingest import ingest_source
from sepflow.summary import print_summary
from sepflow.tracking.runs import stage_run, write_metrics


def main(params_path: str = "params.yaml") -> None:
    params = load_params(params_path)
    ingest = params.ingest
    inputs = [ingest.source, *([ingest.tickers] if ingest.tickers else [])]
    logged = {"ingest": ingest.model_dump(), "validation": params.validation.model_dump()}
    with stage_run("ingest", params=logged, inputs=inputs):
        result = ingest_source(ingest.source, tickers=ingest.tickers, policy=params.validation, asof=ingest.asof)
        write_panel(result.sep, SEP, metadata={"asof": result.asof})
        write_panel(result.tickers, TICKERS)
        summary = {"source": ingest.source, **result.summary()}
        write_metrics(summary, INGEST_REPORT, INGEST_INFO)
        mlflow.log_metrics({"rows": summary["rows"], "tickers": summary["tickers"],
                            "rows_dropped_total": summary["rows_dropped_total"]})
    print_summary("ingest", {
        "source": f"{ingest.source} ({summary['source_kind']})",
        "rows in": summary["rows"] + summary["rows_dropped_total"], "rows out": summary["rows"],
        "dropped": summary["rows_dropped"], "tickers": summary["tickers"],
        "dates": f"{summary['date_min']} to {summary['date_max']}",
        "as of": f"{result.asof} ({result.asof_source})", "outputs": [SEP, TICKERS, INGEST_REPORT, INGEST_INFO],
    })
