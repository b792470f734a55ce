"""The FastAPI app: predictions, A/B tests (and monitoring), built from the settings.

`create_app` wires the library to the stores once; routes stay thin. Library errors become
HTTP statuses with a one-line `detail`: invalid input 422, unknown things 404, conflicts 409
(tampered model files included), no model able to serve 503.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

import aifx_ml
from aifx_ml.alerts.notify import raise_alert_safely
from aifx_ml.alerts.rules import model_refused_alert
from aifx_ml.config import Settings
from aifx_ml.db.engine import ensure_schema, make_engine
from aifx_ml.db.models import ModelABTest
from aifx_ml.domain import SignalPolicy
from aifx_ml.errors import ConflictError, InvalidInputError, NotFoundError, RegistryError
from aifx_ml.models.store import ArtifactIntegrityError, ModelStore
from aifx_ml.serving.deps import RegistryActions, Services
from aifx_ml.serving.inference import ModelServer, ModelUnavailableError, ServingFailure
from aifx_ml.serving.predict import PredictionService
from aifx_ml.serving.routers import ab_tests, dashboard, monitoring, predict


def wall_clock() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings,
    *,
    store: ModelStore,
    registry: RegistryActions,
    engine: Engine | None = None,
    now: Callable[[], datetime] = wall_clock,
    policy: SignalPolicy | None = None,
    refresh_seconds: float = 2.0,
) -> FastAPI:
    """The app over the given stores; `now` is the clock (a replay passes its own).

    `store` loads the versions that serve; `registry` is how an A/B decision made through the
    API reaches the model registry (the edge that builds the app supplies both).
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

    def alert(failure: ServingFailure) -> None:
        draft = model_refused_alert(
            failure.version, failure.model_type, failure.reason, failure.serving_instead
        )
        raise_alert_safely(engine, settings, draft, as_of=now())

    server = ModelServer(engine, store, refresh_seconds, on_failure=alert)
    predictions = PredictionService(engine, server, now, policy)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        predictions.close()  # the signal writer commits what waits, then stops

    app = FastAPI(
        title="AIFX",
        version=aifx_ml.__version__,
        description="Trading signals from continuously learned models, A/B tests, monitoring.",
        lifespan=lifespan,
    )
    app.state.services = Services(
        settings=settings,
        engine=engine,
        predictions=predictions,
        now=now,
        store=store,
        promote=promote,
        mark_challenger=lambda test: registry.mark_challenger(engine, test),
    )
    app.state.model_server = server
    app.include_router(predict.router)
    app.include_router(ab_tests.router)
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
    return app


def _handler(code: int) -> Callable[[Request, Exception], Any]:
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=code, content={"detail": str(exc)})

    return handle
