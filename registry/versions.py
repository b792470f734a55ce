"""Model versions in both places at once: MLflow's registry and the `model_versions` table.

A version is registered in MLflow (stage Staging) with the SHA-256 of its files and recorded
in the table, with its first history row, in one step. Models are loaded from the registry by
their `models:/` URI, never from a file path, and only after their checksum matches. The table
is the source of truth for stages (`registry.stages` changes them, `registry.reconcile` brings
MLflow back in line).
"""

from __future__ import annotations

import json
import tempfile
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow import MlflowClient
from mlflow.models import Model
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from aifx_ml.db.engine import session_factory
from aifx_ml.db.lookups import version_row
from aifx_ml.db.models import ModelStageHistory, ModelVersion
from aifx_ml.errors import AifxError
from registry.integrity import directory_sha256, download_version, verify

if TYPE_CHECKING:
    import keras

CHAMPION = "champion"  # alias of the Production version
CHALLENGER = "challenger"  # alias of the Staging version under test
SHA_TAG = "aifx.sha256"

# model_versions.status -> MLflow stage
MLFLOW_STAGES: dict[str, str] = {
    "training": "None",
    "staging": "Staging",
    "production": "Production",
    "archived": "Archived",
}


class RegistryError(AifxError):
    """A version does not exist, or cannot change stage the way asked."""


def registered_name(model_type: str) -> str:
    """The MLflow registered-model name of a model type (one per type)."""
    return f"aifx-{model_type}"


def version_label(model_type: str, mlflow_version: str) -> str:
    """Our `model_versions.version`: readable and unique across model types."""
    return f"{model_type}-v{mlflow_version}"


def mlflow_version_of(row: ModelVersion) -> str:
    """The MLflow version number behind a row (`models:/aifx-lstm/3` → "3")."""
    if not row.model_path or not row.model_path.startswith("models:/"):
        raise RegistryError(f"model version {row.version} has no registry URI")
    return row.model_path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class LoadedModel:
    """A registered model with everything needed to use it (architecture, scaler, window)."""

    version: str
    model: keras.Model
    card: dict[str, Any]


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


def register_in_mlflow(
    client: MlflowClient, model_type: str, model_uri: str, run_id: str, tags: dict[str, str]
) -> tuple[str, str]:
    """Create the MLflow model version in stage Staging; returns (version number, SHA-256)."""
    name = registered_name(model_type)
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(name, description=f"AIFX {model_type} direction model")
    created = client.create_model_version(name, model_uri, run_id=run_id, tags=tags)
    number = str(created.version)
    with tempfile.TemporaryDirectory(prefix="aifx-sha-") as tmp:
        sha = directory_sha256(download_version(client, name, number, Path(tmp)))
    client.set_model_version_tag(name, number, SHA_TAG, sha)
    transition_stage(client, name, number, "Staging")
    return number, sha


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
            status="staging",
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
            to_status="staging",
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


def production_version(engine: Engine, model_type: str) -> ModelVersion | None:
    """The version serving in production for this model type, if any."""
    with session_factory(engine)() as session:
        return session.execute(
            select(ModelVersion).where(
                ModelVersion.model_type == model_type, ModelVersion.status == "production"
            )
        ).scalar_one_or_none()


def load_version(row: ModelVersion, client: MlflowClient | None = None) -> LoadedModel:
    """Load a version's Keras model and card from the MLflow registry, checksum verified.

    The files are downloaded once, checked against the SHA-256 recorded at registration, and
    the model is loaded from exactly those files.
    """
    import mlflow.keras  # noqa: PLC0415  (pulls in TensorFlow: only when a model is loaded)

    client = client or MlflowClient()
    name = registered_name(row.model_type)
    with tempfile.TemporaryDirectory(prefix="aifx-load-") as tmp:
        local = download_version(client, name, mlflow_version_of(row), Path(tmp))
        verify(local, row.artifact_sha256, row.version)
        model = mlflow.keras.load_model(str(local))
        card = (Model.load(str(local / "MLmodel")).metadata or {}).get("aifx")
    if not card:
        raise RegistryError(f"model version {row.version} carries no model card")
    return LoadedModel(version=row.version, model=model, card=json.loads(card))


def serving_loader(client: MlflowClient) -> Callable[[ModelVersion], tuple[Any, dict[str, Any]]]:
    """How a model server (the API's, a replay's) loads a version: model and card, verified."""

    def loader(row: ModelVersion) -> tuple[Any, dict[str, Any]]:
        loaded = load_version(row, client)
        return loaded.model, loaded.card

    return loader
