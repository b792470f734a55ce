"""Shared fixtures: real databases (SQLite always, PostgreSQL when reachable, required in CI).

Each database test gets a fresh database migrated to head: a SQLite file in tmp_path, or a
PostgreSQL database created for the test and dropped after it.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import psycopg
import pytest
import redis
from filelock import FileLock
from sqlalchemy import Engine, MetaData, select
from xdist.scheduler import LoadScopeScheduling

from aifx_ml.db.engine import make_engine, upgrade
from aifx_ml.events.relay import redis_client
from tests.tcp_proxy import CuttableProxy

# The replay tests' shared checks (assert_one_event_per_change) report like a test's own asserts.
pytest.register_assert_rewrite("tests.replay_world")

IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_ADMIN_DSN = os.environ.get(
    "AIFX_TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test"
)
# Each pytest-xdist worker (gw0, gw1, ...) takes a Redis database of its own, counting down from
# the one given (15 unless told), so that parallel tests never read each other's events.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
_REDIS_GIVEN = os.environ.get("AIFX_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
_REDIS_DB = int(redis.connection.parse_url(_REDIS_GIVEN).get("db", 0)) - _WORKER
REDIS_URL = urlsplit(_REDIS_GIVEN)._replace(path=f"/{_REDIS_DB}").geturl()
AS_OF = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
# MLflow draws a progress bar for every model download; in test logs it is only noise.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _postgres_error() -> str | None:
    try:
        with psycopg.connect(POSTGRES_ADMIN_DSN, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


def _redis_error() -> str | None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
        return None
    except redis.RedisError as exc:
        return str(exc)


def pytest_sessionstart(session: pytest.Session) -> None:
    """In CI the real services are part of the test: refuse to run without them."""
    if not IN_CI:
        return
    problems = [
        f"{name} unreachable: {error}"
        for name, error in (("PostgreSQL", _postgres_error()), ("Redis", _redis_error()))
        if error
    ]
    if problems:
        pytest.exit("CI=true but " + "; ".join(problems), returncode=3)


def pytest_configure(config: pytest.Config) -> None:
    """Refuse, before any worker starts, more workers than Redis databases for them."""
    workers = len(getattr(config.option, "tx", None) or ())
    if "PYTEST_XDIST_WORKER" not in os.environ and _REDIS_DB - (workers - 1) < 0:
        pytest.exit(
            f"{workers} workers need Redis databases {_REDIS_DB} down to {_REDIS_DB - workers + 1},"
            f" counting down from AIFX_TEST_REDIS_URL ({_REDIS_GIVEN}): run at most "
            f"{_REDIS_DB + 1} (TEST_WORKERS=N) or give a higher database number",
            returncode=4,
        )


# Every test that reads the session's replay (the `replay_store` fixture) lives in one of these.
SESSION_REPLAY_TESTS = ("tests/flows/test_replay_end_to_end.py", "tests/notebooks/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the tests marked `long` first, and keep the session's replay where it is shared.

    Under `pytest -n` (`make test`) the scheduler below hands out the session-replay tests as
    one unit and the long tests first, so that they overlap the rest of the suite instead of
    ending it.
    """
    for item in items:
        if "replay_store" in getattr(item, "fixturenames", ()) and not item.nodeid.startswith(
            SESSION_REPLAY_TESTS
        ):
            raise pytest.UsageError(
                f"{item.nodeid} reads the session's replay: move it to one of "
                f"{', '.join(SESSION_REPLAY_TESTS)}, so that the replay runs once per session"
            )
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Load balancing (xdist's `load`), but with the session-replay tests as one unit.

    The unit goes to one worker, which builds the replay once (each worker is a process with
    its own session fixtures). xdist's own `loadgroup` would do it from a mark, but with
    pytest 9.2 it cannot rename the tests it groups, so the unit is named here by path.
    """

    if config.getoption("dist") != "load":  # another --dist asked for: xdist's own
        return None

    class SessionReplayTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "session-replay" if nodeid.startswith(SESSION_REPLAY_TESTS) else nodeid

    return SessionReplayTogether(config, log)


# How much a worker lowers its CPU priority once it has moved on to the short tests (0 to 19).
SHORT_TESTS_NICENESS = int(os.environ.get("AIFX_TEST_NICENESS", "10"))
_NICED: list[int] = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Under `pytest -n`, let the long chains run first on the CPU as well as in the queue.

    The session's replay and the tests marked `long` are handed out first, one per worker, and
    decide when the suite ends; the short tests only fill the time around them. So a worker
    lowers its priority (and its subprocesses') once it moves on to a short test: on a busy
    machine the long chains then get the CPU they ask for and the short tests take the rest,
    where with equal priorities the session's replay ran ~1.5 times as long as alone. The
    order and the results of the tests are unchanged. A process can only lower its own priority,
    so this happens once per worker and stays; without -n nothing changes.
    """
    if (
        "PYTEST_XDIST_WORKER" in os.environ
        and not _NICED
        and not item.nodeid.startswith(SESSION_REPLAY_TESTS)
        and item.get_closest_marker("long") is None
    ):
        _NICED.append(os.nice(SHORT_TESTS_NICENESS))


_PG_ERROR: list[str | None] = []


def _postgres_database() -> Iterator[str]:
    if not _PG_ERROR:
        _PG_ERROR.append(_postgres_error())
    if _PG_ERROR[0] is not None:
        if IN_CI:
            pytest.fail(f"PostgreSQL unreachable in CI: {_PG_ERROR[0]}")
        pytest.skip(f"PostgreSQL unreachable here ({_PG_ERROR[0]}); it runs in CI")
    name = f"aifx_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    params = psycopg.conninfo.conninfo_to_dict(POSTGRES_ADMIN_DSN)
    user = params.get("user", "postgres")
    host, port = params.get("host", "127.0.0.1"), params.get("port", "5432")
    try:
        yield f"postgresql+psycopg://{user}@{host}:{port}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An empty database of each kind (not migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'aifx.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    """PostgreSQL alone, migrated: for what only PostgreSQL does."""
    for url in _postgres_database():
        eng = make_engine(url)
        upgrade(eng)
        yield eng
        eng.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A database of each kind, migrated to head."""
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def as_of() -> datetime:
    """The clock every test passes in: fixed, so results never depend on when tests run."""
    return AS_OF


def snapshot(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, sorted: two equal snapshots mean nothing changed."""
    meta = MetaData()
    meta.reflect(engine)
    out = {}
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            rows = conn.execute(select(table)).all()
            out[table.name] = sorted(tuple(map(repr, r)) for r in rows)
    return out


def hourly_candles(start: str, periods: int, price: float = 1.1, seed: int = 0) -> pd.DataFrame:
    """A small hourly random-walk series with consistent OHLC (weekend hours included)."""
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0, 0.001, periods)))
    open_ = np.concatenate([[price], close[:-1]])
    return pd.DataFrame(
        {
            "timestamp": pd.date_range(start, periods=periods, freq="1h", tz="UTC"),
            "open": open_,
            "high": np.maximum(open_, close) * 1.0005,
            "low": np.minimum(open_, close) * 0.9995,
            "close": close,
            "volume": rng.integers(10, 100, periods).astype(float),
        }
    )


# --- training: a migrated MLflow store per test, synthetic candles, a tiny model -------------

TRAIN_AS_OF = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)  # a Sunday, 01:00 UTC: the weekly slot


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store, migrated once: creating one costs seconds, copying none."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_uri(mlflow_template: Path, tmp_path: Path) -> str:
    """A fresh MLflow tracking and registry store for one test."""
    path = tmp_path / "mlflow.db"
    shutil.copy(mlflow_template, path)
    return f"sqlite:///{path}"


def tiny_training_config(**changes: Any) -> Any:
    """DESIGN.md's training with a model small enough for a test (seconds, not minutes)."""
    from aifx_ml.training.config import training_config

    values: dict[str, Any] = {
        "pairs": ["EUR/USD", "GBP/USD"],
        "days": 30,
        "epochs": 2,
        "batch_size": 64,
        "window": 8,
        "lstm_units": [4, 2],
        "dense_units": 2,
        "lock_timeout": 0.0,
    }
    values.update(changes)
    return training_config(**values)


def import_synthetic(engine: Engine, start: str = "2026-01-20", end: str = "2026-03-06") -> None:
    """Six weeks of hourly synthetic candles for EUR/USD and GBP/USD, with indicators."""
    from aifx_ml.data.importer import import_frame
    from aifx_ml.data.synth import synthesize_candles

    frames = synthesize_candles(
        ["EUR/USD", "GBP/USD"], "1h", pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC")
    )
    for pair, frame in frames.items():
        import_frame(engine, frame, pair, "1h", AS_OF, source="synthetic")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- Redis: the test database, and a cuttable proxy in front of it ---------------------------


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    """A client of the test Redis database (15)."""
    client = redis_client(REDIS_URL, timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"Redis unreachable in CI: {exc}")
        pytest.skip(f"Redis unreachable here ({exc}); it runs in CI")
    yield client
    client.close()


@pytest.fixture
def proxy() -> Iterator[CuttableProxy]:
    """A cuttable TCP proxy in front of the test Redis."""
    target = redis.connection.parse_url(REDIS_URL)
    with CuttableProxy((target.get("host", "127.0.0.1"), int(target.get("port", 6379)))) as p:
        yield p


@pytest.fixture
def behind_proxy(proxy: CuttableProxy) -> Iterator[redis.Redis]:
    """A fail-fast client of the test database that goes through the proxy."""
    db = redis.connection.parse_url(REDIS_URL).get("db", 0)
    client = redis_client(f"redis://127.0.0.1:{proxy.port}/{db}", timeout=2)
    yield client
    client.close()


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Three trained Staging versions, built once per session (see tests/registry_world.py).

    Under `pytest -n` the workers share one build: the first to ask trains it in the session's
    common temporary folder while the others wait on a file lock, then all read it (tests copy
    its stores; its model files are only read). A build that fails leaves nothing behind, so
    the next worker to ask tries again and fails the same way, with its own traceback.
    """
    from tests.registry_world import build_world, load_world, save_world

    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build_world(tmp_path_factory.mktemp("registry-world"))
    root = tmp_path_factory.getbasetemp().parent / "registry-world"
    with FileLock(f"{root}.lock"):
        if (built := load_world(root)) is not None:
            return built
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        try:
            return save_world(build_world(root))
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise


# --- Prefect and the replay: one temporary API and one short replay per session ---------------


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """One temporary Prefect API for the whole session (it takes ~14 s to start here)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def replay_store(tmp_path_factory: pytest.TempPathFactory, prefect_api: None) -> Any:
    """A short replay (tests/replay_world.py) run once through the real flows into a SQLite
    store of its own; read by the end-to-end tests and the notebooks."""
    from flows.replay import run_to_end
    from tests.replay_world import ReplayStore, short_params, store_settings, wall

    params = short_params()
    settings = store_settings(tmp_path_factory.mktemp("replay"))
    run = run_to_end(settings, params, "short-replay", wall=wall)
    assert run.status == "completed", run.error
    return ReplayStore(settings, params, run.name)


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Until `condition()` holds (another thread's work, seen from the test), or fail."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)
