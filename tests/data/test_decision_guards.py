"""Decisions guarded by the database, under real concurrency on PostgreSQL: one active A/B test
per model type, an A/B completion that either changes everything or nothing, a stage history
in commit order, and artifacts verified on every stage change.

Versions live in the in-memory model store (MLflow is not what these tests test).
"""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text

from aifx_ml.abtest import store as abtest_store
from aifx_ml.abtest.store import cancel_test, complete_test, create_test, get_test
from aifx_ml.cli.main import main
from aifx_ml.db.engine import downgrade, transaction, upgrade
from aifx_ml.db.models import ModelABTest, ModelStageHistory, ModelVersion
from aifx_ml.errors import ConflictError, RegistryError
from aifx_ml.models.history import serving_at, stage_history
from aifx_ml.models.store import ArtifactIntegrityError
from aifx_ml.models.versions import production_version
from aifx_ml.serving.inference import ModelServer
from registry.abtest import complete_with_winner
from registry.stages import change_stage, rollback
from tests.conftest import snapshot
from tests.memory_registry import T0, TOKEN, World, active_count, pg, race, serving_app, world

pytestmark = pytest.mark.integration
ROUNDS = 20
AUTH = {"Authorization": f"Bearer {TOKEN}"}
__all__ = ["pg", "world"]  # fixtures


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
    with TestClient(api) as client:
        answers = race(
            [
                partial(
                    client.post,
                    "/api/v1/ml/ab-tests",
                    json={**body, "test_name": f"t{i}"},
                    headers=AUTH,
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

    world = World(pg)
    v1, v2 = world.register(), world.register()
    downgrade(pg, "0008")
    for name in ("a", "b"):
        with transaction(pg) as session:
            # Plain SQL, with the columns of revision 0008 (the model has later ones).
            session.execute(
                text(
                    "INSERT INTO model_ab_test (id, test_name, model_type, model_a_version, "
                    "model_b_version, traffic_split, status, created_at) "
                    "VALUES (:id, :name, 'lstm', :a, :b, 0.5, 'active', :at)"
                ),
                {"id": uuid.uuid4(), "name": name, "a": v1, "b": v2, "at": T0},
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


def champion_against_challenger(world: World) -> tuple[str, str, ModelABTest]:
    """A Production champion and a new challenger in an active A/B test."""
    champion, challenger = world.register(), world.register()
    world.promote(champion)
    test = create_test(
        world.engine, name="t", model_a_version=champion, model_b_version=challenger,
        traffic_split=0.5, as_of=T0,
    )  # fmt: skip
    return champion, challenger, test


def test_an_archived_winner_is_never_promoted(world: World) -> None:
    champion, challenger, test = champion_against_challenger(world)
    change_stage(world.engine, world.store, challenger, "archived", as_of=T0, reason="r", actor="t")
    before = snapshot(world.engine)
    with pytest.raises(RegistryError, match="archived: an A/B test never promotes"):
        complete_with_winner(
            world.engine, world.store, test, challenger, as_of=T0, reason="r", actor="t"
        )
    assert snapshot(world.engine) == before


def test_the_loser_of_a_completion_race_hears_that_the_test_is_over(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The interleaving the concurrent rounds hit now and then, made certain: the loser read
    # the test while it was active, then the winner committed (the challenger promoted, the
    # champion archived, the test completed) before the loser looked at its winner's row.
    champion, challenger, test = champion_against_challenger(world)
    stale = [get_test(world.engine, test.id)]
    complete_with_winner(
        world.engine, world.store, test.id, challenger, as_of=T0, reason="won", actor="a"
    )
    before = snapshot(world.engine)
    real = abtest_store.get_test
    monkeypatch.setattr(
        abtest_store, "get_test", lambda engine, key: stale.pop() if stale else real(engine, key)
    )
    with pytest.raises(ConflictError, match="already completed"):
        complete_with_winner(
            world.engine, world.store, test.id, champion, as_of=T0, reason="late", actor="b"
        )
    assert not stale  # the stale read was the one the loser started from
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


# --- artifacts verified on every stage change ----------------------------


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
            headers=AUTH,
        )
    assert answer.status_code == 409 and "integrity check" in answer.json()["detail"]
    assert snapshot(world.engine) == before
