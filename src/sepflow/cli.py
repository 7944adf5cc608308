"""The ``sepflow`` command.

Every sepflow error becomes one line on stderr and exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from sepflow.errors import SepflowError

# Stage name → module under sepflow.stages (imported lazily: the CLI starts fast).
STAGES = ("synthesize", "ingest", "filter_sep", "build_features", "rank_targets", "select_features", "train")
PER_FAMILY = ("train",)
EXIT_BAD_INPUT = 2


def _cmd_stage(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"sepflow.stages.{args.name}")
    if args.name in PER_FAMILY:
        if not args.family:
            raise SepflowError(f"stage {args.name} needs --family (one of params.yaml train.families)")
        module.main(args.params, args.family)
    else:
        module.main(args.params)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from sepflow.config import load_params
    from sepflow.sep.ingest import ingest_source
    from sepflow.sep.schema import ValidationPolicy

    if args.strict:
        policy = ValidationPolicy.strict()
    elif Path(args.params).exists():
        policy = load_params(args.params).validation
    else:
        policy = ValidationPolicy()
    result = ingest_source(args.path, tickers=args.tickers, policy=policy, asof=None)
    s = result.summary()
    dropped = f"; would drop {s['rows_dropped_total']:,} rows {s['rows_dropped']}" if s["rows_dropped_total"] else ""
    tickers = f"; TICKERS ok ({len(result.tickers)} rows)" if args.tickers else ""
    print(f"OK {args.path}: {s['rows']:,} rows, {s['tickers']} tickers, {s['date_min']} to {s['date_max']} "
          f"({s['source_kind']}){dropped}{tickers}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sepflow",
        description="sepflow: daily equity prices → features → ranked targets → trained, registered models. "
        "Run the whole pipeline with `dvc repro`; these commands run or check one piece.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    stage = sub.add_parser("stage", help="run one pipeline stage (what dvc.yaml calls)")
    stage.add_argument("name", choices=STAGES)
    stage.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    stage.add_argument("--family", help="model family, for the per-family stages (train)")
    stage.set_defaults(func=_cmd_stage)

    validate = sub.add_parser("validate", help="check a SEP/OHLCV file and print a one-line summary")
    validate.add_argument("path", help="SEP file (CSV, CSV.gz, parquet), long OHLCV CSV, or a folder")
    validate.add_argument("--tickers", help="Sharadar TICKERS file to validate with it")
    validate.add_argument("--strict", action="store_true", help="treat every row-level problem as an error")
    validate.add_argument("--params", default="params.yaml", help="validation policy source (if present)")
    validate.set_defaults(func=_cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SepflowError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"sepflow: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
