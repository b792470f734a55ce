"""The payload of every event channel as one pydantic model: what a producer may write, and
what a consumer (here or in another service) can rely on.

A message is `{"id", "schema_version", "timestamp", "channel", "data"}`; `data` is the
channel's model (`PAYLOADS`) dumped to JSON. Each channel has its own `schema_version`,
written into the envelope when the event is enqueued (so an event that waits in the outbox
across an upgrade keeps the version it was written with). The version of a channel goes up
whenever its payload changes in any way: the models refuse unknown fields, so even an added
field is a new contract. A message without `schema_version` (written before it was recorded)
is version 1. `parse_payload` reads only the version this code knows and raises
`UnsupportedSchemaVersionError` for any other; the raw `data` is still there to read.

`python -m aifx_ml.events.schemas --write README.md` (`make schemas`) regenerates the JSON
Schemas the README publishes; a test fails while they differ from these models.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
)

from aifx_ml.domain import Signal, TrainingType

Channel = Literal[
    "ml:new_market_data",
    "ml:new_prediction",
    "ml:signal_outcome",
    "ml:training_started",
    "ml:training_completed",
    "ml:model_deployed",
    "ml:ab_test_created",
    "ml:ab_test_completed",
]
CHANNELS: tuple[str, ...] = get_args(Channel)

# What a message without `schema_version` is: everything written before it was recorded
# had the version 1 payloads.
UNVERSIONED = 1

# The vocabulary of the tables. Signals and training types are the domain's own enums; the
# timeframes are spelled out so this module imports without pandas (a test checks they match
# `markets.TIMEFRAMES`), and an outcome announced is always a decided one.
Timeframe = Literal["1min", "5min", "15min", "30min", "1h", "4h", "1d", "1w", "1M"]
Outcome = Literal["win", "loss", "breakeven"]
PAIR_PATTERN = r"^[A-Z]{3}/[A-Z]{3}$"


def _utc_isoformat(value: datetime) -> str:
    # datetime.isoformat (`+00:00`), as the producers wrote before these models existed;
    # pydantic's own JSON form would write `Z` and change the wire format.
    return value.astimezone(UTC).isoformat()


UTCTimestamp = Annotated[
    AwareDatetime, PlainSerializer(_utc_isoformat, return_type=str, when_used="json")
]
Pair = Annotated[str, Field(pattern=PAIR_PATTERN, examples=["EUR/USD"])]
ModelType = Annotated[str, Field(min_length=1, max_length=64, examples=["lstm"])]
VersionLabel = Annotated[str, Field(min_length=1, max_length=64, examples=["lstm-v3"])]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _tidy_schema(schema: dict[str, Any]) -> None:
    """Field titles ("Signal Id") only repeat the property names: left out. The description
    (the class docstring) on one line."""
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    if isinstance(schema.get("description"), str):
        schema["description"] = " ".join(schema["description"].split())


class _Strict(BaseModel):
    """Immutable, and no field the model does not declare: a producer cannot slip an
    undocumented key onto the wire."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_tidy_schema)


class EventPayload(_Strict):
    """The `data` of one channel's events. Subclasses set `channel` and `schema_version`."""

    channel: ClassVar[Channel]
    schema_version: ClassVar[int]

    def to_data(self) -> dict[str, Any]:
        """The payload as it goes into the message's `data` (JSON types only)."""
        return self.model_dump(mode="json")


class NewMarketData(EventPayload):
    """Candles of one pair and timeframe were imported: new ones, or stored ones corrected by
    the vendor. Sent only when at least one candle was inserted or updated."""

    channel: ClassVar[Channel] = "ml:new_market_data"
    schema_version: ClassVar[int] = 1

    pair: Pair = Field(description="Currency pair, e.g. EUR/USD.")
    timeframe: Timeframe = Field(description="Candle length.")
    inserted: int = Field(ge=0, description="Candles that were not stored before.")
    updated: int = Field(ge=0, description="Stored candles whose values were corrected.")
    first_timestamp: UTCTimestamp = Field(
        description="Open time (UTC) of the earliest inserted or updated candle."
    )
    last_timestamp: UTCTimestamp = Field(
        description="Open time (UTC) of the latest inserted or updated candle."
    )
    source: str = Field(description="Where the candles came from: a file path or a feed's name.")


