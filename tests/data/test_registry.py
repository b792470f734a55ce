"""The registry against real databases and a real MLflow store: MLflow and the table agree
after every operation, the history answers "who was serving when", reconciliation repairs
every kind of disagreement, and a tampered model is refused."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, func, select

from aifx_ml.db.engine import make_engine, upgrade
from aifx_ml.db.models import EventOutbox, ModelStageHistory, ModelVersion
from aifx_ml.errors import RegistryError
from aifx_ml.events.consumers import Event, StreamConsumer, subscribe
from aifx_ml.events.relay import relay_events
from aifx_ml.events.schemas import ModelDeployed
from aifx_ml.models.history import lineage, serving_at, stage_history
from aifx_ml.models.versions import get_version
from aifx_ml.training.config import Stores
from aifx_ml.training.runs import train_full
from registry.identity import StoreMismatchError, mlflow_identity, table_identity
from registry.integrity import ArtifactIntegrityError
from registry.promotion import promote
from registry.reconcile import ORPHAN_TAG, ReconcileRefusedError, reconcile
from registry.stages import change_stage, rollback, set_challenger
from tests.conftest import TRAIN_AS_OF, _postgres_database, tiny_training_config
from tests.event_payloads import announced
from tests.registry_world import (
    World,
    copy_world,
    promote_now,
    stages_agree,
    store_for,
)
from tests.tcp_proxy import CuttableProxy

pytestmark = pytest.mark.integration
LATER = TRAIN_AS_OF + timedelta(days=3)


@pytest.fixture
def reg(world: World, engine: Engine, tmp_path: Path) -> Iterator[tuple[Engine, str]]:
    """(engine, MLflow URI): the world's three Staging versions in a fresh store."""
    uri = copy_world(world, engine, tmp_path)
    yield engine, uri


def statuses(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(ModelVersion.version, ModelVersion.status)).all())


def deployed_events(engine: Engine) -> list[dict[str, Any]]:
    """The `ml:model_deployed` data in the outbox, each checked against its model."""
    return [e.to_data() for e in announced(engine, ModelDeployed)]


def test_first_promotion_then_replacement_then_rollback_agree_everywhere(
    reg: tuple[Engine, str],
) -> None:
    engine, uri = reg
    store = store_for(uri)
    assert stages_agree(engine, uri) == {}

    change_stage(engine, store, "lstm-v1", "production", as_of=TRAIN_AS_OF, reason="r1", actor="t")
    assert statuses(engine) == {"lstm-v1": "production", "lstm-v2": "staging", "lstm-v3": "staging"}
    assert stages_agree(engine, uri) == {}

    result = change_stage(
        engine, store, "lstm-v2", "production", as_of=LATER, reason="r2", actor="t"
    )
    assert result.previous_production == "lstm-v1"
    assert statuses(engine)["lstm-v1"] == "archived"
    assert stages_agree(engine, uri) == {}

    back = rollback(engine, store, "lstm", as_of=LATER + timedelta(hours=5), actor="t")
    assert [(c.version, c.to_status) for c in back.changes] == [
        ("lstm-v2", "archived"),
        ("lstm-v1", "production"),
    ]
    assert stages_agree(engine, uri) == {}

    change_stage(engine, store, "lstm-v3", "archived", as_of=LATER, reason="retired", actor="t")
    assert statuses(engine) == {
        "lstm-v1": "production",
        "lstm-v2": "archived",
        "lstm-v3": "archived",
    }
    assert stages_agree(engine, uri) == {}

    # Every promotion is announced, with what it replaced.
    assert [(e["version"], e["previous_version"]) for e in deployed_events(engine)] == [
        ("lstm-v1", None),
        ("lstm-v2", "lstm-v1"),
        ("lstm-v1", "lstm-v2"),
    ]


