"""Health checks: are the stores reachable, are training, events and market data on time.

Each check takes what it looks at (engine, Redis URL, MLflow client) and the clock, and returns
a small record. `health_report` runs them side by side under one deadline, so the answer comes
within a few seconds even when a dependency hangs. `overall` turns them into one status: a
reachable-store failure is `unhealthy` (HTTP 503), anything late is `degraded` (still 200).
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeVar

import pandas as pd
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from aifx_ml.db.models import TRAINING_TYPES, MarketData, ModelTrainingLog
from aifx_ml.domain import AGEING_NOTICE, Ageing, SignalPolicy, TrainingStatus, TrainingType
from aifx_ml.events.relay import outbox_status, redis_client
from aifx_ml.markets import missing_candles
from aifx_ml.models.store import ModelStore
from aifx_ml.models.versions import production_ages

Overall = Literal["healthy", "degraded", "unhealthy"]
DependencyStatus = Literal["up", "down", "not_configured"]
FreshnessStatus = Literal["ok", "stale", "unknown"]
BacklogStatus = Literal["ok", "backlog", "unknown"]

CONNECT_TIMEOUT = 1.5  # seconds, per dependency
DEADLINE = 3.0  # seconds for the whole report
# A run must have finished this recently: the daily schedule plus slack, the weekly plus a day.
TRAINING_MAX_AGE: Mapping[str, timedelta] = {
    TrainingType.INCREMENTAL: timedelta(hours=26),
    TrainingType.FULL: timedelta(days=8),
}
OUTBOX_MAX_PENDING = 10_000
OUTBOX_MAX_AGE = timedelta(minutes=15)
STALE_BARS = 2  # as serving: inputs whose newest candle closed more than two bars ago


@dataclass(frozen=True)
class DependencyCheck:
    """Whether a store answers (database, Redis, MLflow)."""

    name: str
    status: DependencyStatus
    detail: str
    latency_ms: float | None = None


@dataclass(frozen=True)
class TrainingFreshness:
    """When a training type last ran to an end (completed, or skipped with nothing to train)."""

    training_type: str
    status: FreshnessStatus
    detail: str
    max_age_seconds: float
    last_completed_at: datetime | None = None
    last_run_at: datetime | None = None
    last_run_status: str | None = None
    age_seconds: float | None = None


@dataclass(frozen=True)
class OutboxBacklog:
    """How much waits in the event outbox, and for how long."""

    status: BacklogStatus
    detail: str
    max_pending: int
    max_age_seconds: float
    pending: int | None = None
    oldest_age_seconds: float | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class StaleSeries:
    """A (pair, timeframe) whose newest candle closed more than `STALE_BARS` bars ago."""

    pair: str
    timeframe: str
    newest: datetime
    age_seconds: float


@dataclass(frozen=True)
class MarketDataFreshness:
    """Which series have fallen behind, the FX weekend close aside."""

    status: FreshnessStatus
    detail: str
    series: int = 0
    stale: tuple[StaleSeries, ...] = ()


@dataclass(frozen=True)
class ProductionFreshness:
    """How close a Production version is to the staleness limit, past which it answers hold;
    `candidate` is the challenger of its running test, if one runs."""

    model_type: str
    version: str
    status: Ageing  # ok | ageing (within the notice of the limit) | stale (past it)
    detail: str
    max_age_seconds: float
    trained_at: datetime
    age_seconds: float
    candidate: str | None
    late: bool  # stale, or ageing with nothing under test (`ProductionAge.late`): degrades


Check = DependencyCheck | TrainingFreshness | OutboxBacklog | MarketDataFreshness


@dataclass(frozen=True)
class HealthReport:
    """Every check, and the one status they add up to."""

    status: Overall
    checked_at: datetime
    database: DependencyCheck
    redis: DependencyCheck
    mlflow: DependencyCheck
    training: tuple[TrainingFreshness, ...]
    outbox: OutboxBacklog
    market_data: MarketDataFreshness
    production: tuple[ProductionFreshness, ...] = ()

    @property
    def http_status(self) -> int:
        return 503 if self.status == "unhealthy" else 200


def overall(checks: Iterable[Check | ProductionFreshness]) -> Overall:
    """`unhealthy` if a configured store is down; `degraded` if anything is late (a Production
    model too: stale, or ageing with no candidate under test); else healthy.

    `unknown` (nothing to judge yet, or the database is away) and `not_configured` (no Redis:
    events wait in the outbox by design) change nothing.
    """
    seen = list(checks)
    if any(isinstance(c, DependencyCheck) and c.status == "down" for c in seen):
        return "unhealthy"
    if any(
        c.late if isinstance(c, ProductionFreshness) else c.status in ("stale", "backlog")
        for c in seen
    ):
        return "degraded"
    return "healthy"


# --- stores ------------------------------------------------------------------------------


def check_database(engine: Engine) -> DependencyCheck:
    """`SELECT 1` through the engine's pool (pre-ping replaces connections a restart broke)."""
    started = time.perf_counter()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return DependencyCheck("database", "down", error_line(exc))
    return _up("database", f"{engine.dialect.name} answers", started)


