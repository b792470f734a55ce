"""`aifx evaluate monthly`: does each Production model still work? (Evidently reports)"""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import typer

from aifx_ml.cli.common import app_context, console, frame_table, model_store, parse_time
from aifx_ml.cli.help import MARKUP
from aifx_ml.evaluation.params import EVALUATION

app = typer.Typer(
    rich_markup_mode=MARKUP,
    help="Evaluate models in production: drift and degradation.",
    no_args_is_help=True,
)


@app.command("monthly")
def monthly_cmd(
    ctx: typer.Context,
    month: Annotated[
        str | None, typer.Option(help="YYYY-MM (default: the month before --as-of).")
    ] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Now, UTC (default: now).")] = None,
    accuracy_drop: Annotated[
        float, typer.Option(help="Accuracy drop that is degradation.")
    ] = EVALUATION.accuracy_drop,
    auc_drop: Annotated[
        float, typer.Option(help="AUC drop that is degradation.")
    ] = EVALUATION.auc_drop,
    drift_share: Annotated[
        float, typer.Option(help="Share of drifted input features that is drift.")
    ] = EVALUATION.drift_share,
) -> None:
    """Evaluate every Production (and recently archived) version on a month: input drift
    against its training window, quality against its own holdout, and a recommendation."""
    # Evaluation loads TensorFlow: only this command pays for it.
    from aifx_ml.evaluation.monthly import Thresholds, previous_month  # noqa: PLC0415  (TensorFlow: only this command)
    from aifx_ml.evaluation.monthly_run import run_monthly  # noqa: PLC0415  (TensorFlow: only this command)

    app_ctx = app_context(ctx)
    settings = app_ctx.settings
    moment = parse_time(as_of, "--as-of") if as_of else app_ctx.now()
    month = month or previous_month(moment)
    thresholds = Thresholds(accuracy_drop=accuracy_drop, auc_drop=auc_drop, drift_share=drift_share)
    with console.status(f"evaluating {month}…"):
        result = run_monthly(
            app_ctx.engine(),
            month,
            model_store(app_ctx),
            report_dir=settings.monthly_reports_dir,
            as_of=moment,
            thresholds=thresholds,
        )
    for version, error in result.errors.items():
        console.print(f"[yellow]{version} not evaluated:[/] {error}", highlight=False)
    if not result.evaluations:
        console.print(f"no Production version to evaluate for {month}")
        return
    rows = [
        {
            "version": e.version,
            "stage": e.status,
            "samples": e.samples,
            "accuracy": e.accuracy,
            "holdout acc.": e.holdout_accuracy,
            "auc": e.auc,
            "drift share": e.drift_share,
            "degraded": e.degraded,
            "drift": e.drift,
            "recommendation": (
                f"{e.recommendation} → {e.rollback_to}" if e.rollback_to else e.recommendation
            ),
        }
        for e in result.evaluations
    ]
    console.print(frame_table(pd.DataFrame(rows), title=f"monthly evaluation {month}"))
    for e in result.production():
        for reason in e.reasons:
            console.print(f"  {e.version}: {reason}", highlight=False)
        console.print(f"  report: {result.reports[e.version]}")
