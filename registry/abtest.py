"""A/B test decisions in the registry: the winner becomes Production, a losing challenger is
archived and the test is completed — one transaction, under the test's row lock, each stage
change recorded with the test's id. MLflow follows after the commit."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from aifx_ml.abtest.store import end_locked, lock_active, require_active
from aifx_ml.db.engine import transaction
from aifx_ml.db.lookups import version_row
from aifx_ml.db.models import ModelABTest
from aifx_ml.domain import ModelStatus
from aifx_ml.errors import InvalidInputError, RegistryError
from aifx_ml.models.store import ModelStore
from aifx_ml.models.versions import get_version
from registry.mlflow_store import MlflowModelStore
from registry.stages import (
    Clock,
    StageResult,
    apply_change,
    commit_stamp,
    lock_model_type,
    mirror_stages,
    set_challenger,
    stage_lock,
)


def complete_with_winner(
    engine: Engine,
    store: ModelStore,
    test: ModelABTest | uuid.UUID | str,
    winner: str,
    *,
    as_of: datetime,
    reason: str,
    actor: str,
    metrics: dict[str, Any] | None = None,
    clock: Clock | None = None,
) -> ModelABTest:
    """Complete an active test with `winner` (one of its versions) in Production.

    The winner's files are verified first; then, with the model type's stage lock held, one
    transaction locks the test row, checks it is still active (ConflictError otherwise: a
    concurrent completion won and this one changes nothing), promotes the winner (unless it
    already serves), archives a losing Staging version and marks the test completed. An
    archived winner is refused: it was retired during the test and never comes back this way.
    """
    found = require_active(engine, test.id if isinstance(test, ModelABTest) else test)
    if winner not in (found.model_a_version, found.model_b_version):
        raise InvalidInputError(
            f"invalid winner {winner!r}: expected {found.model_a_version} or "
            f"{found.model_b_version}"
        )
    loser = found.model_b_version if winner == found.model_a_version else found.model_a_version
    row = get_version(engine, winner)
    if row.status == ModelStatus.ARCHIVED:
        # A concurrent completion archives the old Production in the transaction that ends
        # the test: if that is what happened, the answer is that the test is over.
        require_active(engine, found.id)
        _refuse_archived(winner, row.status)
    model_type = found.model_type or row.model_type
    if row.status != ModelStatus.PRODUCTION:
        store.verify(row)  # a tampered winner is refused before anything changes
    result = StageResult()
    why = f"won A/B test {found.test_name!r}"
    with stage_lock(engine, model_type):
        with transaction(engine) as session:
            lock_model_type(session, model_type)
            locked = lock_active(session, found.id)
            at = commit_stamp(session, model_type, as_of, clock)
            status = _status(session, winner)
            _refuse_archived(winner, status)
            if status != ModelStatus.PRODUCTION:
                result.changes += apply_change(
                    session, winner, ModelStatus.PRODUCTION, model_type, at, why, actor, found.id
                )
            if _status(session, loser) == ModelStatus.STAGING:
                result.changes += apply_change(
                    session,
                    loser,
                    ModelStatus.ARCHIVED,
                    model_type,
                    at,
                    f"lost A/B test {found.test_name!r}",
                    actor,
                    found.id,
                )
            ended = end_locked(session, locked, "completed", at, reason, winner, metrics)
        result.changed_at = at
        mirror_stages(engine, store, model_type, result)
        if isinstance(store, MlflowModelStore) and result.mlflow_synced:
            set_challenger(engine, store, None, model_type)
    return ended


def _status(session: Session, version: str) -> str:
    """A version's status as this transaction sees it."""
    row = version_row(session, version)
    if row is None:
        raise RegistryError(f"unknown model version {version!r}: see `aifx models list`")
    return str(row.status)


def _refuse_archived(version: str, status: str) -> None:
    if status == ModelStatus.ARCHIVED:
        raise RegistryError(
            f"model version {version} is archived: an A/B test never promotes an archived "
            "version (roll back to it with `aifx models rollback --to` if that is meant)"
        )


def mark_challenger(engine: Engine, store: MlflowModelStore, test: ModelABTest) -> None:
    """Point the `challenger` alias at the test's B version while it is in Staging."""
    row = get_version(engine, test.model_b_version)
    if row.status == ModelStatus.STAGING and test.model_type is not None:
        set_challenger(engine, store, row.version, test.model_type)
