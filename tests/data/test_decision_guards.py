"""Decisions guarded by the database, under real concurrency on PostgreSQL: one active A/B test
per model type, an A/B completion that either changes everything or nothing, a stage history
in commit order, artifacts verified on every stage change, and a server that keeps serving
what it holds when the next version's files fail their check.

Versions live in the in-memory model store (MLflow is not what these tests test): tiny
constant Keras models registered the way a training run registers its own.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from aifx_ml.abtest.store import cancel_test, complete_test, create_test, get_test
from aifx_ml.cli.main import main
from aifx_ml.config import load_settings
from aifx_ml.db.engine import make_engine, transaction, upgrade
from aifx_ml.db.models import Alert, ModelABTest, ModelStageHistory, ModelTrainingLog, ModelVersion
from aifx_ml.errors import ConflictError, RegistryError
from aifx_ml.features.engineering import FEATURE_NAMES
from aifx_ml.models.card import ModelCard
from aifx_ml.models.history import serving_at, stage_history
from aifx_ml.models.store import ArtifactIntegrityError, InMemoryModelStore, version_label
from aifx_ml.models.versions import production_version, record_version
from aifx_ml.serving.app import create_app
from aifx_ml.serving.deps import RegistryActions
from aifx_ml.serving.inference import ModelServer
from registry.abtest import complete_with_winner
from registry.stages import change_stage, rollback
from tests.conftest import _postgres_database, snapshot
from tests.serving_helpers import WINDOW, _card, constant_model

pytestmark = pytest.mark.integration
T0 = datetime.fromisoformat("2026-03-02T00:00:00+00:00")
ROUNDS = 20


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


# --- one active test per model type ----------------------------------------------------------


def test_concurrent_creates_leave_exactly_one_active_test(world: World) -> None:
    v1, v2 = world.register(), world.register()
    world.promote(v1)
    for n in range(ROUNDS):
        k = 2 + n % 7  # 2 to 8 racers
        moment = T0 + timedelta(hours=n)
        results = race(
            [
                partial(
                    create_test,
                    world.engine,
                    name=f"round {n} racer {i}",
                    model_a_version=v1,
                    model_b_version=v2,
                    traffic_split=0.2,
                    as_of=moment,
                )
                for i in range(k)
            ]
        )
        created = [r for r in results if isinstance(r, ModelABTest)]
        refused = [r for r in results if isinstance(r, ConflictError)]
        assert len(created) == 1 and len(refused) == k - 1, (n, results)
        assert active_count(world.engine) == 1
        assert all("active" in str(e) for e in refused)
        cancel_test(world.engine, created[0].id, as_of=moment, reason="next round")
    assert active_count(world.engine) == 0


def test_the_api_answers_409_and_the_cli_one_line(
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    v1, v2 = world.register(), world.register()
    world.promote(v1)
    api = serving_app(world, tmp_path, monkeypatch)
    body = {"test_name": "x", "model_a_version": v1, "model_b_version": v2, "traffic_split": 0.3}
    auth = {"Authorization": "Bearer s3cret"}
    with TestClient(api) as client:
        answers = race(
            [
                partial(
                    client.post,
                    "/api/v1/ml/ab-tests",
                    json={**body, "test_name": f"t{i}"},
                    headers=auth,
                )
                for i in range(6)
            ]
        )
    codes = sorted(a.status_code for a in answers)
    assert codes == [201, 409, 409, 409, 409, 409]
    for answer in answers:
        if answer.status_code == 409:
            assert set(answer.json()) == {"detail"} and "active" in answer.json()["detail"]
    assert active_count(world.engine) == 1

    code = main(["ab", "create", "--name", "cli", "--a", v1, "--b", v2])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "already active" in err


def test_the_migration_refuses_two_active_tests_of_one_type(pg: Engine) -> None:
    from aifx_ml.db.engine import downgrade

    world = World(pg)
    v1, v2 = world.register(), world.register()
    downgrade(pg, "0007")
    for name in ("a", "b"):
        with transaction(pg) as session:
            session.add(
                ModelABTest(
                    test_name=name,
                    model_type="lstm",
                    model_a_version=v1,
                    model_b_version=v2,
                    traffic_split=0.5,
                    status="active",
                    created_at=T0,
                )
            )
    with pytest.raises(RuntimeError, match="2 active lstm tests"):
        upgrade(pg)
    with transaction(pg) as session:
        session.execute(
            ModelABTest.__table__.update()
            .where(ModelABTest.test_name == "a")
            .values(status="cancelled")
        )
    upgrade(pg)
    assert active_count(pg) == 1


# --- completing a test: all or nothing ------------------------------------------------------


def test_concurrent_completes_with_different_winners(world: World) -> None:
    champion = world.register()
    world.promote(champion)
    promote = partial(complete_with_winner, world.engine, world.store, actor="t", clock=world.clock)
    for n in range(ROUNDS):
        challenger = world.register()
        test = create_test(
            world.engine,
            name=f"round {n}",
            model_a_version=champion,
            model_b_version=challenger,
            traffic_split=0.5,
            as_of=world.clock(),
        )
        k = 2 + n % 3
        winners = [(champion, challenger)[i % 2] for i in range(k)]
        results = race(
            [
                partial(
                    complete_test,
                    world.engine,
                    test.id,
                    as_of=T0,  # each racer decided at the start: the stamp is its commit's
                    winner=w,
                    reason=f"racer {i}",
                    promote=promote,
                )
                for i, w in enumerate(winners)
            ]
        )
        done = [r for r in results if isinstance(r, ModelABTest)]
        assert len(done) == 1, (n, results)
        assert all(isinstance(r, ConflictError) for r in results if r is not done[0]), results
        winner = get_test(world.engine, test.id).winner
        assert winner == done[0].winner
        current = production_version(world.engine, "lstm")
        assert current is not None and current.version == winner
        history = stage_history(world.engine, model_type="lstm")
        into_production = history[history["to_status"] == "production"]
        assert into_production.iloc[-1]["version"] == winner
        assert serving_at(world.engine, "lstm", T0 + timedelta(days=365)) == winner
        loser = challenger if winner == champion else champion
        with world.engine.connect() as conn:
            status = conn.execute(
                select(ModelVersion.status).where(ModelVersion.version == loser)
            ).scalar_one()
        assert status == "archived"  # archived in the same transaction, never promoted after
        champion = winner


def test_an_archived_winner_is_never_promoted(world: World) -> None:
    champion, challenger = world.register(), world.register()
    world.promote(champion)
    test = create_test(
        world.engine, name="t", model_a_version=champion, model_b_version=challenger,
        traffic_split=0.5, as_of=T0,
    )  # fmt: skip
    change_stage(world.engine, world.store, challenger, "archived", as_of=T0, reason="r", actor="t")
    before = snapshot(world.engine)
    with pytest.raises(RegistryError, match="archived: an A/B test never promotes"):
        complete_with_winner(
            world.engine, world.store, test, challenger, as_of=T0, reason="r", actor="t"
        )
    assert snapshot(world.engine) == before


# --- history in commit order ----------------------------------------------------------------


def test_concurrent_promotions_and_rollbacks_are_recorded_in_commit_order(world: World) -> None:
    versions = [world.register() for _ in range(4)]
    world.promote(versions[0], as_of=T0 - timedelta(hours=1))
    world.promote(versions[1], as_of=T0 - timedelta(minutes=30))
    for n in range(ROUNDS):
        current = production_version(world.engine, "lstm")
        assert current is not None
        others = [v for v in versions if v != current.version]
        # Each racer started (as_of) at a different moment; whichever commits later must
        # still come later in the history.
        starts = [T0 + timedelta(minutes=n, seconds=s) for s in (30, 10, 20)]
        results = race(
            [
                partial(
                    rollback, world.engine, world.store, "lstm", as_of=starts[0], actor="r",
                    to=others[0], clock=world.clock,
                ),
                partial(
                    change_stage, world.engine, world.store, others[1], "production",
                    as_of=starts[1], reason="p", actor="p", clock=world.clock,
                ),
                partial(
                    rollback, world.engine, world.store, "lstm", as_of=starts[2], actor="r",
                    clock=world.clock,
                ),
            ]
        )  # fmt: skip
        assert not [r for r in results if isinstance(r, Exception) and "already" not in str(r)]
        assert_history_replays(world.engine)


def assert_history_replays(engine: Engine) -> None:
    """Walked in `changed_at` order the history is a valid sequence of stage changes ending in
    the table's state, and `serving_at` answers the version each change left serving."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(ModelStageHistory)
            .where(ModelStageHistory.model_type == "lstm")
            .order_by(ModelStageHistory.changed_at, ModelStageHistory.recorded_at)
        ).all()
        statuses = dict(conn.execute(select(ModelVersion.version, ModelVersion.status)).all())
    state: dict[str, str] = {}
    # The rows of one change share its stamp: apply them together, then look.
    for stamp, group in itertools.groupby(rows, key=lambda r: r.changed_at):
        moved = list(group)
        for row in moved:
            assert state.get(row.version) == row.from_status, row
        for row in moved:
            state[row.version] = row.to_status
        production = [v for v, s in state.items() if s == "production"]
        assert len(production) <= 1, moved
        if production:
            assert serving_at(engine, "lstm", stamp) == production[0]
    assert state == statuses


