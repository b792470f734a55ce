"""`aifx serve` and `aifx ab`: the prediction service, and A/B tests from the command line."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import pandas as pd
import typer
from rich.table import Table

from aifx_ml.abtest.evaluation import evaluate_test, look
from aifx_ml.abtest.store import (
    DEFAULT_MODE,
    DEFAULT_PLAN,
    DEFAULT_SPLIT,
    TestPlan,
    cancel_test,
    complete_test,
    create_test,
    get_test,
    list_tests,
)
from aifx_ml.cli.common import AppContext, app_context, console, frame_table, model_store
from aifx_ml.cli.help import MARKUP
from aifx_ml.db.models import ModelABTest
from aifx_ml.domain import TestMode
from aifx_ml.errors import InvalidInputError

app = typer.Typer(
    rich_markup_mode=MARKUP, help="A/B tests between model versions.", no_args_is_help=True
)


@app.command("create")
def create_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="A name people will recognise.")],
    model_a: Annotated[str, typer.Option("--a", help="Version A (usually Production).")],
    model_b: Annotated[str, typer.Option("--b", help="Version B (the challenger).")],
    mode: Annotated[
        TestMode,
        typer.Option(
            help="split: a share of requests is answered by B. shadow: A answers every request "
            "and B the same ones unseen; decides with far fewer requests."
        ),
    ] = DEFAULT_MODE,
    split: Annotated[
        float, typer.Option(help="Share of traffic to B (split tests only).")
    ] = DEFAULT_SPLIT,
    min_decided: Annotated[
        int, typer.Option(help="Decided signals per arm before deciding.")
    ] = DEFAULT_PLAN.min_decided_per_arm,
    max_decided: Annotated[
        int, typer.Option(help="Decided signals per arm at most.")
    ] = DEFAULT_PLAN.max_decided_per_arm,
    max_days: Annotated[
        float, typer.Option(help="Longest the test may run.")
    ] = DEFAULT_PLAN.max_days,
) -> None:
    """Start an A/B test: requests are split between A and B by a hash of their routing key
    (split), or A answers all of them and B answers the same ones unseen (shadow)."""
    app_ctx = app_context(ctx)
    source = ctx.get_parameter_source("split")
    if mode == TestMode.SHADOW and source is not None and source.name == "COMMANDLINE":
        raise InvalidInputError("a shadow test takes no --split: B answers every request unseen")
    plan = TestPlan(
        min_decided_per_arm=min_decided, max_decided_per_arm=max_decided, max_days=max_days
    )
    test = create_test(
        app_ctx.engine(),
        name=name,
        model_a_version=model_a,
        model_b_version=model_b,
        traffic_split=None if mode == TestMode.SHADOW else split,
        as_of=app_ctx.now(),
        plan=plan,
        mode=mode,
    )
    store = model_store(app_ctx)
    _mark(app_ctx, store, test)
    how = (
        "shadow: B answers every request unseen" if mode == TestMode.SHADOW else f"{split:.0%} to B"
    )
    console.print(
        f"[green]started[/] A/B test {test.test_name!r} ({test.id}): {model_a} vs {model_b}, {how}"
    )


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="active, completed or cancelled.")] = None,
) -> None:
    """Every test, newest first."""
    tests = list_tests(app_context(ctx).engine(), status)
    if not tests:
        console.print("no A/B tests")
        return
    frame = pd.DataFrame(
        [
            {
                "id": str(t.id),
                "name": t.test_name,
                "A": t.model_a_version,
                "B": t.model_b_version,
                "mode": t.mode,
                "split to B": t.traffic_split,
                "status": t.status,
                "winner": t.winner,
                "created": t.created_at,
                "ended": t.ended_reason,
            }
            for t in tests
        ]
    )
    console.print(frame_table(frame, title="A/B tests"))


@app.command("metrics")
def metrics_cmd(ctx: typer.Context, test_id: Annotated[str, typer.Argument()]) -> None:
    """Per arm: signals, outcomes, win rate with a cluster-robust interval, mean pnl; and the
    sequential test's current statistic and decision."""

    app_ctx = app_context(ctx)
    test = get_test(app_ctx.engine(), test_id)
    _print_look(test, look(app_ctx.engine(), test, app_ctx.now()).as_dict())


