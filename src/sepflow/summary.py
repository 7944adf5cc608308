"""The short plain-text table each stage prints to stdout when it ends (its log line in DVC).

``format_summary`` takes either facts (a mapping: one ``name  value`` line each) or table rows
(a sequence of mappings: a header and one line per row, numbers right-aligned), plus optional
``notes`` (more facts, e.g. where the outputs went) printed under a table. Output is ASCII
punctuation, deterministic, and does not depend on the terminal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

__all__ = ["format_summary", "format_value", "print_summary"]

MAX_ITEMS = 8  # list and dict values show this many items, then "(+N more)"
INDENT = "  "


def format_value(value: Any) -> str:
    """One cell: ``-`` for missing/NaN, thousands separators for integers, 4 decimals for floats,
    ``k=v`` pairs for mappings, comma-separated lists, POSIX paths."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy / pandas scalars
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-" if math.isnan(value) else str(value)
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4f}"
    if isinstance(value, PurePath):
        return value.as_posix()
    if isinstance(value, Mapping):
        items = [f"{k}={format_value(v)}" for k, v in value.items()]
        return _capped(items) if items else "none"
    if isinstance(value, list | tuple | set | frozenset):
        items = [format_value(v) for v in (sorted(value) if isinstance(value, set | frozenset) else value)]
        return _capped(items) if items else "none"
    return str(value)


def _capped(items: list[str]) -> str:
    more = len(items) - MAX_ITEMS
    return ", ".join(items[:MAX_ITEMS]) + (f" (+{more} more)" if more > 0 else "")


def _is_number(value: Any) -> bool:
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return False
    return isinstance(value, int | float) and not isinstance(value, bool)


def _facts(facts: Mapping[str, Any]) -> list[str]:
    width = max((len(str(k)) for k in facts), default=0)
    return [f"{INDENT}{str(k).ljust(width)}  {format_value(v)}".rstrip() for k, v in facts.items()]


def _table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[format_value(row.get(c)) for c in columns] for row in rows]
    numeric = [all(_is_number(row.get(c)) or row.get(c) is None for row in rows) for c in columns]
    widths = [max(len(str(c)), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        padded = [v.rjust(w) if right else v.ljust(w) for v, w, right in zip(values, widths, numeric, strict=True)]
        return (INDENT + "  ".join(padded)).rstrip()

    return [line([str(c) for c in columns]), *(line(values) for values in cells)]


def format_summary(
    title: str, rows: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, notes: Mapping[str, Any] | None = None,
) -> str:
    """The summary text: ``== title ==``, then the facts or the table, then ``notes`` as facts."""
    lines = [f"== {title} =="]
    if isinstance(rows, Mapping):
        lines += _facts({**rows, **(notes or {})})
        return "\n".join(lines)
    lines += _table(rows) if rows else [f"{INDENT}(nothing)"]
    if notes:
        lines += _facts(notes)
    return "\n".join(lines)


def print_summary(
    title: str, rows: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, notes: Mapping[str, Any] | None = None,
) -> None:
    """Print ``format_summary(...)`` to stdout (always: it is the stage's log, on a terminal or not)."""
    print(format_summary(title, rows, notes=notes), flush=True)
