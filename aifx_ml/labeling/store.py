"""Labeling the pending signals in the database: one read, one vectorized pass, one write.

Signals are locked while they are labeled (FOR UPDATE SKIP LOCKED on PostgreSQL), so two
labelers running at once never label or announce the same signal twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import Engine, bindparam, func, select, update
from sqlalchemy.orm import Session

from aifx_ml.db.engine import transaction
from aifx_ml.db.models import MarketData, ShadowSignal, TradingSignal
from aifx_ml.db.types import to_rows
from aifx_ml.events.outbox import enqueue_many
from aifx_ml.events.schemas import SignalOutcome
from aifx_ml.labeling.rules import DEFAULT_THRESHOLD, label_signals
from aifx_ml.markets import horizon, iter_series


@dataclass
class LabelReport:
    """What one labeling pass did."""

    examined: int = 0
    labeled: int = 0
    still_pending: int = 0
    shadow_labeled: int = 0  # shadow answers of shadow tests (not counted above)
    shadow_pending: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


def label_pending(
    engine: Engine, as_of: datetime, threshold: float = DEFAULT_THRESHOLD
) -> LabelReport:
    """Label every pending signal whose horizon has elapsed by `as_of`; idempotent.

    Served signals are announced on ml:signal_outcome; the shadow answers of shadow tests
    (`shadow_signals`) are labeled by the same rules in the same pass, and not announced
    (nobody was served them); the report counts them apart (`shadow_labeled`).
    """
    report, shadows = LabelReport(), LabelReport()
    with transaction(engine) as session:
        _label(session, TradingSignal, as_of, threshold, report, announce=True)
        _label(session, ShadowSignal, as_of, threshold, shadows, announce=False)
    report.shadow_labeled, report.shadow_pending = shadows.labeled, shadows.still_pending
    return report


def _label(
    session: Session,
    model: type[TradingSignal] | type[ShadowSignal],
    as_of: datetime,
    threshold: float,
    report: LabelReport,
    *,
    announce: bool,
) -> None:
    query = select(
        model.id,
        model.pair,
        model.timeframe,
        model.signal,
        model.entry_price,
        model.created_at,
        model.model_version,
        model.ab_test_id,
    ).where(model.actual_outcome == "pending", model.created_at <= as_of)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    signals = pd.DataFrame(
        session.execute(query).all(), columns=list(query.selected_columns.keys())
    )
    report.examined = len(signals)
    if signals.empty:
        return
    signals["created_at"] = pd.to_datetime(signals["created_at"], utc=True)
    candles = _candles_for(session, signals, as_of)
    labels = label_signals(signals, candles, threshold)
    done = labels["actual_outcome"] != "pending"
    report.labeled = int(done.sum())
    report.still_pending = report.examined - report.labeled
    counts = labels.loc[done, "actual_outcome"].astype(str).value_counts()
    report.outcomes = {str(k): int(v) for k, v in counts.items()}
    if not done.any():
        return
    labeled = signals[done].assign(
        actual_outcome=labels.loc[done, "actual_outcome"].astype(str),
        actual_pnl_percent=labels.loc[done, "actual_pnl_percent"],
    )
    rows = to_rows(labeled.drop(columns=["created_at"]))
    table = model.__table__
    session.execute(
        # Core executemany, one statement for the whole batch; the pending guard keeps a
        # concurrent labeler on SQLite from overwriting an outcome already written.
        update(table)  # type: ignore[arg-type]
        .where(table.c.id == bindparam("b_id"), table.c.actual_outcome == "pending")
        .values(
            actual_outcome=bindparam("b_outcome"),
            actual_pnl_percent=bindparam("b_pnl"),
            labeled_at=as_of,
        ),
        [
            {"b_id": r["id"], "b_outcome": r["actual_outcome"], "b_pnl": r["actual_pnl_percent"]}
            for r in rows
        ],
    )
    if not announce:
        return
    enqueue_many(
        session,
        (
            SignalOutcome(
                signal_id=r["id"],
                pair=r["pair"],
                timeframe=r["timeframe"],
                signal=r["signal"],
                actual_outcome=r["actual_outcome"],
                actual_pnl_percent=r["actual_pnl_percent"],
                model_version=r["model_version"],
                ab_test_id=r["ab_test_id"],
            )
            for r in rows
        ),
        as_of,
    )


def _candles_for(session: Session, signals: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """The candles the rules need for each series: from the last one at or before the earliest
    signal (the horizon candle can precede a signal across a weekend) up to `as_of`."""
    frames = []
    for pair, timeframe, positions in iter_series(signals):
        group = signals.iloc[positions]
        earliest = group["created_at"].min().to_pydatetime()
        series = (MarketData.pair == pair) & (MarketData.timeframe == timeframe)
        floor = session.execute(
            select(func.max(MarketData.timestamp)).where(series, MarketData.timestamp <= earliest)
        ).scalar()
        latest = group["created_at"].max() + horizon(timeframe)
        rows = session.execute(
            select(MarketData.timestamp, MarketData.high, MarketData.low, MarketData.close)
            .where(
                series,
                MarketData.timestamp >= (floor or earliest),
                MarketData.timestamp <= as_of,
            )
            .order_by(MarketData.timestamp)
        ).all()
        frame = pd.DataFrame(rows, columns=["timestamp", "high", "low", "close"])
        # Beyond the last horizon only the existence of a later candle matters: keep the first.
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
        beyond = np.flatnonzero(frame["timestamp"] >= latest)
        if len(beyond) > 1:
            frame = frame.iloc[: beyond[0] + 1]
        frames.append(frame.assign(pair=pair, timeframe=timeframe))
    if not frames:
        return pd.DataFrame(columns=["pair", "timeframe", "timestamp", "high", "low", "close"])
    return pd.concat(frames, ignore_index=True)
