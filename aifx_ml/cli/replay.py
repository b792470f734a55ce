"""`aifx replay`: the continuous-learning loop over historical candles with a simulated clock,
then the report that says whether continuous learning paid off.

Ctrl-C stops after the current simulated moment; the same command resumes where it stopped.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from aifx_ml.cli.common import app_context, console, parse_list, parse_time, quiet_tensorflow
from aifx_ml.cli.help import MARKUP
from aifx_ml.cli.study import BASE, study_cmd
from aifx_ml.config import Settings
from aifx_ml.db.models import ReplayRun
from aifx_ml.domain import TestMode
from aifx_ml.errors import InvalidInputError
from aifx_ml.replay.loop import Progress as Step
from aifx_ml.replay.plan import SYNTHETIC, ModelParams, ReplayParams, with_change_point

DEFAULT_PAIRS = "EUR/USD,GBP/USD,USD/JPY"
# What the replay's ending suggests looking at next (a test runs each with --help).
NEXT_COMMANDS = (
    "aifx models list",
    "aifx models history",
    "aifx ab list",
    "aifx alerts list",
    "aifx events pending",
    "prefect flow-run ls",
)


app = typer.Typer(
    rich_markup_mode=MARKUP,
    invoke_without_command=True,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
)


@app.callback(invoke_without_command=True)
def replay_cmd(
    ctx: typer.Context,
    synthetic: Annotated[
        bool, typer.Option("--synthetic", help="Replay a synthetic market (seeded).")
    ] = False,
    data: Annotated[
        Path | None,
        typer.Option(help="A PAIR_TIMEFRAME.csv file, or a folder of them, to replay."),
    ] = None,
    pairs: Annotated[str, typer.Option(help="Comma-separated pairs.")] = DEFAULT_PAIRS,
    timeframes: Annotated[str, typer.Option(help="Comma-separated timeframes.")] = "1h",
    start: Annotated[str, typer.Option(help="First simulated day (UTC).")] = "2026-01-05",
    end: Annotated[str, typer.Option(help="Last simulated moment (UTC).")] = "2026-03-30",
    history_days: Annotated[
        int, typer.Option(help="Days of candles already there when the replay starts.")
    ] = ReplayParams.history_days,
    seed: Annotated[
        int, typer.Option(help="Seed of the market and of every model.")
    ] = ReplayParams.seed,
    change_at: Annotated[
        str | None, typer.Option(help="A known change point to split the report at.")
    ] = None,
    label_threshold: Annotated[
        float,
        typer.Option(help="Move that makes a signal a win or a loss (a fraction: 0.001 = 0.1%)."),
    ] = ReplayParams.label_threshold,
    ab_look_hours: Annotated[
        int, typer.Option(help="Look at a running A/B test every N scheduled hours.")
    ] = ReplayParams.ab_look_hours,
    ab_min_decided: Annotated[
        int, typer.Option(help="Decided signals per arm before an A/B test may end.")
    ] = ReplayParams.ab_min_decided,
    ab_max_days: Annotated[
        float, typer.Option(help="Longest an A/B test may run.")
    ] = ReplayParams.ab_max_days,
    challenger_mode: Annotated[
        TestMode,
        typer.Option(
            help="How challengers are tried live: shadow (they answer every request unseen) "
            "or split (a share of requests is theirs)."
        ),
    ] = ReplayParams.challenger_mode,
    challenger_split: Annotated[
        float, typer.Option(help="Share of requests routed to the challenger (split tests).")
    ] = ReplayParams.challenger_split,
    refresh_days: Annotated[
        float,
        typer.Option(
            help="A full training may replace a Production version this many days old "
            "without winning a test, when not shown worse (0: never)."
        ),
    ] = ReplayParams.refresh_days,
    keep_waiting: Annotated[
        int, typer.Option(help="Candidates left waiting in Staging per model type.")
    ] = ReplayParams.keep_waiting,
    pattern_strength: Annotated[
        float,
        typer.Option(
            help="Synthetic market: how much each return leans on its recent past before "
            "the change (after it, the opposite); 0 is a market with no pattern to learn."
        ),
    ] = ReplayParams.pattern_strength,
    epochs: Annotated[
        int, typer.Option(help="Most epochs of a full training.")
    ] = ModelParams.epochs,
    window: Annotated[
        int, typer.Option(help="Candles per model input window.")
    ] = ModelParams.window,
    training: Annotated[
        bool,
        typer.Option(help="Run the training flows (--no-training: serve what is registered)."),
    ] = ReplayParams.train,
    name: Annotated[
        str | None, typer.Option(help="Name of the replay (default: from its parameters).")
    ] = None,
) -> None:
    """Replay the loop over history: candles arrive, the scheduled flows run, signals are
    served and labeled; ends with a report (HTML + JSON, also in MLflow).

    `aifx replay [OPTIONS] study ...` runs many such replays (see `aifx replay study --help`).
    """
    if name is not None and ctx.invoked_subcommand is not None:
        raise InvalidInputError(
            "a study's name goes after `study`: aifx replay ... study --name NAME"
        )

    def base() -> ReplayParams:
        if synthetic == (data is not None):
            raise InvalidInputError("give exactly one of --synthetic or --data PATH")
        return ReplayParams(
            pairs=tuple(parse_list(pairs) or []),
            timeframes=tuple(parse_list(timeframes) or []),
            start=parse_time(start, "--start"),
            end=parse_time(end, "--end"),
            source=SYNTHETIC if synthetic else str(Path(str(data)).resolve()),
            seed=seed,
            history_days=history_days,
            change_at=parse_time(change_at, "--change-at") if change_at else None,
            label_threshold=label_threshold,
            ab_look_hours=ab_look_hours,
            ab_min_decided=ab_min_decided,
            ab_max_days=ab_max_days,
            challenger_mode=challenger_mode,
            challenger_split=challenger_split,
            refresh_days=refresh_days,
            keep_waiting=keep_waiting,
            pattern_strength=pattern_strength,
            model=ModelParams(epochs=epochs, window=window),
            train=training,
        )

    if ctx.invoked_subcommand is not None:
        # `study`: these are its replays' shared options, checked once its own are parsed
        # (so that `study --help` works without them).
        ctx.meta[BASE] = base
        return
    raw = base()
    quiet_tensorflow()  # before anything imports it: its start-up lines stay off the terminal
    app_ctx = app_context(ctx)
    params = with_change_point(raw)
    try:
        run = replay(app_ctx.settings, params, name or params.default_name(), wall=app_ctx.now)
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted: run the same command again to continue where it stopped "
            "(a flow cut short runs again)[/yellow]"
        )
        raise typer.Exit(130) from None
    print_where_to_look(app_ctx.settings, run)


app.command("study")(study_cmd)


def replay(
    settings: Settings, params: ReplayParams, name: str, *, wall: Any, quiet: bool = False
) -> ReplayRun:
    """Run (or resume) the replay `name` to its end and write its report; the CLI's body,
    callable from tests and benchmarks."""
    # Hundreds of model downloads: MLflow's progress bar for each would bury the replay's own,
    # and so would Prefect's line per task run (thousands; flow runs still say how they end).
    # The replay's Prefect server is its own and temporary: it reports no usage (which,
    # offline, logged an error per attempt). Each stays as set when it is set.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.replay import run_to_end  # noqa: PLC0415  (TensorFlow, MLflow, Prefect)

    with _stop_on_ctrl_c() as stopped, _progress(quiet) as show:
        return run_to_end(settings, params, name, wall=wall, stop=stopped, on_progress=show)


def print_where_to_look(settings: Settings, run: ReplayRun) -> None:
    report = run.report or {}
    console.rule("where to look")
    if run.status != "completed":
        console.print(
            f"replay {run.name} {run.status} at {run.cursor:%Y-%m-%d %H:%M} UTC: run the same "
            "command again to continue where it stopped"
            if run.cursor
            else f"replay {run.name} {run.status}"
        )
        return
    if "headline" in report:
        console.print(f"[bold]{report['headline']}[/bold]")
    console.print(f"report:    {report.get('html', '-')}")
    console.print(f"           {report.get('json', '-')}")
    console.print(
        f"MLflow:    mlflow ui --backend-store-uri {settings.tracking_uri} "
        f"--default-artifact-root {settings.artifact_location}"
    )
    console.print(f"tables:    {settings.db_url}")
    console.print(f"commands:  {' · '.join(NEXT_COMMANDS)}")
    console.print("notebooks: notebooks/*.ipynb (they read the same settings)")


@contextmanager
def _stop_on_ctrl_c() -> Iterator[Any]:
    """The first Ctrl-C asks the replay to stop after the current moment; a second one
    interrupts at once (the resume redoes that moment without duplicates)."""
    requested: list[bool] = []

    def handler(_signum: int, _frame: FrameType | None) -> None:
        if requested:
            raise KeyboardInterrupt
        requested.append(True)
        console.print("[yellow]stopping after this moment (Ctrl-C again to stop now)[/yellow]")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _progress(quiet: bool) -> Iterator[Any]:
    if quiet:
        yield lambda _step: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("replaying", total=None)

        def show(step: Step) -> None:
            bar.update(task, completed=step.done, total=step.total, description=_when(step.moment))
            for job, outcome in step.jobs:
                console.print(f"{_when(step.moment)}  {job:<18} {_summary(outcome)}")

        yield show


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %a %H:%M}"


def _summary(outcome: Any) -> str:
    """One line per job: what a person wants to see scroll by."""
    if isinstance(outcome, str):
        return f"[red]failed: {escape(outcome)}[/red]"
    if "looks" in outcome:
        looks = outcome["looks"]
        return escape("; ".join(f"{v['status']}: {v['reason']}" for v in looks.values()) or "-")
    if "evaluations" in outcome:
        verdicts = [
            f"{e['version']} {e['recommendation'] or e['status']}" for e in outcome["evaluations"]
        ]
        retrain = " → retrained" if "retrain" in outcome else ""
        return f"{outcome['month']}: {', '.join(verdicts) or 'nothing in Production'}{retrain}"
    version = outcome.get("version") or outcome.get("reason") or ""
    challenger = outcome.get("challenger") or {}
    after = f" → {challenger['action']}" if challenger else ""
    return f"{outcome.get('status')} {version}{after}"
