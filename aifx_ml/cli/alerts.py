"""`aifx alerts`: the alerts raised and what became of them, and a test alert to the URLs."""

from __future__ import annotations

import socket
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from aifx_ml.alerts.notify import AlertDeliveryError, list_alerts, raise_alert, sender_for
from aifx_ml.alerts.rules import AlertDraft
from aifx_ml.cli.common import app_context, console
from aifx_ml.cli.help import MARKUP
from aifx_ml.db.models import ALERT_STATUSES, Alert
from aifx_ml.errors import InvalidInputError

app = typer.Typer(
    rich_markup_mode=MARKUP,
    help="Alerts: what was raised and sent, and a test alert.",
    no_args_is_help=True,
)

SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}
STATUS_STYLE = {"sent": "green", "suppressed": "dim", "failed": "red", "pending": "yellow"}


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help=f"Only this status: {', '.join(ALERT_STATUSES)}.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many, newest first.")] = 20,
) -> None:
    """The newest alerts: severity, what, whether it was sent, and why not."""
    alerts = list_alerts(app_context(ctx).engine(), status=status, limit=limit)
    if not alerts:
        console.print("no alerts" + (f" with status {status}" if status else ""))
        return
    console.print(_table(alerts))


def _table(alerts: list[Alert]) -> Table:
    table = Table(title_justify="left")
    for column in ("raised (UTC)", "severity", "kind", "title", "status", "tries", "note"):
        table.add_column(column, justify="right" if column == "tries" else "left")
    for a in alerts:
        table.add_row(
            f"{a.created_at:%Y-%m-%d %H:%M}",
            f"[{SEVERITY_STYLE.get(a.severity, '')}]{a.severity}[/]",
            a.kind,
            Text(a.title),  # text, not markup: titles quote names that may hold brackets
            f"[{STATUS_STYLE.get(a.status, '')}]{a.status}[/]",
            str(a.attempts),
            Text(_note(a)),
        )
    return table


def _note(alert: Alert) -> str:
    if alert.status == "sent" and alert.sent_at is not None:
        return f"sent {alert.sent_at:%Y-%m-%d %H:%M}"
    if alert.status == "suppressed":
        return "a repeat within the cooldown"
    if alert.status == "failed":
        when = (
            f"next try {alert.next_attempt_at:%Y-%m-%d %H:%M}"
            if alert.next_attempt_at
            else "given up"
        )
        return f"{when}: {alert.last_error or 'no error recorded'}"
    if alert.next_attempt_at == alert.created_at:  # raised with no URL to send it to
        return "waiting for an alert URL (AIFX_ALERT_URLS)"
    return "being sent"


@app.command("test")
def test_cmd(
    ctx: typer.Context,
    url: Annotated[
        list[str] | None,
        typer.Option(help="Send to this apprise URL (repeatable) instead of AIFX_ALERT_URLS."),
    ] = None,
) -> None:
    """Send a test alert; it is recorded like any other, and not retried if it fails."""
    app_ctx = app_context(ctx)
    urls = list(url or app_ctx.settings.alert_urls)
    if not urls:
        raise InvalidInputError("no alert URLs: set AIFX_ALERT_URLS or pass --url")
    now = app_ctx.now()
    sender = sender_for(urls)  # unusable URLs: a sender that fails, recorded like any other
    draft = AlertDraft(
        key=f"test:{now.isoformat()}",  # never a repeat: a test is always sent
        kind="test",
        severity="info",
        title="Test alert",
        body=(
            f"If you can read this, alerts from AIFX reach you. "
            f"Sent by `aifx alerts test` on {socket.gethostname()}."
        ),
    )
    assert sender is not None
    alert = raise_alert(app_ctx.engine(), draft, as_of=now, sender=sender, retry=False)
    if alert.status != "sent":
        raise AlertDeliveryError(f"test alert not delivered: {alert.last_error}")
    console.print(f"[green]sent[/] a test alert to {len(urls)} URL(s)")
