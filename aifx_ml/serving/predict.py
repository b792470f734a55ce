"""Predictions: route a request to a model version, turn P(up) into a signal, record it.

The same code answers `POST /api/v1/predict`, a batch, and a replay's simulated requests:
the clock is passed in. A stale model or stale inputs give `hold` with the reason instead of
a confident signal; every answer is recorded in `trading_signals` (pending, with its model
version and A/B test) and announced on `ml:new_prediction`, in one transaction per call.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, text

from aifx_ml.abtest.routing import assign_variant
from aifx_ml.db.engine import transaction
from aifx_ml.domain import SignalPolicy, decide
from aifx_ml.errors import NotFoundError
from aifx_ml.markets import step_offset, validate_pair, validate_timeframe
from aifx_ml.serving.batching import Batcher
from aifx_ml.serving.inference import (
    Assignment,
    ModelServer,
    ModelUnavailableError,
    ServingModel,
)
from aifx_ml.serving.inputs import InputWindow, WindowCache, request_window
from aifx_ml.signals import insert_signal_rows


@dataclass(frozen=True)
class PredictRequest:
    """One question: what now for this series? (candles: optional, newest last)"""

    pair: str
    timeframe: str
    model_type: str = "lstm"
    routing_key: str | None = None
    candles: pd.DataFrame | None = None


@dataclass(frozen=True)
class Prediction:
    """The answer, as recorded."""

    signal_id: uuid.UUID
    pair: str
    timeframe: str
    signal: str
    confidence: float
    probability: float | None
    entry_price: float
    created_at: datetime
    model_version: str
    ab_test_id: uuid.UUID | None
    variant: str | None  # 'a' or 'b' in an A/B test
    reason: str | None  # why a hold was forced (stale model or inputs)


def staleness(
    model: ServingModel, inputs: InputWindow, timeframe: str, now: datetime, policy: SignalPolicy
) -> str | None:
    """Why the answer must not be trusted (None: it may be)."""
    if model.trained_at is not None and now - model.trained_at > policy.max_model_age:
        age = (now - model.trained_at).total_seconds() / 86400
        limit_days = policy.max_model_age.days
        return f"model {model.version} was trained {age:.1f} days ago (limit {limit_days})"
    limit = inputs.closed_at + policy.max_input_bars * step_offset(timeframe)
    if pd.Timestamp(now) > limit:
        return (
            f"latest candle closed {inputs.closed_at.isoformat()}, more than "
            f"{policy.max_input_bars} bars before {now.isoformat()}"
        )
    return None


def pick(assignment: Assignment, routing_key: str) -> tuple[ServingModel, str | None]:
    """The model that answers: an arm of the active test by hash, else Production."""
    if assignment.test_id is not None and assignment.arm_a and assignment.arm_b:
        variant = assign_variant(routing_key, assignment.test_id, assignment.test_split)
        return (assignment.arm_b if variant == "b" else assignment.arm_a), variant
    if assignment.production is None and assignment.unavailable is not None:
        raise ModelUnavailableError(assignment.unavailable)
    if assignment.production is None:
        raise NotFoundError(f"no Production {assignment.model_type} model to serve")
    return assignment.production, None


class PredictionService:
    """Answers and records predictions; `now` is the clock (wall or simulated).

    Concurrent callers share model calls and commits (`serving.batching`): one request alone
    is answered at once; many at a time are batched rather than queued.
    """

    def __init__(
        self,
        engine: Engine,
        server: ModelServer,
        now: Callable[[], datetime],
        policy: SignalPolicy | None = None,
    ) -> None:
        self.engine, self.server, self.now = engine, server, now
        self.policy = policy or SignalPolicy()
        self.windows = WindowCache(engine)
        # Signals are committed in rounds at most every 20 ms: one commit for many requests.
        self._writer: Batcher[dict[str, Any], None] = Batcher(
            self._write, name="signal-writer", max_batch=500, linger=0.02
        )

    def predict(self, requests: Sequence[PredictRequest], wait: bool = True) -> list[Prediction]:
        """Answer every request and record them all: committed before returning, or (with
        `wait=False`, as the HTTP service does) committed by the writer moments later."""
        now = self.now()
        plans = [self._plan(request, now) for request in requests]
        by_model: dict[str, list[int]] = {}
        for i, (model, _, _, _) in enumerate(plans):
            by_model.setdefault(model.version, []).append(i)
        p_up: dict[int, float] = {}
        for indices in by_model.values():
            model = plans[indices[0]][0]
            windows = [
                model.scaler.transform(plans[i][1].features).astype(np.float32) for i in indices
            ]
            for i, p in zip(indices, model.p_up_each(windows), strict=True):
                p_up[i] = p
        answers = []
        for i, (request, (model, inputs, variant, test_id)) in enumerate(
            zip(requests, plans, strict=True)
        ):
            reason = staleness(model, inputs, request.timeframe, now, self.policy)
            signal, confidence = ("hold", 0.0) if reason else decide(p_up[i], self.policy)
            answers.append(
                Prediction(
                    signal_id=uuid.uuid4(),
                    pair=request.pair,
                    timeframe=request.timeframe,
                    signal=signal,
                    confidence=float(np.clip(confidence, 0.0, 1.0)),
                    probability=p_up[i],
                    entry_price=inputs.entry_price,
                    created_at=now,
                    model_version=model.version,
                    ab_test_id=test_id,
                    variant=variant,
                    reason=reason,
                )
            )
        rows = [_row(a, r.routing_key) for a, r in zip(answers, requests, strict=True)]
        if wait:
            self._writer.submit_many(rows)
        else:
            queued = self._writer.enqueue(rows)
            if queued is None:  # the writer is closed: this process is stopping
                self._write(rows)
        return answers

    def flush(self) -> None:
        """Wait until every answered prediction is committed."""
        self._writer.flush()

    def close(self) -> None:
        """Commit what waits, then stop the writer."""
        self._writer.flush()
        self._writer.close()

    def _plan(
        self, request: PredictRequest, now: datetime
    ) -> tuple[ServingModel, InputWindow, str | None, uuid.UUID | None]:
        validate_pair(request.pair)
        validate_timeframe(request.timeframe)
        assignment = self.server.assignment(request.model_type)
        model, variant = pick(assignment, request.routing_key or uuid.uuid4().hex)
        if request.candles is not None:
            inputs = request_window(request.candles, request.timeframe, model.window)
        else:
            inputs = self.windows.get(request.pair, request.timeframe, model.window, now)
        return model, inputs, variant, assignment.test_id if variant else None

    def _write(self, rows: Sequence[dict[str, Any]]) -> list[None]:
        """One transaction for every signal waiting (and their ml:new_prediction events).

        On PostgreSQL the commit does not wait for its WAL flush (`synchronous_commit off`,
        this transaction only): a server crash could lose the last fraction of a second of
        signals, never corrupt or half-write them, and a request is not held for a disk sync.
        """
        with transaction(self.engine) as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("SET LOCAL synchronous_commit = off"))
            insert_signal_rows(session, list(rows), rows[0]["created_at"])
        return [None] * len(rows)


def _row(answer: Prediction, routing_key: str | None) -> dict[str, Any]:
    return {
        "id": answer.signal_id,
        "pair": answer.pair,
        "timeframe": answer.timeframe,
        "signal": answer.signal,
        "confidence": answer.confidence,
        "probability": answer.probability,
        "entry_price": answer.entry_price,
        "created_at": answer.created_at,
        "actual_outcome": "pending",
        "model_version": answer.model_version,
        "ab_test_id": answer.ab_test_id,
        "routing_key": routing_key,
    }
