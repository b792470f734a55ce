"""One error shape for every 4xx and 5xx the API answers, and what the OpenAPI schema says.

Every error body is `{"detail": "<one line>"}`; a request that fails validation also carries
`errors`, one entry per field (`loc`, `msg`, `type`). The offending input is never echoed:
it may be a number or a string JSON cannot carry (NaN, a lone surrogate).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match


class FieldError(BaseModel):
    """What is wrong with one field of the request."""

    loc: list[str | int] = Field(description="Where: body, query, path or header, then names.")
    msg: str
    type: str = Field(description="pydantic's error type, e.g. finite_number.")


class ErrorOut(BaseModel):
    """The body of every error answer."""

    detail: str = Field(description="What is wrong, in one line.")
    errors: list[FieldError] | None = Field(
        default=None, description="With a 422 for invalid input: every field that failed."
    )


DESCRIPTIONS = {
    400: "The body is not JSON text (not UTF-8, say).",
    401: "No bearer token, or a malformed one.",
    403: "Wrong token, or writes are disabled (no AIFX_API_TOKEN on the server).",
    404: "Not found.",
    409: "Conflicts with the current state.",
    413: "Request body over AIFX_MAX_BODY_BYTES.",
    422: "Invalid input.",
    429: "Rate limit exceeded; Retry-After says when to try again.",
    503: "The database is unreachable; try again later.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route that can answer these error statuses."""
    return {code: {"model": ErrorOut, "description": DESCRIPTIONS[code]} for code in codes}


def _printable(value: str) -> str:
    """JSON can carry it (a lone surrogate becomes its escape)."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def field_errors(exc: RequestValidationError) -> list[FieldError]:
    """pydantic's errors without their `input` and `ctx` (either may not be JSON)."""
    return [
        FieldError(
            loc=[p if isinstance(p, int) else _printable(str(p)) for p in error.get("loc", ())],
            msg=_printable(str(error.get("msg", ""))),
            type=str(error.get("type", "")),
        )
        for error in exc.errors()
    ]


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """422 with a one-line `detail` naming the first field, and every field in `errors`."""
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc) or [FieldError(loc=[], msg="invalid request", type="invalid")]
    first = errors[0]
    where = ".".join(str(p) for p in first.loc)
    detail = f"{where}: {first.msg}" if where else first.msg
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    body = ErrorOut(detail=detail, errors=errors)
    return JSONResponse(status_code=422, content=body.model_dump(mode="json"))


async def unstorable_value(_request: Request, exc: Exception) -> JSONResponse:
    """A value the database refused (validation should have stopped it first): 422."""
    assert isinstance(exc, DataError)
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    reason = _printable(lines[0] if lines else "invalid value")[:200]
    return JSONResponse(
        status_code=422, content={"detail": f"a value the database cannot store: {reason}"}
    )


async def http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's answer, except that a 405 lists in `Allow` every method the path has (not
    only those of the first route that matched it)."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        allowed: set[str] = set()
        for route in request.app.router.routes:
            match, _ = route.matches(request.scope)
            if match != Match.NONE:
                allowed |= set(getattr(route, "methods", None) or ())
        exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(allowed))}
    return await http_exception_handler(request, exc)