@app.command("evaluate")
def evaluate_cmd(ctx: typer.Context, test_id: Annotated[str, typer.Argument()]) -> None:
    """Look at the test and act: promote a winner, end an inconclusive test."""

    app_ctx = app_context(ctx)
    engine = app_ctx.engine()

    store = model_store(app_ctx)
    promote = _promoter(app_ctx, store)
    seen = evaluate_test(engine, test_id, app_ctx.now(), promote).as_dict()
    test = get_test(engine, test_id)
    _print_look(test, seen)
    console.print(f"test is {test.status}" + (f", winner {test.winner}" if test.winner else ""))


@app.command("complete")
def complete_cmd(
    ctx: typer.Context,
    test_id: Annotated[str, typer.Argument()],
    winner: Annotated[str | None, typer.Option(help="Version to promote.")] = None,
    reason: Annotated[str, typer.Option(help="Why, for the record.")] = "completed by hand",
) -> None:
    """End a test; a --winner becomes the Production version."""
    app_ctx = app_context(ctx)

    store = model_store(app_ctx)
    test = complete_test(
        app_ctx.engine(),
        test_id,
        as_of=app_ctx.now(),
        winner=winner,
        reason=reason,
        promote=_promoter(app_ctx, store),
    )
    console.print(f"completed {test.test_name!r}" + (f": {winner} in Production" if winner else ""))


@app.command("cancel")
def cancel_cmd(
    ctx: typer.Context,
    test_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option(help="Why, for the record.")] = "cancelled by hand",
) -> None:
    """Stop a test with no winner; Production stays."""
    app_ctx = app_context(ctx)
    test = cancel_test(app_ctx.engine(), test_id, as_of=app_ctx.now(), reason=reason)
    console.print(f"cancelled {test.test_name!r}")


def _promoter(app_ctx: AppContext, store: Any) -> Any:
    """The winner promoted and the test completed in one transaction, stamped at its commit."""
    from registry.abtest import complete_with_winner  # noqa: PLC0415  (MLflow: only when promoting)

    return partial(
        complete_with_winner, app_ctx.engine(), store, actor="aifx ab", clock=app_ctx.now
    )


def _mark(app_ctx: AppContext, store: Any, test: ModelABTest) -> None:
    from registry.abtest import mark_challenger  # noqa: PLC0415  (MLflow: only when marking)

    mark_challenger(app_ctx.engine(), store, test)


def _print_look(test: ModelABTest, seen: dict[str, Any]) -> None:
    table = Table(title=f"{test.test_name} ({test.status})", title_justify="left")
    for column in (
        "arm",
        "version",
        "signals",
        "decided",
        "wins",
        "losses",
        "breakevens",
        "win rate",
        "95% CI",
        "mean pnl %",
    ):
        table.add_column(column, justify="left" if column in ("arm", "version") else "right")
    for arm, version in (("a", test.model_a_version), ("b", test.model_b_version)):
        s = seen["arms"][arm]
        ci = s["win_rate_ci"]
        table.add_row(
            arm.upper(),
            version,
            str(s["signals"]),
            str(s["decided"]),
            str(s["wins"]),
            str(s["losses"]),
            str(s["breakevens"]),
            _pct(s["win_rate"]),
            f"{_pct(ci[0])}–{_pct(ci[1])}",
            _num(s["mean_pnl"]),
        )
    console.print(table)
    d = seen["decision"]
    console.print(f"decision: [bold]{d['status']}[/] — {d['reason']}", highlight=False)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"
