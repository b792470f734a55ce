"""Model versions in both places at once: MLflow's registry and the `model_versions` table.

A version is registered in MLflow (stage Staging) and recorded in the table in one step; the
Production version is found in the table and loaded from the registry by its alias
`champion`, never from a file path. Gated promotion, rollback, history and reconciliation
build on these (issue 4).
"""

from __future__ import annotations

import json
import uuid
import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import keras
import mlflow
import mlflow.keras
from mlflow import MlflowClient
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from aifx_ml.db.engine import transaction
from aifx_ml.db.models import ModelVersion
from aifx_ml.errors import AifxError
from aifx_ml.events.outbox import enqueue

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_CARD = "aifx_model.json"


class RegistryError(AifxError):
    """MLflow and the table disagree, or a version does not exist."""


def registered_name(model_type: str) -> str:
    """The MLflow registered-model name of a model type (one per type)."""
    return f"aifx-{model_type}"


def version_label(model_type: str, mlflow_version: str) -> str:
    """Our `model_versions.version`: readable and unique across model types."""
    return f"{model_type}-v{mlflow_version}"


@dataclass(frozen=True)
class LoadedModel:
    """A registered model with everything needed to use it (see `model_card`)."""

    version: str
    model: keras.Model
    card: dict[str, Any]


def register_in_mlflow(
    client: MlflowClient, model_type: str, model_uri: str, run_id: str, tags: dict[str, str]
) -> str:
    """Create the MLflow model version in stage Staging; returns its version number."""
    name = registered_name(model_type)
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(name, description=f"AIFX {model_type} direction model")
    created = client.create_model_version(name, model_uri, run_id=run_id, tags=tags)
    transition_stage(client, name, str(created.version), "Staging")
    return str(created.version)


def transition_stage(
    client: MlflowClient, name: str, version: str, stage: str, archive_existing: bool = False
) -> None:
    """Set an MLflow stage. Stages are deprecated in MLflow 3 but still what its UI and many
    tools show; we keep them in step with the aliases and silence the deprecation notice."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(
            name, version, stage, archive_existing_versions=archive_existing
        )


def unregister_in_mlflow(client: MlflowClient, model_type: str, mlflow_version: str) -> None:
    """Compensate a registration whose database half failed: nothing stays half-registered."""
    client.delete_model_version(registered_name(model_type), mlflow_version)


def record_version(
    session: Session,
    *,
    version: str,
    model_type: str,
    model_path: str,
    training_log_id: uuid.UUID,
    parent_version: str | None,
    metrics: dict[str, Any],
    as_of: datetime,
) -> None:
    """The `model_versions` row of a freshly registered version (status staging)."""
    session.add(
        ModelVersion(
            version=version,
            model_type=model_type,
            model_path=model_path,
            training_log_id=training_log_id,
            parent_version=parent_version,
            status="staging",
            metrics=metrics,
            created_at=as_of,
            updated_at=as_of,
        )
    )


def production_version(engine: Engine, model_type: str) -> ModelVersion | None:
    """The version serving in production for this model type, if any."""
    with transaction(engine) as session:
        return session.execute(
            select(ModelVersion).where(
                ModelVersion.model_type == model_type, ModelVersion.status == "production"
            )
        ).scalar_one_or_none()


def load_version(version: ModelVersion) -> LoadedModel:
    """Load a version's Keras model and card from the MLflow registry by its URI."""
    uri = version.model_path
    if not uri:
        raise RegistryError(f"model version {version.version} has no registry URI")
    model = mlflow.keras.load_model(uri)
    info = mlflow.models.get_model_info(uri)
    card = (info.metadata or {}).get("aifx")
    if not card:
        raise RegistryError(f"model version {version.version} at {uri} carries no model card")
    return LoadedModel(version=version.version, model=model, card=json.loads(card))


def set_production(
    engine: Engine, client: MlflowClient, version: str, as_of: datetime, reason: str
) -> str | None:
    """Make `version` the Production version; the previous one is archived in the same step.

    Returns the previous production version. The table changes in one transaction (the
    partial unique index guarantees a single production version per type); MLflow's stages
    and the `champion` alias follow.
    """
    with transaction(engine) as session:
        target = session.execute(
            select(ModelVersion).where(ModelVersion.version == version).with_for_update()
        ).scalar_one_or_none()
        if target is None:
            raise RegistryError(f"unknown model version {version!r}")
        previous = session.execute(
            select(ModelVersion).where(
                ModelVersion.model_type == target.model_type, ModelVersion.status == "production"
            )
        ).scalar_one_or_none()
        if previous is not None and previous.version != version:
            session.execute(
                update(ModelVersion)
                .where(ModelVersion.id == previous.id)
                .values(status="archived", archived_at=as_of, updated_at=as_of)
            )
            session.flush()
        session.execute(
            update(ModelVersion)
            .where(ModelVersion.id == target.id)
            .values(status="production", promoted_at=as_of, updated_at=as_of)
        )
        enqueue(
            session,
            "ml:model_deployed",
            {
                "model_type": target.model_type,
                "version": version,
                "previous_version": previous.version if previous else None,
                "reason": reason,
            },
            as_of,
        )
        name = registered_name(target.model_type)
        mlflow_version = (target.model_path or "").rsplit("/", 1)[-1]
        transition_stage(client, name, mlflow_version, "Production", archive_existing=True)
        client.set_registered_model_alias(name, CHAMPION, mlflow_version)
    return previous.version if previous else None
