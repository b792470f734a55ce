"""Where a flow's fanned-out tasks run, chosen by the settings when a flow run starts.

`AIFX_TASK_RUNNER=process` (the default): threads of the flow's own process, Prefect's
`ThreadPoolTaskRunner`. `AIFX_TASK_RUNNER=dask`: Prefect's own `DaskTaskRunner`
(prefect-dask), on the scheduler at `AIFX_DASK_ADDRESS` or, without one, on a local cluster
of `AIFX_DASK_WORKERS` processes with `AIFX_DASK_THREADS` threads each, started for the run
and stopped after it. Every flow is declared with `task_runner=FROM_SETTINGS`; nothing else
in the code knows which runner runs it.

Tasks receive settings and plain values, never engines, clients or Keras objects (they do not
pickle): each task opens what it needs, on whichever worker it lands.
"""

from __future__ import annotations

import os
import sys
from typing import Any, cast

from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from aifx_ml.config import Settings, load_settings

# TensorFlow's and the math libraries' thread pools, set to a worker's share of the cores.
Runner = TaskRunner[PrefectFuture[Any]]
THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")


def task_runner(settings: Settings) -> Runner:
    """The task runner the settings ask for (not started: Prefect enters it per flow run)."""
    if settings.task_runner != "dask":
        return cast(Runner, ThreadPoolTaskRunner())
    from prefect_dask.task_runners import DaskTaskRunner  # noqa: PLC0415  (Dask loads only when asked for)

    if settings.dask_address:
        return cast(Runner, DaskTaskRunner(address=settings.dask_address))
    threads = str(settings.dask_threads)
    runner = DaskTaskRunner(
        cluster_kwargs={
            "n_workers": settings.dask_workers,
            "threads_per_worker": settings.dask_threads,
            "processes": True,  # TensorFlow and the GIL: one process per worker
            "dashboard_address": None,
            "env": dict.fromkeys(THREAD_VARIABLES, threads),
        }
    )
    return cast(Runner, runner)


class FromSettings(ThreadPoolTaskRunner[Any]):
    """A flow's task runner that is the settings' choice, made when each run starts.

    Prefect enters a *duplicate* of a flow's runner for every run; this one's duplicate is a
    fresh `task_runner(load_settings())`, so the same deployed flow runs in process or on Dask
    by the environment of the process that runs it. (Used without duplicating, it is the
    thread pool.)
    """

    # Another class than its own: that is the point (the settings' choice).
    def duplicate(self) -> Runner:  # type: ignore[override]
        return task_runner(load_settings())


FROM_SETTINGS = cast(Runner, FromSettings())


def share_cores_on_dask_worker() -> None:
    """On a Dask worker, before TensorFlow loads: its thread pools get the worker's threads,
    so that the workers of one host do not fight over its cores. Elsewhere, or once
    TensorFlow is loaded (its pools are fixed then), nothing changes."""
    if "tensorflow" in sys.modules:
        return
    for name, value in worker_thread_variables().items():
        os.environ.setdefault(name, value)


def worker_thread_variables() -> dict[str, str]:
    """THREAD_VARIABLES set to this Dask worker's threads; empty off a worker."""
    if "distributed" not in sys.modules:
        return {}
    from distributed import get_worker  # noqa: PLC0415  (only on a Dask worker)

    try:
        threads = get_worker().state.nthreads
    except ValueError:  # not on a worker
        return {}
    return dict.fromkeys(THREAD_VARIABLES, str(threads))
