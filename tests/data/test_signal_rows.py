"""`store_absent_signal_rows` on real databases: the rows, their shadow answers and their
events stored as one transaction would store them (on PostgreSQL in a single autocommitted
statement), ids already stored skipped with their events, bad input refused whole."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.exc import DBAPIError

from aifx_ml.abtest.store import create_test
from aifx_ml.db.models import ShadowSignal, TradingSignal
from aifx_ml.events.outbox import NOTIFY_CHANNEL, on_commit
from aifx_ml.events.schemas import NewPrediction
from aifx_ml.signals import SHADOW, store_absent_signal_rows
from tests.event_payloads import announced
from tests.memory_registry import T0, World

pytestmark = pytest.mark.integration


def served(i: int, **changes: Any) -> dict[str, Any]:
    """A row as the prediction service builds it (`serving.predict._row`)."""
    return {
        "id": uuid.uuid4(),
        "pair": "EUR/USD",
        "timeframe": "1h",
        "signal": "buy",
        "confidence": 0.25,
        "probability": 0.6 + i / 1000,
        "entry_price": 1.1 + i / 1000,
        "created_at": T0 + timedelta(seconds=i),
        "actual_outcome": "pending",
        "model_version": "v1",
        "ab_test_id": None,
        "routing_key": f"acct-{i}",
        "verified": i % 2 == 0,
        **changes,
    }


def shadow_of(row: dict[str, Any], test_id: uuid.UUID, version: str) -> dict[str, Any]:
    """The challenger's answer to `row` (`PredictionService._shadow_row`)."""
    return {
        "id": uuid.uuid4(),
        "ab_test_id": test_id,
        "model_version": version,
        "pair": row["pair"],
        "timeframe": row["timeframe"],
        "signal": "sell",
        "confidence": 0.5,
        "probability": 0.3,
        "entry_price": row["entry_price"],
        "created_at": row["created_at"],
    }


@pytest.fixture
def shadow_test(engine: Engine) -> tuple[uuid.UUID, str, str]:
    world = World(engine)
    a, b = world.register(0.3), world.register(0.8)
    world.promote(a)
    test = create_test(
        engine, name="shadow", model_a_version=a, model_b_version=b,
        traffic_split=None, as_of=T0, mode="shadow",
    )  # fmt: skip
    return test.id, a, b


@pytest.fixture
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every statement the engine sends while the test runs."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    yield sent
    event.remove(engine, "before_cursor_execute", record)


def stored(engine: Engine) -> dict[uuid.UUID, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(TradingSignal.__table__)).mappings().all()
    return {r["id"]: dict(r) for r in rows}


def stored_shadows(engine: Engine) -> dict[uuid.UUID, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(ShadowSignal.__table__)).mappings().all()
    return {r["served_signal_id"]: dict(r) for r in rows}


def test_rows_shadows_and_events_are_stored_once_in_order(
    engine: Engine, shadow_test: tuple[uuid.UUID, str, str], statements: list[str]
) -> None:
    test_id, _, b = shadow_test
    rows = [served(i, ab_test_id=test_id) for i in range(6)]
    for row in rows[::2]:
        row[SHADOW] = shadow_of(row, test_id, b)
    woken: list[int] = []
    remove = on_commit(lambda: woken.append(1))
    try:
        assert store_absent_signal_rows(engine, rows[:4], T0) == 4
        first = len(statements)
        # A retried round: the four already stored are skipped with their events and shadows.
        assert store_absent_signal_rows(engine, rows, T0, synchronous=False) == 2
        again = len(statements) - first
    finally:
        remove()
    assert len(woken) == 2  # the relay in this process is woken by each commit
    if engine.dialect.name == "postgresql":
        assert (first, again) == (1, 1)  # one round trip each, begin and commit included
    kept = stored(engine)
    assert sorted(map(str, kept)) == sorted(str(r["id"]) for r in rows)
    for row in rows:
        assert {k: kept[row["id"]][k] for k in row if k != SHADOW} == {
            k: v for k, v in row.items() if k != SHADOW
        }
    shadows = stored_shadows(engine)
    assert sorted(map(str, shadows)) == sorted(str(r["id"]) for r in rows[::2])
    for row in rows[::2]:
        expected = {**row[SHADOW], "served_signal_id": row["id"], "actual_outcome": "pending"}
        assert {k: shadows[row["id"]][k] for k in expected} == expected
    events = announced(engine, NewPrediction)
    assert [e.signal_id for e in events] == [r["id"] for r in rows]  # once each, in order
    assert [e.entry_price for e in events] == [r["entry_price"] for r in rows]


def test_rows_of_another_shape_take_a_transaction(engine: Engine, statements: list[str]) -> None:
    rows = [{k: v for k, v in served(i).items() if k != "verified"} for i in range(3)]
    assert store_absent_signal_rows(engine, rows, T0) == 3
    assert all(v["verified"] for v in stored(engine).values())  # the column's default
    assert [e.signal_id for e in announced(engine, NewPrediction)] == [r["id"] for r in rows]
    if engine.dialect.name == "postgresql":
        assert len(statements) > 1


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"created_at": datetime(2026, 3, 2, 1)}, "timezone"),  # noqa: DTZ001 (the point)
        ({"ab_test_id": uuid.uuid4()}, "(?i)foreign key"),  # the database's own checks
        ({"actual_outcome": "bogus"}, "outcome_valid"),
    ],
)
def test_one_bad_row_stores_nothing(engine: Engine, change: dict[str, Any], why: str) -> None:
    rows = [served(0), served(1, **change), served(2)]
    with pytest.raises((ValueError, DBAPIError), match=why):
        store_absent_signal_rows(engine, rows, T0)
    assert stored(engine) == {}
    assert announced(engine, NewPrediction) == []


def test_text_too_long_for_its_column_is_refused_not_cut(pg_engine: Engine) -> None:
    # The arrays are cast to text, not varchar(128): the column refuses, nothing is cut.
    with pytest.raises(DBAPIError, match="too long"):
        store_absent_signal_rows(pg_engine, [served(0, routing_key="k" * 129)], T0)
    assert stored(pg_engine) == {}


def test_a_commit_that_wrote_events_notifies_other_processes(pg_engine: Engine) -> None:
    engine = pg_engine
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        rows = [served(0)]
        store_absent_signal_rows(engine, rows, T0)
        assert [n.channel for n in listener.notifies(timeout=5, stop_after=1)] == [NOTIFY_CHANNEL]
        store_absent_signal_rows(engine, rows, T0)  # nothing new: no event, no notification
        assert list(listener.notifies(timeout=0.5, stop_after=1)) == []
