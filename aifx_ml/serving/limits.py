"""Request limits of the API: the size of a request body, and requests per client address.

Bodies are limited here rather than at a proxy (fastapi < 0.151 has no `max_body_size`), so
`aifx serve` is safe on its own. Rates are counted by `limits` (the engine slowapi runs on)
in a moving window, in Redis when one is configured (every worker and replica shares the
count), in memory otherwise. A Redis that does not answer lets requests through: the rate
limit is a guard against floods, not a reason to refuse service.
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)
REDIS_TIMEOUT = 0.5  # seconds: a rate check must not hold a request up for long
KEY_PREFIX = "aifx:ratelimit"


class RateLimit:
    """`limit` (e.g. "60/minute", several separated by ';') per client and `name`."""

    def __init__(self, name: str, limit: str, redis_url: str | None = None) -> None:
        self.name, self.limit = name, limit
        self._items: list[RateLimitItem] = parse_many(limit)
        if redis_url:
            storage = storage_from_string(
                redis_url,
                key_prefix=KEY_PREFIX,
                wrap_exceptions=True,
                socket_timeout=REDIS_TIMEOUT,
                socket_connect_timeout=REDIS_TIMEOUT,
            )
        else:
            storage = storage_from_string("memory://")
        self._limiter = MovingWindowRateLimiter(storage)

    def retry_after(self, client: str) -> int | None:
        """Count one request of `client`; None if allowed, else seconds until one would be."""
        for item in self._items:
            try:
                if self._limiter.hit(item, self.name, client):
                    continue
                reset = self._limiter.get_window_stats(item, self.name, client).reset_time
            except StorageError as exc:
                log.warning("rate limit %s not checked: %s", self.name, exc)
                return None
            return max(1, math.ceil(reset - time.time()))
        return None


def rate_limit(name: str, limit: str, redis_url: str | None) -> RateLimit | None:
    """The limit, or None when `limit` is empty (no limit)."""
    return RateLimit(name, limit, redis_url) if limit.strip() else None


class BodySizeLimit:
    """ASGI middleware: a body over `max_bytes` is answered 413 before the app reads it.

    A declared Content-Length over the limit is refused at once; a body without one (chunked)
    is read up to the limit and handed on, or refused as soon as it passes it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"request body over the limit of {self.max_bytes} bytes (AIFX_MAX_BODY_BYTES)"
        await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
