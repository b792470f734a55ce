"""The weekly flow's candidate sweep on a Dask cluster: K = 4 candidates on one worker, then on
two workers of one thread each, in the same run (issue 16). Prints one JSON object.

Each phase runs the whole `weekly-full` flow through Prefect's engine (a temporary Prefect
API), `AIFX_TASK_RUNNER=dask` with `AIFX_DASK_WORKERS` = 1, then 2: the flow starts its local
cluster (worker processes that import TensorFlow), reads the series (mapped), fits the four
candidates (mapped), finishes and registers the best. The cluster's own cost is reported
apart: starting the cluster and running one trivial task on each worker, for each size.
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


def cluster_overhead(workers: int) -> float:
    """Seconds to start a local cluster of `workers` processes and run one task on each."""
    from distributed import Client, LocalCluster  # noqa: PLC0415

    started = time.perf_counter()
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(os.getpid)
        return time.perf_counter() - started


def sweep(work: Path, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """One weekly flow with `args.candidates` candidates on a local cluster of `workers`."""
    from flows.weekly_full import weekly_full_flow  # noqa: PLC0415

    db = work / f"aifx-{workers}.db"
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
            "AIFX_DATA_DIR": str(work / f"data-{workers}"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / f'mlflow-{workers}.db'}",
            "AIFX_TASK_RUNNER": "dask",
            "AIFX_DASK_WORKERS": str(workers),
            "AIFX_DASK_THREADS": "1",
        }
    )
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
            overhead = {str(n): round(cluster_overhead(n), 2) for n in (1, 2)}
            one = sweep(work, 1, args)
            two = sweep(work, 2, args)
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
                    "cluster_start_and_one_task_s": overhead,
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
