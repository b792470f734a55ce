"""Models ready to serve: loaded once, compiled for inference, swapped when Production changes.

`model.predict` costs ~60 ms per call and an eager call ~200 ms; a `tf.function` traced once
with a fixed input signature costs a few ms (DESIGN.md). Which versions serve is read from the
table (Production, and the two arms of an active A/B test) at most every `refresh_seconds`, so
a promotion reaches the service without a restart; new versions are loaded and compiled before
they replace the old ones, and requests never wait on a half-loaded model.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, select

from aifx_ml.db.engine import session_factory
from aifx_ml.db.lookups import version_row
from aifx_ml.db.models import ModelABTest, ModelVersion
from aifx_ml.domain import ModelStatus, TestStatus
from aifx_ml.errors import NotFoundError
from aifx_ml.features.dataset import Scaler
from aifx_ml.models.card import ModelCard
from aifx_ml.models.store import ModelStore
from aifx_ml.serving.batching import Batcher


@dataclass(frozen=True)
class ServingModel:
    """One version, compiled: P(up) for a batch of scaled windows."""

    version: str
    model_type: str
    window: int
    features: tuple[str, ...]
    scaler: Scaler
    trained_at: datetime | None
    promoted_at: datetime | None
    _call: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
    _batcher: Batcher[npt.NDArray[np.float32], float] | None = None

    def p_up(self, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """P(up) for (batch, window, features) windows already scaled with `self.scaler`."""
        return np.asarray(self._call(windows), dtype=np.float64).reshape(-1)

    def p_up_each(self, windows: Sequence[npt.NDArray[np.float32]]) -> list[float]:
        """P(up) of scaled (window, features) windows, batched with concurrent callers'."""
        if self._batcher is None:
            return [float(p) for p in self.p_up(np.stack(windows))]
        return self._batcher.submit_many(windows)


@dataclass(frozen=True)
class Assignment:
    """Who serves a model type right now: Production, or the two arms of a test."""

    model_type: str
    production: ServingModel | None
    test_id: uuid.UUID | None = None
    test_split: float = 0.0
    arm_a: ServingModel | None = None
    arm_b: ServingModel | None = None


def compile_model(model: Any, card: ModelCard, row: ModelVersion) -> ServingModel:
    """Trace the model once as a `tf.function` over (None, window, features) float32."""
    import tensorflow as tf  # noqa: PLC0415  (only a serving process pays for TensorFlow)

    window, n_features = card.window, len(card.features)

    @tf.function(input_signature=[tf.TensorSpec([None, window, n_features], tf.float32)])  # type: ignore[untyped-decorator]
    def forward(x: Any) -> Any:
        return model(x, training=False)

    # Traced now, not on a request; the concrete function skips the per-call signature
    # matching of a polymorphic `tf.function`.
    concrete = forward.get_concrete_function()
    concrete(tf.zeros((1, window, n_features), tf.float32))

    def call(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        out: npt.NDArray[np.float32] = concrete(tf.constant(x)).numpy()
        return out

    def call_many(windows: Sequence[npt.NDArray[np.float32]]) -> list[float]:
        return [float(p) for p in call(np.stack(windows)).reshape(-1)]

    return ServingModel(
        version=row.version,
        model_type=row.model_type,
        window=window,
        features=card.features,
        scaler=card.scaler,
        trained_at=card.trained_as_of,
        promoted_at=row.promoted_at,
        _call=call,
        _batcher=Batcher(call_many, name=f"model-{row.version}"),
    )


class ModelServer:
    """The serving models of every model type, refreshed from the table."""

    def __init__(
        self,
        engine: Engine,
        store: ModelStore,
        refresh_seconds: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine, self._store = engine, store
        self._refresh, self._monotonic = refresh_seconds, monotonic
        self._models: dict[str, ServingModel] = {}
        self._assignments: dict[str, tuple[float, Assignment]] = {}
        self._lock = threading.Lock()

    def assignment(self, model_type: str) -> Assignment:
        """Who serves `model_type`, at most `refresh_seconds` old."""
        cached = self._assignments.get(model_type)
        if cached is not None and self._monotonic() - cached[0] < self._refresh:
            return cached[1]
        with self._lock:
            cached = self._assignments.get(model_type)
            if cached is not None and self._monotonic() - cached[0] < self._refresh:
                return cached[1]
            fresh = self._resolve(model_type)
            self._assignments[model_type] = (self._monotonic(), fresh)
            return fresh

    def invalidate(self, model_type: str | None = None) -> None:
        """Forget who serves (all types, or one): the next request reads the table again."""
        with self._lock:
            if model_type is None:
                self._assignments.clear()
            else:
                self._assignments.pop(model_type, None)

    def loaded_versions(self) -> list[str]:
        return sorted(self._models)

    def _resolve(self, model_type: str) -> Assignment:
        with session_factory(self._engine)() as session:
            rows = {
                r.version: r
                for r in session.execute(
                    select(ModelVersion).where(
                        ModelVersion.model_type == model_type,
                        ModelVersion.status.in_((ModelStatus.PRODUCTION, ModelStatus.STAGING)),
                    )
                ).scalars()
            }
            test = session.execute(
                select(ModelABTest).where(
                    ModelABTest.model_type == model_type, ModelABTest.status == TestStatus.ACTIVE
                )
            ).scalar_one_or_none()
        production = next((r for r in rows.values() if r.status == ModelStatus.PRODUCTION), None)
        wanted = {production.version} if production is not None else set()
        if test is not None:
            wanted |= {test.model_a_version, test.model_b_version}
        for version in wanted - set(self._models):
            row = rows.get(version) or self._row(version)
            loaded = self._store.load(row)
            self._models[version] = compile_model(loaded.model, loaded.card, row)
        for version in set(self._models) - wanted:
            if self._models[version].model_type == model_type:
                gone = self._models.pop(version)  # swapped out: nothing serves it any more
                if gone._batcher is not None:
                    gone._batcher.close()
        if production is not None:
            # The promotion time may have changed (a rollback): keep it current.
            current = self._models[production.version]
            if current.promoted_at != production.promoted_at:
                self._models[production.version] = replace(
                    current, promoted_at=production.promoted_at
                )
        return Assignment(
            model_type=model_type,
            production=self._models[production.version] if production else None,
            test_id=test.id if test else None,
            test_split=float(test.traffic_split) if test else 0.0,
            arm_a=self._models[test.model_a_version] if test else None,
            arm_b=self._models[test.model_b_version] if test else None,
        )

    def _row(self, version: str) -> ModelVersion:
        with session_factory(self._engine)() as session:
            row = version_row(session, version)
        if row is None:
            raise NotFoundError(f"model version {version} is gone from the registry")
        return row
