"""The model-store port: what the library asks of a model registry and run tracker.

Training logs a run and registers its model through it; evaluation, promotion and serving
load versions through it; the monthly evaluation logs its verdict to it. The edges (CLI,
flows, the app, the replay) build one from the settings and pass it in: MLflow's lives in
`registry/`, and `InMemoryModelStore` below serves tests that need no persistence.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from aifx_ml.db.models import ModelVersion
from aifx_ml.errors import AifxError
from aifx_ml.models.card import ModelCard


class ModelStoreError(AifxError):
    """The store cannot do what was asked (unknown version, files that fail their check)."""


class ArtifactIntegrityError(ModelStoreError):
    """A model's files are not the ones registered."""


@dataclass(frozen=True)
class LoadedModel:
    """A registered model with everything needed to use it (architecture, scaler, window)."""

    version: str
    model: Any  # a Keras model
    card: ModelCard


@dataclass(frozen=True)
class Registered:
    """Where a freshly registered model went: its number in the store, the path recorded in
    `model_versions.model_path`, and the SHA-256 of its files."""

    number: str
    model_path: str
    sha256: str


class ModelStore(Protocol):
    """Runs, registered versions and their stages."""

    @property
    def uri(self) -> str:
        """Where the store is (shown by health checks and in messages)."""
        ...

    def ping(self) -> None:
        """Raise if the store cannot be reached."""

    def start_run(self, model_type: str, run_name: str, tags: Mapping[str, str]) -> str:
        """Open a run in the model type's experiment; returns its id."""
        ...

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None: ...

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int | None = None
    ) -> None: ...

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None: ...

    def log_curves(self, run_id: str, history: Mapping[str, Sequence[float]]) -> None:
        """Training curves (loss and accuracy per epoch) as an artifact of the run."""

    def end_run(self, run_id: str, status: str) -> None:
        """Close a run: FINISHED, FAILED or KILLED."""

    def register(
        self,
        run_id: str,
        model: Any,
        card: ModelCard,
        example: npt.NDArray[np.float32],
        tags: Mapping[str, str],
    ) -> Registered:
        """Save the model with its card in the run and register it (stage Staging)."""
        ...

    def unregister(self, model_type: str, number: str) -> None:
        """Take a registration back (its database half failed)."""

    def load(self, row: ModelVersion) -> LoadedModel:
        """A version's model and card, its files verified against the registered SHA-256."""
        ...

    def verify(self, row: ModelVersion) -> None:
        """Raise ArtifactIntegrityError unless the version's files are the registered ones
        (checked without building the model: every stage change asks this first)."""

    def log_evaluation(
        self, row: ModelVersion, summary: Mapping[str, Any], report: Path | None
    ) -> str:
        """A monthly evaluation as a run (metrics, verdict, report), linked from the version."""
        ...


def number_of(row: ModelVersion) -> str:
    """The store's number behind a `model_versions` row (`models:/aifx-lstm/3` → "3")."""
    if not row.model_path or "/" not in row.model_path:
        raise ModelStoreError(f"model version {row.version} has no registry path")
    return row.model_path.rsplit("/", 1)[-1]


def registered_name(model_type: str) -> str:
    """The registered-model name of a model type (one per type)."""
    return f"aifx-{model_type}"


def version_label(model_type: str, number: str) -> str:
    """Our `model_versions.version`: readable and unique across model types."""
    return f"{model_type}-v{number}"


@dataclass
class _MemoryRun:
    model_type: str
    name: str
    tags: dict[str, str]
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int | None, float]]] = field(default_factory=dict)
    status: str = "RUNNING"
    curves: dict[str, list[float]] | None = None


@dataclass
class _MemoryVersion:
    model: Any
    card: ModelCard
    sha256: str
    run_id: str
    tags: dict[str, str]


class InMemoryModelStore:
    """A model store in this process's memory: same contract, no files, no server.

    Models are copied in and out (a fine-tune changes its parent's weights in place; the
    registered parent must not change with it), and their checksum is taken over the weights,
    so a test can tamper with a stored model and see the load refused.
    """

    uri = "memory://"

    def __init__(self) -> None:
        self.runs: dict[str, _MemoryRun] = {}
        self.versions: dict[tuple[str, str], _MemoryVersion] = {}
        self.evaluations: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        # Numbers are never reused, as in MLflow: a version taken back out leaves a gap.
        self._numbers: dict[str, itertools.count[int]] = {}
        self._lock = threading.Lock()

    def ping(self) -> None:
        return None

    def start_run(self, model_type: str, run_name: str, tags: Mapping[str, str]) -> str:
        with self._lock:
            run_id = f"run-{next(self._ids)}"
            self.runs[run_id] = _MemoryRun(model_type, run_name, dict(tags))
        return run_id

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        self.runs[run_id].params.update(params)

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int | None = None
    ) -> None:
        for key, value in metrics.items():
            self.runs[run_id].metrics.setdefault(key, []).append((step, float(value)))

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self.runs[run_id].tags.update(tags)

    def log_curves(self, run_id: str, history: Mapping[str, Sequence[float]]) -> None:
        self.runs[run_id].curves = {k: list(v) for k, v in history.items()}

    def end_run(self, run_id: str, status: str) -> None:
        self.runs[run_id].status = status

    def register(
        self,
        run_id: str,
        model: Any,
        card: ModelCard,
        example: npt.NDArray[np.float32],
        tags: Mapping[str, str],
    ) -> Registered:
        stored = copy_model(model)
        sha = weights_sha256(stored)
        with self._lock:
            number = str(next(self._numbers.setdefault(card.model_type, itertools.count(1))))
            self.versions[(card.model_type, number)] = _MemoryVersion(
                stored, card, sha, run_id, dict(tags)
            )
        return Registered(number, f"models:/{registered_name(card.model_type)}/{number}", sha)

    def unregister(self, model_type: str, number: str) -> None:
        with self._lock:
            self.versions.pop((model_type, number), None)

    def load(self, row: ModelVersion) -> LoadedModel:
        found = self.versions.get((row.model_type, number_of(row)))
        if found is None:
            raise ModelStoreError(f"model version {row.version} is not in the store")
        self._check(row, found)
        return LoadedModel(row.version, copy_model(found.model), found.card)

    def verify(self, row: ModelVersion) -> None:
        found = self.versions.get((row.model_type, number_of(row)))
        if found is None:
            raise ModelStoreError(f"model version {row.version} is not in the store")
        self._check(row, found)

    @staticmethod
    def _check(row: ModelVersion, found: _MemoryVersion) -> None:
        if row.artifact_sha256 is None or weights_sha256(found.model) != row.artifact_sha256:
            raise ArtifactIntegrityError(
                f"model version {row.version} failed its integrity check (tampered weights)"
            )

    def log_evaluation(
        self, row: ModelVersion, summary: Mapping[str, Any], report: Path | None
    ) -> str:
        self.evaluations.append({"version": row.version, **summary})
        return f"evaluation-{len(self.evaluations)}"


def weights_sha256(model: Any) -> str:
    """SHA-256 over a Keras model's weights (shapes and bytes, in layer order)."""
    digest = hashlib.sha256()
    for weights in model.get_weights():
        array = np.ascontiguousarray(weights)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def copy_model(model: Any) -> Any:
    """An independent copy of a Keras model: same architecture, same weights."""
    import keras  # noqa: PLC0415  (TensorFlow loads only where a model is handled)

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone
