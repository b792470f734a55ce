"""The `model_versions` table: recording a freshly registered version and looking versions up.

The table is the source of truth for which version is where; the model store (MLflow in
production) holds the files and mirrors the stages (`registry/`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from aifx_ml.db.engine import session_factory
from aifx_ml.db.lookups import version_row
from aifx_ml.db.models import ModelABTest, ModelStageHistory, ModelVersion
from aifx_ml.domain import ModelStatus, ProductionAge, TestStatus
from aifx_ml.errors import RegistryError


def record_version(
    session: Session,
    *,
    version: str,
    model_type: str,
    model_path: str,
    training_log_id: uuid.UUID,
    parent_version: str | None,
    metrics: dict[str, Any],
    artifact_sha256: str,
    as_of: datetime,
    actor: str,
) -> None:
    """The `model_versions` row of a freshly registered version (status staging) and the first
    line of its history."""
    session.add(
        ModelVersion(
            version=version,
            model_type=model_type,
            model_path=model_path,
            training_log_id=training_log_id,
            parent_version=parent_version,
            status=ModelStatus.STAGING.value,
            metrics=metrics,
            artifact_sha256=artifact_sha256,
            created_at=as_of,
            updated_at=as_of,
        )
    )
    session.flush()
    session.add(
        ModelStageHistory(
            version=version,
            model_type=model_type,
            from_status=None,
            to_status=ModelStatus.STAGING.value,
            changed_at=as_of,
            reason="registered by a training run",
            actor=actor,
            details={"training_log_id": str(training_log_id), "parent_version": parent_version},
        )
    )


def get_version(engine: Engine, version: str) -> ModelVersion:
    """The row of `version`, or one clear error naming it."""
    with session_factory(engine)() as session:
        row = version_row(session, version)
    if row is None:
        raise RegistryError(f"unknown model version {version!r}: see `aifx models list`")
    return row


def production_ages(engine: Engine) -> list[ProductionAge]:
    """Every Production version (by model type), when it was trained, and the challenger of
    its model type's running test, if any."""
    with session_factory(engine)() as session:
        serving = session.execute(
            select(ModelVersion.model_type, ModelVersion.version, ModelVersion.created_at)
            .where(ModelVersion.status == ModelStatus.PRODUCTION.value)
            .order_by(ModelVersion.model_type)
        ).all()
        challengers: dict[str | None, str] = {
            model_type: challenger
            for model_type, challenger in session.execute(
                select(ModelABTest.model_type, ModelABTest.model_b_version).where(
                    ModelABTest.status == TestStatus.ACTIVE.value
                )
            )
        }
    return [
        ProductionAge(model_type, version, trained_at, challengers.get(model_type))
        for model_type, version, trained_at in serving
    ]


def production_version(engine: Engine, model_type: str) -> ModelVersion | None:
    """The version serving in production for this model type, if any."""
    with session_factory(engine)() as session:
        return session.execute(
            select(ModelVersion).where(
                ModelVersion.model_type == model_type,
                ModelVersion.status == ModelStatus.PRODUCTION.value,
            )
        ).scalar_one_or_none()
