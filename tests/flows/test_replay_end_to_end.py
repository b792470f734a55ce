"""The whole loop over history: the session's six-week replay through the real flows, checked
from the database and MLflow (tests/flows/test_replay_resume.py interrupts and resumes one).

Every test here reads the session's replay (`replay_store`): under `pytest -n`, the tests of
this module and of tests/notebooks run on one worker, so the replay runs once (tests/conftest.py).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from sqlalchemy import Engine

from aifx_ml.db.engine import make_engine
from aifx_ml.db.models import (
    EventOutbox,
    ModelABTest,
    ModelTrainingLog,
    ModelVersion,
    ReplayJob,
    TradingSignal,
)
from aifx_ml.events.schemas import parse_payload
from aifx_ml.models.store import number_of, registered_name
from aifx_ml.replay.plan import ReplayParams
from registry.mlflow_store import MLFLOW_STAGES
from tests.replay_world import ReplayStore, assert_one_event_per_change, rows

pytestmark = pytest.mark.integration


def days(params: ReplayParams, hour: int, weekday: int | None = None) -> list[datetime]:
    first = params.start.replace(hour=hour)
    moments = [first + timedelta(days=i) for i in range((params.end - params.start).days + 1)]
    return [
        m
        for m in moments
        if params.start < m <= params.end and (weekday is None or m.weekday() == weekday)
    ]


@pytest.fixture(scope="module")
def store(replay_store: ReplayStore) -> Iterator[Engine]:
    engine = make_engine(replay_store.settings.db_url)
    yield engine
    engine.dispose()


def test_daily_and_weekly_runs_happened_on_their_simulated_days(
    replay_store: ReplayStore, store: Engine
) -> None:
    params = replay_store.params
    daily, sundays = set(days(params, 1)), set(days(params, 1, weekday=6))
    firsts = {m for m in days(params, 2) if m.day == 1}
    jobs = rows(store, ReplayJob.job, ReplayJob.scheduled_at, ReplayJob.status)
    assert not [j for j in jobs if j.status != "completed"]
    ran = {(job, at) for job, at, _ in jobs}
    assert {at for job, at in ran if job == "daily-incremental"} == daily
    assert {at for job, at in ran if job == "weekly-full"} == sundays and len(sundays) == 6
    assert (
        {at for job, at in ran if job == "monthly-evaluation"}
        == firsts
        == {datetime(2026, 2, 1, 2, tzinfo=UTC)}
    )
    # Every training run is recorded at the moment its flow was scheduled: full ones on Sundays
    # (and the daily fallback while nothing is in Production, and a monthly retrain), the
    # incremental ones at 01:00.
    logs = rows(store, ModelTrainingLog.training_type, ModelTrainingLog.started_at)
    assert {at for _, at in logs} <= daily | firsts
    assert sundays <= {at for kind, at in logs if kind == "full"}
    assert {at for kind, at in logs if kind == "incremental"} <= daily


def test_every_version_has_its_mlflow_twin_in_the_same_stage(
    replay_store: ReplayStore, store: Engine
) -> None:
    settings = replay_store.settings
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    versions = [r[0] for r in rows(store, ModelVersion)]
    assert len(versions) >= 5
    stages = Counter()
    for row in versions:
        twin = client.get_model_version(registered_name(row.model_type), number_of(row))
        assert twin.current_stage == MLFLOW_STAGES[row.status], row.version
        stages[row.status] += 1
    assert stages["production"] == 1


def test_a_test_was_created_and_decided_and_signals_were_labeled(
    replay_store: ReplayStore, store: Engine
) -> None:
    tests = rows(store, ModelABTest.status, ModelABTest.winner)
    assert tests and any(status == "completed" for status, _ in tests)
    outcomes = Counter(o for (o,) in rows(store, TradingSignal.actual_outcome))
    assert outcomes["win"] > 0 and outcomes["loss"] > 0
    # Whatever is still pending was created within the last horizon (4 h for 1h candles).
    pending = rows(store, TradingSignal.created_at, where=TradingSignal.actual_outcome == "pending")
    end = replay_store.params.end
    assert all(pd.Timestamp(at) > pd.Timestamp(end) - timedelta(hours=4) for (at,) in pending)
    routed = rows(store, TradingSignal.ab_test_id, where=TradingSignal.ab_test_id.is_not(None))
    assert len(routed) > 30


def test_every_state_change_has_exactly_one_event_waiting(
    replay_store: ReplayStore, store: Engine
) -> None:
    # No Redis on the embedded default: every event waits in the outbox, none was lost.
    stored = rows(store, EventOutbox.channel, EventOutbox.payload)
    events = [(c, p["data"]) for c, p in stored]
    assert_one_event_per_change(store, events)
    # ...and each is what its channel's published schema says, at the version it names.
    for channel, message in stored:
        parsed = parse_payload(channel, message["data"], message["schema_version"])
        assert parsed.channel == channel


def test_the_report_answers_the_key_question(replay_store: ReplayStore, store: Engine) -> None:
    settings = replay_store.settings
    from aifx_ml.replay.state import get_replay  # noqa: PLC0415

    run = get_replay(store, replay_store.name)
    assert run is not None and run.status == "completed" and run.report
    report = json.loads(Path(run.report["json"]).read_text())
    assert "<svg" in Path(run.report["html"]).read_text()
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    logged = client.get_run(run.report["mlflow_run_id"])
    assert logged.data.metrics
    after = report["verdict"]["after_change"]
    # The market turned just before the start, so the first model learned the old habit: the
    # continuously learned model is ahead of it frozen, by a margin whose 95% interval excludes
    # zero (seed fixed).
    assert after["continuous_ahead"] is True, after
