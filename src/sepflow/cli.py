"""The ``sepflow`` command.

Exit codes: 0 done; 1 refused (the promotion gate) or not reproduced; 2 bad input (a sepflow
error, a missing or unreadable file); 3 infrastructure (the tracking server or database, a full
disk); 4 an internal error (a bug: please report it); 130 Ctrl-C; 143 SIGTERM. Each failure is
one line on stderr; ``--debug`` (before or after the subcommand) adds the traceback. ``-v`` /
``-q`` set how much sepflow logs to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import importlib
import json
import logging
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from sepflow import __version__
from sepflow.errors import SepflowError, Terminated

# Stage name → module under sepflow.stages (imported lazily: the CLI starts fast).
STAGES = ("synthesize", "ingest", "filter_sep", "build_features", "rank_targets", "select_features", "train",
          "walk_forward")
PER_FAMILY = ("train", "walk_forward")
EXIT_BAD_INPUT = 2
EXIT_NOT_REPRODUCED = 1  # `sepflow reproduce`: a metric came out different (the table is on stdout)
EXIT_REFUSED = 1  # `sepflow promote`: the gate said no (the table is on stdout)
EXIT_INFRASTRUCTURE = 3  # the tracking server or database, the disk: retry or fix the machine, not the input
EXIT_INTERNAL = 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM
# Errors of these libraries come from the tracking store or its connection, not from the user's input.
INFRASTRUCTURE_MODULES = ("mlflow", "requests", "urllib3", "sqlalchemy", "psycopg", "psycopg2")
BAD_INPUT_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.EEXIST}


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
    if args.json:
        _print_json({"path": str(args.path), **s, "tickers_file_rows": len(result.tickers) if args.tickers else None})
        return 0
    dropped = f"; would drop {s['rows_dropped_total']:,} rows {s['rows_dropped']}" if s["rows_dropped_total"] else ""
    tickers = f"; TICKERS ok ({len(result.tickers)} rows)" if args.tickers else ""
    print(f"OK {args.path}: {s['rows']:,} rows, {s['tickers']} tickers, {s['date_min']} to {s['date_max']} "
          f"({s['source_kind']}){dropped}{tickers}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import mlflow

    from sepflow.config import load_params
    from sepflow.prediction import (
        check_output_path,
        predict_registered,
        predictions_csv,
        write_predictions,
    )
    from sepflow.tracking.runs import tracking_uri

    out = check_output_path(args.out) if args.out else None  # a bad suffix fails before any work
    params = load_params(args.params)
    # The stages' store (MLFLOW_TRACKING_URI, else mlflow.db at the repository root); reading
    # the registry needs no experiment, so none is created.
    mlflow.set_tracking_uri(tracking_uri())
    result = predict_registered(args.model, params, params_path=args.params, sep=args.sep, tickers=args.tickers,
                                asof=args.asof)
    day = f"{result.asof:%Y-%m-%d}"
    for reason, tickers in result.excluded.items():
        print(f"sepflow: warning: {len(tickers)} tickers in the universe on {day} get no prediction ({reason}): "
              f"{tickers[:10]}{' ...' if len(tickers) > 10 else ''}", file=sys.stderr)
    summary = f"predict: {result.model} on {day}: {len(result.frame)} tickers"
    if out is None:
        sys.stdout.write(predictions_csv(result.frame))
        print(summary, file=sys.stderr)  # stdout holds only the CSV
    else:
        write_predictions(result.frame, out)
        print(f"{summary} → {out}")
    return 0


def _cmd_train_baseline(args: argparse.Namespace) -> int:
    from sepflow.config import Params, load_params
    from sepflow.training.baseline import format_summary, train_baseline

    # An explicit --params must exist; without it params.yaml is used where present.
    params_path = args.params or ("params.yaml" if Path("params.yaml").is_file() else None)
    params = load_params(params_path) if params_path else Params()
    result = train_baseline(args.sep_master, params, horizon=args.horizon, backend=args.backend,
                            device=args.device, asof=args.date, out_dir=args.out)
    print(format_summary(result))
    return 0


def _cmd_promote(args: argparse.Namespace) -> int:
    from sepflow.config import load_params
    from sepflow.errors import ConfigError
    from sepflow.tracking.registry import (
        CANDIDATE,
        PromotionRefused,
        promote,
        walk_forward_gate,
    )
    from sepflow.tracking.runs import configure_tracking

    if args.force and not (args.reason or "").strip():
        raise ConfigError("promote: --force needs --reason TEXT (it is written to the version's audit tags)")
    gate = walk_forward_gate(load_params(args.params).promotion)
    configure_tracking()
    try:
        result = promote(args.model, version=args.version, alias_from=args.alias or CANDIDATE, to=args.to,
                         gate=gate, force=args.force, reason=args.reason)
    except PromotionRefused as refused:
        if args.json:
            decision = refused.decision
            _print_json({"model": args.model, "promoted": False, "refused": str(refused),
                         "failures": list(decision.failures), "reference": decision.reference_label,
                         "same_window": decision.same_window})
        else:
            print(refused.comparison)
        print(f"sepflow: refused: {refused}", file=sys.stderr)
        return EXIT_REFUSED
    if args.json:
        _print_json({"model": result.model_name, "promoted": result.changed, "version": result.version,
                     "alias": result.alias, "previous_version": result.previous_version, "forced": result.forced,
                     "reason": result.reason})
        return 0
    if not result.changed:
        print(f"{result.model_name} v{result.version} already holds @{result.alias}; nothing changed")
        return 0
    print(result.comparison)
    was = f"v{result.previous_version}" if result.previous_version is not None else "nothing"
    how = "forced past the gate" if result.forced else "gate passed"
    print(f"promoted {result.model_name} v{result.version} to @{result.alias} (was {was}; {how}; "
          f"reason: {result.reason})")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    import mlflow

    from sepflow.config import load_params
    from sepflow.tracking.models_table import format_models, list_models
    from sepflow.tracking.runs import configure_tracking

    metrics = load_params(args.params).promotion.metrics
    configure_tracking()
    rows = list_models(all_versions=args.all)
    if args.json:
        _print_json([{**dataclasses.asdict(row.metrics), "aliases": list(row.aliases)} for row in rows])
        return 0
    print(format_models(rows, metrics) if rows else f"no registered models in {mlflow.get_tracking_uri()}")
    return 0


def _print_json(value: object) -> None:
    """Strict JSON on stdout (an undefined number is null), for scripts."""
    from sepflow.io import json_ready

    print(json.dumps(json_ready(value), indent=2, sort_keys=True, allow_nan=False))


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from sepflow.tracking.reproduce import format_comparison, reproduce

    result = reproduce(args.run_id, keep_worktree=args.keep_worktree,
                       echo=(lambda line: print(line, file=sys.stderr)) if args.json else print)
    failed = [row.metric for row in result.comparisons if not row.ok]
    if args.json:
        _print_json({"run_id": args.run_id, "reproduced_run_id": result.reproduced_run_id, "reproduced": not failed,
                     "tolerance": result.tolerance, "aliases_restored": result.aliases_restored,
                     "kept_worktree": str(result.kept_worktree) if result.kept_worktree else None,
                     "metrics": [{"metric": row.metric, "recorded": row.recorded, "reproduced": row.reproduced,
                                  "ok": row.ok} for row in result.comparisons]})
        return EXIT_NOT_REPRODUCED if failed else 0
    print(format_comparison(result.comparisons))
    for line in result.aliases_restored:
        print(f"alias {line} (a reproduction never changes what serves)")
    if result.kept_worktree is not None:
        print(f"worktree kept at {result.kept_worktree} (remove it: git worktree remove --force {result.kept_worktree})")
    bound = "exactly" if result.tolerance == 0 else f"within {result.tolerance:g}"
    n = len(result.comparisons)
    verdict = f"{len(failed)} of {n} metrics differ (allowed: {bound})" if failed else f"all {n} metrics reproduced {bound}"
    print(f"reproduce: run {args.run_id} → run {result.reproduced_run_id}: {verdict}")
    return EXIT_NOT_REPRODUCED if failed else 0


def _cmd_run(args: argparse.Namespace) -> int:
    import os
    import shutil
    import subprocess

    from sepflow.experiment import RunRequest, load_plan
    from sepflow.tracking.lineage import repo_root
    from sepflow.tracking.runs import tracking_uri

    root = repo_root()
    request = RunRequest(symbols=args.symbols, families=args.families, targets=args.targets, features=args.features,
                         top_n_targets=args.top_n_targets, top_m_features=args.top_m_features,
                         n_splits=args.n_splits, embargo_days=args.embargo, fee_bps=args.fee_bps,
                         slippage_bps=args.slippage_bps, seed=args.seed, name=args.name)
    plan = load_plan(request, root)
    if args.dry_run:
        print(plan.shell())
        return 0
    # The stages call `sepflow`, so DVC must find this interpreter's scripts even in an unactivated venv.
    scripts = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"}
    dvc = shutil.which("dvc", path=env["PATH"])
    if dvc is None:
        raise SepflowError("run: the dvc command is not installed (pip install -r requirements.txt)")
    print(f"sepflow run: {plan.shell()}", flush=True)
    # DVC's output streams through; its exit code is ours.
    code = subprocess.run(plan.command(dvc), cwd=root, env=env, check=False).returncode
    if code == 0:
        which = plan.name or "<name>"
        print(f"\ncompare: dvc exp show --only-changed   |   dvc exp diff {which}   |   "
              f"restore: dvc exp apply {which}\nMLflow:  mlflow ui --backend-store-uri {tracking_uri(root)}")
    return code


def _cmd_tune(args: argparse.Namespace) -> int:
    from sepflow.catalog import FEATURES, MANIFEST, SELECTED_FEATURES
    from sepflow.config import load_params
    from sepflow.features.dataset import DatasetBuilder
    from sepflow.features.spec import feature_signature
    from sepflow.io import read_json
    from sepflow.training.tune import check_tunable, format_search, tune_target
    from sepflow.validation.calendar import development_rows, trading_calendar

    params = load_params(args.params)
    check_tunable(args.family, params.train, args.trials)  # before any data is read
    chosen = read_json(SELECTED_FEATURES)  # the train stage's inputs, as `dvc repro train@FAMILY` reads them
    if args.target not in chosen:
        raise SepflowError(f"tune: {SELECTED_FEATURES} selects no features for {args.target!r}; targets: {sorted(chosen)}")
    builder = DatasetBuilder(FEATURES, MANIFEST, expected_signature=feature_signature(params.features))
    # The rows train@FAMILY tunes on: the development region of the date rule.
    ds = development_rows(builder.build(args.target, chosen[args.target]),
                          params.evaluation_window(trading_calendar(builder)))
    report = tune_target(args.family, args.target, ds, chosen[args.target], params.train, params.seed,
                         workers=args.workers, n_trials=args.trials)
    print(format_search(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sepflow",
        description="sepflow: daily equity prices → features → ranked targets → trained, registered models. "
        "Run the whole pipeline with `dvc repro`; these commands run or check one piece.",
    )
    parser.add_argument("--version", action="version", version=f"sepflow {__version__}")
    _add_common(parser, on_subcommand=False)
    sub = parser.add_subparsers(dest="command", required=True)

    stage = sub.add_parser("stage", help="run one pipeline stage (what dvc.yaml calls)")
    stage.add_argument("name", choices=STAGES)
    stage.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    stage.add_argument("--family", help="model family, for the per-family stages (train, walk_forward)")
    stage.set_defaults(func=_cmd_stage)

    validate = sub.add_parser("validate", help="check a SEP/OHLCV file and print a one-line summary")
    validate.add_argument("path", help="SEP file (CSV, CSV.gz, parquet), long OHLCV CSV, or a folder")
    validate.add_argument("--tickers", help="Sharadar TICKERS file to validate with it")
    validate.add_argument("--strict", action="store_true", help="treat every row-level problem as an error")
    validate.add_argument("--params", default="params.yaml", help="validation policy source (if present)")
    validate.add_argument("--json", action="store_true", help="the summary as JSON on stdout")
    validate.set_defaults(func=_cmd_validate)

    predict = sub.add_parser("predict", help="predict with a registered model for every ticker in the universe on a date")
    predict.add_argument("--model", required=True, help="NAME@ALIAS (e.g. xgboost-dir_5d@production) or NAME/VERSION")
    predict.add_argument("--asof", help="YYYY-MM-DD, a date with prices (default: the last date in the data)")
    predict.add_argument("--sep", help="price source to ingest and filter (default: data/interim/sep_common.parquet)")
    predict.add_argument("--tickers", help="Sharadar TICKERS file for --sep")
    predict.add_argument("--params", default="params.yaml", help="features, universe and validation settings")
    predict.add_argument("--out", help="write .csv or .parquet here (default: CSV on stdout)")
    predict.set_defaults(func=_cmd_predict)

    baseline = sub.add_parser(
        "train-baseline",
        help="the old single-script entry point: one SEP file → dir_<h> classifier + return_<h> regressor (joblib)",
    )
    baseline.add_argument("--sep-master", required=True, metavar="PATH", help="SEP file (CSV, CSV.gz, parquet)")
    baseline.add_argument("--date", metavar="YYYY-MM-DD",
                          help="as-of date in the file names (default: the date in the SEP file name, "
                          "else the last price date)")
    # Horizon, backend and device are checked by the library, so a bad value is one error line.
    baseline.add_argument("--horizon", default="5d", metavar="1d|5d|10d|30d", help="target horizon (default: 5d)")
    baseline.add_argument("--backend", default="xgb", metavar="dummy|xgb|torch",
                          help="dummy floor, XGBoost, or a small PyTorch MLP (default: xgb)")
    baseline.add_argument("--device", default="cpu", metavar="cpu|gpu",
                          help="gpu: CUDA for xgb/torch, falling back to the CPU when no GPU is visible (default: cpu)")
    baseline.add_argument("--out", default="models", help="output folder (default: models)")
    baseline.add_argument("--params", help="params file (default: params.yaml if present, else built-in defaults)")
    baseline.set_defaults(func=_cmd_train_baseline)

    promote_cmd = sub.add_parser(
        "promote", help="move an alias (production) to a version once its walk-forward evidence passes the gate",
        description="Point --to (production) at a version after params.yaml promotion's gate: the version's "
        "walk-forward evidence must pass promotion.significance (e.g. rank-IC t-stat, PSR) and min_periods on "
        "its own, and each gated metric must beat the current production version's (else the baseline "
        "family's) by more than its margin, both walked on the same evaluation window; a metric the reference "
        "leaves undefined is judged on the significance alone. Roll back by promoting an older --version (a "
        "worse one needs --force). "
        f"Exit {EXIT_REFUSED}: the gate refused (the side-by-side table, with standard errors and the failed "
        f"rules, is printed); {EXIT_BAD_INPUT}: bad input.",
    )
    promote_cmd.add_argument("model", help="registered model name, <family>-<target> (e.g. xgboost-dir_5d)")
    source = promote_cmd.add_mutually_exclusive_group()
    source.add_argument("--version", type=int, help="the version to promote")
    source.add_argument("--alias", help="promote the version this alias names (default: candidate)")
    promote_cmd.add_argument("--to", default="production", help="the alias to move (default: production)")
    promote_cmd.add_argument("--force", action="store_true", help="promote even if the gate refuses (needs --reason)")
    promote_cmd.add_argument("--reason", help="why; written to the version's audit tags")
    promote_cmd.add_argument("--params", default="params.yaml", help="gate settings (section promotion)")
    promote_cmd.add_argument("--json", action="store_true", help="what happened (or every failed rule) as JSON on stdout")
    promote_cmd.set_defaults(func=_cmd_promote)

    models = sub.add_parser("models", help="list registered models with their aliases and headline metrics")
    models.add_argument("--all", action="store_true", help="every version (default: those an alias names)")
    models.add_argument("--params", default="params.yaml", help="which walk-forward metrics to show (promotion)")
    models.add_argument("--json", action="store_true", help="the rows as JSON on stdout (every metric, every alias)")
    models.set_defaults(func=_cmd_models)

    reproduce_cmd = sub.add_parser(
        "reproduce", help="rerun an MLflow run's stage at its commit and compare its metrics",
        description="Check the run's commit out into a temporary git worktree, restore its inputs (by their "
        "recorded md5s) from the DVC cache or remote, rerun its stage there and print recorded against "
        "reproduced metrics: exact for deterministic families, within a stated tolerance for the LSTM. "
        f"Exit {EXIT_NOT_REPRODUCED}: a metric differs; {EXIT_BAD_INPUT}: refused (dirty tree, unknown run, missing data).",
    )
    reproduce_cmd.add_argument("run_id", help="the MLflow run id of a stage run")
    reproduce_cmd.add_argument("--keep-worktree", action="store_true", help="leave the worktree for inspection")
    reproduce_cmd.add_argument("--json", action="store_true",
                               help="every metric, recorded and reproduced, as JSON on stdout (progress on stderr)")
    reproduce_cmd.set_defaults(func=_cmd_reproduce)

    tune_cmd = sub.add_parser(
        "tune", help="run train@FAMILY's hyper-parameter search for one target in N processes sharing its study",
        description="Fill the Optuna study train@FAMILY would fill for TARGET (same rows, folds, study name and "
        "train.tuning.storage) using N worker processes; a following `dvc repro train@FAMILY` finds the trials "
        "done and only fits the best. Several machines can share one study: point train.tuning.storage at a "
        "PostgreSQL URL and run `sepflow tune` on each.",
    )
    tune_cmd.add_argument("--family", required=True, help="a tuned family: xgboost, lightgbm or random_forest")
    tune_cmd.add_argument("--target", required=True, help="a selected target, e.g. dir_5d")
    tune_cmd.add_argument("--workers", type=int, default=1, help="processes searching at once (default: 1)")
    tune_cmd.add_argument("--trials", type=int,
                          help="COMPLETE trials to reach (default: train.tuning.n_trials.FAMILY)")
    tune_cmd.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    tune_cmd.set_defaults(func=_cmd_tune)

    run_cmd = sub.add_parser(
        "run", help="run the pipeline as one DVC experiment with a few settings changed (no DVC knowledge needed)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the pipeline (prices → universe → features → target ranking → feature selection → "
        "training → walk-forward test) as a DVC experiment: each flag sets params.yaml keys for this run "
        "(`dvc exp run -S ...`), the workspace's params.yaml keeps them afterwards, and DVC records them with "
        "the results, so runs stay reproducible and comparable. Flags left out keep params.yaml's values; "
        "stages whose inputs and settings did not change are not rerun.",
        epilog="example:\n  sepflow run --targets dir_5d --features ret_5d ret_20d rsi_14 --families dummy xgboost "
        "--seed 7 --name momentum-5d\n\nafterwards:\n  dvc exp show --only-changed    every experiment's settings "
        "and metrics side by side\n  dvc exp apply NAME             bring an experiment's params and results back\n"
        "  mlflow ui --backend-store-uri sqlite:///$PWD/mlflow.db   every stage run, model and plot",
    )
    run_cmd.add_argument("--symbols", nargs="+", metavar="TICKER",
                         help="trade only these tickers (universe.symbols; the other universe filters still apply)")
    run_cmd.add_argument("--families", nargs="+", metavar="FAMILY",
                         help="model families to train and walk-forward test: dummy, random_forest, xgboost, "
                         "lightgbm, lstm, plus ensemble to combine the listed ones (train.families). Only these "
                         "families' stages run; ensemble also brings every member's model up to date. "
                         "Default: every stage of the pipeline")
    run_cmd.add_argument("--targets", nargs="+", metavar="TARGET",
                         help="what to predict, e.g. dir_5d (up or down over 5 days), return_5d (the 5-day "
                         "return), label3_5d (down/neutral/up); skips the target ranking (ranking.targets)")
    run_cmd.add_argument("--features", nargs="+", metavar="FEATURE",
                         help="fixed predictors for every --targets target, e.g. ret_20d rsi_14; skips the "
                         "feature selection (replaces selection.manual; needs --targets)")
    run_cmd.add_argument("--top-n-targets", type=int, metavar="N",
                         help="keep the N most predictable targets from the ranking (ranking.top_n)")
    run_cmd.add_argument("--top-m-features", type=int, metavar="M",
                         help="keep the M features the model families agree on most, per target (selection.top_m)")
    run_cmd.add_argument("--n-splits", type=int, metavar="K",
                         help="purged cross-validation folds for ranking, selection and tuning (each n_splits)")
    run_cmd.add_argument("--embargo", type=int, metavar="DAYS",
                         help="trading days dropped after each test period so no label overlaps training rows; "
                         "raised to a target's horizon when shorter (every embargo_days)")
    run_cmd.add_argument("--fee-bps", type=float, metavar="X",
                         help="trading fee per unit of turnover, in basis points, charged in net returns and "
                         "net Sharpe (train.fee_bps; walk-forward uses it too)")
    run_cmd.add_argument("--slippage-bps", type=float, metavar="Y",
                         help="price slippage per unit of turnover, in basis points (train.slippage_bps)")
    run_cmd.add_argument("--seed", type=int, metavar="S",
                         help="seed of every model and search (seed); the synthetic market keeps its own "
                         "synthetic.seed, because it is data, not model")
    run_cmd.add_argument("--name", metavar="NAME", help="experiment name for dvc exp show / apply (default: DVC picks one)")
    run_cmd.add_argument("--dry-run", action="store_true", help="print the dvc exp run command and run nothing")
    run_cmd.set_defaults(func=_cmd_run)
    for command in sub.choices.values():  # `sepflow stage --debug ...` works as `sepflow --debug stage ...`
        _add_common(command, on_subcommand=True)
    return parser


def _add_common(parser: argparse.ArgumentParser, *, on_subcommand: bool) -> None:
    """--debug, -v, -q. A subcommand's copies default to SUPPRESS: they set the value only when given,
    and never reset what was given before the subcommand."""
    defaults = dict.fromkeys(("debug", "verbose", "quiet"), argparse.SUPPRESS) if on_subcommand else {
        "debug": False, "verbose": 0, "quiet": False}
    parser.add_argument("--debug", action="store_true", default=defaults["debug"], help="show the traceback of a failure")
    parser.add_argument("-v", "--verbose", action="count", default=defaults["verbose"],
                        help="log more to stderr (-v info, -vv debug)")
    parser.add_argument("-q", "--quiet", action="store_true", default=defaults["quiet"], help="log errors only")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("sepflow: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("sepflow: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    except Exception as exc:  # noqa: BLE001 (every failure becomes one line and its exit code)
        code = exit_code(exc)
        if args.debug:
            traceback.print_exc()
        kind = {EXIT_INFRASTRUCTURE: "infrastructure error", EXIT_INTERNAL: "internal error"}.get(code, "error")
        hint = " (a bug: rerun with --debug and report the traceback)" if code == EXIT_INTERNAL else ""
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"sepflow: {kind}: {message}{hint}", file=sys.stderr)
        return code
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_code(exc: BaseException) -> int:
    """2 for bad input, 3 for the tracking store, its connection or the disk, 4 for anything else."""
    if isinstance(exc, SepflowError):
        return EXIT_BAD_INPUT
    if any(cls.__module__.split(".")[0] in INFRASTRUCTURE_MODULES for cls in type(exc).__mro__):
        return EXIT_INFRASTRUCTURE
    if isinstance(exc, OSError):
        return EXIT_BAD_INPUT if exc.errno in BAD_INPUT_ERRNOS else EXIT_INFRASTRUCTURE
    return EXIT_INTERNAL


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def _configure_logging(verbose: int, quiet: bool) -> None:
    """sepflow's own log lines to stderr: warnings by default, info with -v, debug with -vv."""
    level = logging.ERROR if quiet else {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("sepflow: %(levelname)s: %(message)s"))
    logger = logging.getLogger("sepflow")
    logger.handlers[:] = [handler]
    logger.setLevel(level)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
