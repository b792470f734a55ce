"""What one round of the prediction service's signal writer costs on PostgreSQL: CPU (this
process: SQLAlchemy, psycopg, the event payloads) and wall time per commit, for rounds of 1,
8 and 32 rows, committed as the writer does (`signals.store_absent_signal_rows`: one
autocommitted statement) and as it did before (a transaction: begin, `SET LOCAL
synchronous_commit`, the signal insert, the outbox insert, commit). Both run in turns, in
the same database, so that a machine that slows down weighs on both alike. Prints one JSON
object. Target: the one-statement round at most half the CPU of the transaction's, at 8 rows.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import Engine, text

from aifx_ml.db.engine import make_engine, transaction, upgrade
from aifx_ml.signals import insert_absent_signal_rows, store_absent_signal_rows

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
TARGET_CPU_RATIO_MAX = 0.5  # one statement / transaction, CPU per commit of 8 rows


def rows(n: int) -> list[dict[str, Any]]:
    """A round as the service builds it (`serving.predict._row`)."""
    now = datetime.now(UTC)
    return [
        {
            "id": uuid.uuid4(),
            "pair": "EUR/USD",
            "timeframe": "1h",
            "signal": "buy",
            "confidence": 0.2,
            "probability": 0.6,
            "entry_price": 1.1,
            "created_at": now,
            "actual_outcome": "pending",
            "model_version": "v1",
            "ab_test_id": None,
            "routing_key": f"k{i}",
            "verified": True,
        }  # fmt: skip
        for i in range(n)
    ]


def in_a_transaction(engine: Engine, batch: list[dict[str, Any]]) -> None:
    with transaction(engine) as session:
        session.execute(text("SET LOCAL synchronous_commit = off"))
        insert_absent_signal_rows(session, batch, batch[0]["created_at"])


def in_one_statement(engine: Engine, batch: list[dict[str, Any]]) -> None:
    store_absent_signal_rows(engine, batch, batch[0]["created_at"], synchronous=False)


def per_commit(
    commit: Callable[[Engine, list[dict[str, Any]]], None], engine: Engine, n: int, repeat: int
) -> tuple[float, float]:
    """CPU and wall milliseconds per commit of `n` rows (the rounds built beforehand)."""
    batches = [rows(n) for _ in range(repeat)]
    cpu, wall = time.process_time(), time.perf_counter()
    for batch in batches:
        commit(engine, batch)
    return (
        (time.process_time() - cpu) / repeat * 1000,
        (time.perf_counter() - wall) / repeat * 1000,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=200, help="commits per measurement")
    parser.add_argument("--turns", type=int, default=3, help="alternating turns of each way")
    args = parser.parse_args()
    name = f"aifx_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
    try:
        upgrade(engine)
        ways = {"transaction": in_a_transaction, "one_statement": in_one_statement}
        seen: dict[str, dict[int, list[tuple[float, float]]]] = {w: {} for w in ways}
        for commit in ways.values():  # warm: connections open, statements prepared
            per_commit(commit, engine, 8, 20)
        for _ in range(args.turns):
            for n in (1, 8, 32):
                for way, commit in ways.items():
                    seen[way].setdefault(n, []).append(per_commit(commit, engine, n, args.repeat))
        report: dict[str, Any] = {"benchmark": "signal_commit", "database": "postgresql"}
        for way, by_n in seen.items():
            report[way] = {
                f"rows_{n}": {
                    "cpu_ms_per_commit": round(min(c for c, _ in runs), 3),
                    "wall_ms_per_commit": round(min(w for _, w in runs), 3),
                }
                for n, runs in by_n.items()
            }
        ratio = (
            report["one_statement"]["rows_8"]["cpu_ms_per_commit"]
            / report["transaction"]["rows_8"]["cpu_ms_per_commit"]
        )
        report["cpu_ratio_rows_8"] = round(ratio, 3)
        report["turns"], report["commits_per_measurement"] = args.turns, args.repeat
        report["figure"] = "the best of the turns (the least disturbed by other work)"
        report["targets"] = {"cpu_ratio_rows_8_max": TARGET_CPU_RATIO_MAX}
        report["pass"] = {"cpu_ratio_rows_8_max": ratio <= TARGET_CPU_RATIO_MAX}
        print(json.dumps(report, indent=2))
    finally:
        engine.dispose()
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
