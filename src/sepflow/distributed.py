"""Where work runs when an ``engine: dask`` setting says so: a Dask cluster, and how rows reach it.

Two settings use it: ``features.engine`` (the panel partitioned by ticker) and ``train.engine``
(the boosted families trained through ``xgboost.dask`` / ``lightgbm.dask``). Both read a
``dask:`` section: a scheduler address (``tcp://host:8786``, started with ``dask scheduler``
and ``dask worker``), else a LocalCluster of ``n_workers`` single-threaded processes.

Training finds its cluster through a context (``current_session``), not a model parameter: the
cluster says where a fit runs, not what is learned, so ``get_params``, ``clone`` and the saved
``adapter.json`` stay the same on either engine. Dask is imported only when a cluster is opened.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DaskParams", "DaskSession", "current_session", "dask_client", "dask_session", "engine_session", "use_session",
]


class DaskParams(BaseModel):
    """Where ``engine: dask`` runs: a scheduler address, or a LocalCluster of this size."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheduler: str | None = None
    n_workers: int = Field(2, ge=1)
    partitions_per_worker: int = Field(2, ge=1)


@contextlib.contextmanager
def dask_client(params: DaskParams) -> Iterator[Any]:
    """A client on the configured scheduler, or on a LocalCluster closed on exit."""
    from distributed import (  # imported only when the dask engine is used
        Client,
        LocalCluster,
    )

    if params.scheduler:
        with Client(params.scheduler) as client:
            yield client
        return
    # Processes, not threads: LightGBM's and XGBoost's collectives are one per process.
    with LocalCluster(n_workers=params.n_workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


@dataclass(frozen=True)
class DaskSession:
    """An open client and how finely rows are cut for its workers."""

    client: Any
    partitions_per_worker: int = 2

    def workers(self) -> list[str]:
        """Worker addresses, sorted so that the same rows go to the same place on every call."""
        return sorted(self.client.scheduler_info()["workers"])

    def spread(self, *arrays: np.ndarray) -> list[Any]:
        """Dask arrays of ``arrays`` (same length), cut into row blocks placed round-robin on the workers.

        Placing the blocks explicitly (rather than leaving it to the scheduler) gives every worker
        rows, so the fit really is shared, and keeps the same rows together on every run.
        """
        import dask.array as da

        workers = self.workers()
        n_rows = len(arrays[0])
        n_parts = max(1, min(n_rows, len(workers) * self.partitions_per_worker))
        bounds = np.linspace(0, n_rows, n_parts + 1).astype(int)
        spread = []
        for array in arrays:
            blocks = []
            for part, (start, stop) in enumerate(itertools.pairwise(bounds)):
                block = np.ascontiguousarray(array[start:stop])
                # hash=False: equal blocks of different arrays must not share one key (and one place).
                future = self.client.scatter(block, workers=[workers[part % len(workers)]], hash=False)
                blocks.append(da.from_delayed(future, shape=block.shape, dtype=block.dtype))
            spread.append(da.concatenate(blocks))
        return spread


_SESSION: contextvars.ContextVar[DaskSession | None] = contextvars.ContextVar("sepflow_dask_session", default=None)


def current_session() -> DaskSession | None:
    """The cluster fits run on in this context; None: in this process."""
    return _SESSION.get()


@contextlib.contextmanager
def use_session(session: DaskSession) -> Iterator[DaskSession]:
    """Fit on ``session``'s cluster inside the ``with`` block (a client opened elsewhere, e.g. dask-cuda's)."""
    token = _SESSION.set(session)
    try:
        yield session
    finally:
        _SESSION.reset(token)


@contextlib.contextmanager
def dask_session(params: DaskParams) -> Iterator[DaskSession]:
    """Open ``params``' cluster and fit on it inside the ``with`` block; an enclosing session is reused.

    Opening a LocalCluster takes seconds: a caller training many models can open one session
    around all of them.
    """
    session = current_session()
    if session is not None:
        yield session
        return
    with dask_client(params) as client, use_session(DaskSession(client, params.partitions_per_worker)) as opened:
        yield opened


def engine_session(
    engine: Literal["local", "dask"], params: DaskParams, *, uses_cluster: bool = True,
) -> contextlib.AbstractContextManager[DaskSession | None]:
    """``dask_session`` for ``engine: dask`` when the work can use a cluster; else a no-op."""
    if engine == "dask" and uses_cluster:
        return dask_session(params)
    return contextlib.nullcontext()
