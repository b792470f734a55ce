"""Benchmark: `import_csv` of a ~200 MB candle CSV — rows/s and peak resident memory.

Writes one long hourly series (EUR/USD, 3,750,000 candles from 1700-01-01, unbroken grid,
ISO timestamps, about 214 MB) into a temporary folder, creates a fresh SQLite store (and a
PostgreSQL database with `--postgres DSN`), then imports the file in a child process and
reads that child's peak RSS from `os.wait4` (so generating the file is not counted). With
`--reimport` (the default) the same file is imported a second time in a fresh child: it must
change nothing. Prints one JSON object; exits 1 if a check fails.

    .venv/bin/python benchmarks/bench_import.py [--rows 3750000] [--postgres DSN]
        [--no-reimport] [--memory-limit-gb 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from aifx_ml.data.importer import import_csv
from aifx_ml.db.engine import make_engine, upgrade

TARGET_PEAK_MB = 1536
START = "1700-01-01"  # 3.75 M hours is 428 years: the series must start early to end by AS_OF
AS_OF = datetime(2130, 1, 1, tzinfo=UTC)


def write_candles_csv(path: Path, rows: int) -> int:
    """An hourly log random walk with consistent OHLC; returns the file size in bytes."""
    rng = np.random.default_rng(0)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0, 0.001, rows)))
    open_ = np.concatenate([[1.1], close[:-1]])
    body_high, body_low = np.maximum(open_, close), np.minimum(open_, close)
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range(START, periods=rows, freq="1h").strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "open": open_,
            "high": body_high * (1 + rng.uniform(0, 5e-4, rows)),
            "low": body_low * (1 - rng.uniform(0, 5e-4, rows)),
            "close": close,
            "volume": rng.integers(10, 5000, rows),
        }
    )
    # Prices rounded to 5 decimals as vendors write them; keep OHLC consistent after rounding.
    for column in ("open", "close"):
        frame[column] = frame[column].round(5)
    frame["high"] = np.maximum(frame["high"].round(5), frame[["open", "close"]].max(axis=1))
    frame["low"] = np.minimum(frame["low"].round(5), frame[["open", "close"]].min(axis=1))
    frame.to_csv(path, index=False, float_format="%.5f")
    return path.stat().st_size


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


def child(csv: Path, url: str) -> None:
    """Import the file once and print the report as JSON (runs in its own process)."""
    engine = make_engine(url)
    started = time.perf_counter()
    report = import_csv(engine, csv, "EUR/USD", "1h", AS_OF)
    seconds = time.perf_counter() - started
    engine.dispose()
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "rows_read": report.rows_read,
                "inserted": report.inserted,
                "updated": report.updated,
                "duplicates": report.duplicates,
                "quarantined": report.quarantined,
            }
        )
    )


def run_child(csv: Path, url: str, memory_limit_gb: float | None) -> dict[str, Any]:
    """One import in a child process: its report, wall time and peak RSS (MB)."""

    def limit() -> None:  # a runaway import must not take the shared machine down
        if memory_limit_gb:
            size = int(memory_limit_gb * 1024**3)
            resource.setrlimit(resource.RLIMIT_DATA, (size, size))

    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", str(csv), url],
        stdout=subprocess.PIPE,
        preexec_fn=limit,  # noqa: PLW1509 (this process starts no threads)
        env=os.environ.copy(),
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        return {"error": f"child exited with {proc.returncode}", "peak_rss_mb": None}
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux: kilobytes
    result["rows_per_s"] = round(result["rows_read"] / result["seconds"])
    print(json.dumps(result), file=sys.stderr)  # progress: a run can take minutes
    return result


def bench_database(
    name: str, url: str, csv: Path, rows: int, reimport: bool, memory_limit_gb: float | None
) -> dict[str, Any]:
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    out: dict[str, Any] = {"database": name, "first": run_child(csv, url, memory_limit_gb)}
    first = out["first"]
    checks = {"first_inserted_all": first.get("inserted") == rows}
    if reimport and "error" not in first:
        out["again"] = again = run_child(csv, url, memory_limit_gb)
        checks["again_changes_nothing"] = (
            again.get("inserted"),
            again.get("updated"),
            again.get("duplicates"),
            again.get("quarantined"),
        ) == (0, 0, rows, 0)
    peaks = [r["peak_rss_mb"] for r in (first, out.get("again", first)) if r.get("peak_rss_mb")]
    out["checks"] = checks
    out["pass"] = bool(peaks) and max(peaks) < TARGET_PEAK_MB and all(checks.values())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_750_000)
    parser.add_argument("--postgres", metavar="DSN", default=None)
    parser.add_argument("--no-reimport", dest="reimport", action="store_false")
    parser.add_argument("--memory-limit-gb", type=float, default=None)
    parser.add_argument("--child", nargs=2, metavar=("CSV", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1])
        return 0

    with tempfile.TemporaryDirectory(prefix="aifx-bench-import-") as folder:
        csv = Path(folder) / "EURUSD_1h.csv"
        started = time.perf_counter()
        size = write_candles_csv(csv, args.rows)
        results: dict[str, Any] = {
            "benchmark": "import_csv",
            "python": platform.python_version(),
            "pandas": pd.__version__,
            "file": {
                "rows": args.rows,
                "mb": round(size / 1024**2, 1),
                "series": "EUR/USD 1h, one series",
                "written_s": round(time.perf_counter() - started, 1),
            },
            "target_peak_rss_mb": TARGET_PEAK_MB,
            "runs": [],
        }
        sqlite_url = f"sqlite:///{Path(folder) / 'aifx.db'}"
        results["runs"].append(
            bench_database(
                "sqlite", sqlite_url, csv, args.rows, args.reimport, args.memory_limit_gb
            )
        )
        if args.postgres:
            with postgres_database(args.postgres) as pg_url:
                results["runs"].append(
                    bench_database(
                        "postgresql", pg_url, csv, args.rows, args.reimport, args.memory_limit_gb
                    )
                )
    print(json.dumps(results, indent=2))  # noqa: T201
    return 0 if all(all(r["checks"].values()) for r in results["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