def test_history_answers_which_version_was_serving_when(reg: tuple[Engine, str]) -> None:
    engine, uri = reg
    store = store_for(uri)
    t1, t2, t3 = TRAIN_AS_OF, TRAIN_AS_OF + timedelta(days=1), TRAIN_AS_OF + timedelta(days=2)
    change_stage(engine, store, "lstm-v1", "production", as_of=t1, reason="first", actor="a")
    change_stage(engine, store, "lstm-v2", "production", as_of=t2, reason="better", actor="b")
    rollback(engine, store, "lstm", as_of=t3, actor="c", reason="v2 misbehaved")

    assert serving_at(engine, "lstm", t1 - timedelta(minutes=1)) is None
    assert serving_at(engine, "lstm", t1) == "lstm-v1"
    assert serving_at(engine, "lstm", t2 - timedelta(seconds=1)) == "lstm-v1"
    assert serving_at(engine, "lstm", t2 + timedelta(hours=14)) == "lstm-v2"
    assert serving_at(engine, "lstm", t3 + timedelta(days=30)) == "lstm-v1"

    history = stage_history(engine, model_type="lstm")
    moves = history[history["from_status"].notna()]
    assert list(zip(moves["version"], moves["from_status"], moves["to_status"], strict=True)) == [
        ("lstm-v1", "staging", "production"),
        ("lstm-v1", "production", "archived"),
        ("lstm-v2", "staging", "production"),
        ("lstm-v2", "production", "archived"),
        ("lstm-v1", "archived", "production"),
    ]
    last = moves.iloc[-1]
    assert (last["reason"], last["actor"]) == ("v2 misbehaved", "c")
    # Registration is the first line of every version's history.
    assert (history["from_status"].isna()).sum() == 3


def test_refused_promotion_changes_nothing_and_shows_the_numbers(reg: tuple[Engine, str]) -> None:
    engine, uri = reg
    store = store_for(uri)
    promote_now(engine, uri, "lstm-v1", TRAIN_AS_OF)
    before = (statuses(engine), deployed_events(engine))
    # A margin no model can clear: refused, with the scores it was refused on.
    outcome = promote(engine, store, "lstm-v2", as_of=LATER, actor="t", margin=1.0)
    assert not outcome.promoted and outcome.decision is not None
    assert outcome.production_version == "lstm-v1"
    assert any("above Production's" in r for r in outcome.decision.reasons)
    assert outcome.decision.production is not None
    assert outcome.decision.candidate.samples == outcome.decision.production.samples > 0
    assert (statuses(engine), deployed_events(engine)) == before
    assert stages_agree(engine, uri) == {}


def test_the_gate_holdout_is_unseen_by_both_models(reg: tuple[Engine, str]) -> None:
    engine, uri = reg
    promote_now(engine, uri, "lstm-v3", TRAIN_AS_OF)  # the newest model serves
    outcome = promote(engine, store_for(uri), "lstm-v1", as_of=LATER, actor="t", margin=1.0)
    assert outcome.decision is not None
    newest = get_version(engine, "lstm-v3").metrics or {}
    # The older candidate is judged where the newer Production model had not learned either.
    assert outcome.decision.holdout["start"] >= newest["holdout_start"]


def test_forced_promotion_stores_the_reason_and_the_overridden_numbers(
    reg: tuple[Engine, str],
) -> None:
    engine, uri = reg
    store = store_for(uri)
    with pytest.raises(RegistryError, match="needs a reason"):
        promote(engine, store, "lstm-v1", as_of=TRAIN_AS_OF, actor="t", force_reason=" ")
    outcome = promote(
        engine,
        store,
        "lstm-v1",
        as_of=TRAIN_AS_OF,
        actor="aifx models promote",
        margin=1.0,
        min_samples=10**6,
        force_reason="bootstrap the first model",
    )
    assert outcome.promoted and outcome.forced
    (row,) = [
        r
        for r in stage_history(engine, version="lstm-v1").itertuples()
        if r.to_status == "production"
    ]
    assert row.reason == "forced: bootstrap the first model"
    assert row.actor == "aifx models promote"
    assert row.details["forced"] is True
    assert row.details["gate"]["passed"] is False
    assert row.details["gate"]["reasons"]
    assert stages_agree(engine, uri) == {}