class NewPrediction(EventPayload):
    """A trading signal was recorded (pending until the market has moved over its horizon)."""

    channel: ClassVar[Channel] = "ml:new_prediction"
    schema_version: ClassVar[int] = 1

    signal_id: uuid.UUID = Field(description="The signal's id (`trading_signals.id`).")
    pair: Pair = Field(description="Currency pair, e.g. EUR/USD.")
    timeframe: Timeframe = Field(description="Candle length the signal is for.")
    signal: Signal = Field(description="What the model says to do.")
    confidence: FiniteFloat = Field(ge=0, le=1, description="How sure the model is, 0 to 1.")
    entry_price: FiniteFloat = Field(gt=0, description="Price the signal is judged against.")
    created_at: UTCTimestamp = Field(description="When the signal was made (UTC).")
    model_version: VersionLabel | None = Field(
        description="Model version that made it; null for a signal no model made."
    )
    ab_test_id: uuid.UUID | None = Field(
        description="The A/B test whose routing chose the model, if one was running."
    )


class SignalOutcome(EventPayload):
    """A pending signal was labeled: its horizon has passed and the market decided it."""

    channel: ClassVar[Channel] = "ml:signal_outcome"
    schema_version: ClassVar[int] = 1

    signal_id: uuid.UUID = Field(description="The signal's id (`trading_signals.id`).")
    pair: Pair = Field(description="Currency pair, e.g. EUR/USD.")
    timeframe: Timeframe = Field(description="Candle length the signal is for.")
    signal: Signal = Field(description="What the model said to do.")
    actual_outcome: Outcome = Field(description="How it turned out (never `pending` here).")
    actual_pnl_percent: FiniteFloat = Field(
        description="Profit in percent of the entry price: 100·change for a buy, -100·change "
        "for a sell, 0 for a hold."
    )
    model_version: VersionLabel | None = Field(
        description="Model version that made the signal; null for a signal no model made."
    )
    ab_test_id: uuid.UUID | None = Field(
        description="The A/B test the signal was routed in, if any."
    )


class TrainingStarted(EventPayload):
    """A training run started (its row in `model_training_log` is `running`)."""

    channel: ClassVar[Channel] = "ml:training_started"
    schema_version: ClassVar[int] = 1

    training_log_id: uuid.UUID = Field(
        description="The run's id (`model_training_log.id`); its `ml:training_completed` "
        "event carries the same."
    )
    training_type: TrainingType = Field(
        description="`full` (from scratch) or `incremental` (fine-tuning Production)."
    )
    model_type: ModelType = Field(description="The model type being trained.")


class TrainingCompleted(EventPayload):
    """A training run ended: `completed` (a new version in Staging), `skipped` or `failed`."""

    channel: ClassVar[Channel] = "ml:training_completed"
    schema_version: ClassVar[int] = 1

    training_log_id: uuid.UUID = Field(
        description="The run's id (`model_training_log.id`), as in its `ml:training_started`."
    )
    training_type: TrainingType = Field(
        description="`full` (from scratch) or `incremental` (fine-tuning Production)."
    )
    model_type: ModelType = Field(description="The model type trained.")
    status: Literal["completed", "failed", "skipped"] = Field(description="How the run ended.")
    version: VersionLabel | None = Field(
        description="The version registered in Staging; null unless `completed`."
    )
    parent_version: VersionLabel | None = Field(
        description="The Production version an incremental run fine-tuned; null for a full run."
    )
    reason: str | None = Field(
        description="Why the run was skipped, or the error it failed with; null if `completed`."
    )


class ModelDeployed(EventPayload):
    """A model version became Production (promoted, an A/B test's winner, or a rollback)."""

    channel: ClassVar[Channel] = "ml:model_deployed"
    schema_version: ClassVar[int] = 1

    model_type: ModelType = Field(description="The model type whose Production version changed.")
    version: VersionLabel = Field(description="The version now in Production.")
    previous_version: VersionLabel | None = Field(
        description="The version it replaced (now archived); null if there was none."
    )
    reason: str = Field(description="Why it was deployed, as recorded in the stage history.")
    actor: str = Field(
        min_length=1, max_length=128, description="The command or flow that made the change."
    )
    ab_test_id: uuid.UUID | None = Field(
        description="The A/B test this version won, if that is how it got there."
    )


class ABTestPlan(_Strict):
    """The plan an A/B test was started with (fixed for its whole life)."""

    alpha: FiniteFloat = Field(gt=0, lt=1, description="False-positive rate of the test.")
    tau: FiniteFloat = Field(
        gt=0, description="Mixing standard deviation of the win-rate lift (mixture SPRT)."
    )
    min_decided_per_arm: int = Field(
        ge=1, description="Decided signals (win or loss) per arm before a winner can be named."
    )
    max_decided_per_arm: int = Field(
        ge=1, description="Decided signals per arm at which an undecided test ends inconclusive."
    )
    max_days: FiniteFloat = Field(gt=0, description="Longest the test runs, in days.")
    guardrail_pnl_margin: FiniteFloat = Field(
        description="Points of mean pnl % the winner may trail the loser by; beyond that the "
        "test ends without a winner."
    )
    srm_threshold: FiniteFloat = Field(
        description="Chi-square p-value below which the split is flagged as a sample-ratio "
        "mismatch."
    )


class _ABTest(EventPayload):
    """What every A/B test event says about the test (the API's view of it, too)."""

    id: uuid.UUID = Field(description="The test's id (`model_ab_test.id`).")
    test_name: str = Field(min_length=1, max_length=128, description="The test's name.")
    model_type: ModelType = Field(description="The model type both versions are of.")
    model_a_version: VersionLabel = Field(description="Arm A, usually the Production version.")
    model_b_version: VersionLabel = Field(description="Arm B, the challenger.")
    mode: Literal["split", "shadow"] = Field(
        description="`split`: a share of requests is answered by B; `shadow`: A answers every "
        "request and B answers the same ones unseen (compared request by request)."
    )
    traffic_split: FiniteFloat = Field(
        ge=0, lt=1, description="Share of requests answered by B (0 in a shadow test)."
    )
    created_at: UTCTimestamp = Field(description="When the test started (UTC).")
    config: ABTestPlan = Field(description="The plan the test was started with.")


class ABTestCreated(_ABTest):
    """An A/B test started: requests of its model type are split between two versions, or
    answered by Production and shadowed by the challenger."""

    channel: ClassVar[Channel] = "ml:ab_test_created"
    schema_version: ClassVar[int] = 2  # 2: `mode`, and a split of 0 for shadow tests

    status: Literal["active"] = Field(description="Always `active`: the test has just started.")
    winner: None = Field(description="Always null: nothing is decided yet.")
    completed_at: None = Field(description="Always null: the test has not ended.")
    ended_reason: None = Field(description="Always null: the test has not ended.")


class ABTestCompleted(_ABTest):
    """An A/B test ended: with a winner (promoted to Production), without one, or cancelled."""

    channel: ClassVar[Channel] = "ml:ab_test_completed"
    schema_version: ClassVar[int] = 2  # 2: `mode`, and a split of 0 for shadow tests

    status: Literal["completed", "cancelled"] = Field(
        description="`completed`: decided, inconclusive, stopped by the pnl guardrail, or "
        "completed by hand; `cancelled`: stopped by hand without a winner."
    )
    winner: VersionLabel | None = Field(
        description="The version that won (promoted to Production); null if there is none."
    )
    completed_at: UTCTimestamp = Field(description="When the test ended (UTC).")
    ended_reason: str = Field(description="Why it ended.")


# The one mapping from channel to payload model, in the design's order of channels.
PAYLOADS: dict[str, type[EventPayload]] = {
    model.channel: model
    for model in (
        NewMarketData,
        NewPrediction,
        SignalOutcome,
        TrainingStarted,
        TrainingCompleted,
        ModelDeployed,
        ABTestCreated,
        ABTestCompleted,
    )
}


class InvalidEventError(ValueError):
    """A payload does not match its channel's model (or names no channel at all)."""


class UnsupportedSchemaVersionError(ValueError):
    """An event was written with a payload version this code does not know."""


def payload_model(channel: str) -> type[EventPayload]:
    """The model of a channel's payload; InvalidEventError for a channel that does not exist."""
    try:
        return PAYLOADS[channel]
    except KeyError:
        raise InvalidEventError(
            f"unknown event channel {channel!r}: expected one of {', '.join(CHANNELS)}"
        ) from None


