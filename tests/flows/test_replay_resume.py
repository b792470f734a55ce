"""A replay interrupted twice (Ctrl-C between moments, then inside a scheduled flow) on
PostgreSQL and Redis resumes to the same result as one left alone."""

from __future__ import annotations

import signal
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from aifx_ml.cli.replay import _stop_on_ctrl_c
from aifx_ml.db.engine import make_engine, session_factory
from aifx_ml.db.models import EventOutbox, ModelABTest, ReplayJob
from aifx_ml.events.consumers import Event, read_stream, stream_end
from aifx_ml.replay.loop import Job, Progress
from aifx_ml.replay.plan import ReplayParams
from flows import replay as replay_flow
from flows.replay import run_to_end
from tests.conftest import REDIS_URL, _postgres_database
from tests.replay_world import (
    assert_one_event_per_change,
    fingerprint,
    rows,
    store_settings,
    three_week_params,
    wall,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_database()


@pytest.mark.long
def test_killed_half_way_on_postgresql_and_redis_it_resumes_to_the_same_result(
    tmp_path: Path,
    postgres_url: str,
    client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    prefect_api: None,
) -> None:
    params = three_week_params()
    # The reference: the same replay, uninterrupted, on the embedded default.
    reference = store_settings(tmp_path / "reference")
    assert run_to_end(reference, params, "three-weeks", wall=wall).status == "completed"

    settings = store_settings(tmp_path / "pg", postgres_url, redis_url=REDIS_URL)
    since = stream_end(client)
    # A Ctrl-C (the real signal, through the CLI's handler) after 150 moments: the replay stops
    # between two moments.
    with _stop_on_ctrl_c() as stopped:
        run = run_to_end(
            settings,
            params,
            "three-weeks",
            wall=wall,
            stop=stopped,
            on_progress=lambda step: _ctrl_c_at(step, 150),
        )
    assert run.status == "interrupted" and run.moments_done == 150
    # Then a hard stop inside a scheduled flow (a second Ctrl-C): started, not done.
    cut = params.start + timedelta(days=8, hours=1)
    jobs = replay_flow.replay_jobs

    def cut_short(p: ReplayParams) -> dict[str, Job]:
        bound = dict(jobs(p))
        daily = bound["daily-incremental"]

        def once(at: datetime) -> Mapping[str, Any]:
            if at == cut:
                raise KeyboardInterrupt
            return daily(at)

        bound["daily-incremental"] = once
        return bound

    monkeypatch.setattr(replay_flow, "replay_jobs", cut_short)
    with pytest.raises(KeyboardInterrupt):
        run_to_end(settings, params, "three-weeks", wall=wall)
    monkeypatch.setattr(replay_flow, "replay_jobs", jobs)
    engine, original = make_engine(settings.db_url), make_engine(reference.db_url)
    try:
        assert rows(engine, ReplayJob.status, where=ReplayJob.scheduled_at == cut) == [("running",)]
        assert run_to_end(settings, params, "three-weeks", wall=wall).status == "completed"
        # Same versions, stages, tests, training runs, signals and outcomes as uninterrupted.
        assert fingerprint(engine) == fingerprint(original)
        assert any(status == "completed" for (status,) in rows(engine, ModelABTest.status))
        # Every event reached the stream, once, and tells the same story as the tables.
        with session_factory(engine)() as session:
            waiting = session.execute(
                select(func.count()).where(EventOutbox.published_at.is_(None))
            ).scalar_one()
        assert waiting == 0
        published = stream_events(client, since)
        assert len({e.id for e in published}) == len(published)
        assert_one_event_per_change(engine, [(e.channel, e.data) for e in published])
    finally:
        engine.dispose()
        original.dispose()


def _ctrl_c_at(step: Progress, moments: int) -> None:
    if step.done == moments:
        signal.raise_signal(signal.SIGINT)


def stream_events(client: redis.Redis, since: str) -> list[Event]:
    events: list[Event] = []
    while True:
        batch, since = read_stream(client, after_id=since, count=5000)
        if not batch:
            return events
        events += batch
