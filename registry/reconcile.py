"""Reconciliation: find every disagreement between MLflow's registry and `model_versions`,
and fix it from the declared source of truth, the table.

The table changes in transactions with its history and events; MLflow follows. So:
- a stage or alias that differs in MLflow is set to what the table says;
- a version MLflow has but the table never recorded (a registration whose database half
  failed and whose clean-up did not run) is archived in MLflow and tagged `aifx.orphan`;
- a version the table has but MLflow lost is re-registered from the run's logged model when
  its checksum still matches; otherwise it cannot be served, and the table archives it
  (a Production version is never archived this way: that is reported for a person to act on).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mlflow.exceptions import MlflowException
from sqlalchemy import Engine, select, update

from aifx_ml.db.engine import session_factory, transaction
from aifx_ml.db.models import ModelStageHistory, ModelTrainingLog, ModelVersion
from aifx_ml.domain import ModelStatus
from aifx_ml.models.store import number_of, registered_name, version_label
from registry.integrity import version_sha256
from registry.mlflow_store import (
    CHALLENGER,
    CHAMPION,
    SHA_TAG,
    MlflowModelStore,
    model_source,
    transition_stage,
)
from registry.stages import sync_mlflow

ORPHAN_TAG = "aifx.orphan"


@dataclass(frozen=True)
class Fix:
    """One disagreement found, and what was done about it."""

    kind: str  # stage, alias, orphan_in_mlflow, missing_in_mlflow
    version: str
    detail: str


def reconcile(engine: Engine, store: MlflowModelStore, as_of: datetime, actor: str) -> list[Fix]:
    """Bring MLflow in line with the table for every model type either of them knows."""
    types = {r.model_type for r in _rows(engine, None)} | _mlflow_types(store)
    fixes: list[Fix] = []
    for model_type in sorted(types):
        fixes += _missing_in_mlflow(engine, store, _rows(engine, model_type), as_of, actor)
        # Read again: a re-registered version has a new registry URI now.
        fixes += _orphans_in_mlflow(store, model_type, _rows(engine, model_type))
        for change in sync_mlflow(engine, store, model_type):
            version = change.split(":", 1)[0] if ":" in change else model_type
            kind = "alias" if "alias" in change else "stage"
            fixes.append(Fix(kind, version, change))
    return fixes


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
    recorded = {number_of(r) for r in rows if r.model_path}
    fixes = []
    for number, found in _mlflow_numbers(store, model_type).items():
        if number in recorded:
            continue
        stage = getattr(found, "current_stage", "None")
        tags = getattr(found, "tags", {}) or {}
        if stage == "Archived" and tags.get(ORPHAN_TAG) == "true":
            continue
        transition_stage(store.client, name, number, "Archived")
        store.client.set_model_version_tag(name, number, ORPHAN_TAG, "true")
        aliases = store.client.get_registered_model(name).aliases or {}
        for alias in (CHAMPION, CHALLENGER):
            if str(aliases.get(alias)) == number:
                store.client.delete_registered_model_alias(name, alias)
        fixes.append(
            Fix(
                "orphan_in_mlflow",
                version_label(model_type, number),
                f"in MLflow ({stage}) but never recorded in the table: archived and tagged "
                f"{ORPHAN_TAG}",
            )
        )
    return fixes


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
            Fix("missing_in_mlflow", row.version, "lost from MLflow, not recoverable: archived")
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
