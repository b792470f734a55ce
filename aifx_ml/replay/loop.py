"""The replay loop: a simulated clock advanced candle close by candle close over history.

At each moment the candles that just closed are imported, signals whose horizon has elapsed
are labeled, the flows scheduled up to that moment run (the same flow code the Prefect
deployments run, passed in as `jobs`), and every series whose candle just closed asks the
prediction service what to do (A/B routing included). The cursor is committed after each
moment, and every job is recorded, so an interrupted replay resumes without duplicates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select

from aifx_ml.abtest.store import active_test
from aifx_ml.data.importer import import_validated
from aifx_ml.data.validation import ValidatedCandles
from aifx_ml.db.engine import session_factory
from aifx_ml.db.models import ReplayRun, TradingSignal
from aifx_ml.errors import NotFoundError
from aifx_ml.labeling.store import label_pending
from aifx_ml.markets import step_offset
from aifx_ml.replay import state
from aifx_ml.replay.plan import ReplayParams
from aifx_ml.replay.schedule import SCHEDULES, due_jobs
from aifx_ml.serving.predict import PredictionService, PredictRequest

Job = Callable[[datetime], Mapping[str, Any]]
CANDLE_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
_NONE_REJECTED = pd.DataFrame(columns=[*CANDLE_COLUMNS, "reason"])
Series = tuple[str, str]  # (pair, timeframe)


class SimulatedClock:
    """The replay's "now": every service that takes a clock is given this one."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


@dataclass(frozen=True)
class ReplaySettings:
    """How the loop behaves (stored with the replay's parameters)."""

    model_type: str = "lstm"
    label_threshold: float = ReplayParams.label_threshold  # a fraction
    ab_look_hours: int = ReplayParams.ab_look_hours  # look at an active A/B test every N hours


@dataclass
class Progress:
    """What one moment did, for the caller to show."""

    moment: datetime
    done: int
    total: int
    imported: int = 0
    labeled: int = 0
    predicted: int = 0
    jobs: list[tuple[str, Mapping[str, Any] | str]] = field(default_factory=list)


@dataclass(frozen=True)
class ReplayOutcome:
    status: str  # completed | interrupted
    moments: int
    failed_jobs: int


def arrivals(candles: Mapping[Series, pd.DataFrame]) -> pd.DataFrame:
    """Every candle with the moment it becomes known (its close): pair, timeframe, timestamp,
    open, high, low, close, volume, closes_at — sorted by closes_at."""
    frames = []
    for (pair, timeframe), frame in candles.items():
        part = frame.copy()
        part["timestamp"] = pd.to_datetime(part["timestamp"], utc=True)
        part["pair"], part["timeframe"] = pair, timeframe
        part["closes_at"] = part["timestamp"] + step_offset(timeframe)
        frames.append(part)
    columns = ["pair", "timeframe", *CANDLE_COLUMNS]
    return (
        pd.concat(frames, ignore_index=True)
        .reindex(columns=[*columns, "closes_at"])
        .sort_values(["closes_at", "pair", "timeframe"], kind="stable")
        .reset_index(drop=True)
    )


def timeline(
    known: pd.DataFrame, start: datetime, end: datetime, settings: ReplaySettings
) -> list[tuple[datetime, list[str]]]:
    """(moment, jobs due) for every candle close and every scheduled firing in (start, end]."""
    closes = known.loc[
        (known["closes_at"] > pd.Timestamp(start)) & (known["closes_at"] <= pd.Timestamp(end)),
        "closes_at",
    ]
    moments: dict[datetime, list[str]] = {m.to_pydatetime(): [] for m in closes.unique()}
    for moment, job in due_jobs(start, end, SCHEDULES):
        if job == "ab-evaluation" and moment.hour % settings.ab_look_hours:
            continue
        moments.setdefault(moment, []).append(job)
    return sorted(moments.items())