def test_invalid_stage_changes_are_refused_with_one_clear_error(reg: tuple[Engine, str]) -> None:
    engine, uri = reg
    store = store_for(uri)
    promote_now(engine, uri, "lstm-v1", TRAIN_AS_OF)
    with pytest.raises(RegistryError, match="unknown model version 'lstm-v9'"):
        change_stage(engine, store, "lstm-v9", "production", as_of=LATER, reason="x", actor="t")
    with pytest.raises(RegistryError, match="is production: it cannot become archived"):
        change_stage(engine, store, "lstm-v1", "archived", as_of=LATER, reason="x", actor="t")
    with pytest.raises(RegistryError, match="already production"):
        change_stage(engine, store, "lstm-v1", "production", as_of=LATER, reason="x", actor="t")
    with pytest.raises(RegistryError, match="no earlier Production lstm version"):
        rollback(engine, store, "lstm", as_of=LATER, actor="t")
    with pytest.raises(RegistryError, match="a challenger is in Staging"):
        set_challenger(engine, store, "lstm-v1", "lstm")
    assert statuses(engine)["lstm-v1"] == "production"


def test_reconcile_repairs_every_kind_of_disagreement(reg: tuple[Engine, str]) -> None:
    from registry.mlflow_store import transition_stage

    engine, uri = reg
    store = store_for(uri)
    promote_now(engine, uri, "lstm-v1", TRAIN_AS_OF)
    set_challenger(engine, store, "lstm-v2", "lstm")
    assert reconcile(engine, store, LATER, "t") == []

    change_stage(engine, store, "lstm-v2", "archived", as_of=LATER, reason="x", actor="t")
    # Now behind the table's back: 1. a stage changed; 2. the champion alias moved;
    # 3. the challenger alias left on a version no longer in Staging.
    transition_stage(store.client, "aifx-lstm", "3", "Production")
    store.client.set_registered_model_alias("aifx-lstm", "champion", "2")
    store.client.set_registered_model_alias("aifx-lstm", "challenger", "2")
    # 4. a version MLflow has that the table never recorded (a half-done registration).
    v1_source = store.client.get_model_version("aifx-lstm", "1").source
    orphan = store.client.create_model_version("aifx-lstm", v1_source)
    # 5. a version the table has that MLflow lost.
    store.client.delete_model_version("aifx-lstm", "3")

    fixes = reconcile(engine, store, LATER, "aifx models reconcile")
    kinds = sorted(f.kind for f in fixes)
    assert kinds.count("alias") == 2
    assert "stage" in kinds and "orphan_in_mlflow" in kinds and "missing_in_mlflow" in kinds
    assert reconcile(engine, store, LATER, "t") == []  # nothing left to fix
    assert stages_agree(engine, uri) == {}
    assert (
        store.client.get_model_version("aifx-lstm", str(orphan.version)).tags[ORPHAN_TAG] == "true"
    )
    restored = get_version(engine, "lstm-v3")
    assert restored.model_path != "models:/aifx-lstm/3"  # re-registered from its run
    assert store.load(restored).card.parent_version is None  # and it loads
    aliases = store.client.get_registered_model("aifx-lstm").aliases
    assert str(aliases.get("champion")) == "1" and "challenger" not in aliases


def mlflow_state(uri: str) -> tuple[dict[str, str], dict[str, str]]:
    """(version number -> stage, alias -> number) of the lstm model in MLflow."""
    client = store_for(uri).client
    stages = {
        str(v.version): v.current_stage for v in client.search_model_versions("name = 'aifx-lstm'")
    }
    aliases = {k: str(v) for k, v in client.get_registered_model("aifx-lstm").aliases.items()}
    return stages, aliases


@pytest.fixture
def other_engine(engine: Engine, tmp_path: Path) -> Iterator[Engine]:
    """A second, empty database of the same kind (migrated): the new database a setting
    points at."""
    if engine.dialect.name == "postgresql":
        urls = _postgres_database()
        url = next(urls)
    else:
        urls, url = iter(()), f"sqlite:///{tmp_path / 'other.db'}"
    other = make_engine(url)
    upgrade(other)
    yield other
    other.dispose()
    next(urls, None)  # drops the PostgreSQL database


