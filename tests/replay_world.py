"""The session's replay (tiny model, three pairs, six weeks), a three-week one, and what the
end-to-end tests read back from them: a fingerprint of everything a replay decided."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from aifx_ml.config import Settings, load_settings
from aifx_ml.db.engine import session_factory
from aifx_ml.db.models import (
    ModelABTest,
    ModelStageHistory,
    ModelTrainingLog,
    ModelVersion,
    ReplayJob,
    TradingSignal,
)
from aifx_ml.replay.plan import ModelParams, ReplayParams, with_change_point

# Monday 5 January to Monday 16 February 2026: six Sundays, 42 daily runs, January's monthly
# evaluation (1 February). On 31 December, five days before the replay starts, the market changes
# its habit (momentum turns into mean reversion): the first model, trained on the 30 days before
# the start, learned mostly the old one; the weekly retrain's 30-day window holds mostly the new
# habit from mid-January on. (Six weeks, not eight: the suite's longest fixture, ~25 % shorter.)
# Challengers are tried in shadow tests (the default); refreshes are off, so that the weekly
# versions that pass the gate are tried live too (with them on, each would refresh Production
# instead: tests/data/test_refresh.py and the demo show refreshes).
SHORT = ReplayParams(
    pairs=("EUR/USD", "GBP/USD", "USD/JPY"),
    timeframes=("1h",),
    start=datetime(2026, 1, 5, tzinfo=UTC),
    end=datetime(2026, 2, 16, tzinfo=UTC),
    history_days=30,
    pattern_switch=0.36,
    pattern_strength=0.65,
    label_threshold=0.001,
    ab_look_hours=6,
    ab_min_decided=30,
    ab_max_days=10.0,
    refresh_days=0.0,
)

# One week of one pair with a tiny model: a replay of a study (tests/flows/test_replay_study.py,
# test_dask_runner.py) in about a minute. Seed 3 ends with nothing to compare (no version
# reached Production in time), seed 4 with a comparison.
TINY_REPLAY = replace(
    SHORT,
    pairs=("EUR/USD",),
    end=datetime(2026, 1, 12, tzinfo=UTC),
    model=ModelParams(window=8, lstm_units=(4, 2), dense_units=2, epochs=2, incremental_epochs=1),
)


def short_params() -> ReplayParams:
    return with_change_point(SHORT)


def three_week_params() -> ReplayParams:
    """Three weeks on two of SHORT's pairs, the interrupted-and-resumed replay's (the market is
    drawn for the replay's own range: it is not SHORT's first three weeks). The habit is stronger
    than SHORT's (0.85) and changes on 31 December, so that a challenger passes the gate within
    them: its one A/B test starts on Sunday 25 January, at most 17 hours long, and is decided
    (inconclusive) before the end. (Four weeks with SHORT's habit took twice as long; with one
    pair, or with SHORT's habit over three weeks, no challenger passes the gate in time.)"""
    return with_change_point(
        replace(
            SHORT,
            pairs=SHORT.pairs[:2],
            end=datetime(2026, 1, 26, tzinfo=UTC),
            pattern_switch=0.51,
            pattern_strength=0.85,
            ab_max_days=0.7,
        )
    )


def store_settings(root: Path, database_url: str | None = None, redis_url: str = "") -> Settings:
    """Settings of a store of its own under `root` (SQLite unless a database URL is given)."""
    return load_settings(
        None,
        data_dir=root,
        database_url=database_url or f"sqlite:///{root / 'aifx.db'}",
        mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        redis_url=redis_url,
    )


def store_env(settings: Settings) -> dict[str, str]:
    """The environment that points a process (a notebook kernel) at the same store."""
    return {
        "AIFX_DATA_DIR": str(settings.data_dir),
        "AIFX_DATABASE_URL": settings.db_url,
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "MLFLOW_REGISTRY_URI": settings.registry_uri,
        "AIFX_ARTIFACT_ROOT": settings.artifact_location,
    }


@dataclass(frozen=True)
class ReplayStore:
    settings: Settings
    params: ReplayParams
    name: str

    @property
    def env(self) -> dict[str, str]:
        return store_env(self.settings)


def fingerprint(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Everything a replay decided, without ids or wall-clock times."""

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(float(value), 6)

    with session_factory(engine)() as session:
        versions = session.execute(
            select(
                ModelVersion.version,
                ModelVersion.status,
                ModelVersion.parent_version,
                ModelVersion.metrics,
            ).order_by(ModelVersion.version)
        ).all()
        return {
            "versions": [
                (v, s, p, rounded((m or {}).get("holdout_accuracy"))) for v, s, p, m in versions
            ],
            "stages": [
                tuple(r)
                for r in session.execute(
                    select(
                        ModelStageHistory.version,
                        ModelStageHistory.from_status,
                        ModelStageHistory.to_status,
                        ModelStageHistory.changed_at,
                    ).order_by(ModelStageHistory.changed_at, ModelStageHistory.version)
                )
            ],
            "tests": [
                tuple(r)
                for r in session.execute(
                    select(
                        ModelABTest.test_name,
                        ModelABTest.status,
                        ModelABTest.winner,
                        ModelABTest.created_at,
                        ModelABTest.completed_at,
                    ).order_by(ModelABTest.created_at)
                )
            ],
            "training": [
                tuple(r)
                for r in session.execute(
                    select(
                        ModelTrainingLog.training_type,
                        ModelTrainingLog.started_at,
                        ModelTrainingLog.status,
                    ).order_by(ModelTrainingLog.started_at, ModelTrainingLog.training_type)
                )
            ],
            "signals": [
                (*r[:5], rounded(r[5]))
                for r in session.execute(
                    select(
                        TradingSignal.pair,
                        TradingSignal.created_at,
                        TradingSignal.signal,
                        TradingSignal.model_version,
                        TradingSignal.actual_outcome,
                        TradingSignal.actual_pnl_percent,
                    ).order_by(TradingSignal.created_at, TradingSignal.pair)
                )
            ],
            "jobs": [
                tuple(r)
                for r in session.execute(
                    select(ReplayJob.job, ReplayJob.scheduled_at, ReplayJob.status).order_by(
                        ReplayJob.scheduled_at, ReplayJob.job
                    )
                )
            ],
        }


def wall() -> datetime:
    """The wall clock a replay is given in the tests (its moments are simulated)."""
    return datetime.now(UTC)


def rows(engine: Engine, *columns: Any, where: Any = None) -> list[Any]:
    statement = select(*columns)
    if where is not None:
        statement = statement.where(where)
    with session_factory(engine)() as session:
        return list(session.execute(statement).all())


def assert_one_event_per_change(engine: Engine, events: list[tuple[str, Any]]) -> None:
    """Each deployment, A/B test start and end, training start and end, signal and label is
    announced once: the events and the tables tell the same story."""
    by_channel: dict[str, list[dict[str, Any]]] = {}
    for channel, payload in events:
        by_channel.setdefault(channel, []).append(payload)
    deployed = rows(
        engine, ModelStageHistory.version, where=ModelStageHistory.to_status == "production"
    )
    assert sorted(e["version"] for e in by_channel["ml:model_deployed"]) == sorted(
        v for (v,) in deployed
    )
    tests = rows(engine, ModelABTest.id, ModelABTest.status)
    assert sorted(e["id"] for e in by_channel["ml:ab_test_created"]) == sorted(
        str(i) for i, _ in tests
    )
    assert sorted(e["id"] for e in by_channel.get("ml:ab_test_completed", [])) == sorted(
        str(i) for i, s in tests if s == "completed"
    )
    logs = rows(engine, ModelTrainingLog.id, ModelTrainingLog.status)
    started = [e["training_log_id"] for e in by_channel["ml:training_started"]]
    completed = [e["training_log_id"] for e in by_channel["ml:training_completed"]]
    assert sorted(started) == sorted(str(i) for i, _ in logs)
    assert sorted(completed) == sorted(str(i) for i, s in logs if s != "running")
    signals = rows(engine, TradingSignal.id, TradingSignal.actual_outcome)
    assert sorted(e["signal_id"] for e in by_channel["ml:new_prediction"]) == sorted(
        str(i) for i, _ in signals
    )
    assert sorted(e["signal_id"] for e in by_channel["ml:signal_outcome"]) == sorted(
        str(i) for i, o in signals if o != "pending"
    )
