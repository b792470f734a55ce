"""A registry in memory over a real database: tiny constant Keras models registered in the
`InMemoryModelStore` the way a training run registers its own, a PostgreSQL database per test,
a clock that moves on at every reading, and a barrier that lets calls race. For tests where
MLflow is not the thing tested."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, func, select

from aifx_ml.config import load_settings
from aifx_ml.data.importer import import_frame
from aifx_ml.db.engine import make_engine, transaction, upgrade
from aifx_ml.db.models import ModelABTest, ModelTrainingLog
from aifx_ml.features.engineering import FEATURE_NAMES
from aifx_ml.models.card import ModelCard
from aifx_ml.models.store import InMemoryModelStore, version_label
from aifx_ml.models.versions import record_version
from aifx_ml.serving.app import create_app
from aifx_ml.serving.deps import RegistryActions
from registry.abtest import complete_with_winner
from registry.stages import change_stage
from tests.conftest import _postgres_database
from tests.serving_helpers import WINDOW, _card, constant_model, trending_candles

T0 = datetime.fromisoformat("2026-03-02T00:00:00+00:00")
TOKEN = "s3cret"


class World:
    """A PostgreSQL database and an in-memory model store with `lstm` versions in it."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.store = engine, InMemoryModelStore()
        self._ticks = itertools.count()
        self._tick_lock = threading.Lock()

    def register(self, p_up: float = 0.6) -> str:
        """A constant model as the next `lstm` version, in Staging."""
        card = ModelCard.from_dict(_card({"kind": "constant", "p_up": p_up}, WINDOW, T0))
        run_id = self.store.start_run("lstm", "test", {})
        example = np.zeros((1, WINDOW, len(FEATURE_NAMES)), dtype=np.float32)
        registered = self.store.register(run_id, constant_model(p_up), card, example, {})
        version = version_label("lstm", registered.number)
        log_id = uuid.uuid4()
        with transaction(self.engine) as session:
            session.add(
                ModelTrainingLog(
                    id=log_id,
                    training_type="full",
                    model_type="lstm",
                    status="completed",
                    started_at=T0 - timedelta(days=1),
                    completed_at=T0 - timedelta(days=1),
                )
            )
            session.flush()
            record_version(
                session,
                version=version,
                model_type="lstm",
                model_path=registered.model_path,
                training_log_id=log_id,
                parent_version=None,
                metrics={"holdout_start": (T0 - timedelta(days=6)).isoformat()},
                artifact_sha256=registered.sha256,
                as_of=T0 - timedelta(days=1),
                actor="test",
            )
        return version

    def clock(self) -> datetime:
        """A wall clock that moves on a second at every reading (shared by all threads)."""
        with self._tick_lock:
            return T0 + timedelta(seconds=next(self._ticks))

    def tamper(self, version: str) -> None:
        """Flip the weights of a stored version: its checksum no longer matches."""
        stored = self.store.versions[("lstm", version.rsplit("-v", 1)[1])].model
        stored.set_weights([w + 1.0 for w in stored.get_weights()])

    def promote(self, version: str, as_of: datetime = T0) -> None:
        change_stage(
            self.engine, self.store, version, "production", as_of=as_of, reason="arrange", actor="t"
        )


@pytest.fixture
def pg() -> Iterator[Engine]:
    """A migrated PostgreSQL database: the concurrency guarantees are PostgreSQL's to keep."""
    url = next(gen := _postgres_database())
    engine = make_engine(url, pool_size=10, max_overflow=10)
    upgrade(engine)
    yield engine
    engine.dispose()
    gen.close()


@pytest.fixture
def world(pg: Engine) -> World:
    return World(pg)


def race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls in threads released at once by a barrier; each result or exception."""
    barrier = threading.Barrier(len(calls))
    out: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001  (collected and asserted by the caller)
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def active_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(
                    ModelABTest.status == "active", ModelABTest.model_type == "lstm"
                )
            ).scalar_one()
        )


def serving_world(engine: Engine, hours: int = 24 * 14) -> World:
    """`hours` of trending EUR/USD 1h candles up to T0 and a Production version (P(up) 0.8)."""
    frame = trending_candles(str((T0 - timedelta(hours=hours)).date()), hours)
    import_frame(engine, frame, "EUR/USD", "1h", T0, source="history")
    world = World(engine)
    world.promote(world.register(0.8))
    return world


def serving_app(
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    now: Callable[[], datetime] = lambda: T0,
    **options: Any,
) -> Any:
    """The app over the world's stores (`options`: `create_app`'s, e.g. relay, preload)."""
    monkeypatch.setenv("AIFX_DATABASE_URL", world.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("AIFX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("AIFX_API_TOKEN", TOKEN)
    monkeypatch.chdir(tmp_path)

    def complete(engine: Engine, test: Any, winner: str, **kwargs: Any) -> ModelABTest:
        return complete_with_winner(engine, world.store, test, winner, **kwargs)

    return create_app(
        load_settings(),
        store=world.store,
        registry=RegistryActions(complete_with_winner=complete, mark_challenger=lambda e, t: None),
        engine=world.engine,
        now=now,
        **{"refresh_seconds": 0, **options},
    )