def check_redis(url: str | None, timeout: float = CONNECT_TIMEOUT) -> DependencyCheck:
    """PING on a fresh fail-fast client; no URL means events wait in the outbox."""
    if url is None:
        return DependencyCheck(
            "redis", "not_configured", "AIFX_REDIS_URL is unset: events wait in the outbox"
        )
    started = time.perf_counter()
    client = redis_client(url, timeout=timeout)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001  (any failure means unreachable; say which)
        return DependencyCheck("redis", "down", error_line(exc))
    finally:
        client.close()
    return _up("redis", "PING answered", started)


def check_mlflow(store: ModelStore, timeout: float = CONNECT_TIMEOUT) -> DependencyCheck:
    """A tracking server's `/health` (MLflow's own REST calls retry for minutes), or one
    call to a local model store."""
    uri = str(store.uri)
    started = time.perf_counter()
    try:
        if uri.startswith(("http://", "https://")):
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as reply:
                reply.read(64)
            detail = "tracking server answers /health"
        else:
            store.ping()
            detail = f"{uri.split(':', 1)[0]} tracking store answers"
    except Exception as exc:  # noqa: BLE001  (any failure means unreachable; say which)
        return DependencyCheck("mlflow", "down", error_line(exc))
    return _up("mlflow", detail, started)


def _up(name: str, detail: str, started: float) -> DependencyCheck:
    return DependencyCheck(name, "up", detail, round((time.perf_counter() - started) * 1e3, 2))


# --- schedules, events, data ---------------------------------------------------------------


def training_freshness(
    engine: Engine, now: datetime, max_age: Mapping[str, timedelta] = TRAINING_MAX_AGE
) -> tuple[TrainingFreshness, ...]:
    """Per training type: did a run end (completed, or skipped for lack of data, as the daily
    run is over the FX weekend) within its schedule's allowance? A failed run does not count.
    A type that never ran is `unknown` (a new install), not late."""
    log = ModelTrainingLog
    finished = func.coalesce(log.completed_at, log.started_at)
    with engine.connect() as conn:
        newest = {
            (row.training_type, row.status): row.at
            for row in conn.execute(
                select(log.training_type, log.status, func.max(finished).label("at")).group_by(
                    log.training_type, log.status
                )
            )
        }
    return tuple(
        _freshness(kind, newest, now, max_age[kind]) for kind in TRAINING_TYPES if kind in max_age
    )


def _freshness(
    kind: str, newest: Mapping[tuple[str, str], datetime], now: datetime, limit: timedelta
) -> TrainingFreshness:
    runs = {status: at for (t, status), at in newest.items() if t == kind and at is not None}
    limit_s = limit.total_seconds()
    if not runs:
        return TrainingFreshness(kind, "unknown", f"no {kind} run yet", limit_s)
    last_status, last_at = max(runs.items(), key=lambda item: item[1])
    ended = [
        at
        for status, at in runs.items()
        if status in (TrainingStatus.COMPLETED, TrainingStatus.SKIPPED)
    ]
    ended_at = max(ended, default=None)
    age = None if ended_at is None else (now - ended_at).total_seconds()
    fresh = age is not None and age <= limit_s
    if ended_at is None:
        detail = f"no {kind} run has ended well yet (the newest {last_status})"
    else:
        detail = f"last {kind} run ended {_hours(age or 0.0)} ago (limit {_hours(limit_s)})"
    if last_status == TrainingStatus.FAILED:
        detail += f"; the newest {kind} run failed"
    return TrainingFreshness(
        kind,
        "ok" if fresh else "stale",
        detail,
        limit_s,
        last_completed_at=runs.get(TrainingStatus.COMPLETED),
        last_run_at=last_at,
        last_run_status=last_status,
        age_seconds=age,
    )


def outbox_backlog(
    engine: Engine,
    now: datetime,
    max_pending: int = OUTBOX_MAX_PENDING,
    max_age: timedelta = OUTBOX_MAX_AGE,
    *,
    relay_configured: bool = True,
) -> OutboxBacklog:
    """Too many events waiting, or the oldest waiting too long, is a backlog; without a Redis
    they wait by design, so it is only reported."""
    found = outbox_status(engine)
    age = (
        None
        if found.oldest_created_at is None
        else max(0.0, (now - found.oldest_created_at).total_seconds())
    )
    limit_s = max_age.total_seconds()
    over = found.pending > max_pending or (age is not None and age > limit_s)
    detail = f"{found.pending} pending" + ("" if age is None else f", oldest {_hours(age)} old")
    if not relay_configured and found.pending:
        detail += " (waiting for a Redis: AIFX_REDIS_URL is unset)"
    return OutboxBacklog(
        status="backlog" if over and relay_configured else "ok",
        detail=detail,
        max_pending=max_pending,
        max_age_seconds=limit_s,
        pending=found.pending,
        oldest_age_seconds=age,
        last_error=found.last_error,
    )


