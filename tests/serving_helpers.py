"""Test models whose answers are known: a registered Keras model that always says P(up) = p.

With them a test can know which arm of an A/B test ought to win once the market moves.
They are registered exactly as a training run registers its models (MLflow Keras flavour,
model card, checksum, `model_versions` row and history).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import keras
import numpy as np
import pandas as pd
import uvicorn
from sqlalchemy import Engine

from aifx_ml.db.engine import transaction
from aifx_ml.db.models import ModelTrainingLog
from aifx_ml.features.engineering import FEATURE_NAMES
from aifx_ml.models.calibration import Platt, Thresholds
from aifx_ml.models.card import ModelCard
from aifx_ml.models.lstm import LSTMConfig, build_lstm
from aifx_ml.models.store import version_label
from aifx_ml.models.versions import record_version
from registry.mlflow_store import MlflowModelStore
from tests.conftest import free_port

WINDOW = 8


def constant_model(p_up: float) -> keras.Model:
    """Input (WINDOW, features) → P(up) = p_up whatever the input."""
    model = keras.Sequential(
        [
            keras.Input(shape=(WINDOW, len(FEATURE_NAMES))),
            keras.layers.Flatten(),
            keras.layers.Dense(1, activation="sigmoid", name="p_up"),
        ]
    )
    dense = model.get_layer("p_up")
    kernel, bias = dense.get_weights()
    dense.set_weights([np.zeros_like(kernel), np.full_like(bias, math.log(p_up / (1 - p_up)))])
    return model


def register_constant(
    engine: Engine,
    mlflow_uri: str,
    artifact_root: str,
    p_up: float,
    as_of: datetime,
    status: str = "staging",
    calibration: Platt | None = None,
    thresholds: Thresholds | None = None,
) -> str:
    """Register a constant model as the next `lstm` version (with the calibration and the
    thresholds of its own given, as a full training stores them); returns its version label."""
    card = _card({"kind": "constant", "p_up": p_up}, WINDOW, as_of)
    if calibration is not None:
        card["calibration"] = calibration.as_dict()
    if thresholds is not None:
        card["thresholds"] = thresholds.as_dict()
    return _register(engine, mlflow_uri, artifact_root, constant_model(p_up), card, as_of, status)


def register_model(
    engine: Engine,
    mlflow_uri: str,
    artifact_root: str,
    as_of: datetime,
    config: LSTMConfig,
    seed: int,
    status: str = "staging",
    model_type: str = "lstm",
    pairs: tuple[str, ...] = ("EUR/USD", "GBP/USD"),
    calibration: Platt | None = None,
    thresholds: Thresholds | None = None,
) -> str:
    """Register an (untrained) LSTM of `config`: real size and shape, for benchmarks (with a
    calibration and thresholds of its own, as a full training stores them, when given)."""
    card = {**_card(config.to_dict(), config.window, as_of), "model_type": model_type}
    card["pairs"] = list(pairs)
    if calibration is not None:
        card["calibration"] = calibration.as_dict()
    if thresholds is not None:
        card["thresholds"] = thresholds.as_dict()
    model = build_lstm(config, seed=seed)
    return _register(engine, mlflow_uri, artifact_root, model, card, as_of, status)


def _card(architecture: dict[str, Any], window: int, as_of: datetime) -> dict[str, Any]:
    return {
        "model_type": "lstm",
        "architecture": architecture,
        "features": list(FEATURE_NAMES),
        "window": window,
        "scaler": {"mean": [0.0] * len(FEATURE_NAMES), "std": [1.0] * len(FEATURE_NAMES)},
        "pairs": ["EUR/USD", "GBP/USD"],
        "timeframes": ["1h"],
        "trained_as_of": as_of.isoformat(),
        "data_time_range": {
            "start": (as_of - timedelta(days=30)).isoformat(),
            "end": as_of.isoformat(),
        },
        "parent_version": None,
    }


def _register(
    engine: Engine,
    mlflow_uri: str,
    artifact_root: str,
    model: keras.Model,
    card: dict[str, Any],
    as_of: datetime,
    status: str,
) -> str:
    log_id = uuid.uuid4()
    model_type = str(card["model_type"])
    store = MlflowModelStore(mlflow_uri, mlflow_uri, artifact_root)
    run_id = store.start_run(model_type, f"test-{model_type}", {})
    shape = (1, int(card["window"]), len(FEATURE_NAMES))
    registered = store.register(
        run_id, model, ModelCard.from_dict(card), np.zeros(shape, dtype=np.float32), {}
    )
    store.end_run(run_id, "FINISHED")
    number, sha = registered.number, registered.sha256
    version = version_label(model_type, number)
    holdout_start = pd.Timestamp(as_of - timedelta(days=6)).isoformat()
    with transaction(engine) as session:
        session.add(
            ModelTrainingLog(
                id=log_id,
                training_type="full",
                model_type=model_type,
                status="completed",
                started_at=as_of,
                completed_at=as_of,
                mlflow_run_id=run_id,
            )
        )
        session.flush()
        record_version(
            session,
            version=version,
            model_type=model_type,
            model_path=registered.model_path,
            training_log_id=log_id,
            parent_version=None,
            metrics={"holdout_start": holdout_start, "holdout_accuracy": 0.55, "holdout_auc": 0.55},
            artifact_sha256=sha,
            as_of=as_of,
            actor="test",
        )
    if status == "production":
        from registry.stages import change_stage

        change_stage(
            engine, store, version, "production", as_of=as_of, reason="arrange", actor="test"
        )
    return version


def trending_candles(start: str, hours: int, drift: float = 0.002, seed: int = 0) -> pd.DataFrame:
    """Hourly candles moving `drift` per hour (up, or down if negative) with a little noise
    (weekends included)."""
    rng = np.random.default_rng(seed)
    steps = drift + rng.normal(0, abs(drift) / 10, hours)
    close = 1.1 * np.exp(np.cumsum(steps))
    open_ = np.concatenate([[1.1], close[:-1]])
    return pd.DataFrame(
        {
            "timestamp": pd.date_range(start, periods=hours, freq="1h", tz="UTC"),
            "open": open_,
            "high": np.maximum(open_, close) * 1.0003,
            "low": np.minimum(open_, close) * 0.9997,
            "close": close,
            "volume": rng.integers(10, 100, hours).astype(float),
        }
    )


@contextmanager
def running(app: Any) -> Iterator[str]:
    """`app` served by uvicorn on a free port, in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
