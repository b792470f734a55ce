"""What the service's HTTP stack costs a prediction, apart from predicting: CPU per
`POST /api/v1/predict` through the app `aifx serve` builds (its middlewares: request metrics
and the body limit; the route's dependency: rate limit, token, services; the request model;
the answer's serialization), with the prediction service replaced by one that returns a
fixed answer at once. Next to it, the floor: a bare FastAPI app with one async route that
validates the same request model and returns the same bytes. Both are called in-process
(ASGI, no sockets), in alternating rounds, so that a machine whose speed drifts weighs on
both alike. Prints one JSON object. No target: it says how much of a request's time is the
framework's and how much the service adds to it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Response

from aifx_ml.config import load_settings
from aifx_ml.serving.app import NO_TELEMETRY, create_app
from aifx_ml.serving.deps import RegistryActions
from aifx_ml.serving.predict import Prediction
from aifx_ml.serving.routers.predict import PredictIn

BODY = b'{"pair": "EUR/USD", "timeframe": "1h", "routing_key": "user-1"}'
ANSWER = Prediction(
    signal_id=uuid.UUID(int=1),
    pair="EUR/USD",
    timeframe="1h",
    signal="buy",
    confidence=0.2,
    probability=0.6,
    entry_price=1.1,
    created_at=datetime(2026, 3, 2, tzinfo=UTC),
    model_version="lstm-v1",
    ab_test_id=None,
    variant=None,
    reason=None,
    verified=True,
)


class FixedAnswers:
    """In place of the prediction service: the same answer, at once."""

    async def answer(self, request: Any) -> Prediction:
        return ANSWER

    def close(self) -> None:
        pass

    def hear_candles(self) -> None:
        pass


def service_app(work: Path) -> Any:
    os.environ["AIFX_DATA_DIR"] = str(work)
    os.environ["AIFX_DATABASE_URL"] = f"sqlite:///{work / 'aifx.db'}"
    os.environ.pop("AIFX_PREDICT_TOKEN", None)
    os.environ.pop("AIFX_RATE_LIMIT_PREDICT", None)
    app = create_app(
        load_settings(),
        store=None,  # type: ignore[arg-type]  (never asked: no model is loaded)
        registry=RegistryActions(complete_with_winner=None, mark_challenger=None),  # type: ignore[arg-type]
    )
    app.state.services.predictions = FixedAnswers()
    return app


def floor_app() -> FastAPI:
    app = FastAPI(telemetry=NO_TELEMETRY)
    body = orjson.dumps(ANSWER.__dict__)

    @app.post("/api/v1/predict")
    async def predict(request: PredictIn) -> Response:
        return Response(body, media_type="application/json")

    return app


SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/api/v1/predict",
    "raw_path": b"/api/v1/predict",
    "query_string": b"",
    "root_path": "",
    "headers": [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
    ],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
}


async def per_request_us(app: Any, requests: int) -> float:
    """CPU microseconds per request over `requests` calls (each answered 200)."""
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.process_time()
    for _ in range(requests):
        await app(dict(SCOPE), receive, send)
    took = time.process_time() - started
    if set(statuses) != {200}:
        raise SystemExit(f"expected 200 for every request, got {sorted(set(statuses))}")
    return took / requests * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000, help="per round and app")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aifx-bench-stack-") as work:
        apps = {"service": service_app(Path(work)), "floor": floor_app()}
        for app in apps.values():
            await per_request_us(app, 500)  # warm-up
        rounds: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(args.rounds):
            for name, app in apps.items():
                rounds[name].append(await per_request_us(app, args.requests))
    best = {name: min(us) for name, us in rounds.items()}
    print(json.dumps({
        "benchmark": "http_stack",
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "cpu_us_per_request_best": {k: round(v, 1) for k, v in best.items()},
        "cpu_us_per_request_rounds": {k: [round(x, 1) for x in v] for k, v in rounds.items()},
        "service_added_us": round(best["service"] - best["floor"], 1),
        "service_vs_floor": round(best["service"] / best["floor"], 3),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
