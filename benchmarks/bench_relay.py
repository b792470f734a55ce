"""Benchmark: outbox relay throughput, events/s from the outbox table to Redis.

For each database (a SQLite file always; PostgreSQL when reachable) and each batch size:
enqueue N events in one transaction, then time `relay_events` publishing them all (PUBLISH
plus XADD per event, one pipeline and one UPDATE per batch) to a Redis stream of its own.
Checks that the stream got every event once, in the order written, and that nothing is left
pending. Prints one JSON object; exits 1 if a check fails.

    .venv/bin/python benchmarks/bench_relay.py [--events N] [--batch-sizes 500,1000,5000]
        [--redis-url URL] [--postgres-dsn DSN] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import redis
import sqlalchemy
from sqlalchemy import Engine, delete, func, select

from aifx_ml.db.engine import make_engine, transaction, upgrade
from aifx_ml.db.models import EventOutbox
from aifx_ml.events.consumers import read_stream
from aifx_ml.events.outbox import enqueue_many
from aifx_ml.events.relay import count_pending, redis_client, relay_events
from aifx_ml.events.schemas import NewPrediction

TARGET_EVENTS_PER_S = 5_000
AS_OF = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def signal_events(n: int) -> list[NewPrediction]:
    """`ml:new_prediction` payloads like the ones `record_signals` writes."""
    return [
        NewPrediction(
            signal_id=uuid.UUID(int=i),
            pair="EUR/USD",
            timeframe="1h",
            signal=("buy", "sell", "hold")[i % 3],
            confidence=0.5 + (i % 50) / 100,
            entry_price=1.1 + i * 1e-6,
            created_at=AS_OF + timedelta(hours=i),
            model_version="lstm-20261124",
            ab_test_id=None,
        )
        for i in range(n)
    ]


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="aifx-bench-") as folder:
        yield f"sqlite:///{Path(folder) / 'aifx.db'}"


@contextmanager
def postgres_database(dsn: str) -> Iterator[str]:
    name = f"aifx_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    host, port = params.get("host", "127.0.0.1"), params.get("port", "5432")
    try:
        yield f"postgresql+psycopg://{params.get('user', 'postgres')}@{host}:{port}/{name}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_error(dsn: str) -> str | None:
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


def measure(
    engine: Engine, client: redis.Redis, payloads: list[NewPrediction], batch_size: int
) -> dict[str, Any]:
    """Enqueue, relay, check; returns the figures of one run."""
    with transaction(engine) as session:
        session.execute(delete(EventOutbox))
    started = time.perf_counter()
    with transaction(engine) as session:
        enqueue_many(session, payloads, AS_OF)
    enqueue_s = time.perf_counter() - started

    stream = f"bench:aifx:events:{uuid.uuid4().hex[:12]}"
    try:
        started = time.perf_counter()
        report = relay_events(
            engine, client, now=lambda: AS_OF, batch_size=batch_size, stream=stream, maxlen=None
        )
        relay_s = time.perf_counter() - started
        events, _ = read_stream(client, stream=stream, count=len(payloads) + 1)
    finally:
        client.delete(stream)
    with engine.connect() as conn:
        written = [str(i) for i in conn.scalars(select(EventOutbox.id).order_by(EventOutbox.seq))]
        attempts = conn.scalar(select(func.max(EventOutbox.attempts)))
    checks = {
        "all_published": report.published == len(payloads) and count_pending(engine) == 0,
        "stream_in_order_once": [e.id for e in events] == written,
        "one_attempt_each": attempts == 1,
        "no_error": report.error is None,
    }
    return {
        "events": len(payloads),
        "batch_size": batch_size,
        "batches": report.batches,
        "relay_s": round(relay_s, 3),
        "events_per_s": round(len(payloads) / relay_s),
        "enqueue_events_per_s": round(len(payloads) / enqueue_s),
        "checks": checks,
    }


def bench_database(
    url: str,
    client: redis.Redis,
    payloads: list[NewPrediction],
    batch_sizes: list[int],
    repeat: int,
) -> list[dict[str, Any]]:
    """The best of `repeat` runs per batch size on one database."""
    engine = make_engine(url)
    try:
        upgrade(engine)
        results = []
        for batch_size in batch_sizes:
            runs = [measure(engine, client, payloads, batch_size) for _ in range(repeat)]
            best = max(runs, key=lambda r: r["events_per_s"])
            best["checks"] = {k: all(r["checks"][k] for r in runs) for k in best["checks"]}
            best["pass"] = best["events_per_s"] >= TARGET_EVENTS_PER_S
            results.append(best)
        return results
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch-sizes", default="500,1000,5000")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--redis-url", default=os.environ.get("AIFX_REDIS_URL", "redis://127.0.0.1:6379/15")
    )
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get(
            "AIFX_TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test"
        ),
    )
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    payloads = signal_events(args.events)
    client = redis_client(args.redis_url)
    client.ping()

    databases: dict[str, Any] = {}
    with sqlite_database() as url:
        databases["sqlite"] = bench_database(url, client, payloads, batch_sizes, args.repeat)
    pg_error = postgres_error(args.postgres_dsn)
    if pg_error is None:
        with postgres_database(args.postgres_dsn) as url:
            databases["postgresql"] = bench_database(
                url, client, payloads, batch_sizes, args.repeat
            )
    else:
        databases["postgresql"] = {"skipped": pg_error}
    client.close()

    runs = [r for results in databases.values() if isinstance(results, list) for r in results]
    correct = all(all(r["checks"].values()) for r in runs)
    info = redis.Redis.from_url(args.redis_url).info("server")
    print(
        json.dumps(
            {
                "benchmark": "relay",
                "target_events_per_s": TARGET_EVENTS_PER_S,
                "databases": databases,
                "pass": correct and all(r["pass"] for r in runs),
                "correct": correct,
                "environment": {
                    "python": platform.python_version(),
                    "sqlalchemy": sqlalchemy.__version__,
                    "redis_py": redis.__version__,
                    "redis_server": info.get("redis_version"),
                    "cpus": os.cpu_count(),
                },
            },
            indent=2,
        )
    )
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())