def run_replay(
    engine: Engine,
    run: ReplayRun,
    candles: Mapping[Series, pd.DataFrame],
    jobs: Mapping[str, Job],
    service: PredictionService,
    clock: SimulatedClock,
    *,
    start: datetime,
    end: datetime,
    settings: ReplaySettings,
    wall: Callable[[], datetime],
    stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[Progress], None] = lambda _: None,
    relay: Callable[[], None] = lambda: None,
) -> ReplayOutcome:
    """Replay (start, end] from the replay's cursor on; history before `start` is imported
    first. Returns when done or, between two moments, when `stop()` says so."""
    known = arrivals(candles)
    plan = timeline(known, start, end, settings)
    cursor = run.cursor or start
    if run.cursor is None:
        clock.moment = start
        _import(engine, known[known["closes_at"] <= pd.Timestamp(start)], start, run.name)
    series_at = {m: g for m, g in known.groupby("closes_at", sort=True)}
    done = sum(1 for moment, _ in plan if moment <= cursor)
    failed = 0
    resuming = run.cursor is not None
    for moment, due in plan:
        if moment <= cursor:
            continue
        if stop():
            return ReplayOutcome("interrupted", done, failed)
        clock.moment = moment
        step = Progress(moment, done + 1, len(plan))
        arrived = series_at.get(pd.Timestamp(moment))
        if arrived is not None:
            step.imported = _import(engine, arrived, moment, run.name)
        step.labeled = label_pending(engine, moment, settings.label_threshold).labeled
        for job in due:
            outcome = _run_job(engine, run, job, moment, jobs, settings, wall)
            if outcome is not None:
                step.jobs.append((job, outcome))
                failed += isinstance(outcome, str)
                service.server.invalidate()  # a job may have changed who serves
        if arrived is not None:
            step.predicted = _predict(engine, service, arrived, moment, settings, resuming)
        resuming = False
        relay()
        done += 1
        state.advance(engine, run.id, moment, done, wall())
        on_progress(step)
    return ReplayOutcome("completed", done, failed)


def _import(engine: Engine, rows: pd.DataFrame, as_of: datetime, name: str) -> int:
    """Store the candles that arrived (already checked: see `plan.replay_candles`) the way an
    import does — indicators, gaps, `ml:new_market_data` — minus checking them once more."""
    inserted = 0
    for (pair, timeframe), frame in rows.groupby(["pair", "timeframe"], sort=True):
        valid = frame[list(CANDLE_COLUMNS)].reset_index(drop=True)
        valid.index = pd.RangeIndex(1, len(valid) + 1, name="row")
        checked = ValidatedCandles(valid, _NONE_REJECTED, duplicates=0)
        report = import_validated(
            engine,
            checked,
            str(pair),
            str(timeframe),
            as_of,
            f"replay:{name}",
            len(valid),
            valid,
        )
        inserted += report.inserted
    return inserted


def _run_job(
    engine: Engine,
    run: ReplayRun,
    job: str,
    moment: datetime,
    jobs: Mapping[str, Job],
    settings: ReplaySettings,
    wall: Callable[[], datetime],
) -> Mapping[str, Any] | str | None:
    """The job's result, its error text, or None when it did not run (already done, not
    configured, or an A/B look with no test active)."""
    if job not in jobs or state.job_status(engine, run.id, job, moment) in ("completed", "failed"):
        return None
    if job == "ab-evaluation" and active_test(engine, settings.model_type) is None:
        return None  # the hourly look has nothing to look at: not worth a flow run
    state.start_job(engine, run.id, job, moment, wall())
    try:
        result = dict(jobs[job](moment))
    except Exception as exc:  # noqa: BLE001  (recorded; production's next run would come too)
        error = f"{type(exc).__name__}: {exc}"
        state.finish_job(engine, run.id, job, moment, wall(), error=error)
        return error
    state.finish_job(engine, run.id, job, moment, wall(), result=result)
    return result


def _predict(
    engine: Engine,
    service: PredictionService,
    arrived: pd.DataFrame,
    moment: datetime,
    settings: ReplaySettings,
    resuming: bool,
) -> int:
    """Ask for a signal on every series whose candle just closed (once: a resumed moment skips
    the series already answered before the interruption)."""
    series: Sequence[tuple[str, str]] = sorted(
        set(zip(arrived["pair"], arrived["timeframe"], strict=True))
    )
    if resuming:
        answered = _answered(engine, moment)
        series = [s for s in series if s not in answered]
    requests = [
        PredictRequest(
            pair,
            timeframe,
            model_type=settings.model_type,
            routing_key=f"{pair}|{timeframe}|{moment:%Y-%m-%dT%H:%M}",
        )
        for pair, timeframe in series
    ]
    if not requests:
        return 0
    try:
        return len(service.predict(requests, wait=True))
    except NotFoundError:
        return 0  # nothing in Production yet: the first model has not been trained


def _answered(engine: Engine, moment: datetime) -> set[tuple[str, str]]:
    with session_factory(engine)() as session:
        rows = session.execute(
            select(TradingSignal.pair, TradingSignal.timeframe).where(
                TradingSignal.created_at == moment
            )
        ).all()
    return {(r.pair, r.timeframe) for r in rows}
