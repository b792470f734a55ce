"""The monthly evaluation wired to the registry: models loaded (checksum verified) from it,
each evaluation logged as an MLflow run linked to its model version."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from sqlalchemy import Engine

from aifx_ml.db.models import ModelVersion
from aifx_ml.evaluation.monthly import Thresholds, VersionEvaluation
from aifx_ml.evaluation.monthly_run import MonthlyResult, run_monthly
from aifx_ml.training.tracking import log_evaluation
from registry.versions import get_version, load_version, mlflow_version_of, registered_name


def evaluate_month(
    engine: Engine,
    client: MlflowClient,
    month: str,
    *,
    artifact_root: str,
    report_dir: Path,
    as_of: datetime,
    thresholds: Thresholds | None = None,
) -> MonthlyResult:
    """Evaluate every Production (and recently archived) version for `month`."""

    def loader(row: ModelVersion) -> tuple[Any, Mapping[str, Any]]:
        loaded = load_version(row, client)
        return loaded.model, loaded.card

    def log(evaluation: VersionEvaluation, report: Path) -> str:
        row = get_version(engine, evaluation.version)
        return log_evaluation(
            client,
            artifact_root,
            evaluation.summary(),
            report,
            registered_name(row.model_type),
            mlflow_version_of(row),
        )

    return run_monthly(
        engine,
        month,
        loader=loader,
        report_dir=report_dir,
        as_of=as_of,
        thresholds=thresholds,
        log=log,
    )