# --- artifacts verified on every stage change; serving fails safe ----------------------------


def test_a_tampered_rollback_is_refused_and_serving_is_unchanged(world: World) -> None:
    v1, v2 = world.register(0.7), world.register(0.3)
    world.promote(v1, as_of=T0 - timedelta(hours=2))
    world.promote(v2, as_of=T0 - timedelta(hours=1))
    server = ModelServer(world.engine, world.store, refresh_seconds=0)
    assert server.assignment("lstm").production.version == v2  # type: ignore[union-attr]
    v3 = world.register()
    world.tamper(v1)
    world.tamper(v3)
    before = snapshot(world.engine)
    with pytest.raises(ArtifactIntegrityError, match=f"{v1} failed its integrity check"):
        rollback(world.engine, world.store, "lstm", as_of=T0, actor="t", to=v1)
    with pytest.raises(ArtifactIntegrityError):
        rollback(world.engine, world.store, "lstm", as_of=T0, actor="t")  # the same by default
    with pytest.raises(ArtifactIntegrityError):
        change_stage(world.engine, world.store, v3, "production", as_of=T0, reason="r", actor="t")
    assert snapshot(world.engine) == before  # nothing written, no event
    server.invalidate()
    assert server.assignment("lstm").production.version == v2  # type: ignore[union-attr]
    # Archiving a tampered version stays possible: that is how it is retired.
    change_stage(world.engine, world.store, v3, "archived", as_of=T0, reason="bad", actor="t")


