"""`aifx events`: relay the outbox to Redis, watch the event stream, see what is waiting."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import redis
import typer
from rich.text import Text

from aifx_ml.cli.common import app_context, console, err_console
from aifx_ml.cli.help import MARKUP
from aifx_ml.errors import InvalidInputError
from aifx_ml.events.consumers import Event, StreamConsumer, validate_channels
from aifx_ml.events.outbox import CHANNELS
from aifx_ml.events.relay import (
    BATCH_SIZE,
    STREAM,
    STREAM_MAXLEN,
    RelayReport,
    outbox_status,
    redis_client,
    relay_forever,
    relay_outbox,
)

app = typer.Typer(
    rich_markup_mode=MARKUP,
    help="Events: relay the outbox to Redis, tail the stream, show what waits.",
    no_args_is_help=True,
)

NOT_CONFIGURED = "Redis is not configured (set AIFX_REDIS_URL)"


@app.command("relay")
def relay_cmd(
    ctx: typer.Context,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep relaying new events until interrupted.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option(min=1, max=10_000, help="Events per Redis pipeline.")
    ] = BATCH_SIZE,
    interval: Annotated[
        float, typer.Option(min=0.05, help="With --follow: seconds between looks at the outbox.")
    ] = 1.0,
    maxlen: Annotated[
        int, typer.Option(min=1, help=f"Keep about this many entries in the {STREAM} stream.")
    ] = STREAM_MAXLEN,
) -> None:
    """Publish waiting events to Redis (Pub/Sub and the stream), oldest first, then mark them.

    Without AIFX_REDIS_URL nothing is sent and the events keep waiting. If Redis cannot be
    reached the events stay in the outbox with the error recorded, and the exit code is 1.
    """
    app_ctx = app_context(ctx)
    engine = app_ctx.engine()
    url = app_ctx.settings.redis_url
    if not follow or url is None:
        report = relay_outbox(engine, url, now=app_ctx.now, batch_size=batch_size, maxlen=maxlen)
        _print_report(report)
        if report.error is not None:
            raise typer.Exit(1)
        return

    console.print(f"relaying to {STREAM} and the ml:* channels; Ctrl-C stops")
    seen: dict[str, Any] = {"error": None, "total": 0}

    def on_report(report: RelayReport) -> None:
        # A line per delivery, and one when an error starts or changes, not one per retry.
        if report.published or report.error != seen["error"]:
            _print_report(report)
        seen["error"] = report.error
        seen["total"] += report.published

    client = redis_client(url)
    try:
        relay_forever(
            engine,
            client,
            now=app_ctx.now,
            stop=lambda: False,
            sleep=time.sleep,
            interval=interval,
            on_report=on_report,
            batch_size=batch_size,
            maxlen=maxlen,
        )
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
    console.print(f"stopped; {seen['total']:,} event(s) relayed")


def _print_report(report: RelayReport) -> None:
    waiting = f"{report.pending:,} event(s) waiting in the outbox"
    if not report.configured:
        console.print(f"{NOT_CONFIGURED}: {waiting}")
    elif report.error is not None:
        err_console.print(
            f"[red]error:[/] events not delivered ({report.error})"
            + (f": {waiting}" if report.pending else ""),
            soft_wrap=True,
            highlight=False,
        )
    elif report.busy and not report.published:
        console.print(f"another relay is publishing: {waiting}")
    else:
        console.print(f"published {report.published:,} event(s) to Redis; {waiting}")


@app.command("tail")
def tail_cmd(
    ctx: typer.Context,
    channel: Annotated[
        list[str] | None,
        typer.Option(help=f"Only this channel (repeatable): {', '.join(CHANNELS)}."),
    ] = None,
    from_start: Annotated[
        bool, typer.Option("--from-start", help="Replay what the stream still holds first.")
    ] = False,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many events.")] = None,
    timeout: Annotated[
        float | None,
        typer.Option(min=0, help="Stop after this many seconds without a new event."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON message per line, as published.")
    ] = False,
) -> None:
    """Print events as they arrive, from the stream (each once, even if delivered twice)."""
    url = app_context(ctx).settings.redis_url
    if url is None:
        raise InvalidInputError(f"{NOT_CONFIGURED}: nothing to tail")
    try:
        channels = validate_channels(channel)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    client = redis_client(url)
    shown = 0
    try:
        consumer = StreamConsumer(client, channels=channels, from_start=from_start)
        idle_since = time.monotonic()
        while count is None or shown < count:
            block_ms = 1000 if timeout is None else max(1, min(1000, int(timeout * 1000)))
            for event in consumer.events(count=500, block_ms=block_ms):
                console.print(_event_line(event, as_json), soft_wrap=True, highlight=False)
                shown += 1
                idle_since = time.monotonic()
                if count is not None and shown >= count:
                    break
            if timeout is not None and time.monotonic() - idle_since >= timeout:
                break
    except KeyboardInterrupt:
        pass
    except redis.RedisError as exc:
        raise InvalidInputError(f"Redis at {url}: {exc}") from None
    finally:
        client.close()


def _event_line(event: Event, as_json: bool) -> Text:
    if as_json:
        message = {
            "id": event.id,
            "schema_version": event.schema_version,
            "timestamp": event.timestamp,
            "channel": event.channel,
            "data": event.data,
        }
        return Text(json.dumps(message, separators=(",", ":")))
    # Text, not markup: event data may contain square brackets.
    return Text.assemble(
        (event.timestamp, "dim"),
        " ",
        (event.channel, "bold cyan"),
        " ",
        (event.id, "dim"),
        " ",
        json.dumps(event.data, separators=(",", ":")),
    )


@app.command("pending")
def pending_cmd(ctx: typer.Context) -> None:
    """How many events wait in the outbox, since when, and the last delivery error."""
    app_ctx = app_context(ctx)
    status = outbox_status(app_ctx.engine())
    console.print(
        f"{status.pending:,} event(s) waiting in the outbox, {status.published:,} published"
    )
    if status.oldest_created_at is not None:
        console.print(
            f"oldest waiting: seq {status.oldest_seq} from {status.oldest_created_at.isoformat()}"
            f" ({status.max_attempts} attempt(s) so far)"
        )
    if status.last_error:
        console.print(Text.assemble(("last error: ", "yellow"), status.last_error), soft_wrap=True)
    if app_ctx.settings.redis_url is None and status.pending:
        console.print(f"{NOT_CONFIGURED}: they go out once it is and `aifx events relay` runs")