def stale_market_data(
    engine: Engine, now: datetime, max_bars: int = STALE_BARS
) -> MarketDataFreshness:
    """Series whose newest candle closed more than `max_bars` trading bars before `now`;
    bars that fall in the FX weekend close are not expected, so Monday morning is not late."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(MarketData.pair, MarketData.timeframe, func.max(MarketData.timestamp)).group_by(
                MarketData.pair, MarketData.timeframe
            )
        ).all()
    if not rows:
        return MarketDataFreshness("unknown", "no market data yet")
    moment = pd.Timestamp(now)
    stale = tuple(
        StaleSeries(pair, timeframe, newest, (now - newest).total_seconds())
        for pair, timeframe, newest in sorted(rows)
        if missing_candles(pd.Timestamp(newest), timeframe, moment, max_bars + 1) > max_bars
    )
    detail = f"{len(stale)} of {len(rows)} series more than {max_bars} bars behind"
    return MarketDataFreshness("stale" if stale else "ok", detail, len(rows), stale)


def production_freshness(
    engine: Engine,
    now: datetime,
    policy: SignalPolicy | None = None,
    notice: timedelta = AGEING_NOTICE,
) -> tuple[ProductionFreshness, ...]:
    """Each Production version's age against serving's staleness limit (`policy`)."""
    policy = policy or SignalPolicy()
    limit = policy.max_model_age
    found = []
    for model in production_ages(engine):
        age = now - model.trained_at
        state = policy.ageing(model.trained_at, now, notice)
        detail = f"{model.version} trained {_hours(age.total_seconds())} ago"
        if state == Ageing.STALE:
            detail += f", past the {_hours(limit.total_seconds())} limit: every answer is hold"
        else:
            detail += f", stale in {_hours((limit - age).total_seconds())}"
        if state != Ageing.OK:
            detail += (
                f"; {model.candidate} is under test against it"
                if model.candidate
                else "; no candidate under test"
            )
        found.append(
            ProductionFreshness(
                model.model_type,
                model.version,
                state,
                detail,
                limit.total_seconds(),
                model.trained_at,
                age.total_seconds(),
                model.candidate,
                model.late(state),
            )
        )
    return tuple(found)


# --- all together --------------------------------------------------------------------------

T = TypeVar("T")


def health_report(
    engine: Engine,
    redis_url: str | None,
    model_store: ModelStore,
    now: datetime,
    *,
    deadline: float = DEADLINE,
    timeout: float = CONNECT_TIMEOUT,
) -> HealthReport:
    """Run every check side by side; one that has not answered by the deadline is `down`
    (a store) or `unknown` (a schedule), so the report never waits on a hung dependency."""
    pool = ThreadPoolExecutor(max_workers=7, thread_name_prefix="aifx-health")
    try:
        database = pool.submit(check_database, engine)
        redis = pool.submit(check_redis, redis_url, timeout)
        mlflow = pool.submit(check_mlflow, model_store, timeout)
        training = pool.submit(training_freshness, engine, now)
        outbox = pool.submit(outbox_backlog, engine, now, relay_configured=redis_url is not None)
        market = pool.submit(stale_market_data, engine, now)
        serving = pool.submit(production_freshness, engine, now)
        until = time.monotonic() + deadline
        checks = (
            _await(database, until, lambda why: DependencyCheck("database", "down", why)),
            _await(redis, until, lambda why: DependencyCheck("redis", "down", why)),
            _await(mlflow, until, lambda why: DependencyCheck("mlflow", "down", why)),
            _await(training, until, _unknown_training),
            _await(
                outbox,
                until,
                lambda why: OutboxBacklog(
                    "unknown", why, OUTBOX_MAX_PENDING, OUTBOX_MAX_AGE.total_seconds()
                ),
            ),
            _await(market, until, lambda why: MarketDataFreshness("unknown", why)),
        )
        models = _await(serving, until, lambda why: ())  # unknown: the database check says why
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    db, rd, ml, tr, ob, md = checks
    return HealthReport(
        overall([db, rd, ml, *tr, ob, md, *models]), now, db, rd, ml, tr, ob, md, models
    )


def _await(future: Future[T], until: float, fallback: Callable[[str], T]) -> T:
    """The check's result, or `fallback(reason)` if it missed the deadline or the database
    failed under it (the database check itself says so)."""
    try:
        return future.result(timeout=max(0.0, until - time.monotonic()))
    except TimeoutError:
        return fallback("no answer before the health check's deadline")
    except SQLAlchemyError as exc:
        return fallback(f"database unreachable: {error_line(exc)}")


def _unknown_training(why: str) -> tuple[TrainingFreshness, ...]:
    return tuple(
        TrainingFreshness(kind, "unknown", why, limit.total_seconds())
        for kind, limit in TRAINING_MAX_AGE.items()
    )


def error_line(exc: BaseException) -> str:
    """One line that says what failed, without a connection URL's password."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"[:300]


def _hours(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
