"""The input types every route uses, so that nothing the API accepts can fail later.

A value the database, pandas or JSON cannot hold is refused here with a 422: non-finite
numbers (NaN, Infinity, 1e309), control characters and lone surrogates in strings, dates
outside what a candle can have (query bounds are clamped instead). Identifiers (versions,
model types) are plain names.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field

IDENTIFIER_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
# Any printable text: no C0 control character, no DEL (a lone surrogate never matches either).
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)  # pandas' nanosecond timestamps end in 2262

Identifier = Annotated[
    str,
    Field(
        pattern=IDENTIFIER_PATTERN,
        description="Letters, digits, '_', '.' and '-' (1 to 64).",
    ),
]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Price = Annotated[float, Field(gt=0, le=1e9, allow_inf_nan=False)]


def text(max_length: int, min_length: int = 0) -> Any:
    """A free-text field: printable, at most `max_length` characters."""
    return Field(min_length=min_length, max_length=max_length, pattern=TEXT_PATTERN)


YEARS = r"^(19[7-9][0-9]|2[01][0-9][0-9])-"  # 1970 to 2199, as written


def _iso_text(value: Any) -> Any:
    # pydantic would take 0.5 or "0.5" as seconds since 1970; the schema says an ISO string.
    if not isinstance(value, str) or not re.match(r"^[0-9]{4}-", value):
        raise ValueError("expected an ISO 8601 date and time, e.g. 2026-03-01T00:00:00Z")
    return value


def _bounded(value: datetime) -> datetime:
    if not EARLIEST.year <= value.year < LATEST.year:
        raise ValueError(
            f"expected a time from {EARLIEST.date().isoformat()} to before "
            f"{LATEST.date().isoformat()}"
        )
    return value


Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_iso_text),
    AfterValidator(_bounded),
    Field(json_schema_extra={"pattern": YEARS}),
]
"""A time with a zone, written in ISO 8601, in the years 1970 to 2199."""


def _clamped(value: datetime) -> datetime:
    # A query bound before 1970 or after 2200 means "from the start" or "to the end".
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return min(max(value, EARLIEST), LATEST)


QueryTime = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(_clamped)]
"""A time in a query, in ISO 8601: naive means UTC; bounds past 1970 or 2200 are clamped."""
