"""Artifact checksums: the SHA-256 of a model version's files, taken at registration and
verified before the model is loaded, so a tampered or truncated artifact is refused."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from aifx_ml.models.store import ArtifactIntegrityError

CHUNK = 1 << 20


def directory_sha256(root: Path) -> str:
    """SHA-256 over every file under `root`: relative path, size and bytes, in path order."""
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        relative = path.relative_to(root).as_posix()
        digest.update(f"{relative}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def download_version(client: MlflowClient, name: str, mlflow_version: str, into: Path) -> Path:
    """The files of a registered model version, copied to a local folder."""
    uri = client.get_model_version_download_uri(name, mlflow_version)
    # This client's stores, not MLflow's process-wide ones (a server proxies artifacts).
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=uri, dst_path=str(into), tracking_uri=client._tracking_client.tracking_uri
    )
    return Path(local)


def version_sha256(client: MlflowClient, name: str, mlflow_version: str) -> str:
    """The checksum of a registered version's files as the artifact store holds them now."""
    with tempfile.TemporaryDirectory(prefix="aifx-sha-") as tmp:
        return directory_sha256(download_version(client, name, mlflow_version, Path(tmp)))


def verify(local: Path, expected: str | None, label: str) -> None:
    """Refuse files whose checksum is not the registered one (None: nothing was registered)."""
    if expected is None:
        raise ArtifactIntegrityError(
            f"model version {label} has no registered checksum: refusing to load unverified files"
        )
    actual = directory_sha256(local)
    if actual != expected:
        raise ArtifactIntegrityError(
            f"model version {label} failed its integrity check: artifact SHA-256 {actual[:12]}… "
            f"is not the registered {expected[:12]}… (tampered or truncated files)"
        )