def test_reconcile_refuses_a_store_the_tables_do_not_belong_to_and_changes_nothing(
    reg: tuple[Engine, str], other_engine: Engine, mlflow_template: Path, tmp_path: Path
) -> None:
    engine, uri = reg
    store = store_for(uri)
    (tmp_path / "new").mkdir()
    mlflow_uri = f"sqlite:///{shutil.copy(mlflow_template, tmp_path / 'new' / 'mlflow.db')}"
    promote_now(engine, uri, "lstm-v1", TRAIN_AS_OF)
    assert reconcile(engine, store, LATER, "t") == []  # first use: the pair is recorded
    assert table_identity(engine) == mlflow_identity(store) is not None
    before = mlflow_state(uri)
    assert before[0]["1"] == "Production" and before[1] == {"champion": "1"}

    # Only AIFX_DATABASE_URL changed: a new database, the old MLflow store.
    with pytest.raises(StoreMismatchError, match="belongs to another database"):
        reconcile(other_engine, store, LATER, "t")
    # Only MLFLOW_TRACKING_URI changed: the old database, a new MLflow store.
    with pytest.raises(StoreMismatchError, match="has no identity"):
        reconcile(engine, store_for(mlflow_uri), LATER, "t")
    # Even forced, a store that is not the tables' is not touched.
    with pytest.raises(StoreMismatchError):
        reconcile(other_engine, store, LATER, "t", force=True)
    assert mlflow_state(uri) == before
    assert table_identity(other_engine) is None and mlflow_identity(store_for(mlflow_uri)) is None
    assert statuses(engine)["lstm-v1"] == "production"

    # Adopting the pair is deliberate, and the plan's guard still stands: the new database
    # has no versions, so reconcile would archive MLflow's three, Production included.
    with pytest.raises(ReconcileRefusedError, match="lstm with no Production version"):
        reconcile(other_engine, store, LATER, "t", adopt_store=True)
    assert mlflow_state(uri) == before
    planned = reconcile(other_engine, store, LATER, "t", dry_run=True)
    assert sorted(f.version for f in planned if f.loss) == ["lstm-v1", "lstm-v2", "lstm-v3"]
    assert mlflow_state(uri) == before  # a dry run changes nothing


def test_reconcile_refuses_a_mass_change_without_force_and_a_dry_run_changes_nothing(
    reg: tuple[Engine, str],
) -> None:
    from registry.mlflow_store import transition_stage

    engine, uri = reg
    store = store_for(uri)
    promote_now(engine, uri, "lstm-v1", TRAIN_AS_OF)
    assert reconcile(engine, store, LATER, "t") == []
    # Behind the table's back, both Staging versions go to Production in MLflow.
    transition_stage(store.client, "aifx-lstm", "2", "Production")
    transition_stage(store.client, "aifx-lstm", "3", "Production")
    before = mlflow_state(uri)

    planned = reconcile(engine, store, LATER, "t", dry_run=True)
    assert sorted((f.version, f.detail, f.loss) for f in planned) == [
        ("lstm-v2", "MLflow stage Production → Staging", True),
        ("lstm-v3", "MLflow stage Production → Staging", True),
    ]
    with pytest.raises(ReconcileRefusedError, match=r"demote 2 version\(s\) \(more than 1\)"):
        reconcile(engine, store, LATER, "t", max_losses=1)
    assert mlflow_state(uri) == before
    fixed = reconcile(engine, store, LATER, "t", max_losses=1, force=True)
    assert sorted(f.version for f in fixed if f.loss) == ["lstm-v2", "lstm-v3"]
    assert stages_agree(engine, uri) == {}
    # Within the default limit (3) a demotion needs no force: the table stays the truth.
    transition_stage(store.client, "aifx-lstm", "2", "Production")
    assert [f.version for f in reconcile(engine, store, LATER, "t")] == ["lstm-v2"]


