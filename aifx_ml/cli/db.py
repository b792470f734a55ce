"""`aifx db`: schema migrations."""

from __future__ import annotations

from typing import Annotated

import typer

from aifx_ml.cli.common import app_context, console
from aifx_ml.cli.help import MARKUP
from aifx_ml.db.engine import current_revision, downgrade, head_revision, upgrade

app = typer.Typer(
    rich_markup_mode=MARKUP,
    help="Database schema: apply, roll back and inspect migrations.",
    no_args_is_help=True,
)


@app.command("upgrade")
def upgrade_cmd(
    ctx: typer.Context,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    engine = app_context(ctx).engine(migrate=False)
    before = current_revision(engine)
    upgrade(engine, revision)
    console.print(
        f"database at revision [bold]{current_revision(engine)}[/] (was {before or 'empty'})"
    )


@app.command("downgrade")
def downgrade_cmd(
    ctx: typer.Context,
    revision: Annotated[
        str, typer.Argument(help="Target revision, or 'base' to remove every table.")
    ],
) -> None:
    """Roll migrations back to REVISION."""
    engine = app_context(ctx).engine(migrate=False)
    downgrade(engine, revision)
    console.print(f"database at revision [bold]{current_revision(engine) or 'base'}[/]")


@app.command("current")
def current_cmd(ctx: typer.Context) -> None:
    """Show the database's revision and the newest one this code ships."""
    engine = app_context(ctx).engine(migrate=False)
    console.print(f"current: {current_revision(engine) or 'empty'}   head: {head_revision()}")
