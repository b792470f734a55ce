"""Models ready to serve: loaded once, compiled for inference, swapped when Production changes.

`model.predict` costs ~60 ms per call and an eager call ~200 ms; a `tf.function` traced once
with a fixed input signature costs a few ms (DESIGN.md), and compiled with XLA under a
millisecond (`serving.forward`). Which versions serve is read from the
table (Production, and the two arms of an active A/B test) at most every `refresh_seconds`, so
a promotion reaches the service without a restart; new versions are loaded and compiled before
they replace the old ones, and requests never wait on a half-loaded model.

Serving fails safe: a version whose files fail their integrity check (or cannot be loaded) is
never swapped in. The server keeps answering with the Production model it already holds, an
A/B test with an arm it cannot load routes nothing, the failure is reported (`failures()`,
which health turns into 503 "degraded") and handed to `on_failure` once (an alert), and the
load is tried again every `retry_seconds`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import anyio.to_thread
import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, select

from aifx_ml.db.engine import session_factory
from aifx_ml.db.lookups import version_row
from aifx_ml.db.models import ModelABTest, ModelVersion
from aifx_ml.domain import Cutoffs, ModelStatus, TestMode, TestStatus
from aifx_ml.errors import AifxError, NotFoundError
from aifx_ml.features.dataset import Scaler
from aifx_ml.models.calibration import Platt, calibrated
from aifx_ml.models.card import ModelCard
from aifx_ml.models.store import ModelStore, ModelStoreError
from aifx_ml.serving.batching import Batcher
from aifx_ml.serving.forward import BUCKETS, Forward
from aifx_ml.serving.metrics import observe_model_call

log = logging.getLogger(__name__)
RETRY_FAILED_SECONDS = 60.0  # how often a version that failed to load is tried again


class ModelUnavailableError(AifxError):
    """No model can answer: the one that should serve failed to load and none is in memory."""


@dataclass(frozen=True)
class ServingFailure:
    """A version that should serve but was refused: why, and what serves instead (if any)."""

    version: str
    model_type: str
    reason: str
    serving_instead: str | None


@dataclass(frozen=True)
class ServingModel:
    """One version, compiled: its calibrated P(up) for a batch of scaled windows, and the
    thresholds it signals at (None: the global ones; see `SignalPolicy.cutoffs`)."""

    version: str
    model_type: str
    window: int
    features: tuple[str, ...]
    scaler: Scaler
    trained_at: datetime | None
    promoted_at: datetime | None
    _call: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
    _batcher: Batcher[npt.NDArray[np.float32], float] | None = None
    calibration: Platt | None = None  # None: the network's output is served as it is
    cutoffs: Cutoffs | None = None

    def compile_batches(self) -> None:
        """Compile every batch size the model's calls are padded to (`serving.forward`), now:
        a service does it before it reports ready, so that a burst of traffic never waits on,
        or competes with, a compilation (one took a core for seconds in the middle of a
        load test)."""
        if isinstance(self._call, Forward):
            self._call.warm(BUCKETS)

    def compiled_batches(self) -> list[int]:
        """The batch sizes compiled so far."""
        return self._call.compiled() if isinstance(self._call, Forward) else []

    def p_up(self, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """P(up) for (batch, window, features) windows already scaled with `self.scaler`."""
        return self._calibrated(np.asarray(self._call(windows), dtype=np.float64).reshape(-1))

    def p_up_each(self, windows: Sequence[npt.NDArray[np.float32]]) -> list[float]:
        """P(up) of scaled (window, features) windows, batched with concurrent callers'."""
        if self._batcher is None:
            return [float(p) for p in self.p_up(np.stack(windows))]
        return [float(p) for p in self._calibrated(self._batcher.submit_many(windows))]

    def p_up_later(self, windows: Sequence[npt.NDArray[np.float32]]) -> Callable[[], list[float]]:
        """`p_up_each`, started on the model's own worker thread: returns what waits for it,
        so the caller can run another model meanwhile (a shadow test's two versions)."""
        futures = None if self._batcher is None else self._batcher.enqueue(windows)
        if futures is None:
            return lambda: self.p_up_each(windows)
        return lambda: [float(p) for p in self._calibrated([f.result() for f in futures])]

    async def p_up_awaited(self, windows: Sequence[npt.NDArray[np.float32]]) -> list[float]:
        """`p_up_each` for a caller on an event loop: the windows join the model's worker
        thread's next batched call, and the loop serves other requests until it is made."""
        futures = None if self._batcher is None else self._batcher.enqueue(windows)
        if futures is None:  # no worker (or a closed one, the service stopping): a thread
            return await anyio.to_thread.run_sync(self.p_up_each, windows)
        raw = [await asyncio.wrap_future(f) for f in futures]
        return [float(p) for p in self._calibrated(raw)]

    def _calibrated(self, raw: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return calibrated(self.calibration, raw)


@dataclass(frozen=True)
class Assignment:
    """Who serves a model type right now: Production, or the two arms of a test (in a shadow
    test arm A answers every request and arm B answers the same ones unseen)."""

    model_type: str
    production: ServingModel | None
    test_id: uuid.UUID | None = None
    test_split: float = 0.0
    test_mode: TestMode = TestMode.SPLIT
    arm_a: ServingModel | None = None
    arm_b: ServingModel | None = None
    unavailable: str | None = None  # why no model answers (see ModelUnavailableError)


def compile_model(
    model: Any, card: ModelCard, row: ModelVersion, background: bool = True
) -> ServingModel:
    """The model's forward pass traced and compiled with XLA for one window now (a lone
    request never waits for a compilation), for larger batches as they come
    (`serving.forward`); batched across concurrent callers."""
    call = Forward(model, card.window, len(card.features), row.version, background=background)
    call.warm([1])

    def call_many(windows: Sequence[npt.NDArray[np.float32]]) -> list[float]:
        started = time.perf_counter()
        out = [float(p) for p in call(np.stack(windows)).reshape(-1)]
        observe_model_call(row.version, len(windows), time.perf_counter() - started)
        return out

    return ServingModel(
        version=row.version,
        model_type=row.model_type,
        window=card.window,
        features=card.features,
        scaler=card.scaler,
        trained_at=card.trained_as_of,
        promoted_at=row.promoted_at,
        _call=call,
        _batcher=Batcher(call_many, name=f"model-{row.version}"),
        calibration=card.calibration,
        cutoffs=card.cutoffs,
    )


@dataclass(frozen=True)
class Readiness:
    """Whether the versions that should serve are loaded and compiled (`ModelServer.preload`)."""

    preloaded: bool
    loaded: list[str] = field(default_factory=list)
    unserved: list[str] = field(default_factory=list)  # model types nothing can serve, why

    @property
    def ready(self) -> bool:
        return self.preloaded and not self.unserved


class ModelServer:
    """The serving models of every model type, refreshed from the table."""

    def __init__(
        self,
        engine: Engine,
        store: ModelStore,
        refresh_seconds: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        on_failure: Callable[[ServingFailure], None] | None = None,
        retry_seconds: float = RETRY_FAILED_SECONDS,
        background_compile: bool = True,
    ) -> None:
        """`background_compile`: new batch sizes are compiled with XLA on a thread while the
        traced graph answers them (a service: no request waits); without it, on first use
        (a replay: every answer comes from the same compiled function, run after run)."""
        self._engine, self._store = engine, store
        self._refresh, self._monotonic = refresh_seconds, monotonic
        self._on_failure, self._retry = on_failure, retry_seconds
        self._models: dict[str, ServingModel] = {}
        self._assignments: dict[str, tuple[float, Assignment]] = {}
        self._failures: dict[str, ServingFailure] = {}  # refused versions, and why
        self._tried: dict[str, float] = {}  # when a refused version's load was last tried
        self._serving: dict[str, str] = {}  # the Production version each type answers with
        self._readiness = Readiness(False)
        self._background_compile = background_compile
        self._lock = threading.Lock()

    def assignment(self, model_type: str) -> Assignment:
        """Who serves `model_type`, at most `refresh_seconds` old."""
        in_memory = self.assignment_in_memory(model_type)
        if in_memory is not None:
            return in_memory
        with self._lock:
            cached = self._assignments.get(model_type)
            if cached is not None and self._monotonic() - cached[0] < self._refresh:
                return cached[1]
            fresh, new_failures = self._resolve(model_type)
            self._assignments[model_type] = (self._monotonic(), fresh)
        for failure in new_failures:  # outside the lock: an alert may take a moment to send
            self._report(failure)
        return fresh

    def assignment_in_memory(self, model_type: str) -> Assignment | None:
        """`assignment` if it needs neither the database nor the model store (None: it does,
        being older than `refresh_seconds`)."""
        cached = self._assignments.get(model_type)
        if cached is not None and self._monotonic() - cached[0] < self._refresh:
            return cached[1]
        return None

    def invalidate(self, model_type: str | None = None) -> None:
        """Forget who serves (all types, or one): the next request reads the table again."""
        with self._lock:
            if model_type is None:
                self._assignments.clear()
            else:
                self._assignments.pop(model_type, None)

    def preload(self, then: Callable[[], object] | None = None) -> Readiness:
        """Load and compile every version that should serve now (Production and the arms of
        active tests, of every model type), for every batch size, so that no request pays for
        it; run `then` (what else must be ready first); then ready."""
        with session_factory(self._engine)() as session:
            production = session.scalars(
                select(ModelVersion.model_type).where(ModelVersion.status == ModelStatus.PRODUCTION)
            ).all()
            tested = session.scalars(
                select(ModelABTest.model_type).where(ModelABTest.status == TestStatus.ACTIVE)
            ).all()
        types = sorted({t for t in [*production, *tested] if t is not None})
        unserved = []
        for model_type in types:
            assignment = self.assignment(model_type)
            if assignment.production is None:
                unserved.append(assignment.unavailable or f"no {model_type} model can serve")
        for model in self.loaded_models():
            model.compile_batches()
        if then is not None:
            then()
        for model_type in types:
            # Read again last: read before the compilations, it is seconds old by now, and
            # the first request after ready would have to read it (on a thread, ~4 ms).
            self.invalidate(model_type)
            self.assignment(model_type)
        self._readiness = Readiness(True, self.loaded_versions(), unserved)
        return self._readiness

    @property
    def readiness(self) -> Readiness:
        """Not ready until `preload` has run (or `ready_without_preload`)."""
        return self._readiness

    def ready_without_preload(self) -> None:
        """Ready now: versions are loaded by the first request that needs them."""
        self._readiness = Readiness(True, self.loaded_versions())

    def loaded_models(self) -> list[ServingModel]:
        with self._lock:
            return list(self._models.values())

    def loaded_versions(self) -> list[str]:
        return sorted(self._models)

    def failures(self) -> list[ServingFailure]:
        """Versions that should serve but were refused (empty when all is well)."""
        return sorted(self._failures.values(), key=lambda f: f.version)

    def _report(self, failure: ServingFailure) -> None:
        log.error(
            "not serving %s (%s); serving %s instead",
            failure.version,
            failure.reason,
            failure.serving_instead or "nothing",
        )
        if self._on_failure is None:
            return
        try:
            self._on_failure(failure)
        except Exception:  # an alert that cannot be raised must not fail a prediction
            log.exception("the alert about %s could not be raised", failure.version)

    def _load(self, version: str, rows: dict[str, ModelVersion]) -> str | None:
        """Load and compile `version` unless it failed too recently; the reason it cannot."""
        tried, failed = self._tried.get(version), self._failures.get(version)
        if tried is not None and failed is not None and self._monotonic() - tried < self._retry:
            return failed.reason
        row = rows.get(version) or self._row(version)
        try:
            loaded = self._store.load(row)
        except ModelStoreError as exc:  # tampered, truncated or missing files
            self._tried[version] = self._monotonic()
            return str(exc)
        self._models[version] = compile_model(
            loaded.model, loaded.card, row, background=self._background_compile
        )
        return None

    def _resolve(self, model_type: str) -> tuple[Assignment, list[ServingFailure]]:
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
        refused = {
            version: why
            for version in sorted(wanted - set(self._models))
            if (why := self._load(version, rows)) is not None
        }
        # What served this type until now stays in memory while its successor is refused.
        serving = None
        if production is not None:
            serving = self._models.get(production.version)
            if serving is None:
                serving = self._models.get(self._serving.get(model_type, ""))
        keep = wanted | ({serving.version} if serving is not None else set())
        for version in set(self._models) - keep:
            if self._models[version].model_type == model_type:
                gone = self._models.pop(version)  # swapped out: nothing serves it any more
                if gone._batcher is not None:
                    gone._batcher.close()
        if (
            production is not None
            and serving is not None
            and serving.version == production.version
            and serving.promoted_at != production.promoted_at
        ):
            # The promotion time may have changed (a rollback): keep it current.
            serving = replace(serving, promoted_at=production.promoted_at)
            self._models[production.version] = serving
        if serving is not None:
            self._serving[model_type] = serving.version
        new_failures = self._record_failures(model_type, refused, serving)
        arm_a = self._models.get(test.model_a_version) if test is not None else None
        arm_b = self._models.get(test.model_b_version) if test is not None else None
        routed = test is not None and arm_a is not None and arm_b is not None
        unavailable = None
        if serving is None and production is not None and production.version in refused:
            unavailable = (
                f"no {model_type} model can serve: {refused[production.version]}; "
                "roll back to a sound version (`aifx models rollback`)"
            )
        return (
            Assignment(
                model_type=model_type,
                production=serving,
                test_id=test.id if routed and test is not None else None,
                test_split=float(test.traffic_split) if routed and test is not None else 0.0,
                test_mode=TestMode(test.mode) if test is not None else TestMode.SPLIT,
                arm_a=arm_a if routed else None,
                arm_b=arm_b if routed else None,
                unavailable=unavailable,
            ),
            new_failures,
        )

    def _record_failures(
        self, model_type: str, refused: dict[str, str], serving: ServingModel | None
    ) -> list[ServingFailure]:
        """Keep the refusals of this type that still matter; return the ones seen first now."""
        instead = serving.version if serving is not None else None
        new = []
        for version, failure in list(self._failures.items()):
            if failure.model_type == model_type and version not in refused:
                del self._failures[version]  # loaded at last, or no longer wanted
                self._tried.pop(version, None)
        for version, why in refused.items():
            if version not in self._failures:
                new.append(ServingFailure(version, model_type, why, instead))
            self._failures[version] = ServingFailure(version, model_type, why, instead)
        return new

    def _row(self, version: str) -> ModelVersion:
        with session_factory(self._engine)() as session:
            row = version_row(session, version)
        if row is None:
            raise NotFoundError(f"model version {version} is gone from the registry")
        return row
