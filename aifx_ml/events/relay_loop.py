"""A relay that runs beside a long-lived process (`aifx serve`): events reach Redis within
moments of their commit instead of at the next `aifx events relay`.

A background thread relays whenever it is woken: by a commit in this process that wrote
events (`outbox.on_commit`), on PostgreSQL by the NOTIFY such a commit sends from any process
(a flow, the CLI, another worker), and in any case every `interval` seconds. Several relays
(one per worker) share the work through the relay's lock; one that finds it held looks again
a moment later, so an event committed meanwhile is not left for the next interval. Rounds
are at least `min_gap` seconds apart: under load (a commit every few milliseconds) one round
takes everything committed since the last, instead of a round per commit competing with the
requests for the CPU. With Redis
(or the database) away the events wait in the outbox, and the loop backs off up to
`max_backoff` seconds, ignoring wake-ups, until it can deliver again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from aifx_ml.db.notices import Listener
from aifx_ml.events.outbox import NOTIFY_CHANNEL, on_commit
from aifx_ml.events.relay import RelayReport, redis_client, relay_events

log = logging.getLogger(__name__)
BUSY_RETRY = 0.05  # seconds before looking again when another relay holds the lock


class RelayLoop:
    """Start it with `start()`, stop it with `stop()` (which relays once more first)."""

    def __init__(
        self,
        engine: Engine,
        redis_url: str,
        now: Callable[[], datetime],
        *,
        interval: float = 1.0,
        min_gap: float = 0.2,
        max_backoff: float = 5.0,
        on_report: Callable[[RelayReport], None] | None = None,
    ) -> None:
        self._engine, self._now = engine, now
        self._interval, self._min_gap, self._max_backoff = interval, min_gap, max_backoff
        self._on_report = on_report
        self._client = redis_client(redis_url, timeout=2.0)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._remove_listener: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._run, name="event-relay", daemon=True)
        self._listener: Listener | None = None
        self.published = 0

    def start(self) -> RelayLoop:
        self._remove_listener = on_commit(self._wake.set)
        if self._engine.dialect.name == "postgresql":
            # Every NOTIFY of a commit that wrote events (any process) wakes the relay, and
            # so does (re)connecting: what was committed while nobody listened.
            wake = self._wake.set
            self._listener = Listener(
                self._engine,
                {NOTIFY_CHANNEL: lambda _payload: wake()},
                on_connect=wake,
                retry=self._interval,
                name="event-relay-listen",
            ).start()
        self._thread.start()
        self._wake.set()  # what waited before this process started
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
        self._stopping.set()
        self._wake.set()
        if self._listener is not None:
            self._listener.stop(timeout)
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)
        self._client.close()

    def _run(self) -> None:
        failures = 0
        while True:
            if failures:  # backing off: commits do not shorten the wait
                delay = min(self._interval * 2 ** (failures - 1), self._max_backoff)
                self._stopping.wait(delay)
            else:
                self._wake.wait(self._interval)
            self._wake.clear()
            report = self._relay_once()
            failures = failures + 1 if report.error else 0
            if self._stopping.is_set() and (report.error or not report.busy):
                return
            if report.busy:
                self._stopping.wait(BUSY_RETRY)
                self._wake.set()
            elif not failures:
                self._stopping.wait(self._min_gap)

    def _relay_once(self) -> RelayReport:
        try:
            report = relay_events(self._engine, self._client, now=self._now)
        except OperationalError as exc:  # the database is away; it keeps the events
            report = RelayReport(error=f"database: {str(exc.orig or exc).splitlines()[0]}")
        except Exception as exc:  # never let the thread die: the next wake tries again
            log.exception("the event relay failed; events wait in the outbox")
            report = RelayReport(error=str(exc))
        self.published += report.published
        if self._on_report is not None:
            self._on_report(report)
        return report
