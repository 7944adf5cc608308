"""Stage `filter_sep`: ``data/raw/sep.parquet`` → the common-stock universe ``data/interim/sep_common.parquet``.

Static rules (category, exchange, symbols) remove tickers; price, liquidity and history are
judged point in time and only mark rows with ``in_universe`` (see ``sepflow.sep.universe``).
"""

from __future__ import annotations


import mlflow

from sepflow.catalog import FILTER_INFO, FILTER_REPORT, SEP, SEP_COMMON, TICKERS
from sepflow.config import load_params
from sepflow.io import read_panel, read_panel_metadata, write_panel
from sepflow.sep.universe import filter_universe
from sepflow.summary import print_summary
from sepflow.tracking.runs import stage_run, write_metrics


def main(params_path: str = "params.yaml") -> None:
    params = load_params(params_path)
    with stage_run("filter_sep", params={"universe": params.universe.model_dump()}, inputs=[SEP, TICKERS]):
        asof = read_panel_metadata(SEP).get("asof", "")
        result = filter_universe(read_panel(SEP, categorical=("ticker",)), read_panel(TICKERS), params.universe)
        write_panel(result.sep, SEP_COMMON, metadata={"asof": asof})
        summary = {"asof": asof, **result.summary()}
        write_metrics(summary, FILTER_REPORT, FILTER_INFO)
        mlflow.log_metrics({
            "rows": summary["rows"], "tickers": summary["tickers"], "rows_in_universe": summary["rows_in_universe"],
            "tickers_never_in_universe": summary["tickers_never_in_universe"],
            **{f"tickers_dropped.{k}": v for k, v in result.tickers_dropped.items()},
            **{f"rows_dropped.{k}": v for k, v in result.rows_dropped.items()},
        })
    print_summary("filter_sep", {
        "tickers kept": summary["tickers"], "tickers dropped": summary["tickers_dropped"],
        "never eligible": summary["tickers_never_in_universe"],
        "rows": summary["rows"], "rows in universe": summary["rows_in_universe"],
        "rows dropped": summary["rows_dropped"], "rows excluded": summary["rows_excluded_point_in_time"],
        "outputs": [SEP_COMMON, FILTER_REPORT, FILTER_INFO],
    })
