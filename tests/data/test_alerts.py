"""Alerts against a real HTTP receiver on this machine, through apprise's json:// webhook: the
payload arrives once, the cooldown holds back repeats, and a receiver that is down leads to a
recorded failure and a later delivery — never to an exception in the caller."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from aifx_ml.alerts.notify import (
    GIVE_UP_AFTER,
    apprise_sender,
    check_and_alert,
    deliver_pending,
    list_alerts,
    message_body,
    raise_alert,
    retry_failed,
)
from aifx_ml.alerts.rules import AlertDraft
from aifx_ml.cli.main import main
from aifx_ml.config import Settings, load_settings
from aifx_ml.db.engine import transaction
from aifx_ml.db.models import DataQuarantine, MarketData, ModelTrainingLog
from aifx_ml.events.outbox import enqueue_many
from tests.event_payloads import new_market_data

pytestmark = pytest.mark.integration

COOLDOWN = timedelta(hours=6)
DRAFT = AlertDraft(
    key="outbox-backlog",
    kind="outbox_backlog",
    severity="warning",
    title="5 event(s) waiting in the outbox for 3 h",
    body="5 event(s) have not reached Redis.",
    details={"pending": 5},
)


class Receiver:
    """An HTTP endpoint on 127.0.0.1 recording each JSON body POSTed to it; it can be stopped
    (the port then refuses connections) and started again on the same port."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.port = 0
        self._arrived = threading.Condition()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/alerts"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with receiver._arrived:  # recorded before the reply: the sender sees it done
                    receiver.bodies.append(body)
                    receiver._arrived.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # quiet test output
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        serve = self._server.serve_forever
        threading.Thread(target=serve, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The bodies once `count` have arrived (or what arrived within `timeout`)."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.bodies) >= count, timeout)
            return list(self.bodies)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()


def settings(engine: Engine, tmp_path: Path, **values: Any) -> Settings:
    url = engine.url.render_as_string(hide_password=False)
    return load_settings(env_file=None, data_dir=tmp_path, database_url=url, **values)


def test_the_payload_arrives_once_and_a_repeat_within_the_cooldown_is_suppressed(
    engine: Engine, receiver: Receiver, as_of: datetime
) -> None:
    sender = apprise_sender([receiver.url])
    first = raise_alert(engine, DRAFT, as_of=as_of, cooldown=COOLDOWN, sender=sender)
    assert (first.status, first.attempts, first.sent_at) == ("sent", 1, as_of)
    (payload,) = receiver.wait_for(1)
    assert payload["title"] == "AIFX warning: 5 event(s) waiting in the outbox for 3 h"
    assert payload["message"] == message_body(first)
    assert payload["message"].startswith("5 event(s) have not reached Redis.")
    assert "outbox-backlog" in payload["message"]

    repeat = raise_alert(
        engine, DRAFT, as_of=as_of + timedelta(hours=1), cooldown=COOLDOWN, sender=sender
    )
    assert (repeat.status, repeat.attempts, repeat.next_attempt_at) == ("suppressed", 0, None)
    later = raise_alert(
        engine, DRAFT, as_of=as_of + timedelta(hours=7), cooldown=COOLDOWN, sender=sender
    )
    assert later.status == "sent"
    assert len(receiver.wait_for(2)) == 2
    rows = list_alerts(engine)
    assert [a.status for a in rows] == ["sent", "suppressed", "sent"]  # newest first
    assert rows[0].details == {"pending": 5}


def test_a_receiver_that_is_down_is_recorded_and_the_retry_delivers_once(
    engine: Engine, receiver: Receiver, as_of: datetime
) -> None:
    sender = apprise_sender([receiver.url])
    receiver.stop()
    failed = raise_alert(engine, DRAFT, as_of=as_of, cooldown=COOLDOWN, sender=sender)
    assert (failed.status, failed.attempts, failed.sent_at) == ("failed", 1, None)
    assert failed.last_error is not None and "not delivered" in failed.last_error
    assert "127.0.0.1" in failed.last_error
    assert failed.next_attempt_at == as_of + timedelta(minutes=1)
    # Still on its way: the same condition raised meanwhile is not sent a second time.
    again = raise_alert(
        engine, DRAFT, as_of=as_of + timedelta(seconds=30), cooldown=COOLDOWN, sender=sender
    )
    assert again.status == "suppressed"
    assert retry_failed(engine, now=as_of + timedelta(seconds=50), sender=sender) == []  # not due

    receiver.start()  # the same port
    (retried,) = retry_failed(engine, now=as_of + timedelta(minutes=2), sender=sender)
    assert retried.id == failed.id
    assert (retried.status, retried.attempts) == ("sent", 2)
    assert retried.sent_at == as_of + timedelta(minutes=2) and retried.next_attempt_at is None
    assert retry_failed(engine, now=as_of + timedelta(minutes=10), sender=sender) == []
    (payload,) = receiver.wait_for(1)
    assert payload["title"] == "AIFX warning: 5 event(s) waiting in the outbox for 3 h"


def test_two_raisers_of_one_key_at_once_send_it_once(engine: Engine, as_of: datetime) -> None:
    sent: list[str] = []
    start = threading.Barrier(2)
    statuses: list[str] = []

    def raise_one() -> None:
        start.wait(timeout=5)
        alert = raise_alert(engine, DRAFT, as_of=as_of, sender=lambda t, b: sent.append(t))
        statuses.append(alert.status)

    threads = [threading.Thread(target=raise_one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sorted(statuses) == ["sent", "suppressed"]
    assert len(sent) == 1


def test_failures_back_off_and_are_given_up_after_a_day(engine: Engine, as_of: datetime) -> None:
    calls: list[str] = []

    def broken(title: str, body: str) -> None:
        calls.append(title)
        raise ConnectionError("no route to host")

    alert = raise_alert(engine, DRAFT, as_of=as_of, sender=broken)
    assert alert.last_error == "ConnectionError: no route to host"
    waits = []
    while alert.next_attempt_at is not None:
        waits.append(alert.next_attempt_at - as_of)
        (alert,) = retry_failed(engine, now=alert.next_attempt_at, sender=broken)
    assert waits[:4] == [timedelta(minutes=m) for m in (1, 3, 7, 15)]  # 1, 2, 4, 8 min apart
    assert max(b - a for a, b in zip(waits, waits[1:], strict=False)) == timedelta(hours=1)
    assert alert.status == "failed" and len(calls) == alert.attempts
    assert waits[-1] <= GIVE_UP_AFTER
    assert retry_failed(engine, now=as_of + 2 * GIVE_UP_AFTER, sender=broken) == []


def test_without_urls_alerts_wait_until_some_are_configured(
    engine: Engine, receiver: Receiver, as_of: datetime, tmp_path: Path
) -> None:
    waiting = raise_alert(engine, DRAFT, as_of=as_of, sender=None)
    assert (waiting.status, waiting.attempts) == ("pending", 0)
    assert deliver_pending(engine, settings(engine, tmp_path), as_of) == []  # no URLs yet
    configured = settings(engine, tmp_path, alert_urls=[receiver.url])
    (sent,) = deliver_pending(engine, configured, as_of + timedelta(minutes=5))
    assert sent.status == "sent"
    assert len(receiver.wait_for(1)) == 1


def test_an_unusable_url_is_recorded_not_raised(
    engine: Engine, as_of: datetime, tmp_path: Path
) -> None:
    config = settings(engine, tmp_path, alert_urls=["nosuchscheme://secret-token@host"])
    raised = check_and_alert(engine, config, as_of)
    assert raised == []  # an empty database: nothing to say
    alert = raise_alert(engine, DRAFT, as_of=as_of, sender=None)
    (retried,) = deliver_pending(engine, config, as_of)
    assert retried.id == alert.id and retried.status == "failed"
    assert retried.last_error == "'nosuchscheme://…' is not an alert URL apprise understands"


def seed_problems(engine: Engine, now: datetime) -> None:
    """Two skipped daily runs, a failed weekly one, a quarantine spike, a stale series with a
    gap, and events waiting an hour in the outbox."""

    def training(hours_ago: int, status: str, training_type: str = "incremental") -> dict[str, Any]:
        return {
            "id": uuid.uuid4(),
            "training_type": training_type,
            "model_type": "lstm",
            "status": status,
            "started_at": now - timedelta(hours=hours_ago),
            "error_message": f"{status} {hours_ago} h ago",
        }

    def candle(hours_ago: int) -> dict[str, Any]:
        ts = now - timedelta(hours=hours_ago)
        return {
            "id": uuid.uuid4(),
            "pair": "EUR/USD",
            "timeframe": "1h",
            "timestamp": ts,
            "open": 1.1,
            "high": 1.2,
            "low": 1.0,
            "close": 1.15,
            "volume": 1.0,
            "source": "test",
            "created_at": ts,
            "updated_at": ts,
        }

    def refused(n: int) -> dict[str, Any]:
        return {
            "id": uuid.uuid4(),
            "source": "feed.csv",
            "pair": "EUR/USD",
            "timeframe": "1h",
            "row_number": n,
            "raw": {"close": "x"},
            "reason": "close is not a number",
            "row_hash": f"{n:064d}",
            "created_at": now - timedelta(hours=2),
        }

    with transaction(engine) as session:
        session.execute(
            insert(ModelTrainingLog),
            [
                training(72, "completed"),
                # Monday noon and Tuesday midnight (a Sunday skip would be the weekend's).
                training(24, "skipped"),
                training(12, "skipped"),
                training(30, "failed", "full"),
            ],
        )
        # Newest candle 10 hours ago (9 closed since), one missing in between.
        session.execute(insert(MarketData), [candle(h) for h in (14, 13, 11, 10)])
        session.execute(insert(DataQuarantine), [refused(n) for n in range(12)])
        enqueue_many(session, [new_market_data(1), new_market_data(2)], now - timedelta(hours=1))


def test_check_and_alert_raises_what_the_database_shows_once(
    engine: Engine, receiver: Receiver, as_of: datetime, tmp_path: Path
) -> None:
    seed_problems(engine, as_of)
    config = settings(
        engine, tmp_path, alert_urls=[receiver.url], redis_url="redis://127.0.0.1:1/0"
    )
    raised = check_and_alert(engine, config, as_of)
    assert sorted(a.kind for a in raised) == [
        "data_gaps",
        "outbox_backlog",
        "quarantine_spike",
        "stale_data",
        "training_failed",
        "training_skipped",
    ]
    assert {a.status for a in raised} == {"sent"}
    titles = sorted(body["title"] for body in receiver.wait_for(6))
    assert len(titles) == 6
    assert "AIFX critical: Weekly full training of lstm failed" in titles
    assert "AIFX warning: Daily incremental training of lstm skipped 2 times in a row" in titles

    # An hour later nothing has changed: every alert is a repeat within its cooldown.
    again = check_and_alert(engine, config, as_of + timedelta(hours=1))
    assert len(again) == 6 and {a.status for a in again} == {"suppressed"}
    assert len(receiver.bodies) == 6
    # Without Redis configured, waiting events are how things should be: no backlog alert.
    quiet = check_and_alert(engine, settings(engine, tmp_path), as_of + timedelta(hours=8))
    assert "outbox_backlog" not in {a.kind for a in quiet}


# --- the command line --------------------------------------------------------------------------

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def aifx(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Run:
    """Run `aifx ARGS` on a fresh database; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("AIFX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AIFX_DATABASE_URL", db_url)
    monkeypatch.delenv("AIFX_ALERT_URLS", raising=False)
    monkeypatch.chdir(tmp_path)  # no mlflow.env here: only the environment counts

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_test_alert_is_sent_and_listed(
    aifx: Run, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = aifx("alerts", "test", "--url", receiver.url)
    assert code == 0, err
    assert "sent a test alert to 1 URL(s)" in out
    (payload,) = receiver.wait_for(1)
    assert payload["title"] == "AIFX info: Test alert"
    assert "alerts from AIFX reach you" in payload["message"]

    monkeypatch.setenv("AIFX_ALERT_URLS", receiver.url)  # the configured URLs by default
    assert aifx("alerts", "test")[0] == 0
    assert len(receiver.wait_for(2)) == 2

    code, out, _ = aifx("alerts", "list")
    assert code == 0
    assert out.count("Test alert") == 2 and "sent" in out
    code, out, _ = aifx("alerts", "list", "--status", "failed")
    assert code == 0 and "no alerts with status failed" in out


def test_cli_test_alert_that_cannot_be_delivered_is_one_line_and_recorded(
    aifx: Run, receiver: Receiver
) -> None:
    url = receiver.url
    receiver.stop()
    code, _, err = aifx("alerts", "test", "--url", url)
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error: test alert not delivered: alert not delivered:")

    code, _, err = aifx("alerts", "test", "--url", "nosuchscheme://token@host")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "'nosuchscheme://…' is not an alert URL apprise understands" in err
    assert "token" not in err

    code, out, _ = aifx("alerts", "list", "--status", "failed", "--limit", "5")
    assert code == 0 and out.count("Test alert") == 2 and "given up" in out

    code, _, err = aifx("alerts", "test")
    assert code == 1 and "no alert URLs: set AIFX_ALERT_URLS or pass --url" in err
    code, _, err = aifx("alerts", "list", "--status", "lost")
    assert code == 1 and "invalid status 'lost'" in err
