"""Which candles a training run reads: the series, the time window, and "since when".

A weekly run learns from the last `days` days; a daily run from what arrived after the data
of the last successful run. Candles are cut at `as_of` by their *close*, so a run as of any
moment of a replayed history sees exactly what was known then.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Engine, select

from aifx_ml.data.candles import load_candles, load_labeled_signals
from aifx_ml.db.engine import session_factory
from aifx_ml.db.models import MarketData, ModelTrainingLog
from aifx_ml.domain import TrainingStatus, TrainingType
from aifx_ml.markets import approx_step, horizon, step_offset
from aifx_ml.training.config import TrainingConfig


def load_start(samples_since: datetime, config: TrainingConfig) -> datetime:
    """How far back to read so the first sample has a full window (weekends included)."""
    widest = max(approx_step(tf) for tf in config.timeframes)
    back = widest * (2 * config.lstm.window) + pd.Timedelta(days=3)
    return samples_since - back.to_pytimedelta()


def load_series(
    engine: Engine, pair: str | None, timeframe: str, start: datetime, as_of: datetime
) -> pd.DataFrame:
    """Candles, indicators and target of one series (every pair if None) opened at or after
    `start` and closed by `as_of`: a candle still forming at `as_of` is not known yet."""
    last_open = pd.Timestamp(as_of) - step_offset(timeframe)
    end = (last_open + pd.Timedelta(microseconds=1)).to_pydatetime()
    return load_candles(engine, start, end, [pair] if pair else None, [timeframe])


def load_training_candles(
    engine: Engine, config: TrainingConfig, start: datetime, as_of: datetime
) -> pd.DataFrame:
    """Every series the config names (all stored pairs if none), from `start` to `as_of`."""
    frames = [
        load_series(engine, pair, tf, start, as_of)
        for tf in config.timeframes
        for pair in (config.pairs or (None,))
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def stored_series(engine: Engine, config: TrainingConfig) -> list[tuple[str, str]]:
    """(pair, timeframe) of every stored series the config asks for, to map work over."""
    query = select(MarketData.pair, MarketData.timeframe).distinct()
    query = query.where(MarketData.timeframe.in_(config.timeframes))
    if config.pairs:
        query = query.where(MarketData.pair.in_(config.pairs))
    with session_factory(engine)() as session:
        return sorted((str(p), str(t)) for p, t in session.execute(query).all())


def samples_since(
    engine: Engine, config: TrainingConfig, training_type: str, as_of: datetime
) -> datetime:
    """The first decision time a run learns from: `days` back (full) or since the last run."""
    if training_type == TrainingType.FULL:
        return as_of - timedelta(days=config.days)
    return incremental_since(engine, config, as_of)


def last_trained_until(engine: Engine, model_type: str) -> datetime | None:
    """The end of the data the last completed run of this model type trained on."""
    with session_factory(engine)() as session:
        ranges = session.execute(
            select(ModelTrainingLog.data_time_range)
            .where(
                ModelTrainingLog.model_type == model_type,
                ModelTrainingLog.status == TrainingStatus.COMPLETED,
            )
            .order_by(ModelTrainingLog.started_at.desc())
            .limit(1)
        ).scalar_one_or_none()
    if not ranges or "end" not in ranges:
        return None
    end: datetime = pd.Timestamp(ranges["end"]).to_pydatetime()
    return end


def incremental_since(engine: Engine, config: TrainingConfig, as_of: datetime) -> datetime:
    """Fine-tuning learns from data after the last successful run (default: the last 24 h)."""
    until = last_trained_until(engine, config.model_type)
    default = as_of - timedelta(hours=config.incremental_hours)
    return until if until is not None and until < as_of else default


def load_training_signals(
    engine: Engine, config: TrainingConfig, start: datetime, as_of: datetime
) -> pd.DataFrame:
    """Labeled signals created since `start` whose outcome was known by `as_of`.

    An outcome is known once the horizon candle has closed; one labeled later in a replay
    (or by a clock ahead of ours) is not used, so a run as of the past never sees it.
    """
    signals = load_labeled_signals(
        engine, start, as_of, list(config.pairs) or None, list(config.timeframes)
    )
    if signals.empty:
        return signals
    known_at = signals["created_at"].copy()
    for timeframe, rows in signals.groupby("timeframe").groups.items():
        known_at[rows] += horizon(str(timeframe)) + step_offset(str(timeframe))
    labeled = signals["labeled_at"].isna() | (signals["labeled_at"] <= pd.Timestamp(as_of))
    return signals[(known_at <= pd.Timestamp(as_of)) & labeled].reset_index(drop=True)
