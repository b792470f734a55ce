"""What every route depends on: the services built at start-up, the write token and the
optional prediction token."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from sqlalchemy import Engine

from aifx_ml.config import Settings
from aifx_ml.db.models import ModelABTest
from aifx_ml.models.store import ModelStore
from aifx_ml.serving.predict import PredictionService

# (test, winner version) -> promote the winner through the registry
Promoter = Callable[[ModelABTest, str], None]


@dataclass(frozen=True)
class RegistryActions:
    """What the API asks of the model registry bridge, supplied by the edge that builds the
    app: promote an A/B winner (engine, test, winner, as of, actor), and point the
    `challenger` alias at a test's arm B."""

    promote_winner: Callable[[Engine, ModelABTest, str, datetime, str], None]
    mark_challenger: Callable[[Engine, ModelABTest], None]


@dataclass
class Services:
    """Built once when the app starts (see `serving.app.create_app`)."""

    settings: Settings
    engine: Engine
    store: ModelStore
    predictions: PredictionService
    now: Callable[[], datetime]
    promote: Promoter
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
    expected = svc.settings.api_token
    check_bearer(credentials, expected, "AIFX_API_TOKEN")
    if expected is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="writes are disabled: no AIFX_API_TOKEN is configured on the server",
        )


def require_predict_token(
    svc: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """With `AIFX_PREDICT_TOKEN` set, predictions need `Authorization: Bearer <it>` (401
    without, 403 if wrong); unset, anyone who reaches the service may ask."""
    expected = svc.settings.predict_token
    if expected is not None:
        check_bearer(credentials, expected, "AIFX_PREDICT_TOKEN")


def check_bearer(
    credentials: HTTPAuthorizationCredentials | None, expected: SecretStr | None, name: str
) -> None:
    """401 without a well-formed bearer token (a header byte outside ASCII included), 403 when
    it is not `expected` (compared in constant time); nothing to compare with: no error."""
    if (
        credentials is None
        or credentials.scheme.lower() != "bearer"
        or not credentials.credentials.isascii()
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"missing bearer token (or not ASCII): send Authorization: Bearer <{name}>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if expected is not None and not secrets.compare_digest(
        credentials.credentials.encode(), expected.get_secret_value().encode()
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="invalid bearer token")


WriteAccess = Depends(require_token)
PredictAccess = Depends(require_predict_token)
