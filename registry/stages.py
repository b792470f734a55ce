"""The one place where a model version changes stage.

A change is one database transaction: the `model_versions` rows, a `model_stage_history` row
per version that moved (when, from what to what, why, by whom), and the `ml:model_deployed`
event when Production changes. Promoting archives the previous Production version in the
same transaction; a per-model-type lock serializes promotions, and a partial unique index
makes two Production versions impossible even so. A version moving to where it serves has
its files verified first. Each change is stamped inside the transaction that commits it, with
the lock held (`commit_stamp`), so the history is in commit order. MLflow (stages, `champion`
and `challenger` aliases) follows right after the commit; the table is the source of truth,
and `registry.reconcile` repairs MLflow if that step was cut short.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlflow.exceptions import MlflowException
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session

from aifx_ml.db.engine import session_factory, transaction
from aifx_ml.db.lookups import version_row
from aifx_ml.db.models import ModelStageHistory, ModelVersion
from aifx_ml.domain import ModelStatus
from aifx_ml.errors import RegistryError
from aifx_ml.events.outbox import enqueue
from aifx_ml.events.schemas import ModelDeployed
from aifx_ml.models.store import ModelStore, number_of, registered_name
from aifx_ml.models.versions import get_version, production_version
from registry.mlflow_store import (
    CHALLENGER,
    CHAMPION,
    MLFLOW_STAGES,
    MlflowModelStore,
    transition_stage,
)

Clock = Callable[[], datetime]
# Where a version serves (or may, as an A/B arm): a move there checks its files first.
SERVING_STATUSES = (ModelStatus.PRODUCTION, ModelStatus.STAGING)

ALLOWED: dict[str, tuple[str, ...]] = {
    # to_status: the statuses a version may come from
    ModelStatus.PRODUCTION: (ModelStatus.STAGING, ModelStatus.ARCHIVED),
    # Production is only ever left by being replaced: there is always one once there was one.
    ModelStatus.ARCHIVED: (ModelStatus.STAGING,),
    ModelStatus.STAGING: (ModelStatus.ARCHIVED,),
}


@dataclass(frozen=True)
class StageChange:
    """One version moving from one status to another."""

    version: str
    from_status: str
    to_status: str


@dataclass
class StageResult:
    """What a stage change did, in the table and in MLflow."""

    changes: list[StageChange] = field(default_factory=list)
    changed_at: datetime | None = None  # the stamp of its history rows (`commit_stamp`)
    mlflow_synced: bool = True
    mlflow_error: str | None = None

    @property
    def previous_production(self) -> str | None:
        archived = [c for c in self.changes if c.from_status == ModelStatus.PRODUCTION]
        return archived[0].version if archived else None


def change_stage(
    engine: Engine,
    store: ModelStore,
    version: str,
    to_status: str,
    *,
    as_of: datetime,
    reason: str,
    actor: str,
    ab_test_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
    clock: Clock | None = None,
) -> StageResult:
    """Move `version` to `to_status` (production, archived or staging) and record why.

    To production: the current Production version of its model type is archived in the same
    transaction. Refused, with one clear error, if the version does not exist, may not make
    that move (an archived version can be promoted again — that is a rollback), or is moving
    to where it would serve (production, staging) with files that fail their integrity check.
    The change is stamped by `clock` (default: `as_of`) read once the model type's lock is
    held, so the history is in commit order (`commit_stamp`).
    """
    if to_status not in ALLOWED:
        raise RegistryError(f"invalid stage {to_status!r}: expected one of {', '.join(ALLOWED)}")
    model_type = get_version(engine, version).model_type
    with stage_lock(engine, model_type):
        return _change_locked(
            engine, store, version, to_status, model_type, as_of, clock, reason, actor,
            ab_test_id, details,
        )  # fmt: skip


def _change_locked(
    engine: Engine,
    store: ModelStore,
    version: str,
    to_status: str,
    model_type: str,
    as_of: datetime,
    clock: Clock | None,
    reason: str,
    actor: str,
    ab_test_id: uuid.UUID | None,
    details: dict[str, Any] | None,
) -> StageResult:
    """A stage change with the model type's lock held: files checked, table changed in one
    transaction, MLflow mirrored after the commit."""
    if to_status in SERVING_STATUSES:
        store.verify(get_version(engine, version))
    result = StageResult()
    with transaction(engine) as session:
        lock_model_type(session, model_type)
        at = commit_stamp(session, model_type, as_of, clock)
        result.changes = apply_change(
            session, version, to_status, model_type, at, reason, actor, ab_test_id, details
        )
        result.changed_at = at
    mirror_stages(engine, store, model_type, result)
    return result


def commit_stamp(
    session: Session, model_type: str, as_of: datetime, clock: Clock | None
) -> datetime:
    """When a stage change happens. With a `clock` (a command or the API on the wall clock):
    read inside the transaction that commits the change, with the model type's lock held, and
    never before the type's last recorded change — so `changed_at` orders the history as the
    commits did, even across hosts whose clocks disagree a little. Without one: `as_of`, the
    moment the caller names (a replay's simulated clock, `--as-of`), as given.

    `as_of` of a wall-clock command is the moment it *started*; a gate that scored for 30 s,
    or a wait for the lock behind another change, would stamp the change before one that
    committed first, and `--at`/rollback would disagree with what served.
    """
    if clock is None:
        return as_of
    moment = clock()
    last = session.execute(
        select(func.max(ModelStageHistory.changed_at)).where(
            ModelStageHistory.model_type == model_type
        )
    ).scalar_one_or_none()
    if last is not None and last.tzinfo is None:  # SQLite hands aggregates back naive
        last = last.replace(tzinfo=UTC)
    return moment if last is None or moment >= last else last


def apply_change(
    session: Session,
    version: str,
    to_status: str,
    model_type: str,
    at: datetime,
    reason: str,
    actor: str,
    ab_test_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> list[StageChange]:
    """The table half of a stage change, inside the caller's transaction (its lock held):
    the rows, their history and the `ml:model_deployed` event of a new Production version."""
    changes: list[StageChange] = []
    target = _row(session, version)
    if target.status == to_status:
        raise RegistryError(f"model version {version} is already {to_status}")
    if target.status not in ALLOWED[to_status]:
        raise RegistryError(
            f"model version {version} is {target.status}: it cannot become {to_status}"
        )
    previous = None
    if to_status == ModelStatus.PRODUCTION:
        previous = session.execute(
            select(ModelVersion).where(
                ModelVersion.model_type == model_type,
                ModelVersion.status == ModelStatus.PRODUCTION,
            )
        ).scalar_one_or_none()
        if previous is not None:
            changes.append(
                StageChange(previous.version, ModelStatus.PRODUCTION, ModelStatus.ARCHIVED)
            )
            _set_status(session, previous, ModelStatus.ARCHIVED, at)
            session.flush()  # the partial unique index sees one Production at a time
    changes.append(StageChange(version, target.status, to_status))
    _set_status(session, target, to_status, at)
    for change in changes:
        session.add(
            ModelStageHistory(
                version=change.version,
                model_type=model_type,
                from_status=change.from_status,
                to_status=change.to_status,
                changed_at=at,
                reason=reason if change.version == version else f"replaced by {version}",
                actor=actor,
                ab_test_id=ab_test_id,
                details=details,
            )
        )
    session.flush()  # one change after another in one transaction (an A/B decision)
    if to_status == ModelStatus.PRODUCTION:
        enqueue(
            session,
            ModelDeployed(
                model_type=model_type,
                version=version,
                previous_version=previous.version if previous else None,
                reason=reason,
                actor=actor,
                ab_test_id=ab_test_id,
            ),
            at,
        )
    return changes


def mirror_stages(engine: Engine, store: ModelStore, model_type: str, result: StageResult) -> None:
    """After the commit: MLflow's stages and aliases follow the table. A failure is recorded
    in `result`, not raised — the table has changed and is the truth; `aifx models reconcile`
    brings MLflow in line. A store without stages (the in-memory one) has nothing to follow."""
    if not isinstance(store, MlflowModelStore):
        return
    try:
        sync_mlflow(engine, store, model_type)
    except MlflowException as exc:
        result.mlflow_synced, result.mlflow_error = False, str(exc).splitlines()[0]


def rollback(
    engine: Engine,
    store: ModelStore,
    model_type: str,
    *,
    as_of: datetime,
    actor: str,
    to: str | None = None,
    reason: str | None = None,
    clock: Clock | None = None,
) -> StageResult:
    """Restore the previous Production version (or `to`) in one step; the current one is
    archived in the same transaction. The target is chosen with the model type's lock held
    and its files are verified first: a tampered version never reaches Production."""
    with stage_lock(engine, model_type):
        serving = production_version(engine, model_type)
        current = serving.version if serving is not None else None
        if to is None:
            to = _last_replaced(engine, model_type, current)
            if to is None:
                raise RegistryError(
                    f"no earlier Production {model_type} version to roll back to: give --to VERSION"
                )
        target = get_version(engine, to)
        if target.model_type != model_type:
            raise RegistryError(f"{to} is a {target.model_type} model, not {model_type}")
        why = reason or f"rollback from {current or 'no Production version'} to {to}"
        return _change_locked(
            engine, store, to, ModelStatus.PRODUCTION, model_type, as_of, clock, why, actor,
            None, None,
        )  # fmt: skip


def sync_mlflow(engine: Engine, store: MlflowModelStore, model_type: str) -> list[str]:
    """Make MLflow's stages and aliases of one model type say what the table says.

    Returns what it changed (empty when they already agreed).
    """
    with session_factory(engine)() as session:
        rows = (
            session.execute(select(ModelVersion).where(ModelVersion.model_type == model_type))
            .scalars()
            .all()
        )
    name = registered_name(model_type)
    changed: list[str] = []
    known = {number_of(r): r for r in rows if r.model_path}
    for number, row in known.items():
        want = MLFLOW_STAGES[row.status]
        have = store.client.get_model_version(name, number).current_stage
        if have != want:
            transition_stage(store.client, name, number, want)
            changed.append(f"{row.version}: MLflow stage {have} → {want}")
    if not known:
        return changed
    # MLflow hands alias targets back as numbers from some stores, strings from others.
    aliases = {
        k: str(v) for k, v in (store.client.get_registered_model(name).aliases or {}).items()
    }
    production = [n for n, r in known.items() if r.status == ModelStatus.PRODUCTION]
    if production and aliases.get(CHAMPION) != production[0]:
        store.client.set_registered_model_alias(name, CHAMPION, production[0])
        changed.append(f"{known[production[0]].version}: alias {CHAMPION} set")
    if not production and CHAMPION in aliases:
        store.client.delete_registered_model_alias(name, CHAMPION)
        changed.append(f"alias {CHAMPION} removed (no Production version)")
    challenger = aliases.get(CHALLENGER)
    if challenger is not None and (
        challenger not in known or known[challenger].status != ModelStatus.STAGING
    ):
        store.client.delete_registered_model_alias(name, CHALLENGER)
        changed.append(f"alias {CHALLENGER} removed (version {challenger} is not in Staging)")
    return changed


def set_challenger(
    engine: Engine, store: MlflowModelStore, version: str | None, model_type: str
) -> None:
    """Point the `challenger` alias at the Staging version under test (None: remove it)."""
    name = registered_name(model_type)
    if version is None:
        if CHALLENGER in (store.client.get_registered_model(name).aliases or {}):
            store.client.delete_registered_model_alias(name, CHALLENGER)
        return
    row = get_version(engine, version)
    if row.status != ModelStatus.STAGING:
        raise RegistryError(f"model version {version} is {row.status}: a challenger is in Staging")
    store.client.set_registered_model_alias(name, CHALLENGER, number_of(row))


def _set_status(session: Session, row: ModelVersion, status: str, as_of: datetime) -> None:
    values: dict[str, Any] = {"status": status, "updated_at": as_of}
    if status == ModelStatus.PRODUCTION:
        values["promoted_at"] = as_of
    if status == ModelStatus.ARCHIVED:
        values["archived_at"] = as_of
    session.execute(update(ModelVersion).where(ModelVersion.id == row.id).values(**values))


_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


@contextmanager
def stage_lock(engine: Engine, model_type: str) -> Iterator[None]:
    """One stage change of a model type at a time — the table change *and* the MLflow update
    that follows it, so a slower change cannot write stale stages over a newer one.

    Within a process a lock per model type; across processes on PostgreSQL an advisory lock
    held on its own connection until the MLflow update is done.
    """
    with _PROCESS_LOCKS_GUARD:
        local = _PROCESS_LOCKS.setdefault(model_type, threading.Lock())
    with local:
        if engine.dialect.name != "postgresql":
            yield
            return
        key = int.from_bytes(
            hashlib.sha256(f"aifx-stage:{model_type}".encode()).digest()[:8], "big", signed=True
        )
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()


def lock_model_type(session: Session, model_type: str) -> None:
    """SQLite: take the database's single write lock before reading, so two processes
    changing stages at once are serialized (PostgreSQL: `stage_lock` already holds one)."""
    if session.get_bind().dialect.name != "postgresql":
        session.execute(
            update(ModelVersion)
            .where(ModelVersion.model_type == model_type)
            .values(updated_at=ModelVersion.updated_at)
        )


def _row(session: Session, version: str) -> ModelVersion:
    row = version_row(session, version)
    if row is None:
        raise RegistryError(f"unknown model version {version!r}: see `aifx models list`")
    return row


def _last_replaced(engine: Engine, model_type: str, current: str | None) -> str | None:
    """The version most recently taken out of Production, other than the current one."""
    with session_factory(engine)() as session:
        rows = (
            session.execute(
                select(ModelStageHistory.version)
                .where(
                    ModelStageHistory.model_type == model_type,
                    ModelStageHistory.from_status == ModelStatus.PRODUCTION,
                    ModelStageHistory.version != (current or ""),
                )
                .order_by(ModelStageHistory.changed_at.desc(), ModelStageHistory.recorded_at.desc())
            )
            .scalars()
            .all()
        )
    return rows[0] if rows else None
