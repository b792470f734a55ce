"""The `aifx` entry point: the root command, its global options, and one-line errors."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.markup import escape

from aifx_ml.cli import (
    ab,
    alerts,
    data,
    db,
    evaluate,
    events,
    models,
    replay,
    serve,
    signals,
    train,
)
from aifx_ml.cli.common import AppContext, console, err_console, relay_after_command
from aifx_ml.cli.demo import demo_cmd
from aifx_ml.cli.help import MARKUP, use_click_placeholders
from aifx_ml.config import DEFAULT_ENV_FILE, load_settings
from aifx_ml.errors import AifxError
from aifx_ml.events.outbox import on_commit

use_click_placeholders()
app = typer.Typer(
    rich_markup_mode=MARKUP,
    name="aifx",
    help="AIFX: continuous learning for forex trading-signal models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db.app, name="db")
app.add_typer(data.app, name="data")
app.add_typer(signals.app, name="signals")
app.add_typer(events.app, name="events")
app.add_typer(train.app, name="train")
app.add_typer(models.app, name="models")
app.add_typer(ab.app, name="ab")
app.add_typer(alerts.app, name="alerts")
app.add_typer(evaluate.app, name="evaluate")
app.command("serve")(serve.serve_cmd)
app.command("label")(signals.label_cmd)
app.command("demo")(demo_cmd)
app.add_typer(replay.app, name="replay")


@app.callback()
def root(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")
    ] = False,
    env_file: Annotated[
        Path, typer.Option("--env-file", help="Settings file read after the environment.")
    ] = Path(DEFAULT_ENV_FILE),
) -> None:
    """Settings come from the environment and mlflow.env; with none, everything is under ./.aifx."""
    app_ctx = ctx.obj = AppContext(settings=load_settings(env_file), debug=debug)
    # What the command announced goes to Redis as it ends, not at the next relay.
    committed = threading.Event()
    stop_listening = on_commit(committed.set)

    def deliver() -> None:
        stop_listening()
        if committed.is_set():
            relay_after_command(app_ctx)

    ctx.call_on_close(deliver)


def main(argv: list[str] | None = None) -> int:
    """Run `aifx` with `argv`; returns the exit code. Errors are one line unless --debug."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        code = app(args=args, prog_name="aifx", standalone_mode=False)
    except (click.exceptions.Exit, typer.Exit) as exc:
        return int(exc.exit_code)
    except (click.exceptions.Abort, typer.Abort):
        err_console.print("[red]aborted[/]")
        return 130
    except (click.ClickException, typer.exceptions.TyperException) as exc:
        # A usage error (Typer raises its own copy of click's): usage, then one line.
        exc.show()  # type: ignore[union-attr]
        return int(exc.exit_code)
    except AifxError as exc:
        if debug:
            raise
        # The message is text, not markup: "[2026-03-01, …]" must print as written.
        err_console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        return 1
    except Exception as exc:
        if debug:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        err_console.print(
            f"[red]error:[/] {type(exc).__name__}: {escape(message)} (run with --debug for the "
            "traceback)",
            soft_wrap=True,
            highlight=False,
        )
        return 1
    return code if isinstance(code, int) else 0


def run() -> None:
    """Console-script entry point."""
    # TensorFlow's C++ start-up chatter (CPU features, oneDNN) is noise on a terminal.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # MLflow draws a progress bar per model download; ours are a few small files.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    console.file.flush()
    sys.exit(main())
