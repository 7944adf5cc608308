"""Progress bars for the loops a user waits on, silent unless stderr is a terminal.

Every bar is a ``tqdm`` on stderr that disappears when done (``leave=False``). Off a terminal
(tests, DVC logs, CI, a pipe) nothing is drawn at all, so logs stay clean. The environment
variable ``SEPFLOW_PROGRESS`` overrides the terminal check: ``1`` forces bars on, ``0`` off;
unset, empty or ``auto`` means "on a terminal only".

Bars only observe: they never consume randomness, reorder work or change what is returned.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from joblib import Parallel
from tqdm import tqdm

from sepflow.errors import ConfigError

__all__ = ["ENV", "enabled", "epoch_callbacks", "parallel_map", "progress", "quiet", "trial_callback"]

ENV = "SEPFLOW_PROGRESS"
_ON = {"1", "true", "yes", "on"}
_OFF = {"0", "false", "no", "off"}
_quiet_depth = 0  # > 0 inside ``quiet()``: bars off whatever the terminal says

T = TypeVar("T")


def enabled() -> bool:
    """Whether bars are drawn: ``SEPFLOW_PROGRESS`` if set, else whether stderr is a terminal."""
    if _quiet_depth:
        return False
    value = os.environ.get(ENV, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    if value not in ("", "auto"):
        raise ConfigError(f"environment: {ENV}={os.environ[ENV]!r} is not one of 0, 1, auto")
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr: no terminal to draw on
        return False


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No bars inside (e.g. in parallel workers, whose bars would garble the parent's)."""
    global _quiet_depth
    _quiet_depth += 1
    try:
        yield
    finally:
        _quiet_depth -= 1


def progress(iterable: Iterable[T] | None = None, *, desc: str, total: int | None = None,
             unit: str = "it") -> tqdm:
    """A bar over ``iterable`` (or, without one, advanced by ``update``); iterates exactly as ``iterable``."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, file=sys.stderr,
                disable=not enabled(), dynamic_ncols=True)


def parallel_map(tasks: Sequence[Any], *, n_jobs: int, desc: str, unit: str, **parallel: Any) -> list[Any]:
    """``joblib.Parallel(n_jobs, **parallel)(tasks)`` (``delayed`` calls), results in task order,
    with a bar advancing as results arrive in that order."""
    results = Parallel(n_jobs=n_jobs, return_as="generator", **parallel)(tasks)
    with progress(results, desc=desc, total=len(tasks), unit=unit) as bar:
        return list(bar)


def trial_callback(bar: tqdm) -> Callable[[Any, Any], None]:
    """An Optuna ``study.optimize`` callback advancing ``bar`` by one per finished trial, best value beside it."""

    def advance(study: Any, trial: Any) -> None:
        bar.update(1)
        if not bar.disable:
            with contextlib.suppress(ValueError):  # no completed trial yet
                bar.set_postfix(best=f"{study.best_value:.4g}", refresh=False)

    return advance


def epoch_callbacks(epochs: int, desc: str) -> list[Any]:
    """Keras callbacks drawing a bar over ``epochs`` (closed when training ends, early stop included);
    an empty list when bars are off, so a fit off the terminal runs exactly as without it."""
    if not enabled():
        return []
    import keras  # only when an LSTM is being fitted on a terminal

    class EpochBar(keras.callbacks.Callback):
        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            self.bar = progress(desc=desc, total=epochs, unit="epoch")

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            loss = {k: f"{v:.4g}" for k, v in (logs or {}).items() if k in ("loss", "val_loss")}
            self.bar.set_postfix(loss, refresh=False)
            self.bar.update(1)

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            self.bar.close()

    return [EpochBar()]