def validate_payload(channel: str, data: Mapping[str, Any] | EventPayload) -> EventPayload:
    """`data` as the channel's model, checked; InvalidEventError (naming the channel, the
    model and every problem) if it does not fit, or is another channel's payload."""
    model = payload_model(channel)
    if isinstance(data, EventPayload):
        if type(data) is not model:
            raise InvalidEventError(
                f"a {type(data).__name__} payload belongs on {data.channel}, not on {channel}"
            )
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidEventError(
            f"invalid {channel} payload (schema_version {model.schema_version}): {exc}"
        ) from exc


def parse_payload(
    channel: str, data: Mapping[str, Any], schema_version: int = UNVERSIONED
) -> EventPayload:
    """A received event's `data` as its channel's model.

    UnsupportedSchemaVersionError if the event was written with another version of the
    payload than this code knows (a producer newer than this consumer, usually);
    InvalidEventError if it does not match the model.
    """
    model = payload_model(channel)
    if schema_version != model.schema_version:
        newer = "a newer" if schema_version > model.schema_version else "an older"
        raise UnsupportedSchemaVersionError(
            f"{channel} event has schema_version {schema_version}, this code reads version "
            f"{model.schema_version} ({newer} producer wrote it): its raw data is still in "
            "the event's `data`"
        )
    return validate_payload(channel, data)


class EventMessage(_Strict):
    """One event as published on its channel and in the `aifx:events` stream."""

    id: uuid.UUID = Field(
        description="The event's id. Delivery is at least once: an event seen before (same "
        "id) is a redelivery and should be dropped."
    )
    schema_version: int = Field(
        ge=1,
        description="Version of this channel's payload model that `data` follows (absent in "
        "messages written before it was recorded: read that as 1).",
    )
    timestamp: UTCTimestamp = Field(
        description="When the change happened, on the clock of the process that made it "
        "(simulated in a replay). Several events of one change share it."
    )
    channel: Channel = Field(description="The Redis channel, which names the payload model.")
    data: dict[str, Any] = Field(description="The payload: the channel's schema below.")


MARKERS = (
    "<!-- event-schemas:start (generated from aifx_ml/events/schemas.py by `make schemas`) -->",
    "<!-- event-schemas:end -->",
)
REGENERATE = "make schemas (or: python -m aifx_ml.events.schemas --write README.md)"


def _schema_block(schema: dict[str, Any]) -> str:
    return "```json\n" + json.dumps(schema, indent=2, ensure_ascii=False) + "\n```"


def schemas_markdown() -> str:
    """The README's schema section, markers included: the envelope, then one JSON Schema
    (validation form) per channel."""
    parts = [
        MARKERS[0],
        "",
        "Every message (`EventMessage`):",
        "",
        _schema_block(EventMessage.model_json_schema()),
        "",
        "The `data` of each channel (`aifx_ml.events.schemas.PAYLOADS`):",
    ]
    for channel, model in PAYLOADS.items():
        parts += [
            "",
            f"<details><summary><code>{channel}</code> — <code>{model.__name__}</code>, "
            f"schema_version {model.schema_version}</summary>",
            "",
            _schema_block(model.model_json_schema()),
            "",
            "</details>",
        ]
    parts += ["", MARKERS[1]]
    return "\n".join(parts)


def readme_section(text: str) -> str | None:
    """The generated section of a README's text, markers included; None if it has none."""
    start, end = (re.escape(m) for m in MARKERS)
    found = re.search(f"{start}.*?{end}", text, flags=re.DOTALL)
    return found.group(0) if found else None


def write_readme(path: Path) -> bool:
    """Put the current schemas between the README's markers; True if that changed it."""
    text = path.read_text(encoding="utf-8")
    current = readme_section(text)
    if current is None:
        raise ValueError(f"{path} has no {MARKERS[0]} ... {MARKERS[1]} section to fill")
    fresh = schemas_markdown()
    if current == fresh:
        return False
    path.write_text(text.replace(current, fresh, 1), encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    """`python -m aifx_ml.events.schemas`: print the schema section, or write it into a
    README (`--write README.md`)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--write", type=Path, metavar="README", help="update this file")
    args = parser.parse_args(argv)
    if args.write is None:
        sys.stdout.write(schemas_markdown() + "\n")
        return 0
    changed = write_readme(args.write)
    sys.stderr.write(f"{args.write}: {'updated' if changed else 'already up to date'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
