"""Replay speed: simulated days per minute of wall time, with training (the daily and weekly
flows, A/B looks, labels, predictions for every candle) and without (the models already
registered serve, signals are labeled and A/B tests looked at; nothing is trained).

The synthetic market of `aifx replay --synthetic` (three pairs, 1h candles, the replay's small
LSTM) on the embedded default (SQLite + local MLflow + Prefect's local API), two weeks each.
Prints one JSON object. Target: the README's demo (several months) in under 10 minutes, i.e.
at least 9 simulated days per minute with training.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

TARGET_DAYS_PER_MINUTE = 9.0
START = datetime(2026, 1, 5, tzinfo=UTC)
WEEKS = 2


def main() -> None:
    from aifx_ml.config import load_settings  # noqa: PLC0415
    from aifx_ml.replay.plan import ReplayParams, with_change_point  # noqa: PLC0415
    from aifx_ml.replay.state import replay_jobs  # noqa: PLC0415
    from flows.replay import run_to_end  # noqa: PLC0415

    work = Path(tempfile.mkdtemp(prefix="aifx-bench-replay-"))
    try:
        settings = load_settings(None, data_dir=work)
        middle = START + timedelta(weeks=WEEKS)
        trained = with_change_point(
            ReplayParams(
                pairs=("EUR/USD", "GBP/USD", "USD/JPY"),
                timeframes=("1h",),
                start=START,
                end=middle,
                label_threshold=0.001,
                ab_look_hours=6,
                # As measured (benchmarks/README.md); `aifx replay` tests 60 per arm, 14 days.
                ab_min_decided=200,
                ab_max_days=30.0,
            )
        )
        serving = replace(trained, start=middle, end=middle + timedelta(weeks=WEEKS), train=False)
        results: dict[str, Any] = {}
        for label, params in (("with_training", trained), ("without_training", serving)):
            began = time.perf_counter()
            run = run_to_end(settings, params, label, wall=lambda: datetime.now(UTC))
            seconds = time.perf_counter() - began
            from aifx_ml.db.engine import engine_for  # noqa: PLC0415

            with engine_for(settings.db_url) as engine:
                jobs = [j.job for j in replay_jobs(engine, run.id)]
            days = (params.end - params.start).total_seconds() / 86400
            results[label] = {
                "simulated_days": days,
                "seconds": round(seconds, 1),
                "days_per_minute": round(days / seconds * 60, 2),
                "moments": run.moments_done,
                "flow_runs": {name: jobs.count(name) for name in sorted(set(jobs))},
            }
        print(
            json.dumps(
                {
                    "benchmark": "replay_speed",
                    "pairs": list(trained.pairs),
                    "timeframes": list(trained.timeframes),
                    "model": {
                        "window": trained.model.window,
                        "lstm_units": list(trained.model.lstm_units),
                        "epochs": trained.model.epochs,
                    },
                    **results,
                    "target_days_per_minute_with_training": TARGET_DAYS_PER_MINUTE,
                    "meets_target": results["with_training"]["days_per_minute"]
                    >= TARGET_DAYS_PER_MINUTE,
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                },
                indent=2,
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
