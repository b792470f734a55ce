"""Reading the stage history: every change ever made, and which version served when."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Engine, select

from aifx_ml.db.engine import session_factory
from aifx_ml.db.models import ModelStageHistory, ModelVersion
from aifx_ml.domain import ModelStatus

HISTORY_COLUMNS = (
    "changed_at",
    "version",
    "model_type",
    "from_status",
    "to_status",
    "reason",
    "actor",
    "ab_test_id",
    "details",
)


def stage_history(
    engine: Engine, *, version: str | None = None, model_type: str | None = None
) -> pd.DataFrame:
    """Every stage change, oldest first (filtered by version or model type)."""
    query = select(*(getattr(ModelStageHistory, c) for c in HISTORY_COLUMNS))
    if version is not None:
        query = query.where(ModelStageHistory.version == version)
    if model_type is not None:
        query = query.where(ModelStageHistory.model_type == model_type)
    query = query.order_by(ModelStageHistory.changed_at, ModelStageHistory.recorded_at)
    with session_factory(engine)() as session:
        rows = session.execute(query).all()
    return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))


def serving_at(engine: Engine, model_type: str, at: datetime) -> str | None:
    """The version that was in Production for `model_type` at `at`, or None.

    The last change into or out of Production at or before `at` tells: Production changes
    only by promotion (which archives the previous version in the same step).
    """
    with session_factory(engine)() as session:
        last = session.execute(
            select(ModelStageHistory.version, ModelStageHistory.to_status)
            .where(
                ModelStageHistory.model_type == model_type,
                ModelStageHistory.changed_at <= at,
                ModelStageHistory.to_status == ModelStatus.PRODUCTION,
            )
            .order_by(ModelStageHistory.changed_at.desc(), ModelStageHistory.recorded_at.desc())
            .limit(1)
        ).first()
    return None if last is None else str(last.version)


def lineage(engine: Engine, version: str) -> list[ModelVersion]:
    """The version and its ancestors, newest first (a daily child, its parent, …)."""
    chain: list[ModelVersion] = []
    seen: set[str] = set()
    with session_factory(engine)() as session:
        current: str | None = version
        while current is not None and current not in seen:
            seen.add(current)
            row = session.execute(
                select(ModelVersion).where(ModelVersion.version == current)
            ).scalar_one_or_none()
            if row is None:
                break
            chain.append(row)
            current = row.parent_version
    return chain
