"""What every route depends on: the services built at start-up, and the write token."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Protocol

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from aifx_ml.abtest.store import WinnerPromoter
from aifx_ml.config import Settings
from aifx_ml.db.models import ModelABTest
from aifx_ml.models.store import ModelStore
from aifx_ml.serving.predict import PredictionService


class CompleteWithWinner(Protocol):
    """`registry.abtest.complete_with_winner` over the edge's model store: the winner promoted
    and the test completed in one transaction, stamped by `clock` at commit."""

    def __call__(
        self,
        engine: Engine,
        test: ModelABTest,
        winner: str,
        *,
        as_of: datetime,
        reason: str,
        actor: str,
        metrics: dict[str, Any] | None,
        clock: Callable[[], datetime] | None,
    ) -> ModelABTest: ...


@dataclass(frozen=True)
class RegistryActions:
    """What the API asks of the model registry bridge, supplied by the edge that builds the
    app: complete an A/B test with its winner in Production, and point the `challenger` alias
    at a test's arm B."""

    complete_with_winner: CompleteWithWinner
    mark_challenger: Callable[[Engine, ModelABTest], None]


@dataclass
class Services:
    """Built once when the app starts (see `serving.app.create_app`)."""

    settings: Settings
    engine: Engine
    store: ModelStore
    predictions: PredictionService
    now: Callable[[], datetime]
    promote: WinnerPromoter
    mark_challenger: Callable[[ModelABTest], None]


def services(request: Request) -> Services:
    found = request.app.state.services
    assert isinstance(found, Services)
    return found


ServicesDep = Annotated[Services, Depends(services)]
_bearer = HTTPBearer(auto_error=False)


def require_token(
    svc: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Writes need `Authorization: Bearer <AIFX_API_TOKEN>`: 401 without, 403 if wrong."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing bearer token: send Authorization: Bearer <AIFX_API_TOKEN>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    expected = svc.settings.api_token
    if expected is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="writes are disabled: no AIFX_API_TOKEN is configured on the server",
        )
    if not secrets.compare_digest(credentials.credentials, expected.get_secret_value()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="invalid bearer token")


WriteAccess = Depends(require_token)
