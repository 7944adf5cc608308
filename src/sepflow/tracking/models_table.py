"""What ``sepflow models`` shows: registered versions with their aliases, walk-forward evidence and headline metric."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from mlflow.store.entities.paged_list import PagedList
from mlflow.tracking import MlflowClient

from sepflow.tracking.gate import STANDARD_ERRORS, VersionMetrics

__all__ = ["ModelRow", "format_models", "list_models"]

T = TypeVar("T")


@dataclass(frozen=True)
class ModelRow:
    """One registered version and the aliases that name it."""

    metrics: VersionMetrics
    aliases: tuple[str, ...]


def _every_page(search: Callable[..., PagedList[T]], **kwargs: Any) -> Iterator[T]:
    """Every result of an MLflow search, page after page."""
    token = None
    while True:
        page = search(page_token=token, **kwargs)
        yield from page
        token = page.token
        if not token:
            return


def list_models(*, all_versions: bool = False) -> list[ModelRow]:
    """Registered versions sorted by model name, newest version first.

    By default only the versions an alias names (a model without aliases shows its newest
    version); ``all_versions`` lists every version.
    """
    client = MlflowClient()
    rows = []
    for model in _every_page(client.search_registered_models):
        by_version: dict[int, list[str]] = {}
        for alias, number in model.aliases.items():
            by_version.setdefault(int(number), []).append(alias)
        # Versions carry their tags only when searched (the registered model's listing has no tags).
        versions = sorted(_every_page(client.search_model_versions, filter_string=f"name = '{model.name}'"),
                          key=lambda v: -int(v.version))
        shown = [v for v in versions if all_versions or int(v.version) in by_version] or versions[:1]
        rows += [ModelRow(VersionMetrics.from_tags(model.name, int(v.version), v.tags),
                          tuple(sorted(by_version.get(int(v.version), [])))) for v in shown]
    return sorted(rows, key=lambda r: (r.metrics.name, -r.metrics.version))


def _cell(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"


def _with_se(metrics: VersionMetrics, metric: str, digits: int) -> str:
    """``value±se`` (no spaces: one cell), the value alone without a standard error, ``-`` when not recorded."""
    value = metrics.walk_forward.get(metric)
    se = metrics.walk_forward.get(STANDARD_ERRORS[metric])
    if value is None or se is None or not math.isfinite(se):
        return _cell(value, digits)
    return f"{_cell(value, digits)}±{se:.{digits}f}"


# The walk-forward evidence every listing shows: header → the cell of a version.
EVIDENCE_COLUMNS: dict[str, Callable[[VersionMetrics], str]] = {
    "wf rank_ic±se": lambda m: _with_se(m, "rank_ic", 4),
    "t": lambda m: _cell(m.walk_forward.get("rank_ic_tstat"), 2),
    "wf net_sharpe±se": lambda m: _with_se(m, "net_sharpe", 2),
    "psr": lambda m: _cell(m.walk_forward.get("psr"), 2),
    "dsr": lambda m: _cell(m.walk_forward.get("dsr"), 2),
    "n": lambda m: _cell(m.walk_forward.get("n_periods"), 0),
}
_IN_EVIDENCE = frozenset({"rank_ic", "rank_ic_tstat", "net_sharpe", "psr", "dsr", "n_periods"})


def format_models(rows: Sequence[ModelRow], walk_forward_metrics: Sequence[str]) -> str:
    """A text table: model, version, aliases, family, target, the walk-forward evidence (rank IC ±
    its Newey–West standard error, its t-stat, net Sharpe ± standard error, PSR, DSR and ``n``, the
    daily book returns behind them), any other of ``walk_forward_metrics`` (the gated ones), and the
    test segment's headline metric (``-``: not recorded; ``n/a``: recorded as undefined)."""
    extra = [m for m in walk_forward_metrics if m not in _IN_EVIDENCE]
    header = ["model", "version", "aliases", "family", "target", *EVIDENCE_COLUMNS,
              *(f"wf {m}" for m in extra), "test headline"]
    body = []
    for row in rows:
        m = row.metrics
        headline = f"{m.headline} {_cell(m.metrics.get(f'test.{m.headline}'))}" if m.headline else "-"
        body.append([m.name, str(m.version), ",".join(row.aliases) or "-", m.family or "-", m.target or "-",
                     *(cell(m) for cell in EVIDENCE_COLUMNS.values()),
                     *(_cell(m.walk_forward.get(name)) for name in extra), headline])
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                     for line in [header, *body])
