"""A replay's progress in the database: its parameters, its cursor and the jobs it ran, so an
interrupted replay resumes where it stopped and never runs a scheduled flow twice."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, update

from aifx_ml.db.engine import session_factory, transaction
from aifx_ml.db.models import ReplayJob, ReplayRun
from aifx_ml.errors import ConflictError
from aifx_ml.jsonsafe import finite


def open_replay(
    engine: Engine, name: str, params: Mapping[str, Any], now: datetime
) -> tuple[ReplayRun, bool]:
    """The replay called `name` and whether it is new: created when missing, else the stored
    one — which must have been started with the same parameters."""
    with transaction(engine) as session:
        run = session.execute(select(ReplayRun).where(ReplayRun.name == name)).scalar_one_or_none()
        if run is not None:
            if run.params != dict(params):
                changed = sorted(
                    k for k in set(run.params) | set(params) if run.params.get(k) != params.get(k)
                )
                raise ConflictError(
                    f"replay {name!r} was started with other parameters ({', '.join(changed)} "
                    "differ): rerun it with the same ones, or give a new --name"
                )
            if run.status != "completed":
                run.status, run.updated_at, run.error = "running", now, None
            session.flush()
            session.expunge(run)
            return run, False
        run = ReplayRun(
            id=uuid.uuid4(),
            name=name,
            status="running",
            params=dict(params),
            cursor=None,
            moments_done=0,
            started_at=now,
            updated_at=now,
        )
        session.add(run)
        session.flush()
        session.expunge(run)
        return run, True


def get_replay(engine: Engine, name: str) -> ReplayRun | None:
    with session_factory(engine)() as session:
        return session.execute(select(ReplayRun).where(ReplayRun.name == name)).scalar_one_or_none()


def advance(
    engine: Engine, replay_id: uuid.UUID, cursor: datetime, moments_done: int, now: datetime
) -> None:
    """Everything up to and including `cursor` (simulated) is done."""
    with transaction(engine) as session:
        session.execute(
            update(ReplayRun)
            .where(ReplayRun.id == replay_id)
            .values(cursor=cursor, moments_done=moments_done, updated_at=now)
        )


def finish_replay(
    engine: Engine,
    replay_id: uuid.UUID,
    status: str,
    now: datetime,
    *,
    error: str | None = None,
    report: Mapping[str, Any] | None = None,
) -> None:
    values: dict[str, Any] = {"status": status, "updated_at": now, "error": error}
    if status == "completed":
        values["completed_at"] = now
    if report is not None:
        values["report"] = finite(dict(report))
    with transaction(engine) as session:
        session.execute(update(ReplayRun).where(ReplayRun.id == replay_id).values(**values))


def job_status(engine: Engine, replay_id: uuid.UUID, job: str, moment: datetime) -> str | None:
    """'completed' or 'failed' for a job already run at `moment`; 'running' for one cut short
    (it runs again); None for one never started."""
    with session_factory(engine)() as session:
        return session.execute(
            select(ReplayJob.status).where(
                ReplayJob.replay_id == replay_id,
                ReplayJob.job == job,
                ReplayJob.scheduled_at == moment,
            )
        ).scalar_one_or_none()


def start_job(
    engine: Engine, replay_id: uuid.UUID, job: str, moment: datetime, now: datetime
) -> None:
    with transaction(engine) as session:
        row = session.execute(
            select(ReplayJob).where(
                ReplayJob.replay_id == replay_id,
                ReplayJob.job == job,
                ReplayJob.scheduled_at == moment,
            )
        ).scalar_one_or_none()
        if row is None:
            session.add(
                ReplayJob(
                    id=uuid.uuid4(),
                    replay_id=replay_id,
                    job=job,
                    scheduled_at=moment,
                    status="running",
                    started_at=now,
                )
            )
        else:  # cut short last time: this is its second start
            row.status, row.started_at, row.finished_at = "running", now, None


def finish_job(
    engine: Engine,
    replay_id: uuid.UUID,
    job: str,
    moment: datetime,
    now: datetime,
    *,
    result: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> None:
    with transaction(engine) as session:
        session.execute(
            update(ReplayJob)
            .where(
                ReplayJob.replay_id == replay_id,
                ReplayJob.job == job,
                ReplayJob.scheduled_at == moment,
            )
            .values(
                status="failed" if error else "completed",
                result=finite(dict(result)) if result is not None else None,
                error=error,
                finished_at=now,
            )
        )


def replay_jobs(engine: Engine, replay_id: uuid.UUID) -> list[ReplayJob]:
    with session_factory(engine)() as session:
        return list(
            session.execute(
                select(ReplayJob)
                .where(ReplayJob.replay_id == replay_id)
                .order_by(ReplayJob.scheduled_at, ReplayJob.started_at)
            ).scalars()
        )