def test_two_concurrent_promotions_never_leave_two_production_versions(
    reg: tuple[Engine, str],
) -> None:
    engine, uri = reg
    promote_now(engine, uri, "lstm-v1", TRAIN_AS_OF)
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def promote_in_thread(version: str) -> None:
        try:
            barrier.wait()
            change_stage(
                engine,
                store_for(uri),
                version,
                "production",
                as_of=LATER,
                reason="race",
                actor=version,
            )
        except BaseException as exc:  # noqa: BLE001  (collected and asserted below)
            errors.append(exc)

    threads = [
        threading.Thread(target=promote_in_thread, args=(v,)) for v in ("lstm-v2", "lstm-v3")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []  # serialized, not refused: the second archives the first
    with engine.connect() as conn:
        production = conn.execute(
            select(func.count()).where(ModelVersion.status == "production")
        ).scalar_one()
        archived_from_production = conn.execute(
            select(func.count()).where(
                ModelStageHistory.from_status == "production",
                ModelStageHistory.to_status == "archived",
            )
        ).scalar_one()
    assert production == 1
    assert archived_from_production == 2  # lstm-v1, then the first of the two racers
    assert stages_agree(engine, uri) == {}


def test_a_tampered_or_truncated_model_is_refused(
    engine: Engine, mlflow_uri: str, tmp_path: Path
) -> None:
    from tests.conftest import import_synthetic

    import_synthetic(engine)
    store = store_for(mlflow_uri, tmp_path / "art")
    stores = Stores(engine, store, tmp_path / "locks")
    result = train_full(stores, tiny_training_config(days=14), TRAIN_AS_OF)
    assert result.version
    row = get_version(engine, result.version)
    assert row.artifact_sha256 and len(row.artifact_sha256) == 64
    assert store.load(row).version == result.version  # intact: loads
    files = [
        p
        for p in (tmp_path / "art").rglob("*")
        if p.is_file() and p.suffix in (".keras", ".h5", ".json")
    ]
    weights = max(files, key=lambda p: p.stat().st_size)
    original = weights.read_bytes()
    weights.write_bytes(original[: len(original) // 2])  # truncated
    with pytest.raises(ArtifactIntegrityError, match="failed its integrity check"):
        store.load(row)
    weights.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))  # one bit flipped
    with pytest.raises(ArtifactIntegrityError, match="tampered or truncated"):
        store.load(row)
    weights.write_bytes(original)
    assert store.load(row).version == result.version


def test_lineage_follows_parents(reg: tuple[Engine, str]) -> None:
    engine, _ = reg
    with engine.begin() as conn:
        conn.execute(
            ModelVersion.__table__.update()
            .where(ModelVersion.version == "lstm-v3")
            .values(parent_version="lstm-v2")
        )
        conn.execute(
            ModelVersion.__table__.update()
            .where(ModelVersion.version == "lstm-v2")
            .values(parent_version="lstm-v1")
        )
    assert [v.version for v in lineage(engine, "lstm-v3")] == ["lstm-v3", "lstm-v2", "lstm-v1"]


def test_a_promotion_reaches_subscribers_and_survives_redis_being_away(
    reg: tuple[Engine, str],
    client: redis.Redis,
    proxy: CuttableProxy,
    behind_proxy: redis.Redis,
) -> None:
    engine, uri = reg
    stream = f"test:aifx:events:{uuid.uuid4().hex[:12]}"
    consumer = StreamConsumer(client, channels=["ml:model_deployed"], stream=stream)
    received: list[Event] = []
    done = threading.Event()
    listener = threading.Thread(
        target=subscribe,
        args=(client, ["ml:model_deployed"], received.append),
        kwargs={"stop": done.is_set, "poll_timeout": 0.05},
    )
    listener.start()
    try:
        # Redis reachable: the promotion is announced live and on the stream.
        deadline = time.monotonic() + 5
        while dict(client.pubsub_numsub("ml:model_deployed"))[b"ml:model_deployed"] == 0:
            assert time.monotonic() < deadline, "subscriber never subscribed"
        promote_now(engine, uri, "lstm-v1", TRAIN_AS_OF)
        assert relay_events(engine, behind_proxy, now=lambda: LATER, stream=stream).ok
        # Channels are server-wide: another test's relay may publish on it too, so only the
        # events of this store's outbox count.
        with engine.connect() as conn:
            ours = {str(i) for i in conn.execute(select(EventOutbox.id)).scalars()}
        deadline = time.monotonic() + 5
        while not (heard := [e for e in received if e.id in ours]):
            assert time.monotonic() < deadline, "ml:model_deployed never arrived"
        assert heard[0].data["version"] == "lstm-v1"

        # Redis away: the promotion still happens; its event waits in the outbox.
        proxy.cut()
        promote_now(engine, uri, "lstm-v2", LATER)
        assert statuses(engine)["lstm-v2"] == "production"
        failed = relay_events(engine, behind_proxy, now=lambda: LATER, stream=stream)
        assert not failed.ok and failed.pending == 1
        proxy.restore()
        assert relay_events(engine, behind_proxy, now=lambda: LATER, stream=stream).published == 1
        relay_events(engine, behind_proxy, now=lambda: LATER, stream=stream)  # nothing twice
        got = consumer.poll(block_ms=1000)
    finally:
        done.set()
        listener.join(timeout=5)
        client.delete(stream)
    assert [(e.data["version"], e.data["previous_version"]) for e in got] == [
        ("lstm-v1", None),
        ("lstm-v2", "lstm-v1"),
    ]
    assert consumer.duplicates == 0


def passing(decision: Any) -> Any:
    """The gate's real numbers with its verdict turned to a pass (the gate itself is tested
    in tests/code/test_promotion_gate.py); what happens next is what is tested here."""
    from dataclasses import replace as dc_replace

    return dc_replace(decision, passed=True, reasons=())


def test_a_new_version_that_passes_the_gate_is_tried_live(
    reg: tuple[Engine, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace as dc_replace

    from aifx_ml.abtest.store import list_tests
    from aifx_ml.evaluation.refresh import RefreshPolicy
    from registry import challenger
    from registry.challenger import offer_challenger

    engine, uri = reg
    store = store_for(uri)
    refused = offer_challenger(
        engine, store, "lstm-v1", as_of=TRAIN_AS_OF, actor="t", min_samples=10**6
    )
    assert refused.action == "refused" and "holdout samples" in refused.detail
    assert statuses(engine)["lstm-v1"] == "staging"

    real = challenger.evaluate_candidate

    def pass_the_gate(*a: Any, **k: Any) -> Any:
        evaluation = real(*a, **k)
        return dc_replace(evaluation, decision=passing(evaluation.decision))

    monkeypatch.setattr(challenger, "evaluate_candidate", pass_the_gate)
    first = offer_challenger(engine, store, "lstm-v1", as_of=TRAIN_AS_OF, actor="flow weekly-full")
    assert first.action == "promoted"  # nothing to test against: the first model serves
    assert statuses(engine)["lstm-v1"] == "production"

    # Refreshes are tested on their own (tests/data/test_refresh.py): here, the live test.
    no_refresh = RefreshPolicy(age=None)
    second = offer_challenger(
        engine, store, "lstm-v2", as_of=LATER, actor="flow weekly-full", refresh=no_refresh
    )
    assert second.action == "ab_test_started" and second.ab_test_id is not None
    (test,) = list_tests(engine, "active")
    # By default a challenger is shadow-tested: it answers every request, none of them served.
    assert (test.model_a_version, test.model_b_version, test.mode, test.traffic_split) == (
        "lstm-v1",
        "lstm-v2",
        "shadow",
        0.0,
    )
    assert str(store.client.get_registered_model("aifx-lstm").aliases["challenger"]) == "2"
    assert statuses(engine)["lstm-v2"] == "staging"  # it has to win live first

    third = offer_challenger(
        engine, store, "lstm-v3", as_of=LATER, actor="flow weekly-full", refresh=no_refresh
    )
    assert third.action == "test_running" and third.ab_test_id == test.id
