"""What a training run is told (TrainingConfig), where it reads and writes (Stores), and what
it reports back (TrainingResult). Defaults are DESIGN.md's training defaults.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from aifx_ml.config import Settings
from aifx_ml.errors import AifxError
from aifx_ml.models.lstm import MODEL_TYPE, LSTMConfig


@dataclass(frozen=True)
class TrainingConfig:
    """Every knob of both training types, defaults from DESIGN.md."""

    model_type: str = MODEL_TYPE
    pairs: tuple[str, ...] = ()  # empty: every stored pair
    timeframes: tuple[str, ...] = ("1h",)
    days: int = 30
    epochs: int = 50
    batch_size: int = 32
    early_stopping_patience: int = 5
    reduce_lr_patience: int = 3
    holdout_fraction: float = 0.2
    validation_fraction: float = 0.1  # of the training part, for early stopping only
    lstm: LSTMConfig = field(default_factory=LSTMConfig)
    seed: int = 42
    include_signals: bool = False
    incremental_hours: int = 24
    incremental_epochs: int = 5
    incremental_learning_rate: float = 1e-4
    min_train_samples: int = 30
    min_holdout_samples: int = 10
    lock_timeout: float = 3600.0

    def params(self) -> dict[str, Any]:
        out = asdict(self)
        out.update({f"lstm_{k}": v for k, v in out.pop("lstm").items()})
        return out


@dataclass(frozen=True)
class Stores:
    """Where a run reads and writes; built once at the edge from the settings."""

    engine: Engine
    tracking_uri: str
    registry_uri: str
    artifact_root: str
    lock_dir: Path
    code_version: str = "unknown"

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine, code_version: str) -> Stores:
        """The stores the settings name; training locks live in the data folder."""
        assert settings.mlflow_tracking_uri and settings.mlflow_registry_uri
        assert settings.artifact_root
        return cls(
            engine=engine,
            tracking_uri=settings.mlflow_tracking_uri,
            registry_uri=settings.mlflow_registry_uri,
            artifact_root=settings.artifact_root,
            lock_dir=settings.data_dir / "locks",
            code_version=code_version,
        )


@dataclass
class TrainingResult:
    """What a run did, for the CLI table, the flow's return value and tests."""

    status: str
    training_type: str
    training_log_id: uuid.UUID | None = None
    version: str | None = None
    parent_version: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    mlflow_run_id: str | None = None
    fell_back_to_full: bool = False


class TrainingSkipped(AifxError):
    """Nothing worth training on; the run is recorded as skipped with this reason."""


class TrainingFailedError(AifxError):
    """The run failed; its log row says why and nothing was registered."""
