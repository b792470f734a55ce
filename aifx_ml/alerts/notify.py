"""Alerts stored in `alerts` and sent to people through apprise, never failing the caller.

Every alert raised is a row. A repeat of a key within its cooldown is stored `suppressed` and
not sent; a send that fails is stored `failed` with the error and a next attempt (backing off
exponentially) that `retry_failed` makes; what is not delivered within a day is given up.
Delivery is at least once: a crash between sending and recording sends again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import apprise
from sqlalchemy import Engine, and_, or_, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from aifx_ml.alerts.queries import (
    GAP_LOOKBACK,
    TRAINING_LOOKBACK,
    newest_candles,
    quarantine_counts,
    recent_gaps,
    recent_training_runs,
)
from aifx_ml.alerts.rules import (
    AlertDraft,
    ageing_alerts,
    data_quality_alerts,
    find_stale_series,
    outbox_alert,
    training_alerts,
)
from aifx_ml.config import Settings
from aifx_ml.db.engine import session_factory, transaction
from aifx_ml.db.models import ALERT_STATUSES, Alert
from aifx_ml.domain import SignalPolicy
from aifx_ml.errors import AifxError, InvalidInputError
from aifx_ml.events.relay import outbox_status
from aifx_ml.models.versions import production_ages

log = logging.getLogger(__name__)

# (title, body) -> None; raises when the alert could not be delivered.
Sender = Callable[[str, str], None]

DEFAULT_COOLDOWN = timedelta(hours=6)
OUTBOX_THRESHOLD = timedelta(minutes=30)
# A condition stays visible to `check_and_alert` for its rule's look-back: one alert per look.
COOLDOWNS: dict[str, timedelta] = {
    "training_failed": TRAINING_LOOKBACK,
    "training_skipped": TRAINING_LOOKBACK,
    "quarantine_spike": timedelta(hours=24),
    "data_gaps": GAP_LOOKBACK,
}
RETRY_FIRST = timedelta(minutes=1)
RETRY_MAX = timedelta(hours=1)
GIVE_UP_AFTER = timedelta(days=1)
# A row being sent is `pending` with this lease; if the sender dies, a retry takes it after.
SEND_LEASE = timedelta(minutes=5)


class AlertDeliveryError(AifxError):
    """An alert could not be delivered (or the alert URLs cannot be used)."""


def raise_alert(
    engine: Engine,
    draft: AlertDraft,
    *,
    as_of: datetime,
    cooldown: timedelta = DEFAULT_COOLDOWN,
    sender: Sender | None,
    retry: bool = True,
) -> Alert:
    """Store `draft` and send it, unless its key was sent (or is still on its way) within
    `cooldown` before `as_of`: then it is stored `suppressed`. A failed send is stored `failed`
    and retried later (not with `retry=False`); with no sender it waits `pending`."""
    alert = _record(engine, draft, as_of, cooldown, sending=sender is not None)
    if alert.status != "pending" or sender is None:
        return alert
    return _attempt(engine, alert, sender, as_of, retry=retry)


def retry_failed(engine: Engine, *, now: datetime, sender: Sender, limit: int = 100) -> list[Alert]:
    """Send the failed and waiting alerts due at `now`, oldest first; those raised more than
    a day ago are given up instead (left `failed` with no next attempt)."""
    return [_attempt(engine, a, sender, now, retry=True) for a in _claim_due(engine, now, limit)]


def apprise_sender(urls: Sequence[str]) -> Sender:
    """A sender to every apprise URL in `urls` (Discord, Slack, e-mail, Telegram, json://...).

    Raises AlertDeliveryError now for a URL apprise does not understand (named without its
    secrets); the sender raises it for an alert not delivered, with apprise's reasons.
    """
    if not urls:
        raise AlertDeliveryError("no alert URLs configured (set AIFX_ALERT_URLS)")
    notifier = apprise.Apprise()
    for url in urls:
        with _apprise_log():
            added = notifier.add(url)
        if not added:
            scheme = url.split("://", 1)[0] if "://" in url else url[:8]
            raise AlertDeliveryError(f"'{scheme}://…' is not an alert URL apprise understands")

    def send(title: str, body: str) -> None:
        with _apprise_log() as logs:
            delivered = notifier.notify(title=title, body=body)
        if not delivered:
            lines = [line.strip() for line in logs.getvalue().splitlines() if line.strip()]
            reasons = "; ".join(dict.fromkeys(lines)) or "apprise gave no reason"
            raise AlertDeliveryError(f"alert not delivered: {reasons}")

    return send


def _apprise_log() -> Any:
    """apprise's warnings, captured: they go into the recorded error, not onto stderr."""
    return apprise.LogCapture(level=logging.WARNING, fmt="%(message)s")  # type: ignore[no-untyped-call]


def sender_for(urls: Sequence[str]) -> Sender | None:
    """The sender to `urls`; None without any (alerts then wait `pending`). URLs apprise does
    not understand give a sender that always fails with that reason, so each alert records it."""
    if not urls:
        return None
    try:
        return apprise_sender(urls)
    except AlertDeliveryError as exc:
        return _failing(exc)


def deliver_pending(engine: Engine, settings: Settings, now: datetime) -> list[Alert]:
    """Retry the alerts due at `now` through the configured URLs. For flows: never raises;
    a database failure is logged, a send failure recorded."""
    sender = sender_for(settings.alert_urls)
    if sender is None:
        return []
    try:
        retried = retry_failed(engine, now=now, sender=sender)
    except SQLAlchemyError as exc:
        log.warning("alerts not retried, the database failed: %s", _one_line(exc))
        return []
    _warn_undelivered(retried)
    return retried


def raise_alert_safely(
    engine: Engine,
    settings: Settings,
    draft: AlertDraft,
    *,
    as_of: datetime,
    cooldown: timedelta | None = None,
) -> Alert | None:
    """`raise_alert` through the configured URLs, for flows: never raises; None (and a log
    line) if the database failed. The cooldown defaults to the one of the draft's kind."""
    try:
        alert = raise_alert(
            engine,
            draft,
            as_of=as_of,
            cooldown=cooldown or COOLDOWNS.get(draft.kind, DEFAULT_COOLDOWN),
            sender=sender_for(settings.alert_urls),
        )
    except SQLAlchemyError as exc:
        log.warning("alert %s not recorded, the database failed: %s", draft.key, _one_line(exc))
        return None
    _warn_undelivered([alert])
    return alert


def check_and_alert(
    engine: Engine, settings: Settings, now: datetime, sender: Sender | None = None
) -> list[Alert]:
    """Retry due alerts, then raise what the training, data-quality and outbox rules find at
    `now` (through `sender`, by default the configured URLs). For flows: never raises; a
    database failure is logged and what was done so far is returned."""
    send = sender if sender is not None else sender_for(settings.alert_urls)
    done: list[Alert] = []
    try:
        if send is not None:
            done += retry_failed(engine, now=now, sender=send)
        for draft in current_drafts(engine, settings, now):
            cooldown = COOLDOWNS.get(draft.kind, DEFAULT_COOLDOWN)
            done.append(raise_alert(engine, draft, as_of=now, cooldown=cooldown, sender=send))
    except SQLAlchemyError as exc:
        log.warning("alert check stopped, the database failed: %s", _one_line(exc))
    _warn_undelivered(done)
    return done


def current_drafts(engine: Engine, settings: Settings, now: datetime) -> list[AlertDraft]:
    """What the training, data-quality and outbox rules make of the database at `now`."""
    drafts = training_alerts(recent_training_runs(engine, now))
    drafts += ageing_alerts(production_ages(engine), now, SignalPolicy())
    stale = find_stale_series(newest_candles(engine, now), now)
    drafts += data_quality_alerts(quarantine_counts(engine, now), stale, recent_gaps(engine, now))
    if settings.redis_url is not None:  # without Redis, events wait in the outbox by design
        status = outbox_status(engine)
        age = None if status.oldest_created_at is None else now - status.oldest_created_at
        backlog = outbox_alert(status.pending, age, OUTBOX_THRESHOLD, status.last_error)
        drafts += [backlog] if backlog is not None else []
    return drafts


def list_alerts(engine: Engine, *, status: str | None = None, limit: int = 50) -> list[Alert]:
    """The newest alerts first, of one status if given."""
    if status is not None and status not in ALERT_STATUSES:
        raise InvalidInputError(
            f"invalid status {status!r}: expected one of {' '.join(ALERT_STATUSES)}"
        )
    query = select(Alert).order_by(Alert.created_at.desc(), Alert.id).limit(limit)
    if status is not None:
        query = query.where(Alert.status == status)
    with session_factory(engine)() as session:
        return list(session.scalars(query))


def message_title(alert: Alert) -> str:
    """The title people see: where it comes from and how bad it is first."""
    return f"AIFX {alert.severity}: {alert.title}"


def message_body(alert: Alert) -> str:
    """The body people see, ending with what finds the alert in `aifx alerts list`."""
    raised = f"{alert.created_at:%Y-%m-%d %H:%M} UTC"
    return f"{alert.body}\n\n({alert.kind} alert {alert.alert_key}, raised {raised})"


# --- the alerts table: record, send, claim what is due ---------------------------------------


def _record(
    engine: Engine, draft: AlertDraft, as_of: datetime, cooldown: timedelta, sending: bool
) -> Alert:
    """Store the alert `pending` (to be sent now) or `suppressed`, under the key's lock so two
    raisers of one key never both send."""
    on_its_way = or_(
        Alert.status.in_(("sent", "pending")),
        and_(Alert.status == "failed", Alert.next_attempt_at.is_not(None)),
    )
    with _locked(engine, draft.key) as session:
        earlier = session.scalar(
            select(Alert.id)
            .where(Alert.alert_key == draft.key, Alert.created_at > as_of - cooldown, on_its_way)
            .limit(1)
        )
        alert = Alert(
            id=uuid.uuid4(),
            alert_key=draft.key,
            kind=draft.kind,
            severity=draft.severity,
            title=draft.title,
            body=draft.body,
            details=dict(draft.details),
            created_at=as_of,
            status="suppressed" if earlier is not None else "pending",
            attempts=0,
            next_attempt_at=None if earlier is not None else _first_attempt(as_of, sending),
        )
        session.add(alert)
    return alert


def _first_attempt(as_of: datetime, sending: bool) -> datetime:
    """Sent now: leased while the sender works; no sender: due as soon as there is one."""
    return as_of + SEND_LEASE if sending else as_of


def _attempt(engine: Engine, alert: Alert, sender: Sender, now: datetime, retry: bool) -> Alert:
    """Send one alert and record the outcome; a failure of any kind is recorded, not raised."""
    try:
        sender(message_title(alert), message_body(alert))
    except Exception as exc:  # whatever a channel raises, the caller's flow goes on
        error = _one_line(exc)
        log.info("alert %s not delivered: %s", alert.alert_key, error)
        outcome = {
            "status": "failed",
            "last_error": error,
            "next_attempt_at": _next_attempt(alert, now) if retry else None,
        }
    else:
        outcome = {"status": "sent", "sent_at": now, "next_attempt_at": None}
    with transaction(engine) as session:
        row = session.get(Alert, alert.id)
        assert row is not None
        row.attempts += 1
        for name, value in outcome.items():
            setattr(row, name, value)
    return row


def _next_attempt(alert: Alert, now: datetime) -> datetime | None:
    """Back off exponentially from RETRY_FIRST to RETRY_MAX; None once past GIVE_UP_AFTER."""
    delay = min(RETRY_FIRST * 2 ** min(alert.attempts, 10), RETRY_MAX)
    at = now + delay
    return None if at > alert.created_at + GIVE_UP_AFTER else at


def _claim_due(engine: Engine, now: datetime, limit: int) -> list[Alert]:
    """Take the alerts due at `now` for sending (a lease), giving up those too old to send."""
    due = (
        select(Alert)
        .where(Alert.status.in_(("failed", "pending")), Alert.next_attempt_at <= now)
        .order_by(Alert.created_at, Alert.id)
        .limit(limit)
        .with_for_update(skip_locked=True)  # PostgreSQL; SQLite holds its write lock instead
    )
    claimed = []
    with _locked(engine, None) as session:
        for alert in session.scalars(due):
            if now > alert.created_at + GIVE_UP_AFTER:
                alert.status, alert.next_attempt_at = "failed", None
                alert.last_error = alert.last_error or "given up: not sent within a day"
            else:
                alert.status, alert.next_attempt_at = "pending", now + SEND_LEASE
                claimed.append(alert)
    return claimed


@contextmanager
def _locked(engine: Engine, key: str | None) -> Iterator[Session]:
    """A transaction holding SQLite's write lock, or on PostgreSQL an advisory lock on `key`
    (rows to claim are locked by the query itself); commits if the block succeeds."""
    with session_factory(engine)() as session:
        conn = session.connection()
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql" and key is not None:
            conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                {"key": f"aifx-alert:{key}"},
            )
        yield session
        session.commit()


def _failing(error: Exception) -> Sender:
    def send(title: str, body: str) -> None:
        raise error

    return send


def _warn_undelivered(alerts: Sequence[Alert | None]) -> None:
    """One log line per alert a flow raised that did not go out (the table has the rest)."""
    for alert in alerts:
        if alert is not None and alert.status == "failed":
            log.warning("alert %s not delivered: %s", alert.alert_key, alert.last_error)


def _one_line(exc: BaseException) -> str:
    """An exception as one line of at most 2,000 characters (a database error: the driver's)."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    first = lines[0] if lines else ""
    return (first if isinstance(cause, AifxError) else f"{type(cause).__name__}: {first}")[:2000]
