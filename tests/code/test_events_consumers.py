"""Consumer logic without Redis: parsing, de-duplication, and where a stream reader resumes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aifx_ml.events.consumers import (
    START,
    Deduplicator,
    Event,
    StreamConsumer,
    parse_event,
    validate_channels,
)


def message(event_id: str, channel: str = "ml:new_prediction", **data: Any) -> bytes:
    body = {"id": event_id, "timestamp": "2026-11-24T12:00:00+00:00", "channel": channel}
    return json.dumps({**body, "data": data}).encode()


class FakeStreamClient:
    """Just enough of redis.Redis for a stream reader: XREAD over a list, XREVRANGE."""

    def __init__(self, payloads: list[bytes]) -> None:
        self.entries = [(f"{i + 1}-0".encode(), {b"payload": p}) for i, p in enumerate(payloads)]

    def xread(self, streams: dict[str, str], count: int, block: int | None) -> Any:
        ((key, after),) = streams.items()
        after_ms = int(after.split("-")[0])
        newer = [e for e in self.entries if int(e[0].split(b"-")[0]) > after_ms][:count]
        return [(key.encode(), newer)] if newer else []

    def xrevrange(self, key: str, count: int) -> Any:
        return self.entries[-1:]


def test_parse_event_reads_the_published_envelope() -> None:
    event = parse_event(message("e1", "ml:model_deployed", version="v3"), stream_id="7-0")
    assert event == Event(
        "e1", "ml:model_deployed", "2026-11-24T12:00:00+00:00", {"version": "v3"}, "7-0"
    )
    for bad in (b"not json", b"[]", json.dumps({"id": "x"}).encode()):
        with pytest.raises(ValueError, match="not an event message"):
            parse_event(bad)


def test_deduplicator_counts_repeats_and_forgets_the_oldest() -> None:
    seen = Deduplicator(capacity=3)
    assert [seen.first_time(i) for i in ["a", "b", "a", "c", "b"]] == [
        True,
        True,
        False,
        True,
        False,
    ]
    assert seen.duplicates == 2
    seen.first_time("d")  # "a" falls out of the window of 3
    assert "a" not in seen and all(i in seen for i in "bcd")
    assert seen.first_time("a")
    with pytest.raises(ValueError):
        Deduplicator(capacity=0)


def test_validate_channels() -> None:
    assert validate_channels(None) is None
    assert validate_channels([]) is None
    assert validate_channels(["ml:model_deployed"]) == ["ml:model_deployed"]
    with pytest.raises(ValueError, match="unknown event channel"):
        validate_channels(["ml:model_deployed", "ml:nope"])


def test_stream_consumer_drops_redeliveries_and_other_channels() -> None:
    client = FakeStreamClient(
        [
            message("e1", n=1),
            message("e2", "ml:model_deployed"),
            b"garbage",
            message("e1", n=1),  # the relay resent it
            message("e3", n=3),
        ]
    )
    consumer = StreamConsumer(client, channels=["ml:new_prediction"], from_start=True)  # type: ignore[arg-type]
    assert [e.id for e in consumer.poll()] == ["e1", "e3"]
    assert consumer.duplicates == 1
    assert consumer.position == "5-0"
    assert consumer.poll() == []


def test_stream_consumer_starts_at_the_end_unless_asked_to_replay() -> None:
    client = FakeStreamClient([message("e1"), message("e2")])
    assert StreamConsumer(client).poll() == []  # type: ignore[arg-type]
    assert StreamConsumer(client, from_start=True).position == START  # type: ignore[arg-type]
    resumed = StreamConsumer(client, after_id="1-0")  # type: ignore[arg-type]
    assert [e.id for e in resumed.poll()] == ["e2"]


def test_a_failing_handler_gets_the_event_again_on_resume() -> None:
    client = FakeStreamClient([message("e1"), message("e2"), message("e3")])
    consumer = StreamConsumer(client, from_start=True)  # type: ignore[arg-type]
    handled: list[str] = []

    def handler(event: Event) -> None:
        if event.id == "e2" and "e2" not in failed:
            failed.append("e2")
            raise RuntimeError("handler crashed")
        handled.append(event.id)

    failed: list[str] = []
    with pytest.raises(RuntimeError):
        consumer.run(handler, stop=lambda: False)
    assert handled == ["e1"] and consumer.position == "1-0"

    polls = iter([False, True])
    assert consumer.run(handler, stop=lambda: next(polls)) == 2
    assert handled == ["e1", "e2", "e3"] and consumer.duplicates == 0
