"""Event payload models: one per channel, strict, versioned in the envelope, and published in
the README exactly as the code defines them."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast, get_args

import pytest
from pydantic import ValidationError
from sqlalchemy.orm import Session

from aifx_ml.abtest.store import TestPlan
from aifx_ml.db.models import AB_STATUSES, TRAINING_STATUSES, TRAINING_TYPES
from aifx_ml.events import outbox, schemas
from aifx_ml.events.consumers import Event, parse_event
from aifx_ml.events.outbox import enqueue, enqueue_many, envelope, published_message
from aifx_ml.events.schemas import (
    CHANNELS,
    PAYLOADS,
    ABTestCompleted,
    ABTestCreated,
    ABTestPlan,
    EventMessage,
    InvalidEventError,
    ModelDeployed,
    NewPrediction,
    TrainingCompleted,
    UnsupportedSchemaVersionError,
    parse_payload,
    validate_payload,
)
from aifx_ml.labeling.rules import OUTCOMES, SIGNALS
from aifx_ml.markets import PAIR_RE, TIMEFRAMES
from tests.event_payloads import model_deployed, new_prediction, sample_payload

README = Path(__file__).resolve().parents[2] / "README.md"
AS_OF = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
# The calls below are refused before the session is used.
NO_SESSION = cast(Session, None)


def test_readme_publishes_the_schemas_of_the_models() -> None:
    published = schemas.readme_section(README.read_text(encoding="utf-8"))
    assert published is not None, f"README.md lost its {schemas.MARKERS[0]} section"
    assert published == schemas.schemas_markdown(), (
        "README.md's event schemas differ from aifx_ml/events/schemas.py: regenerate them "
        f"with `{schemas.REGENERATE}`"
    )


def test_write_readme_fills_the_marked_section_only(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{schemas.MARKERS[0]}\nstale\n{schemas.MARKERS[1]}\nafter\n")
    assert schemas.write_readme(readme)
    assert readme.read_text() == f"before\n{schemas.schemas_markdown()}\nafter\n"
    assert not schemas.write_readme(readme)  # already current
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="no <!-- event-schemas:start"):
        schemas.write_readme(readme)


def test_one_model_per_channel_defined_once() -> None:
    assert tuple(PAYLOADS) == CHANNELS == outbox.CHANNELS
    assert len(CHANNELS) == 8 and len(set(PAYLOADS.values())) == 8
    for channel, model in PAYLOADS.items():
        assert model.channel == channel
        # The A/B test channels are at 2 since `mode` (shadow tests) was added.
        assert model.schema_version == (2 if channel.startswith("ml:ab_test_") else 1)
        assert model.model_config.get("extra") == "forbid"


def test_the_models_use_the_vocabulary_of_the_tables() -> None:
    """The timeframes and decided outcomes are spelled out in schemas.py (no pandas needed to
    read an event); signals and training types are the domain's enums. All must stay what the
    tables and the code accept."""
    assert get_args(schemas.Timeframe) == TIMEFRAMES
    assert tuple(schemas.Signal) == SIGNALS
    assert get_args(schemas.Outcome) == tuple(o for o in OUTCOMES if o != "pending")
    assert tuple(schemas.TrainingType) == TRAINING_TYPES
    assert PAIR_RE.pattern == schemas.PAIR_PATTERN
    status = TrainingCompleted.model_fields["status"].annotation
    assert set(get_args(status)) == set(TRAINING_STATUSES) - {"running"}
    created = get_args(ABTestCreated.model_fields["status"].annotation)
    ended = get_args(ABTestCompleted.model_fields["status"].annotation)
    assert set(created) | set(ended) == set(AB_STATUSES)
    # The plan is the A/B store's TestPlan, field for field.
    assert list(ABTestPlan.model_fields) == [f.name for f in dataclasses.fields(TestPlan)]
    assert ABTestPlan.model_validate(TestPlan().as_dict()).model_dump() == TestPlan().as_dict()


@pytest.mark.parametrize("channel", CHANNELS)
def test_every_payload_survives_the_trip_from_outbox_row_to_consumer(channel: str) -> None:
    payload = sample_payload(channel, 3)
    row = envelope(payload, AS_OF)
    version = type(payload).schema_version
    assert row == {
        "schema_version": version,
        "timestamp": AS_OF.isoformat(),
        "channel": channel,
        "data": payload.model_dump(mode="json"),
    }
    message = published_message(uuid.uuid4(), json.loads(json.dumps(row)))
    assert list(message) == ["id", "schema_version", "timestamp", "channel", "data"]
    EventMessage.model_validate(message)  # the published envelope schema holds
    event = parse_event(json.dumps(message), stream_id="1-0")
    assert event.schema_version == version
    assert event.payload == payload
    assert event.payload_as(type(payload)) == payload


def test_timestamps_go_out_as_utc_isoformat_and_naive_ones_are_refused() -> None:
    paris = timezone(timedelta(hours=1))
    fields = new_prediction().model_dump()
    payload = NewPrediction(**{**fields, "created_at": datetime(2026, 1, 2, 13, tzinfo=paris)})
    assert payload.to_data()["created_at"] == "2026-01-02T12:00:00+00:00"  # not ...Z
    with pytest.raises(ValidationError, match="timezone"):
        NewPrediction(**{**new_prediction().model_dump(), "created_at": datetime(2026, 1, 2)})
    with pytest.raises(ValidationError, match="finite"):
        NewPrediction(**{**new_prediction().model_dump(), "confidence": float("nan")})


def test_an_undeclared_field_is_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ModelDeployed(**model_deployed().model_dump(), note="not in the schema")  # type: ignore[call-arg]
    data = {**model_deployed().to_data(), "note": "not in the schema"}
    with pytest.raises(InvalidEventError, match=r"invalid ml:model_deployed payload.*\n.*note"):
        validate_payload("ml:model_deployed", data)


def test_a_payload_cannot_be_read_as_another_channel() -> None:
    # Producers cannot misplace one (the channel is the payload's class); a consumer reading
    # a message checks the data against the channel it came on.
    with pytest.raises(InvalidEventError, match="belongs on ml:new_prediction, not on ml:model"):
        validate_payload("ml:model_deployed", new_prediction())
    with pytest.raises(InvalidEventError, match="invalid ml:model_deployed payload"):
        validate_payload("ml:model_deployed", new_prediction().to_data())
    with pytest.raises(InvalidEventError, match="unknown event channel 'ml:nope'"):
        validate_payload("ml:nope", {})


def test_enqueue_takes_models_only() -> None:
    with pytest.raises(TypeError, match="expected an event payload model, got dict"):
        enqueue_many(NO_SESSION, [{"n": 1}], AS_OF)  # type: ignore[list-item]

    class Unregistered(ModelDeployed):
        pass

    odd = Unregistered(**model_deployed().model_dump())
    with pytest.raises(InvalidEventError, match="Unregistered is not the payload model"):
        enqueue_many(NO_SESSION, [odd], AS_OF)
    with pytest.raises(TypeError, match="takes 3 positional arguments"):
        enqueue(NO_SESSION, model_deployed(), {}, AS_OF)  # type: ignore[call-arg]


def test_an_unknown_schema_version_is_refused_but_the_event_still_reads() -> None:
    data = model_deployed().to_data()
    future = Event("e1", "ml:model_deployed", AS_OF.isoformat(), data, schema_version=2)
    with pytest.raises(UnsupportedSchemaVersionError, match="schema_version 2.*reads version 1"):
        future.payload  # noqa: B018
    assert future.data["version"] == "lstm-v1"
    with pytest.raises(UnsupportedSchemaVersionError):
        parse_payload("ml:model_deployed", data, 2)


def test_a_message_without_schema_version_is_version_1() -> None:
    legacy: dict[str, Any] = {
        "timestamp": AS_OF.isoformat(),
        "channel": "ml:model_deployed",
        "data": model_deployed().to_data(),
    }
    message = published_message("e1", legacy)
    assert message["schema_version"] == 1
    body: dict[str, Any] = {k: v for k, v in message.items() if k != "schema_version"}
    event = parse_event(json.dumps(body))
    assert event.schema_version == 1 and event.payload == model_deployed()
    for bad in ("2", 0, True, None):
        with pytest.raises(ValueError, match="not an event message"):
            parse_event(json.dumps({**message, "schema_version": bad}))


def test_payload_as_refuses_another_channel() -> None:
    event = Event("e1", "ml:new_prediction", AS_OF.isoformat(), new_prediction().to_data())
    assert event.payload_as(NewPrediction).signal_id == new_prediction().signal_id
    with pytest.raises(InvalidEventError, match="is on ml:new_prediction, not ml:model_deployed"):
        event.payload_as(ModelDeployed)
