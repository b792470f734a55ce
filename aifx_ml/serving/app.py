"""The FastAPI app: predictions, A/B tests (and monitoring), built from the settings.

`create_app` wires the library to the stores once; routes stay thin. Library errors become
HTTP statuses with a one-line `detail` (`serving.errors`): invalid input 422, unknown things
404, conflicts 409 (tampered model files included), no model able to serve 503; bodies over
the limit 413, too many writes 429 (`serving.limits`).
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from fastapi_offline import FastAPIOffline
from sqlalchemy import Engine
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

import aifx_ml
from aifx_ml.alerts.notify import raise_alert_safely
from aifx_ml.alerts.rules import model_refused_alert, signal_rejected_alert
from aifx_ml.config import Settings
from aifx_ml.db.engine import DATABASE_UNAVAILABLE, ensure_schema, make_engine
from aifx_ml.db.models import ModelABTest
from aifx_ml.domain import SignalPolicy
from aifx_ml.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    RegistryError,
    StoreUnavailableError,
)
from aifx_ml.events.relay_loop import RelayLoop
from aifx_ml.models.store import ArtifactIntegrityError, ModelStore
from aifx_ml.monitoring.health import error_line
from aifx_ml.serving.deps import RegistryActions, Services
from aifx_ml.serving.errors import http_error, unstorable_value, validation_error
from aifx_ml.serving.inference import ModelServer, ModelUnavailableError, ServingFailure
from aifx_ml.serving.limits import BodySizeLimit, rate_limit
from aifx_ml.serving.metrics import RequestMetrics
from aifx_ml.serving.predict import PredictionService
from aifx_ml.serving.routers import ab_tests, dashboard, market_data, monitoring, predict
from aifx_ml.serving.signal_writer import RejectedRow

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5  # what a 503 asks the caller to wait before trying again
DOCS_ASSETS = "/static/docs"  # Swagger UI's and ReDoc's scripts, served from the package


def wall_clock() -> datetime:
    return datetime.now(UTC)


def _preload(predictions: PredictionService, freeze_heap: bool) -> None:
    """The versions, then the input windows they will ask for: a ready server's first
    requests find both built."""

    def before_ready() -> None:
        predictions.warm()
        if freeze_heap:
            # What is loaded now (TensorFlow, the models, the windows) lives as long as the
            # process: kept out of the garbage collector's full passes, which walked it all
            # and held requests for a tenth of a second or more (p99 388 → 47 ms under load).
            # Before ready, so that no request waits for this collection either.
            gc.collect()
            gc.freeze()

    try:
        readiness = predictions.server.preload(then=before_ready)
    except Exception:  # the service still answers, loading versions as they are asked for
        log.exception("loading the serving versions ahead failed")
        return
    log.info("ready: %s loaded", ", ".join(readiness.loaded) or "no version")


NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_app(
    settings: Settings,
    *,
    store: ModelStore,
    registry: RegistryActions,
    engine: Engine | None = None,
    now: Callable[[], datetime] = wall_clock,
    policy: SignalPolicy | None = None,
    refresh_seconds: float = 2.0,
    max_buffer: int = 50_000,
    relay: bool = False,
    preload: bool = False,
    freeze_heap: bool = False,
) -> FastAPI:
    """The app over the given stores; `now` is the clock (a replay passes its own).

    With `relay` (and a Redis URL in the settings) the app delivers events while it runs:
    a relay loop woken by every commit that writes events (`events.relay_loop`). With
    `preload` the versions that should serve are loaded and compiled on a thread as the app
    starts (`/api/v1/monitoring/ready` says when); without it, by the first request for each.
    `freeze_heap` (a serving process of its own, as `aifx serve`): once preloaded, what is
    loaded is moved out of the garbage collector's reach (`gc.freeze`).

    `store` loads the versions that serve; `registry` is how an A/B decision made through the
    API reaches the model registry (the edge that builds the app supplies both). Answered
    signals the database cannot take yet wait in memory (up to `max_buffer` rows), then in
    `<data dir>/signal-spill/`.
    """
    engine = engine or make_engine(settings.db_url)
    ensure_schema(engine, auto_upgrade=settings.is_embedded)

    def promote(
        test: ModelABTest,
        winner: str,
        *,
        as_of: datetime,
        reason: str,
        metrics: dict[str, Any] | None,
    ) -> ModelABTest:
        ended = registry.complete_with_winner(
            engine,
            test,
            winner,
            as_of=as_of,
            reason=reason,
            actor="api",
            metrics=metrics,
            clock=now,
        )
        server.invalidate(test.model_type)
        return ended

    def rejected(rows: Sequence[RejectedRow]) -> None:
        draft = signal_rejected_alert([str(r.signal_id) for r in rows], rows[0].error)
        raise_alert_safely(engine, settings, draft, as_of=now())

    def refused(failure: ServingFailure) -> None:
        draft = model_refused_alert(
            failure.version, failure.model_type, failure.reason, failure.serving_instead
        )
        raise_alert_safely(engine, settings, draft, as_of=now())

    server = ModelServer(engine, store, refresh_seconds, on_failure=refused)
    if not preload:
        server.ready_without_preload()
    predictions = PredictionService(
        engine,
        server,
        now,
        policy,
        spill_dir=settings.data_dir / "signal-spill",
        max_buffer=max_buffer,
        on_rejected=rejected,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        relay_loop = None
        predictions.hear_candles()
        if relay and settings.redis_url is not None:
            relay_loop = RelayLoop(engine, settings.redis_url, now).start()
        if preload:
            threading.Thread(
                target=_preload, args=(predictions, freeze_heap), name="preload", daemon=True
            ).start()
        yield
        predictions.close()  # the signal writer commits what waits, then stops
        if relay_loop is not None:
            relay_loop.stop()  # after the writer: its last rounds' events go out too

    # Swagger UI (/docs) and ReDoc (/redoc) load their scripts from the installed
    # fastapi-offline package, under /static/docs, not from a CDN: the pages work offline.
    app = FastAPIOffline(
        title="AIFX",
        version=aifx_ml.__version__,
        description="Trading signals from continuously learned models, A/B tests, monitoring.",
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
        # FastAPI's own OpenTelemetry off: the service's metrics are Prometheus (/metrics),
        # and the per-request check whether a provider exists cost ~4 % of a worker's time.
        telemetry=NO_TELEMETRY,
    )
    app.state.services = Services(
        settings=settings,
        engine=engine,
        predictions=predictions,
        now=now,
        store=store,
        promote=promote,
        mark_challenger=lambda test: registry.mark_challenger(engine, test),
        write_limit=rate_limit("writes", settings.rate_limit_writes, settings.redis_url),
        predict_limit=rate_limit("predictions", settings.rate_limit_predict, settings.redis_url),
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics)  # outermost: refused bodies are timed too
    app.state.model_server = server
    app.include_router(predict.router)
    app.include_router(ab_tests.router)
    app.include_router(market_data.router)
    app.include_router(monitoring.router)
    app.include_router(dashboard.router)

    for error, code in (
        (InvalidInputError, 422),
        (NotFoundError, 404),
        (ConflictError, 409),
        (RegistryError, 409),
        (ArtifactIntegrityError, 409),  # a version whose files fail their check: refused
        (ModelUnavailableError, 503),
    ):
        app.add_exception_handler(error, _handler(code))
    unavailable: tuple[type[Exception], ...] = (StoreUnavailableError, *DATABASE_UNAVAILABLE)
    for error_type in unavailable:
        app.add_exception_handler(error_type, _unavailable)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(DataError, unstorable_value)
    return app


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The database (or the disk a backlog spills to) is away: 503, try again shortly. The
    reason is logged, not echoed: it names hosts and ports."""
    log.warning("%s %s: 503, %s", request.method, request.url.path, error_line(exc))
    return JSONResponse(
        status_code=503,
        content={"detail": "the database is unavailable; retry later"},
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _handler(code: int) -> Callable[[Request, Exception], Any]:
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=code, content={"detail": str(exc)})

    return handle
