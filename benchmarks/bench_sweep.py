"""The weekly flow's candidate sweep on a Dask cluster: K = 4 candidates on one worker, then on
two workers of one thread each, in the same run (issue 16). Prints one JSON object.

Each phase runs the whole `weekly-full` flow through Prefect's engine (a temporary Prefect
API) on a running cluster, as production runs it (`AIFX_DASK_ADDRESS`): a local cluster of 1,
then 2 worker processes of one thread each, started before the clock and warmed (TensorFlow
imported on each worker). The flow reads the series (mapped), fits the four candidates
(mapped), finishes and registers the best. The cluster's own cost is reported apart: starting
it, and warming its workers. A second figure, `per_run_cluster`, is the same flow with
`AIFX_TASK_RUNNER=dask` and no address: the flow run starts and stops its own cluster.
Target on this 2-core machine: speedup (one worker's wall time / two workers') >= 1.6.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pandas as pd  # noqa: E402

from aifx_ml.data.importer import import_frame  # noqa: E402
from aifx_ml.data.synth import synthesize_candles  # noqa: E402
from aifx_ml.db.engine import make_engine, upgrade  # noqa: E402

TARGET = 1.6
AS_OF = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
PAIRS = ["EUR/USD", "GBP/USD", "USD/JPY"]
# Candidates of one architecture (learning rate and dropout vary): tasks of equal cost, so the
# figure measures the engine, not how unequal the draws happened to be.
SPACE = {"learning_rate": [0.0005, 0.001, 0.002, 0.003], "dropout": [0.2, 0.3]}


@contextmanager
def running_cluster(workers: int) -> Iterator[tuple[str, dict[str, float]]]:
    """A local cluster of `workers` one-thread processes, started and warmed: its address,
    and the seconds each step took."""
    from distributed import Client, LocalCluster  # noqa: PLC0415

    from flows.runner import THREAD_VARIABLES  # noqa: PLC0415

    started = time.perf_counter()
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env=dict.fromkeys(THREAD_VARIABLES, "1"),
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(os.getpid)
        up = time.perf_counter() - started
        client.run(_import_tensorflow)
        warm = time.perf_counter() - started - up
        yield cluster.scheduler_address, {"start_s": round(up, 2), "warm_s": round(warm, 2)}


def _import_tensorflow() -> None:
    import tensorflow  # noqa: F401, PLC0415


def sweep(
    work: Path, workers: int, args: argparse.Namespace, address: str | None
) -> dict[str, Any]:
    """One weekly flow with `args.candidates` candidates on `workers` workers: those of the
    cluster at `address`, or (None) a local cluster the flow run starts and stops."""
    from flows.weekly_full import weekly_full_flow  # noqa: PLC0415

    name = f"{workers}-{'running' if address else 'per-run'}"
    db = work / f"aifx-{name}.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    frames = synthesize_candles(
        PAIRS, "1h", pd.Timestamp("2026-01-20", tz="UTC"), pd.Timestamp("2026-03-01", tz="UTC")
    )
    for pair, frame in frames.items():
        import_frame(engine, frame, pair, "1h", AS_OF, source="bench")
    engine.dispose()
    os.environ.update(
        {
            "AIFX_DATABASE_URL": f"sqlite:///{db}",
            "AIFX_DATA_DIR": str(work / f"data-{name}"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / f'mlflow-{name}.db'}",
            "AIFX_TASK_RUNNER": "dask",
            "AIFX_DASK_WORKERS": str(workers),
            "AIFX_DASK_THREADS": "1",
        }
    )
    if address:
        os.environ["AIFX_DASK_ADDRESS"] = address
    else:
        os.environ.pop("AIFX_DASK_ADDRESS", None)
    started = time.perf_counter()
    result = weekly_full_flow(
        pairs=PAIRS,
        as_of=AS_OF,
        epochs=args.epochs,
        batch_size=32,
        window=32,
        lstm_units=[32, 16],
        dense_units=8,
        candidates=args.candidates,
        search_space=SPACE,
        auto_challenger=False,
    )
    wall = time.perf_counter() - started
    if result.status != "completed":
        raise SystemExit(f"the sweep on {workers} worker(s) ended {result.status}: {result.reason}")
    return {"workers": workers, "wall_s": round(wall, 2), "version": result.version}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()

    # This process finishes the chosen candidate (and registers it) in both phases: TensorFlow
    # is loaded here first, so that neither phase pays for it and the other not.
    import tensorflow  # noqa: F401, PLC0415
    from prefect.settings import PREFECT_API_URL  # noqa: PLC0415
    from prefect.testing.utilities import prefect_test_harness  # noqa: PLC0415

    work = Path(tempfile.mkdtemp(prefix="aifx-bench-sweep-"))
    try:
        with prefect_test_harness(server_startup_timeout=120):
            # The cluster's worker processes report their task runs to the same API.
            os.environ["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
            overhead, runs = {}, {}
            for n in (1, 2):
                with running_cluster(n) as (address, cost):
                    overhead[str(n)] = cost
                    runs[n] = sweep(work, n, args, address)
            per_run = {n: sweep(work, n, args, None) for n in (1, 2)}
        one, two = runs[1], runs[2]
        speedup = one["wall_s"] / two["wall_s"]
        print(
            json.dumps(
                {
                    "benchmark": "weekly_sweep_on_dask",
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                    "candidates": args.candidates,
                    "epochs": args.epochs,
                    "one_worker": one,
                    "two_workers": two,
                    "speedup": round(speedup, 3),
                    "cluster_overhead": overhead,
                    "per_run_cluster": {
                        "one_worker_wall_s": per_run[1]["wall_s"],
                        "two_workers_wall_s": per_run[2]["wall_s"],
                        "speedup": round(per_run[1]["wall_s"] / per_run[2]["wall_s"], 3),
                    },
                    "target_speedup_min": TARGET,
                    "pass": speedup >= TARGET,
                },
                indent=2,
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
