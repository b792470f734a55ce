"""Predictions: route a request to a model version, turn P(up) into a signal, record it.

The same code answers `POST /api/v1/predict`, a batch, and a replay's simulated requests:
the clock is passed in. A stale model or stale inputs give `hold` with the reason instead of
a confident signal; every answer is recorded in `trading_signals` (pending, with its model
version and A/B test) and announced on `ml:new_prediction`, in one transaction per call.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache, partial
from pathlib import Path
from typing import Any

import anyio.to_thread
import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import Engine, select

from aifx_ml.abtest.routing import assign_variant
from aifx_ml.db.models import MarketData
from aifx_ml.db.notices import MARKET_DATA_CHANNEL, Listener, subscribe
from aifx_ml.domain import Cutoffs, SignalPolicy, TestMode, decide
from aifx_ml.errors import AifxError, NotFoundError
from aifx_ml.markets import step_offset, validate_pair, validate_timeframe
from aifx_ml.serving.inference import (
    Assignment,
    ModelServer,
    ModelUnavailableError,
    ServingModel,
)
from aifx_ml.serving.inputs import (
    InputWindow,
    SeriesChanges,
    WindowCache,
    check_request_candles,
    request_window,
    stored_close,
)
from aifx_ml.serving.metrics import PREDICTION_SECONDS, open_version_series
from aifx_ml.serving.signal_writer import RejectedRow, SignalWriter
from aifx_ml.signals import SHADOW, check_storable_text


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
    reason: str | None  # why a hold: forced (stale model or inputs), or no edge that way
    verified: bool = True  # False: computed on candles the caller sent (decides nothing)


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


def no_edge(version: str, cutoffs: Cutoffs, p_up: float) -> str | None:
    """Why a version holds where it never calls the direction P(up) leans to (None: it may
    call it): on the data it did not learn from no threshold that way beat the best baseline."""
    if cutoffs.buy is None and cutoffs.sell is None:
        return (
            f"model {version} showed no edge over the baselines on held-out data: it never calls "
            "buy or sell"
        )
    side = "buy" if p_up >= 0.5 else "sell"
    if (cutoffs.buy if side == "buy" else cutoffs.sell) is not None:
        return None
    return f"model {version} showed no edge on held-out data for {side}s: it never calls {side}"


@dataclass(frozen=True)
class Pick:
    """Who answers a request: the model the caller hears, its arm of an active test ('a' or
    'b'; None outside a test) and, in a shadow test, the challenger answering it unseen."""

    model: ServingModel
    variant: str | None = None
    shadow: ServingModel | None = None


def pick(assignment: Assignment, routing_key: str) -> Pick:
    """The model that answers: an arm of the active split test by hash; arm A, shadowed by
    arm B, in a shadow test; else Production."""
    if assignment.test_id is not None and assignment.arm_a and assignment.arm_b:
        if assignment.test_mode == TestMode.SHADOW:
            return Pick(assignment.arm_a, "a", assignment.arm_b)
        variant = assign_variant(routing_key, assignment.test_id, assignment.test_split)
        return Pick(assignment.arm_b if variant == "b" else assignment.arm_a, variant)
    if assignment.production is None and assignment.unavailable is not None:
        raise ModelUnavailableError(assignment.unavailable)
    if assignment.production is None:
        raise NotFoundError(f"no Production {assignment.model_type} model to serve")
    return Pick(assignment.production)


@dataclass(frozen=True)
class _Plan:
    """One request ready to answer."""

    model: ServingModel
    inputs: InputWindow
    variant: str | None
    test_id: uuid.UUID | None
    shadow: ServingModel | None = None
    shadow_inputs: InputWindow | None = None


class PredictionService:
    """Answers and records predictions; `now` is the clock (wall or simulated).

    Concurrent callers share model calls (`serving.batching`) and commits (the signal writer:
    rounds at most every 20 ms, kept through a database outage, spilled to `spill_dir` beyond
    `max_buffer` rows; see `serving.signal_writer`).
    """

    def __init__(
        self,
        engine: Engine,
        server: ModelServer,
        now: Callable[[], datetime],
        policy: SignalPolicy | None = None,
        *,
        spill_dir: Path | None = None,
        max_buffer: int = 50_000,
        on_rejected: Callable[[Sequence[RejectedRow]], None] | None = None,
    ) -> None:
        self.engine, self.server, self.now = engine, server, now
        self.policy = policy or SignalPolicy()
        self.changes = SeriesChanges()
        self.windows = WindowCache(engine, changes=self.changes)
        self._stops: list[Callable[[], None]] = []
        self.writer = SignalWriter(
            engine, spill_dir=spill_dir, max_buffer=max_buffer, on_rejected=on_rejected
        )

    def predict(self, requests: Sequence[PredictRequest], wait: bool = True) -> list[Prediction]:
        """Answer every request and record them all: committed before returning, or (with
        `wait=False`) committed by the writer moments later.

        StoreUnavailableError (nothing answered) when the rows can be neither committed
        (`wait`) nor kept until the database takes them."""
        started, now = time.perf_counter(), self.now()
        plans = [self._plan(request, now) for request in requests]
        shadow_p = self._shadow_later(plans)
        p_up = self._p_up_later([(p.model, p.inputs) for p in plans], inline=True)()
        return self._record(requests, plans, p_up, shadow_p, now, started, wait)

    async def answer(self, request: PredictRequest) -> Prediction:
        """`predict([request], wait=False)` for a caller on an event loop, as the HTTP service
        is: the model call joins the model's worker thread's next batched call, and the loop
        serves other requests meanwhile. Only what needs the database or the model store
        (a window or an assignment not in memory, candles sent with the request) runs on a
        worker thread, so a database that hangs never stalls the loop."""
        started, now = time.perf_counter(), self.now()
        plan = self._plan_in_memory(request, now)
        if plan is None:
            plan = await anyio.to_thread.run_sync(self._plan, request, now)
        shadow_p = self._shadow_later([plan])
        p_up = await plan.model.p_up_awaited([self._scaled(plan.model, plan.inputs)])
        (answer,) = self._record([request], [plan], p_up, shadow_p, now, started, wait=False)
        return answer

    def _shadow_later(self, plans: Sequence[_Plan]) -> Callable[[], list[float]]:
        """The challenger's calls of a shadow test, started on its own worker thread: what
        waits for them (cached: the writer resolves each row once, whoever asks first)."""
        calls = [(p.shadow, p.shadow_inputs) for p in plans if p.shadow is not None]
        return cache(self._p_up_later(calls))  # type: ignore[arg-type]

    def _record(
        self,
        requests: Sequence[PredictRequest],
        plans: Sequence[_Plan],
        p_up: Sequence[float],
        shadow_p: Callable[[], list[float]],
        now: datetime,
        started: float,
        wait: bool,
    ) -> list[Prediction]:
        """The answers to planned requests given their P(up), handed to the signal writer
        (and, `wait`, committed); a shadowed request's challenger row waits for `shadow_p`."""
        shadowed = [i for i, p in enumerate(plans) if p.shadow is not None]
        answers, rows = [], []
        for i, (request, plan) in enumerate(zip(requests, plans, strict=True)):
            reason = staleness(plan.model, plan.inputs, request.timeframe, now, self.policy)
            cutoffs = self.policy.cutoffs(plan.model.cutoffs)
            signal, confidence = ("hold", 0.0) if reason else decide(p_up[i], cutoffs)
            if signal == "hold" and not reason:
                reason = no_edge(plan.model.version, cutoffs, p_up[i])
            answer = Prediction(
                signal_id=uuid.uuid4(),
                pair=request.pair,
                timeframe=request.timeframe,
                signal=signal,
                confidence=float(np.clip(confidence, 0.0, 1.0)),
                probability=p_up[i],
                entry_price=plan.inputs.entry_price,
                created_at=now,
                model_version=plan.model.version,
                ab_test_id=plan.test_id,
                variant=plan.variant,
                reason=reason,
                verified=request.candles is None,
            )
            answers.append(answer)
            rows.append(_row(answer, request.routing_key))
        for j, i in enumerate(shadowed):
            plan, request = plans[i], requests[i]
            assert plan.shadow is not None and plan.shadow_inputs is not None
            shadow = cache(
                partial(
                    self._shadow_row,
                    plan.shadow,
                    plan.shadow_inputs,
                    partial(_nth, shadow_p, j),
                    answers[i],
                    request,
                    now,
                )
            )  # cached: a round the writer retries stores the same answer
            rows[i][SHADOW] = shadow() if wait else shadow
        if wait:
            self.writer.write_now(rows)
        else:
            self.writer.enqueue(rows)
        elapsed = time.perf_counter() - started
        for answer in answers:
            PREDICTION_SECONDS.labels(answer.model_version).observe(elapsed)
        return answers

    @staticmethod
    def _p_up_later(
        calls: Sequence[tuple[ServingModel, InputWindow]], inline: bool = False
    ) -> Callable[[], list[float]]:
        """P(up) of each (model, inputs), one batched call per model version: started on the
        models' worker threads (or, `inline`, made by the caller when it waits)."""
        by_model: dict[str, list[int]] = {}
        for i, (model, _) in enumerate(calls):
            by_model.setdefault(model.version, []).append(i)
        pending: list[tuple[list[int], Callable[[], list[float]]]] = []
        for indices in by_model.values():
            model = calls[indices[0]][0]
            windows = [PredictionService._scaled(model, calls[i][1]) for i in indices]
            later = partial(model.p_up_each, windows) if inline else model.p_up_later(windows)
            pending.append((indices, later))

        def wait() -> list[float]:
            out = [0.0] * len(calls)
            for indices, result in pending:
                for i, p in zip(indices, result(), strict=True):
                    out[i] = p
            return out

        return wait

    @staticmethod
    def _scaled(model: ServingModel, inputs: InputWindow) -> npt.NDArray[np.float32]:
        return inputs.scaled(model.version, model.scaler)

    def _shadow_row(
        self,
        model: ServingModel,
        inputs: InputWindow,
        p_up_of: Callable[[], float],
        served: Prediction,
        request: PredictRequest,
        now: datetime,
    ) -> dict[str, Any]:
        """The challenger's answer to the served request, by the same rules (a stale model or
        stale inputs hold), for `shadow_signals`; `p_up_of` waits for its model call."""
        p_up = p_up_of()
        reason = staleness(model, inputs, request.timeframe, now, self.policy)
        cutoffs = self.policy.cutoffs(model.cutoffs)
        signal, confidence = ("hold", 0.0) if reason else decide(p_up, cutoffs)
        return {
            "id": uuid.uuid4(),
            "ab_test_id": served.ab_test_id,
            "model_version": model.version,
            "pair": served.pair,
            "timeframe": served.timeframe,
            "signal": signal,
            "confidence": float(np.clip(confidence, 0.0, 1.0)),
            "probability": p_up,
            "entry_price": served.entry_price,
            "created_at": now,
        }

    def warm(self) -> int:
        """Build the input windows the loaded versions will ask for, for every stored series,
        scaled for each version, make one call of each version on its worker thread, and open
        each version's metric series, so that the first request of each finds everything as
        later ones do; how many windows were built."""
        with self.engine.connect() as conn:
            series = conn.execute(select(MarketData.pair, MarketData.timeframe).distinct()).all()
        models = self.server.loaded_models()
        built, now = 0, self.now()
        warm_up: dict[str, tuple[ServingModel, InputWindow]] = {}
        for pair, timeframe in series:
            for window in {model.window for model in models}:
                try:
                    inputs = self.windows.get(pair, timeframe, window, now)
                except AifxError:  # too few candles for this length: its requests will say so
                    continue
                for model in models:
                    if model.window == window:
                        self._scaled(model, inputs)
                        warm_up.setdefault(model.version, (model, inputs))
                built += 1
        for model, inputs in warm_up.values():
            # One call on the model's own worker thread, as requests' are made: that thread's
            # first TensorFlow call sets up its state (the answer is not used nor recorded).
            model.p_up_later([self._scaled(model, inputs)])()
        for model in models:
            open_version_series(model.version)
        return built

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every answered prediction is committed (False: `timeout` passed)."""
        return self.writer.flush(timeout)

    def hear_candles(self) -> None:
        """On PostgreSQL, hear every commit that stores candles, this process's and (LISTEN)
        every other's: a series whose newest candle is late (a weekend, a late feed) is then
        answered from memory until candles for it are stored, instead of each request asking
        the database whether they were. Until `close`. (SQLite: nothing to hear; they ask.)"""
        if self.engine.dialect.name != "postgresql" or self._stops:
            return
        self._stops.append(subscribe(MARKET_DATA_CHANNEL, self.changes.changed))
        listener = Listener(
            self.engine,
            {MARKET_DATA_CHANNEL: self.changes.changed},
            on_connect=self.changes.listening,
            on_disconnect=self.changes.deaf,
            name="market-data-listen",
        )
        self._stops.append(listener.start().stop)

    def close(self) -> None:
        """Commit what waits (or spill it, the database being away), then stop the writer
        (and the listening for candles)."""
        self.writer.close()
        while self._stops:
            self._stops.pop()()

    def _plan(self, request: PredictRequest, now: datetime) -> _Plan:
        """Who answers the request, on which inputs (asking the database or the model store
        where memory does not know)."""
        _check(request)
        assignment = self.server.assignment(request.model_type)
        plan = self._planned(request, now, assignment, self.windows.get)
        assert plan is not None  # `get` always gives a window (or raises)
        return plan

    def _plan_in_memory(self, request: PredictRequest, now: datetime) -> _Plan | None:
        """`_plan` if it needs neither the database nor the model store (None: it does)."""
        _check(request)
        assignment = self.server.assignment_in_memory(request.model_type)
        if assignment is None or request.candles is not None:
            return None
        return self._planned(request, now, assignment, self.windows.in_memory)

    def _planned(
        self,
        request: PredictRequest,
        now: datetime,
        assignment: Assignment,
        window_of: Callable[[str, str, int, datetime], InputWindow | None],
    ) -> _Plan | None:
        chosen = pick(assignment, request.routing_key or uuid.uuid4().hex)
        model = chosen.model
        test_id = assignment.test_id if chosen.variant else None
        if request.candles is not None:
            check_request_candles(request.candles, request.pair, request.timeframe, now)
            inputs = request_window(request.candles, request.timeframe, model.window)
            # The price the signal is judged against is the service's own where it has one.
            close = stored_close(self.engine, request.pair, request.timeframe, inputs.last_open)
            if close is not None:
                inputs = replace(inputs, entry_price=close)
            # Candles a caller sent decide nothing (verified = false): no shadow answer either.
            return _Plan(model, inputs, chosen.variant, test_id)
        served = window_of(request.pair, request.timeframe, model.window, now)
        shadow, shadow_inputs = chosen.shadow, None
        if shadow is not None:
            shadow_inputs = (
                served
                if shadow.window == model.window
                else window_of(request.pair, request.timeframe, shadow.window, now)
            )
        if served is None or (shadow is not None and shadow_inputs is None):
            return None
        return _Plan(model, served, chosen.variant, test_id, shadow, shadow_inputs)


def _check(request: PredictRequest) -> None:
    validate_pair(request.pair)
    validate_timeframe(request.timeframe)
    check_storable_text("model_type", request.model_type)
    check_storable_text("routing_key", request.routing_key)


def _nth(values: Callable[[], list[float]], j: int) -> float:
    return values()[j]


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
        "verified": answer.verified,
    }
