"""`aifx train weekly|daily`: the two training types from the command line, as of any moment."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aifx_ml.cli.common import (
    AppContext,
    app_context,
    console,
    model_store,
    parse_list,
    parse_time,
)
from aifx_ml.cli.help import MARKUP
from aifx_ml.config import git_commit
from aifx_ml.domain import TrainingStatus, TrainingType
from aifx_ml.errors import InvalidInputError
from aifx_ml.training.config import (
    TRAINING,
    Stores,
    TrainingConfig,
    TrainingResult,
    training_config,
)

app = typer.Typer(
    rich_markup_mode=MARKUP,
    help="Train models: weekly from scratch, daily fine-tuning.",
    no_args_is_help=True,
)

# Every default is TRAINING's (aifx_ml/training/config.py), as the training flows' are.
TIMEFRAMES = ",".join(TRAINING.timeframes)
LSTM_UNITS = ",".join(str(units) for units in TRAINING.lstm_units)

PairsOpt = Annotated[
    str | None, typer.Option("--pairs", help="Comma-separated pairs (default: every stored pair).")
]
TimeframesOpt = Annotated[str, typer.Option("--timeframes", help="Comma-separated timeframes.")]
AsOfOpt = Annotated[
    str | None,
    typer.Option(
        "--as-of", help="Train as of this moment (UTC; default: now). Data after it is unseen."
    ),
]
EpochsOpt = Annotated[int, typer.Option("--epochs", help="Maximum epochs.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of weights and shuffling.")]
UnitsOpt = Annotated[
    str, typer.Option("--lstm-units", help="Sizes of the two LSTM layers, e.g. 128,64.")
]
WaitOpt = Annotated[
    float,
    typer.Option("--wait", help="Seconds to wait for another run of the same model type."),
]


def _config(
    pairs: str | None, timeframes: str, lstm_units: str | None, **values: Any
) -> TrainingConfig:
    units = None
    if lstm_units is not None:
        parts = parse_list(lstm_units) or []
        if not all(p.isdigit() for p in parts):
            raise InvalidInputError(
                f"invalid --lstm-units {lstm_units!r}: expected two positive sizes like 128,64"
            )
        units = [int(p) for p in parts]
    return training_config(
        parse_list(pairs), parse_list(timeframes) or [], lstm_units=units, **values
    )


@app.command("weekly")
def weekly_cmd(
    ctx: typer.Context,
    pairs: PairsOpt = None,
    timeframes: TimeframesOpt = TIMEFRAMES,
    days: Annotated[
        int, typer.Option(help="Days of data before --as-of to learn from.")
    ] = TRAINING.days,
    as_of: AsOfOpt = None,
    epochs: EpochsOpt = TRAINING.epochs,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = TRAINING.batch_size,
    window: Annotated[int, typer.Option(help="Candles per window.")] = TRAINING.window,
    lstm_units: UnitsOpt = LSTM_UNITS,
    include_signals: Annotated[
        bool, typer.Option(help="Add labeled trading signals as extra examples.")
    ] = TRAINING.include_signals,
    seed: SeedOpt = TRAINING.seed,
    wait: WaitOpt = TRAINING.lock_timeout,
) -> None:
    """Train a model from scratch (80/20 chronological split, early stopping) and register it
    in Staging, next to the Production model's and the baselines' scores on the same holdout."""
    config = _config(
        pairs,
        timeframes,
        lstm_units,
        days=days,
        epochs=epochs,
        batch_size=batch_size,
        window=window,
        seed=seed,
        include_signals=include_signals,
        lock_timeout=wait,
    )
    _run(ctx, config, TrainingType.FULL, as_of)


@app.command("daily")
def daily_cmd(
    ctx: typer.Context,
    pairs: PairsOpt = None,
    timeframes: TimeframesOpt = TIMEFRAMES,
    as_of: AsOfOpt = None,
    epochs: EpochsOpt = TRAINING.incremental_epochs,
    seed: SeedOpt = TRAINING.seed,
    wait: WaitOpt = TRAINING.lock_timeout,
) -> None:
    """Fine-tune the Production model on the data since the last successful run (at lr 1e-4)
    and register the child in Staging. No Production model yet: trains from scratch."""
    config = _config(
        pairs, timeframes, None, incremental_epochs=epochs, seed=seed, lock_timeout=wait
    )
    _run(ctx, config, TrainingType.INCREMENTAL, as_of)


def _run(ctx: typer.Context, config: TrainingConfig, training_type: str, as_of: str | None) -> None:
    app_ctx = app_context(ctx)
    moment = parse_time(as_of, "--as-of") if as_of else app_ctx.now()
    result = run_training(app_ctx, config, training_type, moment)
    print_result(result)
    if result.status == TrainingStatus.FAILED:
        raise typer.Exit(1)


def run_training(
    app_ctx: AppContext, config: TrainingConfig, training_type: str, as_of: datetime
) -> TrainingResult:
    """One run with a progress bar per epoch."""
    # TensorFlow and MLflow take seconds to import: only when training, not for `--help`.
    from aifx_ml.training.runs import train_full, train_incremental  # noqa: PLC0415  (TensorFlow: only when training, not for --help)

    actor = f"aifx train {'weekly' if training_type == 'full' else 'daily'}"
    stores = Stores.from_settings(
        app_ctx.settings, app_ctx.engine(), model_store(app_ctx), git_commit(), actor
    )
    total = config.epochs if training_type == TrainingType.FULL else config.incremental_epochs
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[logs]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task(f"{training_type} training", total=total, logs="")

        def on_epoch(epoch: int, logs: dict[str, float]) -> None:
            shown = " ".join(f"{k} {v:.4f}" for k, v in logs.items() if k != "learning_rate")
            progress.update(bar, completed=epoch + 1, logs=shown)

        if training_type == TrainingType.FULL:
            return train_full(stores, config, as_of, on_epoch=on_epoch)
        return train_incremental(stores, config, as_of, on_epoch=on_epoch)


def print_result(result: TrainingResult) -> None:
    """The outcome in one line, then holdout metrics of the model, Production and baselines."""
    line = {
        TrainingStatus.COMPLETED: f"[green]registered {result.version}[/] in Staging",
        TrainingStatus.SKIPPED: f"[yellow]skipped[/]: {result.reason}",
        TrainingStatus.FAILED: f"[red]failed[/]: {result.reason}",
    }.get(result.status, result.status)
    if result.fell_back_to_full:
        console.print(f"[yellow]{result.reason}[/]")
    console.print(f"{result.training_type} training {line}", soft_wrap=True, highlight=False)
    if result.status != TrainingStatus.COMPLETED:
        return
    console.print(metrics_table(result))
    verdict = "beats" if result.metrics.get("beats_baseline") else "does NOT beat"
    console.print(
        f"{result.version} {verdict} the best baseline ({result.metrics.get('best_baseline')}): "
        f"lift {result.metrics.get('lift_over_baseline', float('nan')):+.4f} accuracy",
        highlight=False,
    )


def metrics_table(result: TrainingResult) -> Table:
    """Rows: the new version, the Production version, each baseline; columns: holdout metrics."""
    m = result.metrics
    table = Table(
        title=f"holdout: {int(m.get('holdout_samples', 0)):,} samples from "
        f"{m.get('holdout_start', '?')}",
        title_justify="left",
    )
    table.add_column("model")
    for column in ("accuracy", "auc", "log_loss", "brier"):
        table.add_column(column, justify="right")
    rows = [(f"{result.version} (new)", "holdout_")]
    if m.get("production_comparable"):
        rows.append((f"{m['production_version']} (Production)", "production_holdout_"))
    rows += [(f"baseline: {name}", f"baseline_{name}_") for name in ("majority", "persistence")]
    for label, prefix in rows:
        table.add_row(
            label,
            *(_num(m.get(f"{prefix}{c}")) for c in ("accuracy", "auc", "log_loss", "brier")),
        )
    return table


def _num(value: Any) -> str:
    return "-" if value is None else f"{float(value):.4f}"
