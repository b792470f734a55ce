"""What the serving process measures of itself, for Prometheus (`prometheus_client`).

- `aifx_http_request_duration_seconds{method, route, status}`: every HTTP request, by its
  route's template (`/api/v1/ab-tests/{test_id}`, not the id: the label set stays small;
  a path no route matched is `unmatched`).
- `aifx_prediction_duration_seconds{model_version}`: from a prediction request reaching the
  prediction service to its answer (windows, model call, decision), by the version that
  answered.
- `aifx_model_call_duration_seconds{model_version}` and `aifx_model_batch_size{model_version}`:
  each compiled model call and how many windows it carried (concurrent requests share calls).

These sit beside the gauges read from the database at each scrape (`monitoring.queries`:
training runs, predictions by version, outbox backlog, A/B tests, versions) and the signal
writer's. Under `aifx serve --workers N` every worker writes its samples to files in
`PROMETHEUS_MULTIPROC_DIR` (prometheus_client's multiprocess mode, chosen when the module is
first imported) and a scrape answered by any worker adds up all of them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest, multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REGISTRY = CollectorRegistry()
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUEST_SECONDS = Histogram(
    "aifx_http_request_duration_seconds",
    "HTTP requests by route template, method and status code.",
    ["method", "route", "status"],
    buckets=_SECONDS,
    registry=REGISTRY,
)
PREDICTION_SECONDS = Histogram(
    "aifx_prediction_duration_seconds",
    "Prediction service time per answered request, by the model version that answered.",
    ["model_version"],
    buckets=_SECONDS,
    registry=REGISTRY,
)
MODEL_CALL_SECONDS = Histogram(
    "aifx_model_call_duration_seconds",
    "Compiled model calls (one per batch of windows), by model version.",
    ["model_version"],
    buckets=_SECONDS,
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "aifx_model_batch_size",
    "Windows per model call, by model version (concurrent requests share a call).",
    ["model_version"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
    registry=REGISTRY,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def exposition() -> bytes:
    """This process's samples in Prometheus text format, or, in multiprocess mode, the sum
    over every worker that has written to `PROMETHEUS_MULTIPROC_DIR`."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def open_version_series(version: str) -> None:
    """Create a version's labelled series now, empty (a scrape shows them at zero): in
    multiprocess mode the first observation of a series writes its entries into the
    worker's file, which a version's first request would otherwise pay for."""
    for histogram in (PREDICTION_SECONDS, MODEL_CALL_SECONDS, BATCH_SIZE):
        histogram.labels(version)


def observe_model_call(version: str, windows: int, seconds: float) -> None:
    MODEL_CALL_SECONDS.labels(version).observe(seconds)
    BATCH_SIZE.labels(version).observe(windows)


class RequestMetrics:
    """ASGI middleware: times every HTTP request into `aifx_http_request_duration_seconds`,
    labelled by the route that matched (read after the router has run)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before it answers

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, answer)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            REQUEST_SECONDS.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - started
            )
