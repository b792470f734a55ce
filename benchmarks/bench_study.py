"""A four-replay study on a Dask cluster: on one worker, then on two workers of one thread each,
in the same run (issue 16). Prints one JSON object.

Each phase runs the whole `replay-study` flow through Prefect's engine (a temporary Prefect API
the replays report to as well) on a running local cluster (`AIFX_DASK_ADDRESS`), started and
warmed before the clock: four replays of the synthetic market that differ only in their seed,
each a process and store of its own, then the study report. The cluster's own cost (starting
it, warming its workers) is reported apart, and so is each phase's slowest replay, which bounds
what two workers can gain. Target on this 2-core machine: speedup (one worker's wall time /
two workers') >= 1.6.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from bench_sweep import running_cluster  # noqa: E402

from aifx_ml.replay.plan import ModelParams, ReplayParams  # noqa: E402
from aifx_ml.replay.study import StudySpec  # noqa: E402

TARGET = 1.6
START = datetime(2026, 1, 5, tzinfo=UTC)


def study(work: Path, workers: int, address: str, args: argparse.Namespace) -> dict[str, Any]:
    """The study on the cluster at `address` (of `workers` workers): its wall time, and each
    replay's, read from its log's first and last lines."""
    from flows.replay_study import replay_study_flow  # noqa: PLC0415

    base = ReplayParams(
        pairs=("EUR/USD",),
        timeframes=("1h",),
        start=START,
        end=START + timedelta(days=args.days),
        model=ModelParams(window=8, lstm_units=(8, 4), dense_units=4, epochs=args.epochs),
    )
    spec = StudySpec(seeds=tuple(range(1, args.replays + 1)))
    folder = work / f"study-{workers}"
    os.environ.update(
        {
            "AIFX_DATA_DIR": str(work / f"data-{workers}"),
            "AIFX_DATABASE_URL": f"sqlite:///{work / f'aifx-{workers}.db'}",
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / f'mlflow-{workers}.db'}",
            "AIFX_DASK_ADDRESS": address,
        }
    )
    started = time.perf_counter()
    result = replay_study_flow(
        name=f"bench-{workers}", base=base.as_dict(), spec=spec.as_dict(), folder=str(folder)
    )
    wall = time.perf_counter() - started
    report = json.loads(Path(result["json"]).read_text(encoding="utf-8"))
    replays = {r["name"]: round(r["seconds"], 1) for r in report["replays"]}
    return {
        "workers": workers,
        "wall_s": round(wall, 2),
        "replays_s": replays,
        # On one worker, wall minus this is what is not the replays' own time: starting their
        # processes (TensorFlow, MLflow and Prefect imports), hand-offs, the study report.
        "replays_sum_s": round(sum(replays.values()), 1),
        "counts": result["counts"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replays", type=int, default=4)
    parser.add_argument("--days", type=int, default=14, help="simulated days per replay")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    from prefect.settings import PREFECT_API_URL  # noqa: PLC0415
    from prefect.testing.utilities import prefect_test_harness  # noqa: PLC0415

    work = Path(tempfile.mkdtemp(prefix="aifx-bench-study-"))
    try:
        with prefect_test_harness(server_startup_timeout=120):
            # The workers, and the replays' processes they start, report to the same API.
            os.environ["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
            overhead, runs = {}, {}
            for n in (1, 2):
                with running_cluster(n) as (address, cost):
                    overhead[str(n)] = cost
                    runs[n] = study(work, n, address, args)
        one, two = runs[1], runs[2]
        speedup = one["wall_s"] / two["wall_s"]
        print(
            json.dumps(
                {
                    "benchmark": "replay_study_on_dask",
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                    "replays": args.replays,
                    "days_per_replay": args.days,
                    "epochs": args.epochs,
                    "one_worker": one,
                    "two_workers": two,
                    "speedup": round(speedup, 3),
                    "cluster_overhead": overhead,
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
