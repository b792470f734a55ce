"""`aifx models`: list, inspect, promote, roll back, archive and reconcile model versions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import pandas as pd
import typer
from rich.table import Table
from sqlalchemy import select

from aifx_ml.cli.common import (
    AppContext,
    app_context,
    console,
    frame_table,
    model_store,
    parse_time,
)
from aifx_ml.cli.help import MARKUP
from aifx_ml.db.engine import session_factory
from aifx_ml.db.models import ModelTrainingLog, ModelVersion
from aifx_ml.domain import ModelStatus
from aifx_ml.errors import InvalidInputError
from aifx_ml.models.history import lineage, serving_at, stage_history
from aifx_ml.models.versions import get_version

if TYPE_CHECKING:
    from aifx_ml.evaluation.gate import GateDecision

app = typer.Typer(
    rich_markup_mode=MARKUP,
    help="Model versions: list, show, history, promote, rollback, reconcile.",
    no_args_is_help=True,
)

ModelTypeOpt = Annotated[str, typer.Option("--model-type", help="Model type.")]
AsOfOpt = Annotated[
    str | None, typer.Option("--as-of", help="The moment of the change (UTC; default: now).")
]


def _actor(ctx: typer.Context) -> str:
    return f"aifx {ctx.command_path.split(' ', 1)[-1]}" if ctx.command_path else "aifx"


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    model_type: Annotated[str | None, typer.Option("--model-type", help="Only this type.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Only this status (staging, production, archived).")
    ] = None,
) -> None:
    """Every version: type, stage, key holdout metrics, parent, when it was created."""
    engine = app_context(ctx).engine()
    query = select(ModelVersion).order_by(ModelVersion.created_at, ModelVersion.version)
    if model_type:
        query = query.where(ModelVersion.model_type == model_type)
    if status:
        query = query.where(ModelVersion.status == status)
    with session_factory(engine)() as session:
        rows = session.execute(query).scalars().all()
    frame = pd.DataFrame(
        [
            {
                "version": r.version,
                "type": r.model_type,
                "stage": r.status,
                "accuracy": (r.metrics or {}).get("holdout_accuracy"),
                "auc": (r.metrics or {}).get("holdout_auc"),
                "lift vs baseline": (r.metrics or {}).get("lift_over_baseline"),
                "beats baseline": (r.metrics or {}).get("beats_baseline"),
                "parent": r.parent_version,
                "created": r.created_at,
            }
            for r in rows
        ],
        columns=[
            "version",
            "type",
            "stage",
            "accuracy",
            "auc",
            "lift vs baseline",
            "beats baseline",
            "parent",
            "created",
        ],
    )
    if frame.empty:
        console.print("no model versions yet: `aifx train weekly` registers the first")
        return
    console.print(frame_table(frame, title="model versions"))


@app.command("show")
def show_cmd(
    ctx: typer.Context, version: Annotated[str, typer.Argument(help="e.g. lstm-v3")]
) -> None:
    """One version: lineage (parent chain), its training run, data range, dataset hash,
    metrics and stage history."""

    engine = app_context(ctx).engine()
    row = get_version(engine, version)
    with session_factory(engine)() as session:
        log = session.get(ModelTrainingLog, row.training_log_id) if row.training_log_id else None
    facts = Table(show_header=False, title=f"{row.version}", title_justify="left")
    facts.add_column("field", style="bold")
    facts.add_column("value")
    data_range = (log.data_time_range or {}) if log else {}
    for field, value in (
        ("type", row.model_type),
        ("stage", row.status),
        ("registry URI", row.model_path),
        ("artifact SHA-256", row.artifact_sha256),
        ("lineage", " ← ".join(v.version for v in lineage(engine, version))),
        ("created", row.created_at.isoformat()),
        ("promoted", row.promoted_at.isoformat() if row.promoted_at else "-"),
        ("archived", row.archived_at.isoformat() if row.archived_at else "-"),
        ("training", f"{log.training_type} run, {log.status}" if log else "-"),
        (
            "training duration",
            f"{log.training_duration:.1f} s" if log and log.training_duration else "-",
        ),
        ("MLflow run", log.mlflow_run_id if log else "-"),
        ("data range", f"{data_range.get('start', '?')} → {data_range.get('end', '?')}"),
        ("dataset hash", data_range.get("dataset_hash", "-")),
        ("signals", signal_rule(row.metrics or {})),
    ):
        facts.add_row(field, str(value))
    console.print(facts)
    metrics = row.metrics or {}
    keys = [k for k in metrics if k.startswith(("holdout_", "production_holdout_", "lift_"))]
    if keys:
        console.print(
            frame_table(
                pd.DataFrame([{k: metrics[k] for k in keys}])
                .T.reset_index()
                .set_axis(["metric", "value"], axis=1),
                title="holdout metrics",
            )
        )
    history = stage_history(engine, version=version)
    console.print(frame_table(history.drop(columns=["details", "model_type"]), title="history"))


def signal_rule(metrics: dict[str, Any]) -> str:
    """The thresholds a version signals at, from its metrics (a full training's own, or the
    parent's a daily child carries)."""
    if "buy_threshold" not in metrics:
        return "the global thresholds (no calibration of its own)"
    buy, sell = metrics.get("buy_threshold"), metrics.get("sell_threshold")
    if buy is None and sell is None:
        return "always hold: no edge over the baselines on held-out data"
    buys = "never buys" if buy is None else f"buy at calibrated P(up) ≥ {buy}"
    sells = "never sells" if sell is None else f"sell at ≤ {sell}"
    return f"{buys}, {sells}"


@app.command("history")
def history_cmd(
    ctx: typer.Context,
    model_type: Annotated[str | None, typer.Option("--model-type", help="Only this type.")] = None,
    version: Annotated[str | None, typer.Option(help="Only this version.")] = None,
    at: Annotated[
        str | None,
        typer.Option(help="Instead: which version was serving at this moment (UTC)?"),
    ] = None,
) -> None:
    """Every stage change ever made: when, from what to what, why, and by which command or
    flow. `--at "2026-11-17 14:00"` answers which version was serving then."""

    engine = app_context(ctx).engine()
    if at is not None:
        moment = parse_time(at, "--at")
        types = [model_type] if model_type else _model_types(app_context(ctx))
        for kind in types:
            serving = serving_at(engine, kind, moment)
            console.print(
                f"{kind} at {moment.isoformat()}: "
                + (f"[bold]{serving}[/] was in Production" if serving else "no Production version")
            )
        return
    history = stage_history(engine, version=version, model_type=model_type)
    if history.empty:
        console.print("no stage changes recorded yet")
        return
    history["details"] = history["details"].map(_gate_summary)
    console.print(frame_table(history.rename(columns={"details": "gate"}), title="stage history"))


@app.command("promote")
def promote_cmd(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="The Staging (or archived) version to promote.")],
    margin: Annotated[
        float, typer.Option(help="Accuracy the candidate must gain over Production.")
    ] = 0.005,
    min_samples: Annotated[int, typer.Option(help="Fewest holdout samples to decide on.")] = 30,
    force: Annotated[bool, typer.Option(help="Promote even if the gate refuses.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why (required with --force).")] = None,
    as_of: AsOfOpt = None,
) -> None:
    """Promote a version to Production if it beats Production (by --margin) and the baselines
    on the same recent holdout; the old Production version is archived in the same step."""
    from registry.promotion import promote  # noqa: PLC0415  (MLflow: only the commands that use the registry)

    if force and not (reason and reason.strip()):
        raise InvalidInputError('--force needs --reason "why this overrides the gate"')
    if not force and reason:
        raise InvalidInputError("--reason is stored with a forced promotion: add --force")
    if not 0 <= margin < 1:
        raise InvalidInputError(f"invalid --margin {margin}: expected an accuracy in [0, 1)")
    app_ctx = app_context(ctx)
    if get_version(app_ctx.engine(), version).status == ModelStatus.PRODUCTION:
        # What was asked for already holds: say so and succeed, as a second run of a
        # deployment script expects.
        console.print(f"{version} is already in Production: nothing changed")
        return
    moment = parse_time(as_of, "--as-of") if as_of else app_ctx.now()
    store = model_store(app_ctx)
    with console.status("scoring on the recent holdout…"):
        outcome = promote(
            app_ctx.engine(),
            store,
            version,
            as_of=moment,
            actor=_actor(ctx),
            margin=margin,
            min_samples=min_samples,
            force_reason=reason if force else None,
            clock=None if as_of else app_ctx.now,  # stamped when it commits, not at the start
        )
    if outcome.decision is not None:
        console.print(gate_table(outcome.decision, version, outcome.production_version))
    if not outcome.promoted:
        assert outcome.decision is not None
        for why in outcome.decision.reasons:
            console.print(f"  [red]✗[/] {why}", highlight=False)
        console.print(
            f"[red]refused:[/] {version} stays {get_version(app_ctx.engine(), version).status} "
            '(override with --force --reason "...")'
        )
        raise typer.Exit(1)
    _print_stage(
        outcome.stage, f"{version} is now in Production" + (" (forced)" if outcome.forced else "")
    )


