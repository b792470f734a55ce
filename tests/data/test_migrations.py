"""Migrations upgrade, downgrade and upgrade again on PostgreSQL and SQLite, and the schema
they build enforces the rules of DESIGN.md."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, insert, inspect
from sqlalchemy.exc import IntegrityError

from aifx_ml.db.engine import (
    current_revision,
    downgrade,
    ensure_schema,
    head_revision,
    make_engine,
    upgrade,
)
from aifx_ml.db.models import Base, MarketData, ModelVersion
from aifx_ml.errors import SchemaOutdatedError

pytestmark = pytest.mark.integration

TABLES = {
    "market_data",
    "trading_signals",
    "model_training_log",
    "model_versions",
    "model_ab_test",
    "data_quarantine",
    "event_outbox",
    "model_stage_history",
    "model_evaluations",
    "alerts",
}


def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert set(inspect(engine).get_table_names()) >= TABLES

    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}

    upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    engine.dispose()


def test_migrations_match_models(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def candle(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": uuid.uuid4(),
        "pair": "EUR/USD",
        "timeframe": "1h",
        "timestamp": datetime.fromisoformat("2026-01-05T10:00:00+00:00"),
        "open": 1.1,
        "high": 1.2,
        "low": 1.0,
        "close": 1.15,
        "volume": 1.0,
        "source": "test",
        "created_at": datetime.fromisoformat("2026-01-05T11:00:00+00:00"),
        "updated_at": datetime.fromisoformat("2026-01-05T11:00:00+00:00"),
    }
    row.update(overrides)
    return row


@pytest.mark.parametrize(
    "bad",
    [
        {"pair": "EURUSD"},
        {"pair": "eur/usd"},
        {"timeframe": "2h"},
        {"open": 0.0},
        {"high": 0.9, "low": 1.0},
        {"volume": -1.0},
    ],
    ids=["pair-no-slash", "pair-lower", "timeframe", "zero-price", "high-below-low", "volume"],
)
def test_market_data_constraints(engine: Engine, bad: dict[str, object]) -> None:
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(MarketData), [candle(**bad)])


def test_market_data_unique_per_series_and_time(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(MarketData), [candle()])
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(MarketData), [candle()])


def test_one_production_version_per_model_type(engine: Engine) -> None:
    def version(name: str, status: str, model_type: str = "lstm") -> dict[str, object]:
        return {"id": uuid.uuid4(), "version": name, "model_type": model_type, "status": status}

    with engine.begin() as conn:
        conn.execute(
            insert(ModelVersion),
            [
                version("v1", "production"),
                version("v2", "staging"),
                version("v3", "archived"),
                version("g1", "production", model_type="gru"),
            ],
        )
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(ModelVersion), [version("v4", "production")])


def test_fresh_database_is_created_but_outdated_one_is_not_upgraded(db_url: str) -> None:
    engine = make_engine(db_url)
    ensure_schema(engine, auto_upgrade=False)  # empty database: created
    assert current_revision(engine) == head_revision()

    downgrade(engine, "base")
    with engine.begin() as conn:  # a database with our tables but no revision: not ours to guess
        Base.metadata.tables["market_data"].create(conn)
    with pytest.raises(SchemaOutdatedError, match="aifx db upgrade"):
        ensure_schema(engine, auto_upgrade=False)
    engine.dispose()
