"""Labeling pending signals in a real database: once, in one pass, announced once each."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import Engine, select

from aifx_ml.data.importer import import_frame
from aifx_ml.db.engine import transaction
from aifx_ml.db.models import TradingSignal
from aifx_ml.events.schemas import NewPrediction, SignalOutcome
from aifx_ml.labeling.store import label_pending
from aifx_ml.signals import record_signals
from tests.conftest import snapshot
from tests.event_payloads import announced, outbox_payloads

pytestmark = pytest.mark.integration

T0 = pd.Timestamp("2026-01-05 00:00", tz="UTC")


def flat_then(closes: list[float]) -> pd.DataFrame:
    """Hourly candles from T0 with the given closes and a tight high/low around them."""
    ts = pd.date_range(T0, periods=len(closes), freq="1h")
    return pd.DataFrame(
        {
            "timestamp": ts,
            "open": closes,
            "high": [c * 1.0001 for c in closes],
            "low": [c * 0.9999 for c in closes],
            "close": closes,
            "volume": 1.0,
        }
    )


def signals(rows: list[tuple[str, int, float]]) -> pd.DataFrame:
    """(signal, hours after T0, entry price) → a frame of EUR/USD 1h signals."""
    return pd.DataFrame(
        {
            "pair": "EUR/USD",
            "timeframe": "1h",
            "signal": [r[0] for r in rows],
            "confidence": 0.7,
            "entry_price": [r[2] for r in rows],
            "created_at": [T0 + pd.Timedelta(hours=r[1]) for r in rows],
            "model_version": "v1",
        }
    )


def outcomes(engine: Engine) -> dict[tuple[str, datetime], tuple[str, float | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                TradingSignal.signal,
                TradingSignal.created_at,
                TradingSignal.actual_outcome,
                TradingSignal.actual_pnl_percent,
            )
        ).all()
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def test_label_pending_labels_elapsed_and_leaves_the_rest(engine: Engine, as_of: datetime) -> None:
    # Price 100 for 4 hours, then 101 (+1%) from hour 4 on; 8 candles in all (hours 0..7).
    import_frame(engine, flat_then([100.0] * 4 + [101.0] * 4), "EUR/USD", "1h", as_of, "t")
    with transaction(engine) as session:
        record_signals(
            session,
            signals([("buy", 0, 100.0), ("sell", 1, 100.0), ("hold", 0, 100.0), ("buy", 5, 101.0)]),
            as_of,
        )

    report = label_pending(engine, as_of)
    assert (report.examined, report.labeled, report.still_pending) == (4, 3, 1)
    got = outcomes(engine)
    assert got[("buy", T0)] == ("win", pytest.approx(1.0))  # close at 04:00 is 101
    assert got[("sell", T0 + timedelta(hours=1))] == ("loss", pytest.approx(-1.0))  # at 05:00: 101
    assert got[("hold", T0)] == ("loss", 0.0)  # the 04:00 candle left the ±0.5% band
    assert got[("buy", T0 + timedelta(hours=5))] == ("pending", None)  # needs a candle at 09:00

    events = announced(engine, SignalOutcome)
    assert {(e.signal, e.actual_outcome, round(e.actual_pnl_percent, 9)) for e in events} == {
        ("buy", "win", 1.0),
        ("sell", "loss", -1.0),
        ("hold", "loss", 0.0),
    }
    assert {e.model_version for e in events} == {"v1"}


def test_labeling_is_idempotent(engine: Engine, as_of: datetime) -> None:
    import_frame(engine, flat_then([100.0] * 10), "EUR/USD", "1h", as_of, "t")
    with transaction(engine) as session:
        record_signals(session, signals([("buy", 0, 100.0), ("hold", 1, 100.0)]), as_of)
    assert label_pending(engine, as_of).labeled == 2
    before = snapshot(engine)
    again = label_pending(engine, as_of)
    assert (again.examined, again.labeled) == (0, 0)
    assert snapshot(engine) == before


def test_signal_becomes_labelable_when_the_horizon_candle_arrives(
    engine: Engine, as_of: datetime
) -> None:
    closes = [100.0, 100.0, 100.0, 100.0, 99.0, 99.0]
    import_frame(engine, flat_then(closes[:4]), "EUR/USD", "1h", as_of, "t")  # up to 03:00
    with transaction(engine) as session:
        record_signals(session, signals([("sell", 0, 100.0)]), as_of)
    assert label_pending(engine, as_of).labeled == 0  # horizon ends 04:00: nothing there yet

    import_frame(engine, flat_then(closes), "EUR/USD", "1h", as_of, "t")  # 04:00 and 05:00 arrive
    assert label_pending(engine, as_of).labeled == 1
    assert outcomes(engine)[("sell", T0)] == ("win", pytest.approx(1.0))


def test_the_clock_is_respected(engine: Engine, as_of: datetime) -> None:
    """A replay labels with what was known at its simulated now, not with later candles."""
    import_frame(engine, flat_then([100.0] * 4 + [101.0] * 4), "EUR/USD", "1h", as_of, "t")
    with transaction(engine) as session:
        record_signals(session, signals([("buy", 0, 100.0)]), as_of)
    early = (T0 + timedelta(hours=3)).to_pydatetime()
    assert label_pending(engine, early).labeled == 0
    assert label_pending(engine, (T0 + timedelta(hours=4)).to_pydatetime()).labeled == 1


def test_recorded_signals_are_announced(engine: Engine, as_of: datetime) -> None:
    with transaction(engine) as session:
        ids = record_signals(session, signals([("buy", 0, 1.0), ("sell", 1, 1.0)]), as_of)
    assert [type(e) for e in outbox_payloads(engine)] == [NewPrediction, NewPrediction]
    events = announced(engine, NewPrediction)
    assert [e.signal_id for e in events] == ids
    assert [(e.signal, e.confidence, e.entry_price) for e in events] == [
        ("buy", 0.7, 1.0),
        ("sell", 0.7, 1.0),
    ]
    assert [e.created_at for e in events] == [T0, T0 + pd.Timedelta(hours=1)]
