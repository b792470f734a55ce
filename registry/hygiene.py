"""Staging hygiene: versions that will never serve leave Staging, each with its reason.

- A challenger whose test ended without it winning (decided for Production, inconclusive at
  its limit, or stopped by the pnl guardrail) is archived: it had its chance.
- At most `keep` candidates wait per model type (newest first; default 3): an older one,
  superseded by newer trainings before any test started for it, is archived.

The challenger of the active test is neither: it is being tried. Each archive is an ordinary
stage change (`registry.stages.change_stage`): recorded in the history with its reason,
mirrored in MLflow, announced on ml:model_deployed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from aifx_ml.db.engine import session_factory
from aifx_ml.db.models import ModelABTest, ModelVersion
from aifx_ml.domain import ModelStatus, TestStatus
from aifx_ml.models.store import ModelStore
from aifx_ml.training.config import TRAINING
from registry.stages import Clock, change_stage

DEFAULT_KEEP_WAITING = TRAINING.keep_waiting


@dataclass(frozen=True)
class Retired:
    """A version archived by the hygiene, and why."""

    version: str
    reason: str


def retire_stale_candidates(
    engine: Engine,
    store: ModelStore,
    model_type: str,
    *,
    as_of: datetime,
    actor: str,
    keep: int = DEFAULT_KEEP_WAITING,
    clock: Clock | None = None,
) -> list[Retired]:
    """Archive the losers of ended tests and the candidates beyond the newest `keep`."""
    if keep < 0:
        raise ValueError(f"keep must be >= 0, not {keep}")
    with session_factory(engine)() as session:
        staging = list(
            session.execute(
                select(ModelVersion).where(
                    ModelVersion.model_type == model_type,
                    ModelVersion.status == ModelStatus.STAGING,
                )
            ).scalars()
        )
        staging.sort(key=_newest_first)
        tests = list(
            session.execute(
                select(ModelABTest)
                .where(
                    ModelABTest.model_type == model_type,
                    ModelABTest.model_b_version.in_([v.version for v in staging]),
                )
                .order_by(ModelABTest.created_at)
            ).scalars()
        )
    in_test = {t.model_b_version for t in tests if t.status == TestStatus.ACTIVE}
    lost = {
        t.model_b_version: t
        for t in tests
        if t.status == TestStatus.COMPLETED and t.winner != t.model_b_version
    }
    retired: list[Retired] = []
    waiting = 0
    for row in staging:
        if row.version in in_test:
            continue
        test = lost.get(row.version)
        if test is not None:
            why = (test.ended_reason or "no winner").strip()
            reason = f"lost {test.mode} test {test.test_name!r} ({test.id}): {why}"
        elif waiting < keep:
            waiting += 1
            continue
        else:
            reason = f"superseded: {keep} newer candidate(s) of {model_type} wait in Staging"
        change_stage(
            engine, store, row.version, ModelStatus.ARCHIVED,
            as_of=as_of, reason=reason, actor=actor, clock=clock,
            ab_test_id=test.id if test is not None else None,
        )  # fmt: skip
        retired.append(Retired(row.version, reason))
    return retired


def _newest_first(row: ModelVersion) -> tuple[float, int]:
    """Newest registration first; versions registered at one moment by their number."""
    number = row.version.rsplit("-v", 1)[-1]
    return (-row.created_at.timestamp(), -int(number) if number.isdigit() else 0)