@app.command("rollback")
def rollback_cmd(
    ctx: typer.Context,
    to: Annotated[
        str | None, typer.Option("--to", help="Version to restore (default: the previous one).")
    ] = None,
    model_type: ModelTypeOpt = "lstm",
    reason: Annotated[str | None, typer.Option(help="Why, for the history.")] = None,
    as_of: AsOfOpt = None,
) -> None:
    """Restore the previous Production version (or --to VERSION) in one step."""
    from registry.stages import rollback  # noqa: PLC0415  (MLflow: only the commands that use the registry)

    app_ctx = app_context(ctx)
    moment = parse_time(as_of, "--as-of") if as_of else app_ctx.now()
    store = model_store(app_ctx)
    result = rollback(
        app_ctx.engine(),
        store,
        model_type,
        as_of=moment,
        actor=_actor(ctx),
        to=to,
        reason=reason,
        clock=None if as_of else app_ctx.now,
    )
    restored = [c.version for c in result.changes if c.to_status == "production"][0]
    _print_stage(result, f"rolled back: {restored} is in Production again")


@app.command("archive")
def archive_cmd(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="A Staging version to retire.")],
    reason: Annotated[str, typer.Option(help="Why, for the history.")] = "archived by hand",
    as_of: AsOfOpt = None,
) -> None:
    """Archive a Staging version (Production only leaves by being replaced)."""
    from registry.stages import change_stage  # noqa: PLC0415  (MLflow: only the commands that use the registry)

    app_ctx = app_context(ctx)
    moment = parse_time(as_of, "--as-of") if as_of else app_ctx.now()
    store = model_store(app_ctx)
    result = change_stage(
        app_ctx.engine(),
        store,
        version,
        "archived",
        as_of=moment,
        reason=reason,
        actor=_actor(ctx),
        clock=None if as_of else app_ctx.now,
    )
    _print_stage(result, f"{version} archived")


