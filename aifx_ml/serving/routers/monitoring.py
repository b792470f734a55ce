"""`/api/v1/monitoring/*` (training history, model performance, health) and `/metrics`.

Health answers 503, with the same body, when a configured store is unreachable, so a load
balancer or orchestrator can act on the status alone; late schedules or data only degrade it.
Why a store is unreachable (its error names the host and port) is shown only to a caller
with the API token. A model version the server refused to swap in (its files failed their
integrity check) makes it 503 "degraded", naming the version and the reason: the old model
still answers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import OperationalError

from aifx_ml.events.relay import outbox_status
from aifx_ml.monitoring.health import health_report
from aifx_ml.monitoring.queries import (
    model_performance,
    prometheus_metrics,
    render_prometheus,
    training_history,
)
from aifx_ml.serving.deps import ServicesDep, has_token
from aifx_ml.serving.errors import error_responses
from aifx_ml.serving.fields import Identifier, QueryTime
from aifx_ml.serving.metrics import exposition
from aifx_ml.serving.signal_writer import writer_families

PREFIX = "/api/v1/monitoring"
PROMETHEUS_TEXT = "text/plain; version=0.0.4"
router = APIRouter(tags=["monitoring"])


class Out(BaseModel):
    """Built from the library's records (dataclasses) by attribute."""

    model_config = ConfigDict(from_attributes=True)


# --- training history ----------------------------------------------------------------------


class TrainingRunOut(Out):
    id: uuid.UUID
    training_type: str
    model_type: str
    status: str
    started_at: datetime
    completed_at: datetime | None
    training_duration: float | None
    dataset_size: int | None
    data_time_range: dict[str, Any] | None
    metrics: dict[str, Any] | None
    error_message: str | None
    mlflow_run_id: str | None
    model_version: str | None


class TrainingHistoryOut(BaseModel):
    count: int
    runs: list[TrainingRunOut]


