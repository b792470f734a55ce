"""Platform overhead of a weekly full training: the whole run through `train_full` (data load,
windows, training, evaluation, MLflow logging, registration) against a bare `model.fit` of the
same model on the same arrays. Prints one JSON object; target: ratio <= 1.15.

Both fits run the same number of epochs (early stopping is given a patience it cannot reach),
on the same training and validation windows, batch 32, the DESIGN.md LSTM by default.
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

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from aifx_ml.data.importer import import_frame  # noqa: E402
from aifx_ml.data.synth import synthesize_candles  # noqa: E402
from aifx_ml.db.engine import make_engine, upgrade  # noqa: E402
from aifx_ml.features.dataset import build_dataset, chronological_split, scaler_for  # noqa: E402
from aifx_ml.models.lstm import build_lstm  # noqa: E402
from aifx_ml.training.config import Stores, TrainingConfig, training_config  # noqa: E402
from aifx_ml.training.data import load_start, load_training_candles  # noqa: E402
from aifx_ml.training.runs import train_full  # noqa: E402
from registry.mlflow_store import MlflowModelStore  # noqa: E402

TARGET = 1.15
PAIRS = ["EUR/USD", "GBP/USD", "USD/JPY", "AUD/USD"]


def bare_fit(stores: Stores, config: TrainingConfig, as_of: datetime) -> tuple[float, int]:
    """model.fit on in-memory arrays of exactly the windows the platform trains on."""
    since = as_of - timedelta(days=config.days)
    candles = load_training_candles(stores.engine, config, load_start(since, config), as_of)
    dataset = build_dataset(candles, config.lstm.window)
    split = chronological_split(
        dataset.samples,
        config.holdout_fraction,
        config.validation_fraction,
        since=pd.Timestamp(since),
    )
    windows = dataset.windows(scaler_for(dataset, split))
    s = dataset.samples
    x = np.take(windows, s.rows[split.train], axis=0)
    y = s.target[split.train]
    xv = np.take(windows, s.rows[split.validation], axis=0)
    yv = s.target[split.validation]
    model = build_lstm(config.lstm.__class__(**{**config.lstm.to_dict(), "window": dataset.window}))
    started = time.perf_counter()
    model.fit(
        x,
        y,
        validation_data=(xv, yv),
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=0,
    )
    return time.perf_counter() - started, len(split.train)


def platform_run(stores: Stores, config: TrainingConfig, as_of: datetime) -> tuple[float, str]:
    started = time.perf_counter()
    result = train_full(stores, config, as_of)
    elapsed = time.perf_counter() - started
    if result.status != "completed":
        raise SystemExit(f"platform run did not complete: {result.status} {result.reason}")
    return elapsed, str(result.version)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--lstm-units", default="128,64")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="aifx-bench-train-"))
    try:
        engine = make_engine(f"sqlite:///{work / 'aifx.db'}")
        upgrade(engine)
        as_of = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
        frames = synthesize_candles(
            PAIRS[: args.pairs], "1h", pd.Timestamp("2026-01-01", tz="UTC"), pd.Timestamp(as_of)
        )
        for pair, frame in frames.items():
            import_frame(engine, frame, pair, "1h", as_of, source="bench")
        units = [int(u) for u in args.lstm_units.split(",")]
        config = training_config(
            PAIRS[: args.pairs], ["1h"], days=args.days, epochs=args.epochs, lstm_units=units
        )
        # Patience the run cannot reach: both sides train exactly `epochs` epochs.
        config = config.__class__(
            **{
                **config.__dict__,
                "early_stopping_patience": args.epochs + 1,
                "reduce_lr_patience": args.epochs + 1,
            }
        )
        uri = f"sqlite:///{work / 'mlflow.db'}"
        models = MlflowModelStore(uri, uri, str(work / "artifacts"))
        stores = Stores(engine, models, work / "locks", "bench")
        platform_run(stores, config, as_of)  # warm-up: TensorFlow, the MLflow store
        bare_fit(stores, config, as_of)
        bare_times, platform_times, samples = [], [], 0
        for _ in range(args.repeat):
            seconds, samples = bare_fit(stores, config, as_of)
            bare_times.append(seconds)
            platform_times.append(platform_run(stores, config, as_of)[0])
        bare, whole = min(bare_times), min(platform_times)
        ratio = whole / bare
        report: dict[str, Any] = {
            "benchmark": "training_overhead",
            "config": {
                "pairs": args.pairs,
                "days": args.days,
                "epochs": args.epochs,
                "lstm_units": units,
                "batch_size": config.batch_size,
                "train_samples": samples,
            },
            "bare_fit_seconds": round(bare, 3),
            "platform_run_seconds": round(whole, 3),
            "overhead_seconds": round(whole - bare, 3),
            "ratio": round(ratio, 4),
            "all_bare_seconds": [round(t, 3) for t in bare_times],
            "all_platform_seconds": [round(t, 3) for t in platform_times],
            "target_ratio_max": TARGET,
            "pass": ratio <= TARGET,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        }
        print(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
