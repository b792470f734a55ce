"""The monthly evaluation at size: 5 Production models (one per model type, the DESIGN.md
LSTM, window 60) over a month of 1h candles for 7 pairs, each compared with its 30-day
training window. Everything the flow does is timed: loading, scoring every sample with the
model, the Evidently drift + quality report, the HTML file, the MLflow run, the rows.
Prints one JSON object; target: under 60 s.
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
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import pandas as pd  # noqa: E402

from aifx_ml.data.importer import import_frame  # noqa: E402
from aifx_ml.data.synth import synthesize_candles  # noqa: E402
from aifx_ml.db.engine import make_engine, upgrade  # noqa: E402

TARGET_SECONDS = 60.0
PAIRS = ("EUR/USD", "GBP/USD", "USD/JPY", "AUD/USD", "USD/CHF", "USD/CAD", "NZD/USD")
TRAINED = datetime(2026, 10, 1, 1, tzinfo=UTC)
EVALUATED = datetime(2026, 11, 1, 2, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=5)
    args = parser.parse_args()

    from aifx_ml.evaluation.monthly_run import run_monthly  # noqa: PLC0415
    from aifx_ml.models.lstm import LSTMConfig  # noqa: PLC0415
    from registry.mlflow_store import MlflowModelStore  # noqa: PLC0415
    from tests.serving_helpers import register_model  # noqa: PLC0415

    work = Path(tempfile.mkdtemp(prefix="aifx-bench-monthly-"))
    try:
        engine = make_engine(f"sqlite:///{work / 'aifx.db'}")
        upgrade(engine)
        frames = synthesize_candles(
            list(PAIRS), "1h", pd.Timestamp(TRAINED - timedelta(days=40)), pd.Timestamp(EVALUATED)
        )
        for pair, frame in frames.items():
            import_frame(engine, frame, pair, "1h", EVALUATED, source="bench")
        uri = f"sqlite:///{work / 'mlflow.db'}"
        artifacts = str(work / "artifacts")
        for i in range(args.models):
            register_model(
                engine, uri, artifacts, TRAINED, LSTMConfig(), seed=i, status="production",
                model_type=f"lstm{i}", pairs=PAIRS,
            )  # fmt: skip
        started = time.perf_counter()
        result = run_monthly(
            engine,
            "2026-10",
            MlflowModelStore(uri, uri, artifacts),
            report_dir=work / "reports",
            as_of=EVALUATED,
        )
        seconds = time.perf_counter() - started
        if result.errors or len(result.evaluations) != args.models:
            raise SystemExit(f"evaluation incomplete: {result.errors}")
        report: dict[str, Any] = {
            "benchmark": "monthly_evaluation",
            "models": args.models,
            "pairs": len(PAIRS),
            "month": "2026-10",
            "samples_per_model": [e.samples for e in result.evaluations],
            "seconds": round(seconds, 2),
            "seconds_per_model": round(seconds / args.models, 2),
            "target_seconds_max": TARGET_SECONDS,
            "pass": seconds < TARGET_SECONDS,
            "recommendations": [e.recommendation for e in result.evaluations],
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        }
        print(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
