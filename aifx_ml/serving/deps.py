"""What every route depends on: the services built at start-up, the write token, the optional
prediction token and the rate limits."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Protocol

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import SecretStr
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from aifx_ml.abtest.store import WinnerPromoter
from aifx_ml.config import Settings
from aifx_ml.db.models import ModelABTest
from aifx_ml.models.store import ModelStore
from aifx_ml.serving.limits import RateLimit
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
    write_limit: RateLimit | None = None
    predict_limit: RateLimit | None = None


async def services(request: Request) -> Services:
    found = request.app.state.services
    assert isinstance(found, Services)
    return found


# The dependencies are `async def` where they only read memory: FastAPI runs a plain `def`
# dependency in its thread pool, a hop that cost a prediction more than its model call.
ServicesDep = Annotated[Services, Depends(services)]
_bearer = HTTPBearer(auto_error=False)


def token_problem(
    credentials: HTTPAuthorizationCredentials | None, expected: SecretStr | None, name: str
) -> HTTPException | None:
    """Why the request may not pass (401 no or malformed token, 403 wrong one, or nothing
    configured to compare with), or None. `name` is the setting that holds the token."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        return HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"missing bearer token: send Authorization: Bearer <{name}>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = credentials.credentials
    if not (token.isascii() and token.isprintable()):
        return HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="malformed bearer token: expected printable ASCII",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if expected is None:
        return HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"writes are disabled: no {name} is configured on the server",
        )
    if not secrets.compare_digest(token.encode(), expected.get_secret_value().encode()):
        return HTTPException(status.HTTP_403_FORBIDDEN, detail="invalid bearer token")
    return None


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def require_token(svc: ServicesDep, credentials: Credentials) -> None:
    """Writes need `Authorization: Bearer <AIFX_API_TOKEN>`: 401 without, 403 if wrong (or
    none configured: writes are disabled)."""
    problem = token_problem(credentials, svc.settings.api_token, "AIFX_API_TOKEN")
    if problem is not None:
        raise problem


def require_predict_token(svc: Services, request: Request) -> None:
    """With `AIFX_PREDICT_TOKEN` set, predictions need `Authorization: Bearer <it>` (401
    without, 403 if wrong); unset, anyone who reaches the service may ask. The header is read
    directly: the token is optional, so the OpenAPI schema does not declare the route secured
    (it lists the 401 and 403 it answers when the token is set)."""
    expected = svc.settings.predict_token
    if expected is None:
        return
    scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
    found = HTTPAuthorizationCredentials(scheme=scheme, credentials=token) if scheme else None
    problem = token_problem(found, expected, "AIFX_PREDICT_TOKEN")
    if problem is not None:
        raise problem


async def has_token(svc: ServicesDep, request: Request) -> bool:
    """True when the request carries the write token (reads that show more with it). Read
    from the header directly: the route stays open in the OpenAPI schema."""
    scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
    if not scheme:
        return False
    found = HTTPAuthorizationCredentials(scheme=scheme, credentials=token)
    return token_problem(found, svc.settings.api_token, "AIFX_API_TOKEN") is None


async def _enforce(limit: RateLimit | None, request: Request) -> None:
    if limit is None:
        return
    client = request.client.host if request.client else "unknown"
    # The count may live in Redis: a network call, made off the event loop.
    retry = await run_in_threadpool(limit.retry_after, client)
    if retry is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"rate limit of {limit.limit} {limit.name} per client exceeded; "
            f"retry in {retry} s",
            headers={"Retry-After": str(retry)},
        )


async def limit_writes(svc: ServicesDep, request: Request) -> None:
    """429 with Retry-After past AIFX_RATE_LIMIT_WRITES requests from one address."""
    await _enforce(svc.write_limit, request)


async def predict_gate(request: Request) -> Services:
    """What a prediction passes before its body is used: the rate limit (429 with Retry-After
    past AIFX_RATE_LIMIT_PREDICT requests from one address), then the prediction token (see
    `require_predict_token`). One dependency, not three: FastAPI's solving of each costs
    every prediction time."""
    svc = await services(request)
    await _enforce(svc.predict_limit, request)
    require_predict_token(svc, request)
    return svc


WriteAccess = Depends(require_token)
WriteRate = Depends(limit_writes)
PredictGate = Annotated[Services, Depends(predict_gate)]
