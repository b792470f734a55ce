"""Reading stored candles and labeled signals back as DataFrames: what training, evaluation,
the replay and exports start from.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, Select, select

from aifx_ml.db.engine import session_factory
from aifx_ml.db.models import MarketData, TradingSignal
from aifx_ml.features.indicators import indicators_from_json
from aifx_ml.labeling.rules import direction_target
from aifx_ml.markets import iter_series, validate_pair, validate_timeframe

CANDLE_COLUMNS = ("pair", "timeframe", "timestamp", "open", "high", "low", "close", "volume")
SIGNAL_EXPORT_COLUMNS = (
    "id",
    "pair",
    "timeframe",
    "signal",
    "confidence",
    "probability",
    "entry_price",
    "created_at",
    "actual_outcome",
    "actual_pnl_percent",
    "labeled_at",
    "model_version",
    "ab_test_id",
)


def load_candles(
    engine: Engine,
    start: datetime,
    end: datetime,
    pairs: list[str] | None,
    timeframes: list[str] | None,
) -> pd.DataFrame:
    """Candles in [start, end) with their indicators as columns and the direction target.

    The target only looks at candles inside the range, so it never leaks what came after `end`.
    """
    query = select(
        *(getattr(MarketData, c) for c in CANDLE_COLUMNS), MarketData.technical_indicators
    ).where(MarketData.timestamp >= start, MarketData.timestamp < end)
    query = select_series(query, MarketData, pairs, timeframes)
    with session_factory(engine)() as session:
        rows = session.execute(
            query.order_by(MarketData.pair, MarketData.timeframe, MarketData.timestamp)
        ).all()
    frame = pd.DataFrame(rows, columns=[*CANDLE_COLUMNS, "technical_indicators"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    indicators = indicators_from_json(frame.pop("technical_indicators"))
    frame = pd.concat(
        [frame.astype({c: "float64" for c in CANDLE_COLUMNS[3:]}), indicators], axis=1
    )
    target = np.full(len(frame), np.nan)
    for _, timeframe, positions in iter_series(frame):
        series = frame.iloc[positions]
        target[positions] = direction_target(series["timestamp"], series["close"], timeframe)
    frame["target"] = target
    return frame


def select_series(
    query: Select[Any],
    model: type[MarketData] | type[TradingSignal],
    pairs: list[str] | None,
    timeframes: list[str] | None,
) -> Select[Any]:
    """Narrow a query to the given pairs and timeframes (None: all), refusing invalid names."""
    if pairs:
        query = query.where(model.pair.in_([validate_pair(p) for p in pairs]))
    if timeframes:
        query = query.where(model.timeframe.in_([validate_timeframe(t) for t in timeframes]))
    return query


def load_labeled_signals(
    engine: Engine,
    start: datetime,
    end: datetime,
    pairs: list[str] | None,
    timeframes: list[str] | None,
) -> pd.DataFrame:
    """Signals created in [start, end) whose outcome is known."""
    query = select(*(getattr(TradingSignal, c) for c in SIGNAL_EXPORT_COLUMNS)).where(
        TradingSignal.created_at >= start,
        TradingSignal.created_at < end,
        TradingSignal.actual_outcome != "pending",
    )
    query = select_series(query, TradingSignal, pairs, timeframes)
    with session_factory(engine)() as session:
        rows = session.execute(query.order_by(TradingSignal.created_at, TradingSignal.id)).all()
    frame = pd.DataFrame(rows, columns=list(SIGNAL_EXPORT_COLUMNS))
    for column in ("created_at", "labeled_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in ("id", "ab_test_id"):
        frame[column] = frame[column].map(lambda v: None if v is None else str(v)).astype(object)
    return frame
