"""`POST /api/v1/predict` and `POST /api/v1/predict/batch`."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Annotated

import orjson
import pandas as pd
from anyio.to_thread import run_sync
from fastapi import APIRouter, Response
from pydantic import BaseModel, Field, field_validator

from aifx_ml.errors import InvalidInputError
from aifx_ml.markets import PAIR_RE, TIMEFRAMES
from aifx_ml.serving.deps import PredictGate
from aifx_ml.serving.errors import error_responses
from aifx_ml.serving.fields import Identifier, Price, Timestamp, text
from aifx_ml.serving.predict import Prediction, PredictRequest

router = APIRouter(prefix="/api/v1/predict", tags=["predictions"])
MAX_CANDLES = 5000  # per request
MAX_BATCH = 500  # requests per batch
ERRORS = error_responses(400, 401, 403, 404, 413, 422, 429, 503)


class Candle(BaseModel):
    """One OHLCV candle; `timestamp` is its open time (with a zone), 1970 to 2200; prices
    finite, positive and at most 1e9."""

    timestamp: Timestamp
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Annotated[float, Field(ge=0, le=1e15, allow_inf_nan=False)] = 0.0


class PredictIn(BaseModel):
    """What to predict. Without `candles` the newest stored candles are used."""

    pair: Annotated[str, Field(pattern=PAIR_RE.pattern, examples=["EUR/USD"])]
    timeframe: Annotated[str, Field(examples=["1h"])]
    model_type: Annotated[Identifier, Field(examples=["lstm"])] = "lstm"
    routing_key: Annotated[
        str | None,
        text(128, min_length=1),
        Field(description="A user or account id: the same key always gets the same A/B arm."),
    ] = None
    candles: Annotated[list[Candle] | None, Field(min_length=1, max_length=MAX_CANDLES)] = None

    @field_validator("timeframe")
    @classmethod
    def _timeframe(cls, value: str) -> str:
        if value not in TIMEFRAMES:
            raise ValueError(f"expected one of {' '.join(TIMEFRAMES)}")
        return value

    def to_request(self) -> PredictRequest:
        candles = None
        if self.candles is not None:
            candles = pd.DataFrame([c.model_dump() for c in self.candles])
            try:
                candles["timestamp"] = pd.to_datetime(candles["timestamp"], utc=True)
            except (ValueError, OverflowError) as exc:  # beyond pandas' range (after 2262)
                raise InvalidInputError(f"candles: a timestamp is out of range ({exc})") from exc
        return PredictRequest(
            pair=self.pair,
            timeframe=self.timeframe,
            model_type=self.model_type,
            routing_key=self.routing_key,
            candles=candles,
        )


class PredictOut(BaseModel):
    """The signal, as recorded in `trading_signals`."""

    signal_id: uuid.UUID
    pair: str
    timeframe: str
    signal: str = Field(description="buy, sell or hold")
    confidence: float
    probability: float | None = Field(description="P(up) from the model")
    entry_price: float
    created_at: datetime
    model_version: str
    ab_test_id: uuid.UUID | None
    variant: str | None = Field(description="a or b when an A/B test routed the request")
    reason: str | None = Field(
        description="why the answer is a hold: a stale model or inputs (forced), or a version "
        "that showed no edge on held-out data in that direction (it never calls it)"
    )
    verified: bool = Field(
        description="false when computed on candles sent with the request: such a signal is "
        "recorded but counts in no A/B test or live performance"
    )

    @classmethod
    def of(cls, p: Prediction) -> PredictOut:
        return cls(**p.__dict__)


class BatchIn(BaseModel):
    requests: Annotated[list[PredictIn], Field(min_length=1, max_length=MAX_BATCH)]


class BatchOut(BaseModel):
    predictions: list[PredictOut]


@router.post("", response_model=PredictOut, responses=ERRORS)
async def predict(body: PredictIn, svc: PredictGate) -> Response:
    """A signal for one series from the model that serves it (Production, or an A/B arm)."""
    started = time.perf_counter()
    # Candles sent with the request become a frame off the event loop (up to 5,000 rows).
    request = body.to_request() if body.candles is None else await run_sync(body.to_request)
    # Recorded by the signal writer right after (see README: recording is asynchronous).
    answer = await svc.predictions.answer(request)
    took = (time.perf_counter() - started) * 1000
    # The answer is built by our own code: serialized directly, not validated a second time.
    return Response(
        orjson.dumps(answer.__dict__),
        media_type="application/json",
        headers={"Server-Timing": f"predict;dur={took:.2f}"},
    )


@router.post("/batch", response_model=BatchOut, responses=ERRORS)
def predict_batch(body: BatchIn, svc: PredictGate) -> BatchOut:
    """Signals for many series in one call (one model call per model, one transaction)."""
    # A batch is committed before it is answered: bulk callers read their signals right after.
    answers = svc.predictions.predict([r.to_request() for r in body.requests], wait=True)
    return BatchOut(predictions=[PredictOut.of(a) for a in answers])
