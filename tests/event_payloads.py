"""Small, valid event payloads for tests that need events but not the change behind them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import Engine, select

from aifx_ml.db.models import EventOutbox
from aifx_ml.events.schemas import (
    PAYLOADS,
    ABTestCompleted,
    ABTestCreated,
    ABTestPlan,
    EventPayload,
    ModelDeployed,
    NewMarketData,
    NewPrediction,
    SignalOutcome,
    TrainingCompleted,
    TrainingStarted,
    parse_payload,
)

P = TypeVar("P", bound=EventPayload)
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PLAN = ABTestPlan(
    alpha=0.05,
    tau=0.05,
    min_decided_per_arm=200,
    max_decided_per_arm=3000,
    max_days=30.0,
    guardrail_pnl_margin=0.0,
    srm_threshold=0.001,
)


def _id(n: int) -> uuid.UUID:
    return uuid.UUID(int=n + 1)


def new_market_data(n: int = 0) -> NewMarketData:
    return NewMarketData(
        pair="EUR/USD",
        timeframe="1h",
        inserted=n + 1,
        updated=0,
        first_timestamp=T0,
        last_timestamp=T0 + timedelta(hours=n),
        source=f"test-{n}",
    )


def new_prediction(n: int = 0) -> NewPrediction:
    return NewPrediction(
        signal_id=_id(n),
        pair="EUR/USD",
        timeframe="1h",
        signal=("buy", "sell", "hold")[n % 3],
        confidence=0.6,
        entry_price=1.1 + n * 1e-5,
        created_at=T0 + timedelta(hours=n),
        model_version="lstm-v1",
        ab_test_id=None,
    )


def signal_outcome(n: int = 0) -> SignalOutcome:
    return SignalOutcome(
        signal_id=_id(n),
        pair="EUR/USD",
        timeframe="1h",
        signal="buy",
        actual_outcome="win",
        actual_pnl_percent=0.5 + n,
        model_version="lstm-v1",
        ab_test_id=None,
    )


def training_started(n: int = 0) -> TrainingStarted:
    return TrainingStarted(training_log_id=_id(n), training_type="full", model_type="lstm")


def training_completed(n: int = 0) -> TrainingCompleted:
    return TrainingCompleted(
        training_log_id=_id(n),
        training_type="full",
        model_type="lstm",
        status="completed",
        version=f"lstm-v{n + 1}",
        parent_version=None,
        reason=None,
    )


def model_deployed(n: int = 0, version: str | None = None) -> ModelDeployed:
    return ModelDeployed(
        model_type="lstm",
        version=version or f"lstm-v{n + 1}",
        previous_version=None,
        reason="test",
        actor="tests",
        ab_test_id=None,
    )


def ab_test_created(n: int = 0) -> ABTestCreated:
    return ABTestCreated(
        id=_id(n),
        test_name=f"test {n}",
        model_type="lstm",
        model_a_version="lstm-v1",
        model_b_version="lstm-v2",
        mode="split",
        traffic_split=0.5,
        created_at=T0,
        config=PLAN,
        status="active",
        winner=None,
        completed_at=None,
        ended_reason=None,
    )


def ab_test_completed(n: int = 0) -> ABTestCompleted:
    return ABTestCompleted(
        id=_id(n),
        test_name=f"test {n}",
        model_type="lstm",
        model_a_version="lstm-v1",
        model_b_version="lstm-v2",
        mode="split",
        traffic_split=0.5,
        created_at=T0,
        config=PLAN,
        status="completed",
        winner="lstm-v2",
        completed_at=T0 + timedelta(days=n + 1),
        ended_reason="B wins",
    )


FACTORIES = {
    "ml:new_market_data": new_market_data,
    "ml:new_prediction": new_prediction,
    "ml:signal_outcome": signal_outcome,
    "ml:training_started": training_started,
    "ml:training_completed": training_completed,
    "ml:model_deployed": model_deployed,
    "ml:ab_test_created": ab_test_created,
    "ml:ab_test_completed": ab_test_completed,
}
assert set(FACTORIES) == set(PAYLOADS)


def sample_payload(channel: str, n: int = 0) -> EventPayload:
    """A valid payload of `channel`, distinct for each `n`."""
    return FACTORIES[channel](n)


def outbox_payloads(engine: Engine, channel: str | None = None) -> list[EventPayload]:
    """The payloads waiting in the outbox (of one channel, or all), in the order written, each
    read back the way a consumer reads it: parsed into its model at its schema_version."""
    query = select(EventOutbox.channel, EventOutbox.payload).order_by(EventOutbox.seq)
    if channel is not None:
        query = query.where(EventOutbox.channel == channel)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [parse_payload(c, p["data"], p["schema_version"]) for c, p in rows]


def announced(engine: Engine, model: type[P]) -> list[P]:
    """The payloads of `model`'s channel waiting in the outbox, typed, in the order written."""
    payloads = outbox_payloads(engine, model.channel)
    assert all(type(p) is model for p in payloads)
    return payloads  # type: ignore[return-value]  # checked just above
