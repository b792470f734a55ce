"""`POST /api/v1/market-data`: candles pushed by a feed, stored exactly like an import.

The same validation as `aifx data import` (a row that breaks a rule is quarantined with its
reason, see `aifx data quarantine`), the same idempotence (a candle already stored is a
duplicate, a corrected one an update), indicators recomputed, one `ml:new_market_data` event,
all in one transaction. Values may come as numbers or as text, like the cells of a CSV, so
that a malformed row is quarantined instead of costing the whole request a 422.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field, Strict

from aifx_ml.data.importer import import_rows
from aifx_ml.markets import PAIR_RE, TIMEFRAMES
from aifx_ml.serving.deps import ServicesDep, WriteAccess, WriteRate
from aifx_ml.serving.errors import error_responses
from aifx_ml.serving.fields import text

router = APIRouter(prefix="/api/v1/market-data", tags=["market data"])
MAX_CANDLES = 2_000  # well under the body limit (1 MiB): more go in several pushes
# A number, or text read like a CSV cell (the number branch is strict: text never becomes one
# here, so the schema's bounds on text hold).
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Cell = Annotated[Number | Annotated[str, text(64)], Field(examples=[1.0842])]


class CandleRow(BaseModel):
    """One candle as a feed sends it: `timestamp` its open time (ISO 8601 with a zone, or
    epoch seconds/milliseconds), prices and volume as numbers or text."""

    timestamp: Annotated[
        Number | Annotated[str, text(64)], Field(examples=["2026-03-02T10:00:00Z"])
    ]
    open: Cell
    high: Cell
    low: Cell
    close: Cell
    volume: Cell | None = None


class MarketDataIn(BaseModel):
    pair: Annotated[str, Field(pattern=PAIR_RE.pattern, examples=["EUR/USD"])]
    timeframe: Annotated[str, Field(examples=["1h"], description=f"One of {' '.join(TIMEFRAMES)}.")]
    candles: Annotated[list[CandleRow], Field(min_length=1, max_length=MAX_CANDLES)]
    source: Annotated[
        str, text(200, min_length=1), Field(description="Recorded as the rows' source.")
    ] = "api"


class MarketDataOut(BaseModel):
    """What the push did: read = accepted + duplicates + quarantined, always."""

    pair: str
    timeframe: str
    read: int
    accepted: int = Field(description="Stored as sent: new candles and corrected ones.")
    inserted: int
    updated: int
    duplicates: int = Field(description="Already stored exactly so: nothing changed.")
    quarantined: int = Field(description="Broke a rule: kept with the reason, not stored.")
    first_timestamp: datetime | None
    last_timestamp: datetime | None
    gaps: int = Field(description="Runs of candles missing while the market was open.")


@router.post(
    "",
    dependencies=[WriteRate, WriteAccess],
    responses=error_responses(400, 401, 403, 413, 422, 429),
)
def push(body: MarketDataIn, svc: ServicesDep) -> MarketDataOut:
    """Store candles of one pair and timeframe (needs the API token), like an import."""
    report = import_rows(
        svc.engine,
        [c.model_dump() for c in body.candles],
        body.pair,
        body.timeframe,
        svc.now(),
        source=body.source,
    )
    return MarketDataOut(
        pair=report.pair,
        timeframe=report.timeframe,
        read=report.rows_read,
        accepted=report.accepted,
        inserted=report.inserted,
        updated=report.updated,
        duplicates=report.duplicates,
        quarantined=report.quarantined,
        first_timestamp=report.first_timestamp,
        last_timestamp=report.last_timestamp,
        gaps=len(report.gaps),
    )