@router.get(f"{PREFIX}/training-history", responses=error_responses(422, 503))
def get_training_history(
    svc: ServicesDep,
    training_type: Literal["full", "incremental"] | None = None,
    status_filter: Annotated[
        Literal["running", "completed", "failed", "skipped"] | None, Query(alias="status")
    ] = None,
    since: Annotated[QueryTime | None, Query(description="Started at or after (UTC).")] = None,
    until: Annotated[QueryTime | None, Query(description="Started before (UTC).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> TrainingHistoryOut:
    """Training runs, newest first; naive dates and times are UTC."""
    with _database():
        runs = training_history(svc.engine, training_type, status_filter, since, until, limit)
    return TrainingHistoryOut(
        count=len(runs), runs=[TrainingRunOut.model_validate(r) for r in runs]
    )


# --- model performance ---------------------------------------------------------------------


class OfflineOut(Out):
    holdout_accuracy: float | None
    holdout_auc: float | None
    holdout_log_loss: float | None
    holdout_brier: float | None
    holdout_samples: float | None
    lift_over_baseline: float | None
    lift_over_production: float | None


class LiveOut(Out):
    signals: int
    pending: int
    wins: int
    losses: int
    breakevens: int
    win_rate: float | None
    mean_pnl_percent: float | None


class PeriodOut(Out):
    period: str
    live: LiveOut


class DriftOut(Out):
    month: str | None
    drift_share: float | None


class VersionOut(Out):
    version: str
    model_type: str | None
    status: str | None
    created_at: datetime | None
    promoted_at: datetime | None
    offline: OfflineOut
    live: LiveOut
    series: list[PeriodOut]
    drift: list[DriftOut]
    latest_drift_share: float | None


class PerformanceOut(BaseModel):
    period: Literal["day", "month"]
    versions: list[VersionOut]


@router.get(f"{PREFIX}/model-performance", responses=error_responses(422, 503))
def get_model_performance(
    svc: ServicesDep,
    period: Literal["day", "month"] = "day",
    version: Annotated[Identifier | None, Query()] = None,
    since: Annotated[QueryTime | None, Query(description="Signals created at or after.")] = None,
) -> PerformanceOut:
    """Per model version: holdout metrics from training, live win rate over decided signals
    (win / (win + loss)) in total and per UTC day or month, and drift share by month."""
    with _database():
        found = model_performance(svc.engine, period, version, since)
    return PerformanceOut(period=period, versions=[VersionOut.model_validate(v) for v in found])


# --- health --------------------------------------------------------------------------------


class DependencyOut(Out):
    status: Literal["up", "down", "not_configured"]
    detail: str
    latency_ms: float | None


class TrainingFreshnessOut(Out):
    training_type: str
    status: Literal["ok", "stale", "unknown"]
    detail: str
    max_age_seconds: float
    last_completed_at: datetime | None
    last_run_at: datetime | None
    last_run_status: str | None
    age_seconds: float | None


class OutboxOut(Out):
    status: Literal["ok", "backlog", "unknown"]
    detail: str
    pending: int | None
    oldest_age_seconds: float | None
    last_error: str | None
    max_pending: int
    max_age_seconds: float


class StaleSeriesOut(Out):
    pair: str
    timeframe: str
    newest: datetime
    age_seconds: float


class MarketDataOut(Out):
    status: Literal["ok", "stale", "unknown"]
    detail: str
    series: int
    stale: list[StaleSeriesOut]


class ProductionFreshnessOut(Out):
    """A Production version against the staleness limit (past it, every answer is hold)."""

    model_type: str
    version: str
    status: Literal["ok", "ageing", "stale"]
    detail: str
    max_age_seconds: float
    trained_at: datetime
    age_seconds: float
    candidate: str | None


class ChecksOut(Out):
    database: DependencyOut
    redis: DependencyOut
    mlflow: DependencyOut
    training: list[TrainingFreshnessOut]
    outbox: OutboxOut
    market_data: MarketDataOut
    production: list[ProductionFreshnessOut]


class SignalWriterOut(Out):
    """Answered signals not in `trading_signals` yet (see README, "Answered means recorded")."""

    status: Literal["ok", "backlog"]
    waiting: int
    spilled: int
    rejected: int
    retrying: bool


class RefusedVersionOut(Out):
    version: str
    model_type: str
    reason: str
    serving_instead: str | None


class ServingOut(BaseModel):
    status: Literal["ok", "refused"]
    detail: str
    refused: list[RefusedVersionOut]


class HealthOut(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    checked_at: datetime
    checks: ChecksOut
    signal_writer: SignalWriterOut
    serving: ServingOut


@router.get(
    f"{PREFIX}/health",
    responses={
        503: {
            "model": HealthOut,
            "description": "A configured store is unreachable (unhealthy), or a model version "
            "was refused by the server (degraded).",
        }
    },
)
def get_health(
    svc: ServicesDep, response: Response, full: Annotated[bool, Depends(has_token)]
) -> HealthOut:
    """Database, Redis and MLflow reachable; daily and weekly training, the event outbox and
    every market-data series on time; each Production version short of the staleness limit
    (stale, or within two days of it with no candidate under test, degrades); answered
    signals waiting for the database (a backlog degrades); every version that should serve
    loaded. 503 when unhealthy or when a version
    was refused; 200 when healthy, degraded by a backlog, or only late. Without the API
    token, what a failing store said (host, port) is left out."""
    report = health_report(svc.engine, svc.settings.redis_url, svc.store, svc.now())
    writer = svc.predictions.writer.status()
    refused = svc.predictions.server.failures()
    overall, code = report.status, report.http_status
    if overall == "healthy" and writer.backlog:
        overall = "degraded"
    if refused and overall != "unhealthy":
        overall, code = "degraded", 503
    response.status_code = code
    checks = ChecksOut.model_validate(report)
    return HealthOut(
        status=overall,
        checked_at=report.checked_at,
        checks=checks if full else _without_addresses(checks),
        signal_writer=SignalWriterOut(
            status="backlog" if writer.backlog else "ok",
            waiting=writer.waiting,
            spilled=writer.spilled,
            rejected=writer.rejected,
            retrying=writer.retrying,
        ),
        serving=ServingOut(
            status="refused" if refused else "ok",
            detail="; ".join(
                f"{f.version} refused ({f.reason}), serving "
                f"{f.serving_instead or 'nothing'} instead"
                for f in refused
            )
            or "every version that should serve is loaded",
            refused=[RefusedVersionOut.model_validate(f) for f in refused],
        ),
    )


class ReadyOut(BaseModel):
    """Whether this process may take traffic: the versions that should serve are loaded and
    compiled (a load balancer's readiness probe; `health` says whether the system is well)."""

    status: Literal["ready", "loading", "unavailable"]
    loaded: list[str] = Field(description="Versions in memory, compiled.")
    unserved: list[str] = Field(description="Model types no version can serve, and why.")


@router.get(
    f"{PREFIX}/ready",
    responses={503: {"model": ReadyOut, "description": "Still loading, or a type cannot serve."}},
)
def get_ready(svc: ServicesDep, response: Response) -> ReadyOut:
    """200 once the versions that should serve (Production, and the arms of active tests)
    are loaded and compiled (`aifx serve` loads them as it starts); 503 while it loads, or
    when a model type has no version that can serve. Reads nothing but this process."""
    readiness = svc.predictions.server.readiness
    if readiness.ready:
        status_ = "ready"
    else:
        status_ = "unavailable" if readiness.preloaded else "loading"
        response.status_code = 503
    return ReadyOut(status=status_, loaded=readiness.loaded, unserved=readiness.unserved)


HIDDEN = "the reason is shown with the API token (it names hosts)"
DATABASE_AWAY = "database unreachable: "  # how a check that needed the database says so


def _without_addresses(checks: ChecksOut) -> ChecksOut:
    """The checks with every error message a store gave replaced (they name hosts and ports);
    our own sentences (ages, counts, "not configured") stay."""

    def store(dep: DependencyOut) -> DependencyOut:
        if dep.status != "down":
            return dep
        return dep.model_copy(update={"detail": f"unreachable: {HIDDEN}"})

    def database(detail: str) -> str:
        return DATABASE_AWAY + HIDDEN if detail.startswith(DATABASE_AWAY) else detail

    outbox = checks.outbox
    return checks.model_copy(
        update={
            "database": store(checks.database),
            "redis": store(checks.redis),
            "mlflow": store(checks.mlflow),
            "training": [
                t.model_copy(update={"detail": database(t.detail)}) for t in checks.training
            ],
            "outbox": outbox.model_copy(
                update={
                    "detail": database(outbox.detail),
                    "last_error": None if outbox.last_error is None else HIDDEN,
                }
            ),
            "market_data": checks.market_data.model_copy(
                update={"detail": database(checks.market_data.detail)}
            ),
        }
    )


# --- Prometheus ----------------------------------------------------------------------------


@router.get("/metrics", response_class=PlainTextResponse, responses=error_responses(503))
def get_metrics(svc: ServicesDep) -> PlainTextResponse:
    """Prometheus text format: training runs by status, last successes, predictions and
    outcomes by version, outbox backlog, active A/B tests, versions by status; the signal
    writer's backlog and rejected rows; HTTP request, prediction and model-call latency
    histograms and batch sizes (`serving.metrics`; summed over workers under --workers N)."""
    with _database():
        text = prometheus_metrics(svc.engine, svc.now(), outbox_status(svc.engine))
    text += render_prometheus(writer_families(svc.predictions.writer.status()))
    text += exposition().decode()  # request, prediction and model-call histograms
    return PlainTextResponse(text, media_type=PROMETHEUS_TEXT)


@contextmanager
def _database() -> Iterator[None]:
    """The database being away is a 503 with a one-line reason, not a 500 (the driver's
    message names the host: only health shows it, and only with the token)."""
    try:
        yield
    except OperationalError as exc:
        kind = type(getattr(exc, "orig", None) or exc).__name__
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"database unreachable: {kind} ({PREFIX}/health with the token says why)",
        ) from exc
