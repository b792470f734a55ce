"""Changes announced at commit, to this process and, on PostgreSQL, to every other one.

A writer calls `announce(session, channel, payload)` inside its transaction. When the
transaction commits, this process's `subscribe`rs to the channel are called (in the
committing thread); on PostgreSQL the same announcement is a `NOTIFY`, which is part of the
transaction: every process LISTENing on the channel hears it at commit, and nobody hears
anything on rollback. `Listener` is the thread that LISTENs, reconnecting when the connection
is lost, and says when it starts and stops hearing (what was committed while it was not
listening was not heard: a listener's user must not trust its view from before a
reconnection).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

import psycopg
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

MARKET_DATA_CHANNEL = "aifx_market_data"  # payload "<pair> <timeframe>": its candles changed
_PENDING = "aifx.notices"  # in Session.info: [(channel, payload)] to tell subscribers at commit
_subscribers: dict[str, list[Callable[[str], None]]] = {}
_subscribers_lock = threading.Lock()
log = logging.getLogger(__name__)


def series_key(pair: str, timeframe: str) -> str:
    """The market-data channel's payload for a series: "EUR/USD 1h"."""
    return f"{pair} {timeframe}"


def series_of(payload: str) -> tuple[str, str]:
    """(pair, timeframe) of a market-data channel payload."""
    pair, _, timeframe = payload.rpartition(" ")
    return pair, timeframe


def announce(session: Session, channel: str, payload: str) -> None:
    """Announce `payload` on `channel` when the session's transaction commits."""
    session.info.setdefault(_PENDING, []).append((channel, payload))
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
        )


def subscribe(channel: str, subscriber: Callable[[str], None]) -> Callable[[], None]:
    """Call `subscriber(payload)` after each commit in this process that announced on
    `channel` (it must be quick and must not raise). Returns what unsubscribes it."""
    with _subscribers_lock:
        _subscribers.setdefault(channel, []).append(subscriber)

    def remove() -> None:
        with _subscribers_lock:
            found = _subscribers.get(channel, [])
            if subscriber in found:
                found.remove(subscriber)

    return remove


def _committed(session: Session) -> None:
    for channel, payload in session.info.pop(_PENDING, ()):
        with _subscribers_lock:
            subscribers = list(_subscribers.get(channel, ()))
        for subscriber in subscribers:
            subscriber(payload)


def _rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)


event.listen(Session, "after_commit", _committed)
event.listen(Session, "after_rollback", _rolled_back)


class Listener:
    """A thread that LISTENs on PostgreSQL channels and calls `handlers[channel](payload)`
    for every NOTIFY (any process's), in the order they were committed.

    `on_connect()` is called once the channels are listened to (everything committed after
    it is heard), `on_disconnect()` when the connection is lost or the listener stops; it
    reconnects every `retry` seconds meanwhile. Not for SQLite, which has no NOTIFY.
    """

    def __init__(
        self,
        engine: Engine,
        handlers: Mapping[str, Callable[[str], None]],
        *,
        on_connect: Callable[[], None] = lambda: None,
        on_disconnect: Callable[[], None] = lambda: None,
        retry: float = 1.0,
        name: str = "notices-listen",
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError(f"LISTEN needs PostgreSQL, not {engine.dialect.name}")
        self._dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._handlers = dict(handlers)
        self._on_connect, self._on_disconnect = on_connect, on_disconnect
        self._retry = retry
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Listener:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                # Keepalives: a connection that died silently is noticed in under a minute.
                with psycopg.connect(
                    self._dsn, autocommit=True, connect_timeout=5, keepalives_idle=20,
                    keepalives_interval=5, keepalives_count=3,
                ) as conn:  # fmt: skip
                    for channel in self._handlers:
                        conn.execute(f'LISTEN "{channel}"')
                    self._on_connect()
                    try:
                        while not self._stopping.is_set():
                            for notice in conn.notifies(timeout=0.1, stop_after=1):
                                self._handle(notice.channel, notice.payload)
                    finally:
                        self._on_disconnect()
            except psycopg.Error as exc:
                log.warning(
                    "listening on %s failed (%s); trying again in %.0f s",
                    ", ".join(self._handlers),
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                    self._retry,
                )
                self._stopping.wait(self._retry)

    def _handle(self, channel: str, payload: str) -> None:
        try:
            self._handlers[channel](payload)
        except Exception:  # a handler's bug must not stop the listening
            log.exception("handling a notice on %s failed", channel)
