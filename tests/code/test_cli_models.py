"""`aifx models` as a user meets it: tables, a refused promotion with its numbers, a forced one
with its reason, rollback, the history and "who was serving when", reconcile."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from aifx_ml.cli.main import main
from aifx_ml.cli.models import signal_rule
from aifx_ml.db.engine import make_engine, upgrade
from registry.mlflow_store import transition_stage
from tests.registry_world import World, copy_world, store_for

pytestmark = pytest.mark.integration

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def aifx(
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Run]:
    db_url = f"sqlite:///{tmp_path / 'aifx.db'}"
    engine: Engine = make_engine(db_url)
    upgrade(engine)
    uri = copy_world(world, engine, tmp_path)
    engine.dispose()
    monkeypatch.setenv("AIFX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AIFX_DATABASE_URL", db_url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    run.mlflow_uri = uri  # type: ignore[attr-defined]
    yield run


def test_list_and_show(aifx: Run) -> None:
    code, out, _ = aifx("models", "list")
    assert code == 0
    for version in ("lstm-v1", "lstm-v2", "lstm-v3"):
        assert version in out
    assert out.count("staging") == 3
    code, out, _ = aifx("models", "show", "lstm-v2")
    assert code == 0
    for field in (
        "lineage",
        "dataset hash",
        "data range",
        "artifact SHA-256",
        "full run",
        "signals",
    ):
        assert field in out
    assert "registered by a training run" in out
    code, _, err = aifx("models", "show", "lstm-v7")
    assert code == 1 and "unknown model version 'lstm-v7'" in err


def test_refused_then_forced_promotion_then_rollback_and_history(aifx: Run) -> None:
    at = "--as-of"
    code, out, err = aifx(
        "models",
        "promote",
        "lstm-v1",
        "--margin",
        "0",
        at,
        "2026-03-01T02:00",
        "--min-samples",
        "100000",
    )
    assert code == 1, err
    assert "promotion gate" in out and "lstm-v1 (candidate)" in out and "baseline: majority" in out
    assert "refused:" in out and "stays staging" in out

    code, _, err = aifx("models", "promote", "lstm-v1", "--force")
    assert code == 1 and "--force needs --reason" in err

    code, out, _ = aifx(
        "models", "promote", "lstm-v1", "--force", "--reason", "bootstrap", at, "2026-03-01T02:00"
    )
    assert code == 0 and "lstm-v1 is now in Production (forced)" in out
    code, out, _ = aifx(
        "models", "promote", "lstm-v2", "--force", "--reason", "newer", at, "2026-03-02T02:00"
    )
    assert code == 0 and "lstm-v1: production → archived" in out

    code, out, _ = aifx("models", "rollback", at, "2026-03-03T02:00")
    assert code == 0 and "lstm-v1 is in Production again" in out
    # Asking again for what already holds succeeds and changes nothing (a rerun script).
    code, out, _ = aifx("models", "promote", "lstm-v1", "--force", "--reason", "again")
    assert code == 0 and "lstm-v1 is already in Production: nothing changed" in out

    code, out, _ = aifx("models", "history", "--at", "2026-03-02T14:00")
    assert code == 0 and "lstm-v2 was in Production" in out
    code, out, _ = aifx("models", "history", "--at", "2026-02-01")
    assert "no Production version" in out
    code, out, _ = aifx("models", "history", "--version", "lstm-v1")
    assert code == 0
    assert "forced: bootstrap" in out and "aifx models promote" in out and "rollback" in out


def test_reconcile_prints_what_it_fixed(aifx: Run) -> None:
    assert aifx("models", "promote", "lstm-v3", "--force", "--reason", "r")[0] == 0
    store = store_for(aifx.mlflow_uri)  # type: ignore[attr-defined]
    transition_stage(store.client, "aifx-lstm", "1", "Production")
    code, out, _ = aifx("models", "reconcile", "--dry-run")
    assert code == 0 and "1 disagreement(s) found, nothing changed (--dry-run)" in out
    assert "would be fixed by" in out and "Production → Staging" in out
    assert store.client.get_model_version("aifx-lstm", "1").current_stage == "Production"
    code, out, _ = aifx("models", "reconcile")
    assert code == 0 and "1 disagreement(s) fixed" in out and "Production → Staging" in out
    code, out, _ = aifx("models", "reconcile")
    assert code == 0 and "nothing to fix" in out


def test_archive_and_bad_input(aifx: Run) -> None:
    code, out, _ = aifx("models", "archive", "lstm-v2", "--reason", "superseded")
    assert code == 0 and "lstm-v2: staging → archived" in out
    code, _, err = aifx("models", "promote", "lstm-v1", "--margin", "2")
    assert code == 1 and "invalid --margin 2.0" in err
    code, _, err = aifx("models", "promote", "lstm-v1", "--reason", "why")
    assert code == 1 and "add --force" in err


def test_ab_commands(aifx: Run) -> None:
    assert aifx("models", "promote", "lstm-v1", "--force", "--reason", "r")[0] == 0
    code, out, err = aifx("ab", "create", "--name", "v2 vs v1", "--a", "lstm-v1", "--b", "lstm-v2")
    assert code == 0, err
    assert "started A/B test 'v2 vs v1'" in out and "20% to B" in out
    test_id = out.split("(")[1].split(")")[0]
    code, _, err = aifx("ab", "create", "--name", "again", "--a", "lstm-v1", "--b", "lstm-v3")
    assert code == 1 and "already active for lstm" in err
    code, out, _ = aifx("ab", "list", "--status", "active")
    assert code == 0 and test_id in out
    code, out, _ = aifx("ab", "metrics", test_id)
    assert code == 0 and "lstm-v2" in out and "decision: continue" in out
    code, out, _ = aifx("ab", "evaluate", test_id)
    assert code == 0 and "test is active" in out
    code, out, _ = aifx("ab", "complete", test_id, "--winner", "lstm-v2")
    assert code == 0 and "lstm-v2 in Production" in out
    code, out, _ = aifx("models", "list", "--status", "production")
    assert "lstm-v2" in out and "lstm-v1" not in out
    code, _, err = aifx("ab", "cancel", test_id)
    assert code == 1 and "already completed" in err
    code, _, err = aifx("ab", "metrics", "nope")
    assert code == 1 and "no A/B test 'nope'" in err


def test_the_signal_rule_a_version_shows() -> None:
    assert signal_rule({}) == "the global thresholds (no calibration of its own)"
    assert signal_rule({"buy_threshold": None, "sell_threshold": None}) == (
        "always hold: no edge over the baselines on held-out data"
    )
    assert signal_rule({"buy_threshold": 0.53, "sell_threshold": None}) == (
        "buy at calibrated P(up) ≥ 0.53, never sells"
    )


def test_promote_announces_the_deployment_on_the_stream_as_it_ends(
    aifx: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aifx_ml.events.consumers import read_stream
    from aifx_ml.events.relay import STREAM, redis_client
    from tests.conftest import REDIS_URL

    client = redis_client(REDIS_URL)
    newest = client.xrevrange(STREAM, count=1)
    before = newest[0][0].decode() if newest else "0-0"
    monkeypatch.setenv("AIFX_REDIS_URL", REDIS_URL)
    code, _, err = aifx("models", "promote", "lstm-v3", "--force", "--reason", "live")
    assert code == 0 and err == ""
    # On the stream when the command returns: no relay run by hand.
    events, _ = read_stream(client, after_id=before, channels=["ml:model_deployed"])
    assert [e.data["version"] for e in events] == ["lstm-v3"]
    client.close()