@app.command("reconcile")
def reconcile_cmd(
    ctx: typer.Context,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print what would be fixed and change nothing."
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Make a plan that archives or demotes more than 3 versions, or leaves a model "
        "type MLflow serves without a Production version.",
    ),
    adopt_store: bool = typer.Option(
        False,
        "--adopt-store",
        help="Make this database and this MLflow store one pair again (after moving either).",
    ),
) -> None:
    """Find and fix every disagreement between MLflow and the table (the table is the truth)."""
    from registry.reconcile import reconcile  # noqa: PLC0415  (MLflow: only the commands that use the registry)

    app_ctx = app_context(ctx)
    store = model_store(app_ctx)
    fixes = reconcile(
        app_ctx.engine(),
        store,
        app_ctx.now(),
        _actor(ctx),
        force=force,
        dry_run=dry_run,
        adopt_store=adopt_store,
    )
    if not fixes:
        console.print("MLflow and model_versions agree: nothing to fix")
        return
    console.print(
        frame_table(
            pd.DataFrame(
                [(f.kind, f.version, f.detail) for f in fixes],
                columns=["disagreement", "version", "would be fixed by" if dry_run else "fixed by"],
            ),
            title=f"{len(fixes)} disagreement(s) "
            + ("found, nothing changed (--dry-run)" if dry_run else "fixed"),
        )
    )


def gate_table(decision: GateDecision, candidate: str, production: str | None) -> Table:
    """The numbers the gate decided on: candidate, Production and baselines, one holdout."""
    holdout = decision.holdout
    table = Table(
        title=f"promotion gate: {holdout.get('samples', '?')} holdout samples "
        f"{holdout.get('start', '?')} → {holdout.get('end', '?')} (margin {decision.margin})",
        title_justify="left",
    )
    table.add_column("model")
    for column in ("samples", "accuracy", "auc", "log_loss", "brier"):
        table.add_column(column, justify="right")
    for label, m in decision.rows(candidate, production):
        table.add_row(
            label,
            str(m.samples),
            *(f"{getattr(m, c):.4f}" for c in ("accuracy", "auc", "log_loss", "brier")),
        )
    return table


def _print_stage(result: Any, headline: str) -> None:
    console.print(f"[green]{headline}[/]")
    for change in result.changes:
        console.print(f"  {change.version}: {change.from_status} → {change.to_status}")
    if not result.mlflow_synced:
        console.print(
            f"[yellow]MLflow not updated ({result.mlflow_error}); the table is; run "
            "`aifx models reconcile`[/]"
        )


def _model_types(app_ctx: AppContext) -> list[str]:
    with session_factory(app_ctx.engine())() as session:
        return sorted(session.execute(select(ModelVersion.model_type).distinct()).scalars())


def _gate_summary(details: Any) -> str:
    if not isinstance(details, dict) or "gate" not in details:
        return "-"
    gate = details["gate"]
    prod = gate.get("production") or {}
    text = f"acc {gate['candidate']['accuracy']:.4f}"
    if prod:
        text += f" vs {prod['accuracy']:.4f}"
    return text + (" (forced)" if details.get("forced") else "")
