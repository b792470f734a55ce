"""What the alert rules look at, read from the tables: recent training runs, quarantine
counts, the newest candle of every series, gaps in recent candles."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Engine, func, select

from aifx_ml.alerts.rules import QuarantineCounts, TrainingRun
from aifx_ml.data.validation import Gap, find_gaps
from aifx_ml.db.models import DataQuarantine, MarketData, ModelTrainingLog
from aifx_ml.markets import iter_series

TRAINING_LOOKBACK = timedelta(days=8)  # a weekly run and a day's grace
GAP_LOOKBACK = timedelta(hours=24)
INTRADAY = ("1min", "5min", "15min", "30min", "1h", "4h")


def recent_training_runs(
    engine: Engine, now: datetime, lookback: timedelta = TRAINING_LOOKBACK
) -> list[TrainingRun]:
    """Training runs started in the `lookback` before `now`."""
    runs = ModelTrainingLog
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                runs.id,
                runs.training_type,
                runs.model_type,
                runs.status,
                runs.started_at,
                runs.error_message,
            ).where(runs.started_at > now - lookback, runs.started_at <= now)
        ).all()
    return [
        TrainingRun(
            str(r.id), r.training_type, r.model_type, r.status, r.started_at, r.error_message
        )
        for r in rows
    ]


def quarantine_counts(engine: Engine, now: datetime) -> QuarantineCounts:
    """Rows quarantined in the 24 hours before `now`, the daily average of the 7 days before
    that, and the three most common reasons of the last day."""
    day, week = now - timedelta(days=1), now - timedelta(days=8)
    created = DataQuarantine.created_at
    with engine.connect() as conn:
        last_day = conn.scalar(select(func.count()).where(created > day, created <= now))
        before = conn.scalar(select(func.count()).where(created > week, created <= day))
        top = conn.execute(
            select(DataQuarantine.reason, func.count().label("n"))
            .where(created > day, created <= now)
            .group_by(DataQuarantine.reason)
            .order_by(func.count().desc(), DataQuarantine.reason)
            .limit(3)
        ).all()
    return QuarantineCounts(
        last_day=int(last_day or 0),
        daily_average=int(before or 0) / 7,
        top_reasons=tuple((str(r.reason)[:120], int(r.n)) for r in top),
    )


def newest_candles(engine: Engine, now: datetime) -> dict[tuple[str, str], datetime]:
    """Open time of the newest candle (up to `now`) of every series."""
    md = MarketData
    with engine.connect() as conn:
        rows = conn.execute(
            select(md.pair, md.timeframe, func.max(md.timestamp).label("newest"))
            .where(md.timestamp <= now)
            .group_by(md.pair, md.timeframe)
        ).all()
    return {(r.pair, r.timeframe): r.newest for r in rows}


def recent_gaps(
    engine: Engine, now: datetime, lookback: timedelta = GAP_LOOKBACK
) -> dict[tuple[str, str], list[Gap]]:
    """Gaps among the intraday candles of the `lookback` before `now`, per series."""
    md = MarketData
    with engine.connect() as conn:
        rows = conn.execute(
            select(md.pair, md.timeframe, md.timestamp).where(
                md.timeframe.in_(INTRADAY), md.timestamp > now - lookback, md.timestamp <= now
            )
        ).all()
    frame = pd.DataFrame(rows, columns=["pair", "timeframe", "timestamp"])
    found = {}
    for pair, timeframe, positions in iter_series(frame):
        gaps = find_gaps(pd.to_datetime(frame["timestamp"].iloc[positions], utc=True), timeframe)
        if gaps:
            found[(pair, timeframe)] = gaps
    return found
