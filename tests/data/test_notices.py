"""Announcements at commit (`db.notices`): this process's subscribers are told in the
committing thread, other processes through PostgreSQL NOTIFY, nobody on rollback."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine

from aifx_ml.data.importer import import_frame
from aifx_ml.db.engine import make_engine, transaction
from aifx_ml.db.notices import MARKET_DATA_CHANNEL, Listener, announce, series_of, subscribe
from tests.conftest import wait_for
from tests.memory_registry import T0
from tests.serving_helpers import trending_candles

pytestmark = pytest.mark.integration


def candles(hours: int) -> pd.DataFrame:
    return trending_candles(str((T0 - timedelta(hours=hours)).date()), hours)


def test_an_import_that_stores_candles_tells_this_process_at_its_commit(engine: Engine) -> None:
    told: list[str] = []
    unsubscribe = subscribe(MARKET_DATA_CHANNEL, told.append)
    try:
        import_frame(engine, candles(48), "EUR/USD", "1h", T0, source="test")
        assert told == ["EUR/USD 1h"]  # already, in this thread: no waiting for a NOTIFY
        assert series_of(told[0]) == ("EUR/USD", "1h")
        import_frame(engine, candles(48), "EUR/USD", "1h", T0, source="test")
        assert told == ["EUR/USD 1h"]  # nothing new stored: nothing to tell

        with pytest.raises(RuntimeError), transaction(engine) as session:
            announce(session, MARKET_DATA_CHANNEL, "GBP/USD 1h")
            raise RuntimeError("rolled back")
        assert told == ["EUR/USD 1h"]
    finally:
        unsubscribe()
    import_frame(engine, candles(49), "EUR/USD", "1h", T0, source="test")
    assert told == ["EUR/USD 1h"]  # unsubscribed


def test_a_listener_hears_every_process_and_survives_a_bad_handler(pg_engine: Engine) -> None:
    heard: list[str] = []
    connected: list[bool] = []

    def handle(payload: str) -> None:
        heard.append(payload)
        if len(heard) == 1:
            raise ValueError("a handler's bug")

    listener = Listener(
        pg_engine,
        {MARKET_DATA_CHANNEL: handle},
        on_connect=lambda: connected.append(True),
        on_disconnect=lambda: connected.append(False),
    ).start()
    try:
        wait_for(lambda: connected == [True])
        other = make_engine(pg_engine.url.render_as_string(hide_password=False))
        try:
            import_frame(other, candles(48), "EUR/USD", "1h", T0, source="elsewhere")
            with transaction(other) as session:  # rolled back: never sent
                announce(session, MARKET_DATA_CHANNEL, "USD/JPY 1h")
                session.rollback()
            import_frame(other, candles(48), "GBP/USD", "1h", T0, source="elsewhere")
        finally:
            other.dispose()
        wait_for(lambda: len(heard) == 2)
        assert heard == ["EUR/USD 1h", "GBP/USD 1h"]
    finally:
        listener.stop()
    assert connected == [True, False]


def test_sqlite_has_nothing_to_listen_to(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/aifx.db")
    with pytest.raises(ValueError, match="LISTEN needs PostgreSQL, not sqlite"):
        Listener(engine, {MARKET_DATA_CHANNEL: print})