def serving_app(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AIFX_DATABASE_URL", world.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("AIFX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("AIFX_API_TOKEN", "s3cret")
    monkeypatch.chdir(tmp_path)

    def complete(engine: Engine, test: Any, winner: str, **kwargs: Any) -> ModelABTest:
        return complete_with_winner(engine, world.store, test, winner, **kwargs)

    return create_app(
        load_settings(),
        store=world.store,
        registry=RegistryActions(complete_with_winner=complete, mark_challenger=lambda e, t: None),
        engine=world.engine,
        now=lambda: T0,
        refresh_seconds=0,
    )


def test_a_tampered_production_version_is_not_swapped_in(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aifx_ml.serving.predict import PredictRequest
    from tests.serving_helpers import trending_candles

    v1, v2 = world.register(0.7), world.register(0.3)
    world.promote(v1, as_of=T0 - timedelta(hours=2))
    app = serving_app(world, tmp_path, monkeypatch)
    candles = trending_candles("2026-02-20", WINDOW + 60)
    request = PredictRequest(pair="EUR/USD", timeframe="1h", candles=candles)
    with TestClient(app) as client:
        service = app.state.services.predictions
        assert service.predict([request])[0].model_version == v1
        healthy = client.get("/api/v1/monitoring/health").json()
        assert healthy["serving"]["status"] == "ok"
        world.promote(v2, as_of=T0 - timedelta(hours=1))  # its files were sound then
        world.tamper(v2)  # and are not any more
        service.server.invalidate()
        for _ in range(3):  # every request is still answered, by the model in memory
            assert service.predict([request])[0].model_version == v1
        health = client.get("/api/v1/monitoring/health")
        assert health.status_code == 503
        body = health.json()
        assert body["status"] == "degraded"
        (refused,) = body["serving"]["refused"]
        assert refused["version"] == v2 and refused["serving_instead"] == v1
        assert "integrity check" in refused["reason"] and v2 in body["serving"]["detail"]
    with world.engine.connect() as conn:
        alerts = conn.execute(select(Alert.alert_key, Alert.kind, Alert.severity)).all()
    assert alerts == [(f"model-refused:{v2}", "model_refused", "critical")]  # raised once


def test_a_server_with_nothing_in_memory_answers_503_not_500(world: World) -> None:
    from aifx_ml.serving.inference import ModelUnavailableError
    from aifx_ml.serving.predict import pick

    v1 = world.register()
    world.promote(v1)
    world.tamper(v1)
    server = ModelServer(world.engine, world.store, refresh_seconds=0)
    assignment = server.assignment("lstm")
    assert assignment.production is None and [f.version for f in server.failures()] == [v1]
    with pytest.raises(ModelUnavailableError, match="no lstm model can serve"):
        pick(assignment, "key")


def test_a_tampered_ab_winner_is_refused_with_409_and_nothing_changes(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, v2 = world.register(), world.register()
    world.promote(v1)
    test = create_test(
        world.engine, name="t", model_a_version=v1, model_b_version=v2, traffic_split=0.5,
        as_of=T0,
    )  # fmt: skip
    world.tamper(v2)
    before = snapshot(world.engine)
    with TestClient(serving_app(world, tmp_path, monkeypatch)) as client:
        answer = client.post(
            f"/api/v1/ml/ab-tests/{test.id}/complete",
            json={"winner": v2},
            headers={"Authorization": "Bearer s3cret"},
        )
    assert answer.status_code == 409 and "integrity check" in answer.json()["detail"]
    assert snapshot(world.engine) == before
