"""The relay's pure parts: the message as published, and the follow loop's pacing."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from aifx_ml.events import relay
from aifx_ml.events.outbox import envelope, published_message
from aifx_ml.events.relay import RelayReport, relay_forever
from tests.event_payloads import model_deployed

AS_OF = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_published_message_puts_the_row_id_first() -> None:
    event_id = uuid.uuid4()
    stored = envelope(model_deployed(), AS_OF)
    # PostgreSQL's JSONB hands keys back in its own order; the message is the same anyway.
    reordered = {
        "data": stored["data"],
        "channel": stored["channel"],
        "timestamp": AS_OF.isoformat(),
        "schema_version": stored["schema_version"],
    }
    for payload in (stored, reordered):
        message = published_message(event_id, payload)
        assert list(message) == ["id", "schema_version", "timestamp", "channel", "data"]
        assert message == {"id": str(event_id), **stored}
        assert json.loads(json.dumps(message)) == message


def test_report_ok_only_when_configured_and_clean() -> None:
    assert RelayReport(published=3).ok
    assert not RelayReport(error="ConnectionError: refused").ok
    assert not RelayReport(pending=2, configured=False).ok


def scripted(monkeypatch: pytest.MonkeyPatch, outcomes: list[Any]) -> None:
    """relay_events returns (or raises) these, one per call."""
    pending = iter(outcomes)

    def fake(*_args: Any, **_kwargs: Any) -> RelayReport:
        outcome = next(pending)
        if isinstance(outcome, Exception):
            raise outcome
        assert isinstance(outcome, RelayReport)
        return outcome

    monkeypatch.setattr(relay, "relay_events", fake)


def test_follow_loop_backs_off_on_failure_and_resets_after_success(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    down = RelayReport(error="ConnectionError: refused", pending=5)
    db_down = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    scripted(
        monkeypatch,
        [
            RelayReport(published=2),
            down,
            down,
            db_down,
            down,
            RelayReport(published=5),
            RelayReport(),
        ],
    )
    sleeps: list[float] = []
    reports: list[RelayReport] = []
    runs = iter(range(7))
    total = relay_forever(
        None,  # type: ignore[arg-type]  # relay_events is replaced
        None,  # type: ignore[arg-type]
        now=lambda: AS_OF,
        stop=lambda: next(runs, None) is None,
        sleep=sleeps.append,
        interval=1.0,
        max_backoff=5.0,
        on_report=reports.append,
    )
    assert total == 7
    assert sleeps == [1.0, 1.0, 2.0, 4.0, 5.0, 1.0, 1.0]
    assert reports[3].error is not None and reports[3].error.startswith("database: server closed")
