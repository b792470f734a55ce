"""Small reads several modules share."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from aifx_ml.db.models import ModelVersion


def version_row(session: Session, version: str) -> ModelVersion | None:
    """The `model_versions` row of `version`, or None."""
    return session.execute(
        select(ModelVersion).where(ModelVersion.version == version)
    ).scalar_one_or_none()
