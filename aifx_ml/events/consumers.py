"""Listening to events: live on Pub/Sub, or from the stream so nothing is missed while away.

The relay sends each event once (Redis skips an event whose marker it already holds), but
the marker lasts a day: a batch left unmarked longer than that could arrive twice. Every
consumer here remembers the ids it has seen and hands each event to the caller once.

They hand on every event whatever its `schema_version`: `Event.payload` parses `data` into
the channel's model when the handler asks, and raises `UnsupportedSchemaVersionError` for a
version this code does not know (the raw `data` stays readable), so an event from a newer
producer is never dropped on the way.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import redis

from aifx_ml.events.relay import STREAM
from aifx_ml.events.schemas import (
    CHANNELS,
    UNVERSIONED,
    EventPayload,
    InvalidEventError,
    UnsupportedSchemaVersionError,
    parse_payload,
)

__all__ = [
    "Deduplicator",
    "Event",
    "InvalidEventError",
    "StreamConsumer",
    "UnsupportedSchemaVersionError",
    "parse_event",
    "read_stream",
    "stream_end",
    "subscribe",
    "validate_channels",
]

log = logging.getLogger(__name__)

SEEN_CAPACITY = 100_000
# Stream positions: "0-0" is before the first entry.
START = "0-0"

P = TypeVar("P", bound=EventPayload)


@dataclass(frozen=True)
class Event:
    """One event as published: {"id", "schema_version", "timestamp", "channel", "data"}, plus
    where it was read. `data` is the raw dict; `payload` is it parsed into the channel's model."""

    id: str
    channel: str
    timestamp: str
    data: dict[str, Any]
    stream_id: str | None = None
    schema_version: int = UNVERSIONED

    @property
    def payload(self) -> EventPayload:
        """`data` as the channel's model (`aifx_ml.events.schemas.PAYLOADS`).

        UnsupportedSchemaVersionError if the event was written with a version of the payload
        this code does not know; InvalidEventError if `data` does not match the model.
        """
        return parse_payload(self.channel, self.data, self.schema_version)

    def payload_as(self, model: type[P]) -> P:
        """`payload`, typed as the model expected: `event.payload_as(ModelDeployed).version`.

        InvalidEventError if the event is of another channel.
        """
        if self.channel != model.channel:
            raise InvalidEventError(
                f"event {self.id} is on {self.channel}, not {model.channel} ({model.__name__})"
            )
        return cast(P, self.payload)


def parse_event(message: str | bytes, stream_id: str | None = None) -> Event:
    """An `Event` from its JSON message; ValueError if it is not one.

    The payload is not checked here (see `Event.payload`); a message without
    `schema_version` was written before it was recorded and is version 1.
    """
    try:
        body = json.loads(message)
        version = body.get("schema_version", UNVERSIONED)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError(f"invalid schema_version {version!r}")
        return Event(
            id=str(body["id"]),
            channel=str(body["channel"]),
            timestamp=str(body["timestamp"]),
            data=dict(body["data"]),
            stream_id=stream_id,
            schema_version=version,
        )
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise ValueError(f"not an event message: {str(message)[:200]!r}") from exc


