"""Reconciliation: find every disagreement between MLflow's registry and `model_versions`,
and fix it from the declared source of truth, the table.

The table changes in transactions with its history and events; MLflow follows. So:
- a stage or alias that differs in MLflow is set to what the table says;
- a version MLflow has but the table never recorded (a registration whose database half
  failed and whose clean-up did not run) is archived in MLflow and tagged `aifx.orphan`;
- a version the table has but MLflow lost is re-registered from the run's logged model when
  its checksum still matches; otherwise it cannot be served, and the table archives it
  (a Production version is never archived this way: that is reported for a person to act on).

Nothing is changed unless two guards pass. The tables must belong to this MLflow store
(`registry.identity`: an identity recorded on first use in both). And the plan must not
archive or demote more than `MAX_LOSSES` versions, nor leave a model type that MLflow serves
from Production without a Production version: both are what a wrong setting looks like (a
new database pointed at an old store would archive the whole registry), so they wait for
`force`. `dry_run` returns the plan and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mlflow.exceptions import MlflowException
from sqlalchemy import Engine, select, update

from aifx_ml.db.engine import session_factory, transaction
from aifx_ml.db.models import ModelStageHistory, ModelTrainingLog, ModelVersion
from aifx_ml.domain import ModelStatus
from aifx_ml.errors import RefusedError
from aifx_ml.models.store import number_of, registered_name, version_label
from registry.identity import check_store
from registry.integrity import version_sha256
from registry.mlflow_store import (
    CHALLENGER,
    CHAMPION,
    MLFLOW_STAGES,
    SHA_TAG,
    MlflowModelStore,
    model_source,
    transition_stage,
)
from registry.stages import sync_mlflow

ORPHAN_TAG = "aifx.orphan"
MAX_LOSSES = 3  # versions reconcile may archive or demote without being forced
STAGE_RANK = {"Production": 3, "Staging": 2, "None": 1, "Archived": 0}


@dataclass(frozen=True)
class Fix:
    """One disagreement found, and what was done about it (or, planned, what would be)."""

    kind: str  # stage, alias, orphan_in_mlflow, missing_in_mlflow
    version: str
    detail: str
    loss: bool = False  # archives or demotes a version (planned: may)


@dataclass(frozen=True)
class Plan:
    """What reconcile would do, and what in it needs `force`."""

    fixes: list[Fix]
    unserved: list[str] = field(default_factory=list)  # types MLflow serves, the table not

    @property
    def losses(self) -> list[Fix]:
        return [f for f in self.fixes if f.loss]

    def refusal(self, max_losses: int = MAX_LOSSES) -> str | None:
        """Why this plan needs `force` (None: it does not)."""
        why = []
        if len(self.losses) > max_losses:
            why.append(
                f"archive or demote {len(self.losses)} version(s) (more than {max_losses}): "
                + ", ".join(f.version for f in self.losses[:5])
                + (", …" if len(self.losses) > 5 else "")
            )
        why += [
            f"leave {t} with no Production version in MLflow (the table has none)"
            for t in self.unserved
        ]
        if not why:
            return None
        return (
            f"reconcile refused, nothing changed: it would {'; and '.join(why)}. Check that "
            "AIFX_DATABASE_URL and MLFLOW_TRACKING_URI point at one installation; "
            "`aifx models reconcile --dry-run` lists every change, `--force` makes them"
        )


class ReconcileRefusedError(RefusedError):
    """The plan archives or demotes too much to be made without `force`."""


def reconcile(
    engine: Engine,
    store: MlflowModelStore,
    as_of: datetime,
    actor: str,
    *,
    force: bool = False,
    dry_run: bool = False,
    adopt_store: bool = False,
    max_losses: int = MAX_LOSSES,
) -> list[Fix]:
    """Bring MLflow in line with the table for every model type either of them knows; the
    fixes made (with `dry_run`, the plan: nothing is changed).

    StoreMismatchError when the tables belong to another MLflow store (unless `adopt_store`);
    ReconcileRefusedError when the plan needs `force` (see `Plan.refusal`)."""
    check_store(engine, store, as_of, adopt=adopt_store, record=not dry_run)
    planned = plan(engine, store)
    if dry_run:
        return planned.fixes
    refusal = planned.refusal(max_losses)
    if refusal is not None and not force:
        raise ReconcileRefusedError(refusal)
    types = {r.model_type for r in _rows(engine, None)} | _mlflow_types(store)
    fixes: list[Fix] = []
    for model_type in sorted(types):
        fixes += _missing_in_mlflow(engine, store, _rows(engine, model_type), as_of, actor)
        # Read again: a re-registered version has a new registry URI now.
        fixes += _orphans_in_mlflow(store, model_type, _rows(engine, model_type))
        for change in sync_mlflow(engine, store, model_type):
            version = change.split(":", 1)[0] if ":" in change else model_type
            kind = "alias" if "alias" in change else "stage"
            fixes.append(Fix(kind, version, change, loss=_demotes(change)))
    return fixes


def plan(engine: Engine, store: MlflowModelStore) -> Plan:
    """What `reconcile` would change, read without changing anything."""
    fixes: list[Fix] = []
    unserved = []
    table_types = {r.model_type for r in _rows(engine, None)}
    for model_type in sorted(table_types | _mlflow_types(store)):
        rows = _rows(engine, model_type)
        present = _mlflow_numbers(store, model_type)
        fixes += _planned_missing(rows, present)
        fixes += [fix for _, fix in _planned_orphans(model_type, rows, present)]
        known = {number_of(r): r for r in rows if r.model_path}
        for number, row in known.items():
            have = getattr(present.get(number), "current_stage", None)
            want = MLFLOW_STAGES[row.status]
            if have is not None and have != want:
                fixes.append(
                    Fix(
                        "stage",
                        row.version,
                        f"MLflow stage {have} → {want}",
                        loss=_lower(want, have),
                    )
                )
        served_in_mlflow = any(
            getattr(v, "current_stage", None) == "Production" for v in present.values()
        ) or CHAMPION in _aliases(store, model_type)
        if served_in_mlflow and not any(r.status == ModelStatus.PRODUCTION for r in rows):
            unserved.append(model_type)
    return Plan(fixes, unserved)


def _planned_missing(rows: list[ModelVersion], present: dict[str, object]) -> list[Fix]:
    fixes = []
    for row in rows:
        if not row.model_path or number_of(row) in present:
            continue
        if row.status == ModelStatus.PRODUCTION:
            what, loss = "else NOT changed (reported: promote or roll back)", False
        elif row.status == ModelStatus.ARCHIVED:
            what, loss = "else left archived", False
        else:
            what, loss = "else archived", True
        fixes.append(
            Fix(
                "missing_in_mlflow",
                row.version,
                f"lost from MLflow: re-registered from its run if its files are intact, {what}",
                loss=loss,
            )
        )
    return fixes


def _planned_orphans(
    model_type: str, rows: list[ModelVersion], present: dict[str, object]
) -> list[tuple[str, Fix]]:
    """The versions MLflow has that the table never recorded (an orphan already archived and
    tagged is done), each with its number and what archiving it means."""
    recorded = {number_of(r) for r in rows if r.model_path}
    orphans = []
    for number, found in present.items():
        stage = getattr(found, "current_stage", "None")
        tags = getattr(found, "tags", {}) or {}
        if number in recorded or (stage == "Archived" and tags.get(ORPHAN_TAG) == "true"):
            continue
        fix = Fix(
            "orphan_in_mlflow",
            version_label(model_type, number),
            f"in MLflow ({stage}) but never recorded in the table: archived and tagged "
            f"{ORPHAN_TAG}",
            loss=stage != "Archived",
        )
        orphans.append((number, fix))
    return orphans


def _aliases(store: MlflowModelStore, model_type: str) -> dict[str, str]:
    try:
        found = store.client.get_registered_model(registered_name(model_type))
    except MlflowException:  # no registered model of this type in MLflow
        return {}
    return {k: str(v) for k, v in (found.aliases or {}).items()}


def _lower(want: str, have: str) -> bool:
    return STAGE_RANK.get(want, 0) < STAGE_RANK.get(have, 0)


def _demotes(change: str) -> bool:
    """Whether a change `sync_mlflow` made ("…: MLflow stage A → B") lowered a stage."""
    if "MLflow stage " not in change:
        return False
    have, want = change.split("MLflow stage ", 1)[1].split(" → ")
    return _lower(want, have)


def _rows(engine: Engine, model_type: str | None) -> list[ModelVersion]:
    query = select(ModelVersion)
    if model_type is not None:
        query = query.where(ModelVersion.model_type == model_type)
    with session_factory(engine)() as session:
        return list(session.execute(query).scalars().all())


def _mlflow_types(store: MlflowModelStore) -> set[str]:
    found = store.client.search_registered_models(filter_string="name LIKE 'aifx-%'")
    return {m.name.removeprefix("aifx-") for m in found}


def _mlflow_numbers(store: MlflowModelStore, model_type: str) -> dict[str, object]:
    name = registered_name(model_type)
    return {str(v.version): v for v in store.client.search_model_versions(f"name = '{name}'")}


def _orphans_in_mlflow(
    store: MlflowModelStore, model_type: str, rows: list[ModelVersion]
) -> list[Fix]:
    name = registered_name(model_type)
    orphans = _planned_orphans(model_type, rows, _mlflow_numbers(store, model_type))
    for number, _ in orphans:
        transition_stage(store.client, name, number, "Archived")
        store.client.set_model_version_tag(name, number, ORPHAN_TAG, "true")
        aliases = store.client.get_registered_model(name).aliases or {}
        for alias in (CHAMPION, CHALLENGER):
            if str(aliases.get(alias)) == number:
                store.client.delete_registered_model_alias(name, alias)
    return [fix for _, fix in orphans]


def _missing_in_mlflow(
    engine: Engine, store: MlflowModelStore, rows: list[ModelVersion], as_of: datetime, actor: str
) -> list[Fix]:
    if not rows:
        return []
    model_type = rows[0].model_type
    present = _mlflow_numbers(store, model_type)
    fixes = []
    for row in rows:
        if not row.model_path or number_of(row) in present:
            continue
        restored = _reregister(engine, store, row)
        if restored is not None:
            fixes.append(
                Fix("missing_in_mlflow", row.version, f"re-registered from its run as {restored}")
            )
            continue
        if row.status == ModelStatus.PRODUCTION:
            fixes.append(
                Fix(
                    "missing_in_mlflow",
                    row.version,
                    "Production version lost from MLflow and not recoverable: NOT changed; "
                    "promote or roll back to another version",
                )
            )
            continue
        if row.status != ModelStatus.ARCHIVED:
            _archive_lost(engine, row, as_of, actor)
        fixes.append(
            Fix(
                "missing_in_mlflow",
                row.version,
                "lost from MLflow, not recoverable: archived",
                loss=row.status != ModelStatus.ARCHIVED,
            )
        )
    return fixes


def _reregister(engine: Engine, store: MlflowModelStore, row: ModelVersion) -> str | None:
    """Register the run's model again if its files still have the recorded checksum.

    The model is where `MlflowModelStore.register` saves it (the run's `model` artifact), or,
    for a version trained before that, one of the run's logged models.
    """
    run_id = _run_of(engine, row)
    if run_id is None:
        return None
    try:
        experiment = store.client.get_run(run_id).info.experiment_id
        logged = store.client.search_logged_models(
            [experiment], filter_string=f"source_run_id = '{run_id}'"
        )
        sources = [model_source(store.client, run_id), *(m.model_uri for m in logged)]
    except MlflowException:
        return None
    name = registered_name(row.model_type)
    for source in sources:
        try:
            created = store.client.create_model_version(name, source, run_id=run_id)
        except MlflowException:
            continue
        number = str(created.version)
        try:
            intact = version_sha256(store.client, name, number) == row.artifact_sha256
        except (MlflowException, OSError):
            intact = False  # nothing (readable) there
        if intact:
            store.client.set_model_version_tag(name, number, SHA_TAG, row.artifact_sha256 or "")
            with transaction(engine) as session:
                session.execute(
                    update(ModelVersion)
                    .where(ModelVersion.id == row.id)
                    .values(model_path=f"models:/{name}/{number}")
                )
            return f"models:/{name}/{number}"
        store.client.delete_model_version(name, number)
    return None


def _run_of(engine: Engine, row: ModelVersion) -> str | None:
    if row.training_log_id is None:
        return None
    with session_factory(engine)() as session:
        return session.execute(
            select(ModelTrainingLog.mlflow_run_id).where(ModelTrainingLog.id == row.training_log_id)
        ).scalar_one_or_none()


def _archive_lost(engine: Engine, row: ModelVersion, as_of: datetime, actor: str) -> None:
    with transaction(engine) as session:
        session.execute(
            update(ModelVersion)
            .where(ModelVersion.id == row.id)
            .values(status=ModelStatus.ARCHIVED, archived_at=as_of, updated_at=as_of)
        )
        session.add(
            ModelStageHistory(
                version=row.version,
                model_type=row.model_type,
                from_status=row.status,
                to_status=ModelStatus.ARCHIVED,
                changed_at=as_of,
                reason="reconcile: model files lost from MLflow and not recoverable",
                actor=actor,
            )
        )
