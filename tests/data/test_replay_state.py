"""A replay's progress in a real database: one row per replay, checked against its parameters
on resume, its cursor, and one row per scheduled job however often it is started."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, select

from aifx_ml.db.engine import transaction
from aifx_ml.db.models import ReplayJob, ReplayRun
from aifx_ml.errors import ConflictError
from aifx_ml.replay.plan import ReplayParams
from aifx_ml.replay.state import (
    advance,
    finish_job,
    finish_replay,
    get_replay,
    job_status,
    open_replay,
    replay_jobs,
    start_job,
)

pytestmark = pytest.mark.integration

NAME = "replay-test"
MOMENT = datetime(2026, 1, 12, 1, 0, tzinfo=UTC)  # simulated: a Monday's daily slot


def stored_params(**changes: Any) -> dict[str, Any]:
    """Parameters as the CLI stores them."""
    values: dict[str, Any] = {
        "pairs": ("EUR/USD", "GBP/USD"),
        "timeframes": ("1h",),
        "start": datetime(2026, 1, 12, tzinfo=UTC),
        "end": datetime(2026, 2, 2, tzinfo=UTC),
    }
    values.update(changes)
    return ReplayParams(**values).as_dict()


def test_open_creates_the_run_once_then_returns_it(engine: Engine, as_of: datetime) -> None:
    run, new = open_replay(engine, NAME, stored_params(), as_of)
    assert new
    assert (run.status, run.cursor, run.moments_done) == ("running", None, 0)
    assert run.params == stored_params()

    again, new = open_replay(engine, NAME, stored_params(), as_of + timedelta(minutes=5))
    assert not new
    assert again.id == run.id
    stored = get_replay(engine, NAME)
    assert stored is not None and stored.id == run.id
    assert get_replay(engine, "another") is None
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ReplayRun)).scalar() == 1


def test_reopening_with_other_parameters_names_them(engine: Engine, as_of: datetime) -> None:
    open_replay(engine, NAME, stored_params(), as_of)
    changed = stored_params(seed=8, label_threshold=0.002)
    with pytest.raises(ConflictError, match=r"\(label_threshold, seed differ\)") as caught:
        open_replay(engine, NAME, changed, as_of)
    assert repr(NAME) in str(caught.value)
    assert "--name" in str(caught.value)
    stored = get_replay(engine, NAME)
    assert stored is not None and stored.params == stored_params()  # untouched


def test_a_parameter_only_one_side_has_is_named(engine: Engine, as_of: datetime) -> None:
    open_replay(engine, NAME, stored_params(), as_of)
    with pytest.raises(ConflictError, match=r"\(extra differ\)"):
        open_replay(engine, NAME, {**stored_params(), "extra": 1}, as_of)


@pytest.mark.parametrize("ended", ["interrupted", "failed"])
def test_an_unfinished_run_reopened_is_running_again(
    engine: Engine, as_of: datetime, ended: str
) -> None:
    run, _ = open_replay(engine, NAME, stored_params(), as_of)
    advance(engine, run.id, MOMENT, 3, as_of)
    finish_replay(engine, run.id, ended, as_of, error="stopped" if ended == "failed" else None)
    later = as_of + timedelta(hours=1)
    again, new = open_replay(engine, NAME, stored_params(), later)
    assert not new
    assert (again.status, again.error, again.updated_at) == ("running", None, later)
    assert (again.cursor, again.moments_done) == (MOMENT, 3)  # resumes where it stopped
    stored = get_replay(engine, NAME)
    assert stored is not None and stored.status == "running"


def test_a_completed_run_stays_completed(engine: Engine, as_of: datetime) -> None:
    run, _ = open_replay(engine, NAME, stored_params(), as_of)
    finish_replay(engine, run.id, "completed", as_of, report={"gain": float("nan"), "n": 2})
    again, new = open_replay(engine, NAME, stored_params(), as_of + timedelta(hours=1))
    assert not new
    assert (again.status, again.completed_at, again.updated_at) == ("completed", as_of, as_of)
    assert again.report == {"gain": None, "n": 2}


def test_advance_stores_the_cursor(engine: Engine, as_of: datetime) -> None:
    run, _ = open_replay(engine, NAME, stored_params(), as_of)
    advance(engine, run.id, MOMENT, 1, as_of + timedelta(seconds=1))
    advance(engine, run.id, MOMENT + timedelta(hours=1), 2, as_of + timedelta(seconds=2))
    stored = get_replay(engine, NAME)
    assert stored is not None
    assert stored.cursor == MOMENT + timedelta(hours=1)
    assert stored.cursor.tzinfo is not None
    assert stored.moments_done == 2
    assert stored.updated_at == as_of + timedelta(seconds=2)


def test_a_job_runs_then_completes_with_its_result(engine: Engine, as_of: datetime) -> None:
    run, _ = open_replay(engine, NAME, stored_params(), as_of)
    assert job_status(engine, run.id, "weekly-full", MOMENT) is None
    start_job(engine, run.id, "weekly-full", MOMENT, as_of)
    assert job_status(engine, run.id, "weekly-full", MOMENT) == "running"
    # Another moment, and another job at this moment, are other jobs.
    assert job_status(engine, run.id, "weekly-full", MOMENT + timedelta(days=7)) is None
    assert job_status(engine, run.id, "daily-incremental", MOMENT) is None

    result = {
        "status": "completed",
        "version": "lstm-v1",
        "metrics": {"auc": float("nan"), "accuracy": 0.56, "loss": float("inf")},
        "curve": [0.7, float("nan")],
    }
    finish_job(engine, run.id, "weekly-full", MOMENT, as_of + timedelta(minutes=1), result=result)
    assert job_status(engine, run.id, "weekly-full", MOMENT) == "completed"
    (job,) = replay_jobs(engine, run.id)
    assert job.result == {
        "status": "completed",
        "version": "lstm-v1",
        "metrics": {"auc": None, "accuracy": 0.56, "loss": None},
        "curve": [0.7, None],
    }
    assert (job.error, job.started_at, job.finished_at) == (
        None,
        as_of,
        as_of + timedelta(minutes=1),
    )


def test_a_job_that_raised_is_failed_with_its_error(engine: Engine, as_of: datetime) -> None:
    run, _ = open_replay(engine, NAME, stored_params(), as_of)
    start_job(engine, run.id, "monthly-evaluation", MOMENT, as_of)
    finish_job(engine, run.id, "monthly-evaluation", MOMENT, as_of, error="ValueError: boom")
    assert job_status(engine, run.id, "monthly-evaluation", MOMENT) == "failed"
    (job,) = replay_jobs(engine, run.id)
    assert (job.status, job.error, job.result) == ("failed", "ValueError: boom", None)


def test_a_job_cut_short_starts_again_in_its_row(engine: Engine, as_of: datetime) -> None:
    run, _ = open_replay(engine, NAME, stored_params(), as_of)
    start_job(engine, run.id, "daily-incremental", MOMENT, as_of)
    restarted = as_of + timedelta(hours=2)
    start_job(engine, run.id, "daily-incremental", MOMENT, restarted)
    (job,) = replay_jobs(engine, run.id)
    assert (job.status, job.started_at, job.finished_at) == ("running", restarted, None)
    finish_job(engine, run.id, "daily-incremental", MOMENT, restarted, result={"status": "ok"})
    (job,) = replay_jobs(engine, run.id)
    assert job.status == "completed"


def test_jobs_are_listed_in_simulated_order(engine: Engine, as_of: datetime) -> None:
    run, _ = open_replay(engine, NAME, stored_params(), as_of)
    other, _ = open_replay(engine, "another", stored_params(seed=8), as_of)
    started = [
        (run.id, "weekly-full", MOMENT + timedelta(days=6)),
        (run.id, "daily-incremental", MOMENT + timedelta(days=1)),
        (other.id, "daily-incremental", MOMENT + timedelta(hours=12)),
        (run.id, "daily-incremental", MOMENT),
        (run.id, "ab-evaluation", MOMENT),  # same moment, started after the daily run
    ]
    for i, (replay_id, job, moment) in enumerate(started):
        start_job(engine, replay_id, job, moment, as_of + timedelta(seconds=i))
    listed = [(j.job, j.scheduled_at) for j in replay_jobs(engine, run.id)]
    assert listed == [
        ("daily-incremental", MOMENT),
        ("ab-evaluation", MOMENT),
        ("daily-incremental", MOMENT + timedelta(days=1)),
        ("weekly-full", MOMENT + timedelta(days=6)),
    ]
    assert [j.job for j in replay_jobs(engine, other.id)] == ["daily-incremental"]


def test_deleting_a_run_deletes_its_jobs(engine: Engine, as_of: datetime) -> None:
    run, _ = open_replay(engine, NAME, stored_params(), as_of)
    other, _ = open_replay(engine, "another", stored_params(seed=8), as_of)
    for replay_id in (run.id, other.id):
        start_job(engine, replay_id, "weekly-full", MOMENT, as_of)
    with transaction(engine) as session:
        session.execute(delete(ReplayRun).where(ReplayRun.id == run.id))
    assert replay_jobs(engine, run.id) == []
    with engine.connect() as conn:
        assert conn.execute(select(ReplayJob.replay_id)).scalars().all() == [other.id]
