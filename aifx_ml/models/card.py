"""The model card: what rebuilds and feeds a model version (architecture, feature list, scaler,
window length, what it was trained on), saved next to its weights and read back with them.

Whoever scores a version on candles asks its card for the inputs, so a version is always
fed exactly what it was trained on, or refused with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from aifx_ml.domain import Cutoffs
from aifx_ml.errors import AifxError, InvalidInputError
from aifx_ml.features.dataset import Dataset, Scaler
from aifx_ml.models.calibration import Platt, Thresholds, calibrated

TARGET = "1 if the close at the label horizon is above the window's last close"


class IncompatibleInputsError(InvalidInputError):
    """A version's card asks for other inputs (features, window) than the data has."""


@dataclass(frozen=True)
class ModelCard:
    model_type: str
    architecture: Mapping[str, Any]
    features: tuple[str, ...]
    window: int
    scaler: Scaler
    pairs: tuple[str, ...] = ()
    timeframes: tuple[str, ...] = ()
    target: str = TARGET
    dataset_hash: str | None = None
    data_time_range: Mapping[str, Any] = field(default_factory=dict)
    trained_as_of: datetime | None = None
    parent_version: str | None = None
    # Fit on the samples it did not learn from (`aifx_ml.models.calibration`); None on older cards.
    calibration: Platt | None = None
    thresholds: Thresholds | None = None
    # Anything else an older or newer card carried, kept so a round trip loses nothing.
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def cutoffs(self) -> Cutoffs | None:
        """The thresholds this version signals at (None: it has none of its own)."""
        return None if self.thresholds is None else self.thresholds.cutoffs

    def calibrated(self, raw: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The version's P(up) from its network's output: calibrated, or as it is."""
        return calibrated(self.calibration, raw)

    def accepts(self, feature_names: Sequence[str], window: int | None = None) -> bool:
        """Whether data with these features (and window length) is what this model reads."""
        return tuple(feature_names) == self.features and (window is None or window == self.window)

    def check_features(self, feature_names: Sequence[str], label: str = "the model") -> None:
        """Refuse data whose feature list is not the one the model was trained on."""
        if tuple(feature_names) != self.features:
            raise IncompatibleInputsError(
                f"{label} was trained on other features: {list(self.features)}"
            )

    def windows(self, dataset: Dataset, label: str = "the model") -> npt.NDArray[np.float32]:
        """The dataset's windows as this version sees them: its features, its scaler."""
        self.check_features(dataset.feature_names, label)
        if dataset.window != self.window:
            raise IncompatibleInputsError(
                f"{label} reads {self.window}-candle windows, the data has {dataset.window}"
            )
        return dataset.windows(self.scaler)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form saved with the model (MLflow metadata and `aifx_model.json`)."""
        return {
            **self.extra,
            "model_type": self.model_type,
            "architecture": dict(self.architecture),
            "features": list(self.features),
            "window": self.window,
            "scaler": self.scaler.to_dict(),
            "pairs": list(self.pairs),
            "timeframes": list(self.timeframes),
            "target": self.target,
            "dataset_hash": self.dataset_hash,
            "data_time_range": dict(self.data_time_range),
            "trained_as_of": None if self.trained_as_of is None else self.trained_as_of.isoformat(),
            "parent_version": self.parent_version,
            "calibration": None if self.calibration is None else self.calibration.as_dict(),
            "thresholds": None if self.thresholds is None else self.thresholds.as_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        """A card from its JSON form; a card without features, window or scaler is refused."""
        missing = [k for k in ("features", "window", "scaler") if k not in data]
        if missing:
            raise AifxError(f"model card lacks {', '.join(missing)}")
        known = set(cls.__dataclass_fields__) - {"extra"}
        trained = data.get("trained_as_of")
        return cls(
            model_type=str(data.get("model_type", "lstm")),
            architecture=dict(data.get("architecture") or {}),
            features=tuple(data["features"]),
            window=int(data["window"]),
            scaler=Scaler.from_dict(dict(data["scaler"])),
            pairs=tuple(data.get("pairs") or ()),
            timeframes=tuple(data.get("timeframes") or ()),
            target=str(data.get("target", TARGET)),
            dataset_hash=data.get("dataset_hash"),
            data_time_range=dict(data.get("data_time_range") or {}),
            trained_as_of=None if not trained else datetime.fromisoformat(str(trained)),
            parent_version=data.get("parent_version"),
            calibration=Platt.from_dict(data["calibration"]) if data.get("calibration") else None,
            thresholds=(
                Thresholds.from_dict(data["thresholds"]) if data.get("thresholds") else None
            ),
            extra={k: v for k, v in data.items() if k not in known},
        )
