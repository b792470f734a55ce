"""`aifx events relay / pending / tail` as a user meets them, against the real test Redis."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from aifx_ml.cli.main import main
from aifx_ml.db.engine import make_engine, transaction
from aifx_ml.events.outbox import enqueue_many
from aifx_ml.events.relay import STREAM
from tests.conftest import IN_CI, REDIS_URL
from tests.event_payloads import model_deployed

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def test_redis() -> Iterator[redis.Redis]:
    """The test Redis database, its `aifx:events` stream emptied before and after."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.delete(STREAM)
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"Redis unreachable in CI: {exc}")
        pytest.skip(f"Redis unreachable here ({exc}); it runs in CI")
    yield client
    client.delete(STREAM, *client.scan_iter(match=f"{STREAM}:sent:*", count=1000))
    client.close()


@pytest.fixture
def aifx(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Run:
    """Run `aifx ARGS` on a fresh database with three events waiting in its outbox."""
    monkeypatch.setenv("AIFX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AIFX_DATABASE_URL", db_url)
    monkeypatch.delenv("AIFX_REDIS_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no mlflow.env here: only the environment counts

    def run(*args: str, redis_url: str | None = None) -> tuple[int, str, str]:
        if redis_url is None:
            monkeypatch.delenv("AIFX_REDIS_URL", raising=False)
        else:
            monkeypatch.setenv("AIFX_REDIS_URL", redis_url)
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    assert run("db", "upgrade")[0] == 0
    engine = make_engine(db_url)
    with transaction(engine) as session:
        enqueue_many(session, [model_deployed(i) for i in range(3)], AS_OF)
    engine.dispose()
    return run


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_relay_and_pending(aifx: Run, test_redis: redis.Redis) -> None:
    code, out, _ = aifx("events", "pending")
    assert code == 0 and "3 event(s) waiting" in out and "not configured" in out

    code, out, _ = aifx("events", "relay")  # no Redis configured: they wait, and that is fine
    assert code == 0 and "not configured" in out and "3 event(s) waiting" in out

    code, out, err = aifx("events", "relay", redis_url=f"redis://127.0.0.1:{closed_port()}/15")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "3 event(s) waiting" in err
    code, out, _ = aifx("events", "pending")
    assert "1 attempt(s)" in out and "last error: ConnectionError" in out

    code, out, _ = aifx("events", "relay", "--batch-size", "2", redis_url=REDIS_URL)
    assert code == 0 and "published 3 event(s)" in out and "0 event(s) waiting" in out
    assert test_redis.xlen(STREAM) == 3
    code, out, _ = aifx("events", "pending")
    assert code == 0 and out.startswith("0 event(s) waiting in the outbox, 3 published")

    code, out, _ = aifx(
        "events", "tail", "--from-start", "--count", "3", "--json", redis_url=REDIS_URL
    )
    assert code == 0
    messages = [json.loads(line) for line in out.splitlines()]
    assert [m["data"] for m in messages] == [model_deployed(i).to_data() for i in range(3)]
    assert all(
        list(m) == ["id", "schema_version", "timestamp", "channel", "data"] for m in messages
    )
    assert {m["schema_version"] for m in messages} == {1}

    code, _, err = aifx("events", "tail", "--channel", "ml:nope", redis_url=REDIS_URL)
    assert code == 1 and "unknown event channel" in err