class Deduplicator:
    """Remembers the last `capacity` event ids, so a redelivered event is recognised.

    Redeliveries follow their original closely (the relay resends its latest batch), so a
    bounded memory is enough and a long-running consumer does not grow without end.
    """

    def __init__(self, capacity: int = SEEN_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.duplicates = 0
        self._seen: set[str] = set()
        self._order: deque[str] = deque()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._seen

    def add(self, event_id: str) -> None:
        """Remember an id, forgetting the oldest one beyond `capacity`."""
        if event_id in self._seen:
            return
        self._seen.add(event_id)
        self._order.append(event_id)
        if len(self._order) > self.capacity:
            self._seen.discard(self._order.popleft())

    def first_time(self, event_id: str) -> bool:
        """True the first time an id is offered; False (and counted) after that."""
        if event_id in self._seen:
            self.duplicates += 1
            return False
        self.add(event_id)
        return True


def subscribe(
    client: redis.Redis,
    channels: Iterable[str] | None,
    handler: Callable[[Event], None],
    *,
    stop: Callable[[], bool],
    poll_timeout: float = 1.0,
    dedupe: Deduplicator | None = None,
) -> int:
    """Hand every live event on `channels` (None: all of them) to `handler` until `stop()`.

    Pub/Sub keeps nothing for a subscriber that is away; use `StreamConsumer` to catch up.
    `stop` is checked at least every `poll_timeout` seconds. Returns how many were handled.
    """
    names = validate_channels(channels) or list(CHANNELS)
    seen = dedupe or Deduplicator()
    handled = 0
    pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    try:
        pubsub.subscribe(*names)
        while not stop():
            message = pubsub.get_message(timeout=poll_timeout)
            if message is None or message.get("type") != "message":
                continue
            try:
                event = parse_event(message["data"])
            except ValueError as exc:
                log.warning("skipped on %s: %s", message.get("channel"), exc)
                continue
            if seen.first_time(event.id):
                handler(event)
                handled += 1
    finally:
        pubsub.close()
    return handled


def read_stream(
    client: redis.Redis,
    *,
    after_id: str = START,
    channels: Iterable[str] | None = None,
    count: int = 500,
    block_ms: int | None = None,
    stream: str = STREAM,
) -> tuple[list[Event], str]:
    """Up to `count` stream entries after `after_id`, and the position to read from next.

    `block_ms` waits that long for something new (None: do not wait). Entries of other
    channels, and anything that is not an event, are stepped over; no de-duplication here.
    """
    wanted = set(validate_channels(channels) or CHANNELS)
    reply = cast(
        list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]],
        client.xread({stream: after_id}, count=count, block=block_ms),
    )
    events: list[Event] = []
    position = after_id
    for _key, entries in reply or []:
        for raw_id, fields in entries:
            position = raw_id.decode()
            try:
                event = parse_event(fields[b"payload"], stream_id=position)
            except (KeyError, ValueError) as exc:
                log.warning("skipped stream entry %s: %s", position, exc)
                continue
            if event.channel in wanted:
                events.append(event)
    return events, position


def stream_end(client: redis.Redis, stream: str = STREAM) -> str:
    """The id of the newest entry: reading after it yields only what comes next."""
    newest = cast(list[tuple[bytes, Any]], client.xrevrange(stream, count=1))
    return newest[0][0].decode() if newest else START


@dataclass
class StreamConsumer:
    """Reads the event stream from a position, handing each event out once.

    `from_start=True` replays what the stream still holds; otherwise reading starts at its
    current end. `position` can be saved and given back as `after_id` to resume later.
    """

    client: redis.Redis
    channels: list[str] | None = None
    from_start: bool = False
    after_id: str | None = None
    stream: str = STREAM
    dedupe: Deduplicator = field(default_factory=Deduplicator)
    position: str = field(init=False)

    def __post_init__(self) -> None:
        self.channels = validate_channels(self.channels)
        if self.after_id is not None:
            self.position = self.after_id
        elif self.from_start:
            self.position = START
        else:
            self.position = stream_end(self.client, self.stream)

    @property
    def duplicates(self) -> int:
        """How many redelivered events were dropped."""
        return self.dedupe.duplicates

    def events(self, *, count: int = 500, block_ms: int | None = None) -> Iterator[Event]:
        """The next events not seen before (waiting up to `block_ms` if there are none).

        An event counts as seen, and `position` moves past it, only once the caller asks for
        the next one: if handling it raises, resuming from `position` delivers it again.
        """
        batch, end = read_stream(
            self.client,
            after_id=self.position,
            channels=self.channels,
            count=count,
            block_ms=block_ms,
            stream=self.stream,
        )
        for event in batch:
            if event.id in self.dedupe:
                self.dedupe.first_time(event.id)  # counts the duplicate
            else:
                yield event
                self.dedupe.add(event.id)
            self.position = event.stream_id or self.position
        self.position = end

    def poll(self, *, count: int = 500, block_ms: int | None = None) -> list[Event]:
        """The next events not seen before, as a list."""
        return list(self.events(count=count, block_ms=block_ms))

    def run(
        self, handler: Callable[[Event], None], *, stop: Callable[[], bool], block_ms: int = 1000
    ) -> int:
        """Hand events to `handler` until `stop()` (checked every `block_ms`); returns how many."""
        handled = 0
        while not stop():
            for event in self.events(block_ms=block_ms):
                handler(event)
                handled += 1
        return handled


def validate_channels(channels: Iterable[str] | None) -> list[str] | None:
    """The channel names given, checked against DESIGN.md's; None or empty means all."""
    names = list(channels or [])
    unknown = [c for c in names if c not in CHANNELS]
    if unknown:
        raise ValueError(
            f"unknown event channel(s) {', '.join(unknown)}: expected one of {', '.join(CHANNELS)}"
        )
    return names or None
