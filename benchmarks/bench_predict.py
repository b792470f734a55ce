"""`POST /api/v1/predict` over loopback, as a client sees it, next to the bare model call.

A uvicorn server (its own process) serves two registered versions of the DESIGN.md LSTM
(window 60) in an active A/B test, recording every signal in PostgreSQL (SQLite if no
PostgreSQL is reachable, which the report says). Concurrent clients send a fixed number of
requests with fresh routing keys; the report gives p50 / p99 latency and requests/s, and the
bare `tf.function` call of the same model on the same input. Prints one JSON object.
Then, in the same run, one client's latency with Production alone and with the challenger
shadowing every request (a shadow test). Targets on a 2-core machine: p50 <= 2 x bare,
p99 <= 25 ms, >= 150 requests/s; with a shadow test, p50 <= 1.3 x Production alone.
Last, `aifx serve --workers 2` loaded by wrk (16 connections, then one): >= 1,000
requests/s with p99 <= 50 ms, one connection's p50 <= 1.5 x bare (issue 15).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import psycopg  # noqa: E402

from aifx_ml.data.importer import import_frame  # noqa: E402
from aifx_ml.data.synth import synthesize_candles  # noqa: E402
from aifx_ml.db.engine import make_engine, upgrade  # noqa: E402

SERVER_MS: list[float] = []  # the server's own time in the handler (Server-Timing)
ANSWERED: dict[str, float] = {}  # signal id -> wall time (s) its answer arrived
REDIS_URL = os.environ.get("AIFX_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
TARGETS = {
    "p50_vs_bare_max": 2.0,
    "p99_ms_max": 25.0,
    "requests_per_s_min": 150.0,
    "shadow_p50_vs_champion_only_max": 1.3,
    "answer_to_stream_p99_ms_max": 1000.0,
    "first_after_ready_vs_p50_max": 2.0,
    "workers2_requests_per_s_min": 1000.0,
    "workers2_p99_ms_max": 50.0,
    "one_connection_p50_vs_bare_max": 1.5,
}
ADMIN_DSN = os.environ.get(
    "AIFX_TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test"
)
PAIRS = ["EUR/USD", "GBP/USD", "USD/JPY"]
# The wall clock's current hour: `aifx serve --workers 2` (the 2-worker phase) serves on the
# wall clock, so the candles must end now for its answers to be fresh ones.
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
AIFX = Path(sys.executable).parent / "aifx"
# As the README's production path runs it: behind a proxy that logs the requests.
SERVE_ARGS = ["--workers", "2", "--no-access-log"]
# wrk (Debian's package) sends the 2-worker phase's requests: a compiled client, so the
# load generator does not take the server's cores (as the Python client of the 1-process
# phases does). Each request a fresh routing key, the pairs in turn.
WRK_SCRIPT = """
local pairs = {"EUR/USD", "GBP/USD", "USD/JPY"}
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  local body = string.format('{"pair": "%s", "timeframe": "1h", "routing_key": "w%d-%d"}',
    pairs[n % 3 + 1], math.random(1000000000), n)
  return wrk.format(nil, nil, nil, body)
end
"""


def database(work: Path) -> tuple[str, str | None]:
    """A fresh PostgreSQL database (and its name, to drop), else a SQLite file."""
    try:
        name = f"aifx_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        params = psycopg.conninfo.conninfo_to_dict(ADMIN_DSN)
        user, host = params.get("user", "postgres"), params.get("host", "127.0.0.1")
        url = f"postgresql+psycopg://{user}@{host}:{params.get('port', '5432')}/{name}"
        return url, name
    except psycopg.Error:
        return f"sqlite:///{work / 'aifx.db'}", None


def prepare(db_url: str, mlflow_uri: str, artifacts: str, late: int = 0) -> tuple[str, str]:
    """Candles up to NOW (`late` hours fewer: a late feed), two LSTM versions (v1 Production,
    v2 Staging) in an A/B test."""
    from aifx_ml.abtest.store import create_test  # noqa: PLC0415
    from aifx_ml.models.calibration import Platt, Thresholds  # noqa: PLC0415
    from aifx_ml.models.lstm import LSTMConfig  # noqa: PLC0415
    from tests.serving_helpers import register_model  # noqa: PLC0415

    engine = make_engine(db_url)
    upgrade(engine)
    frames = synthesize_candles(
        PAIRS,
        "1h",
        pd.Timestamp(NOW - timedelta(days=20)),
        pd.Timestamp(NOW - timedelta(hours=1 + late)),
    )
    for pair, frame in frames.items():
        import_frame(engine, frame, pair, "1h", NOW, source="bench")
    config = LSTMConfig()  # DESIGN.md's LSTM, window 60
    # As a full training registers them: calibrated, with thresholds of their own, so the
    # measured path applies both.
    own = {
        "calibration": Platt(1.3, 0.0),
        "thresholds": Thresholds(0.53, 0.47, 0.6, 0.6, 0.5, 0.5, 0.0, 30, 400),
    }
    a = register_model(
        engine, mlflow_uri, artifacts, NOW, config, seed=1, status="production", **own
    )
    b = register_model(engine, mlflow_uri, artifacts, NOW, config, seed=2, **own)
    create_test(
        engine, name="bench", model_a_version=a, model_b_version=b, traffic_split=0.5, as_of=NOW
    )
    engine.dispose()
    return a, b


def set_test(db_url: str, a: str, b: str, mode: str | None) -> None:
    """End the active test; with `mode`, start a test of that mode (A = a, B = b)."""
    from aifx_ml.abtest.store import active_test, cancel_test, create_test  # noqa: PLC0415

    engine = make_engine(db_url)
    running = active_test(engine, "lstm")
    if running is not None:
        cancel_test(engine, running.id, as_of=NOW, reason="bench: next phase")
    if mode is not None:
        create_test(
            engine, name=f"bench {mode}", model_a_version=a, model_b_version=b,
            traffic_split=None if mode == "shadow" else 0.5, as_of=NOW, mode=mode,
        )  # fmt: skip
    engine.dispose()


def shadow_phases(
    port: int, db_url: str, a: str, b: str, requests: int, warmup: int, rounds: int
) -> dict[str, dict[str, float]]:
    """One client's latency with Production alone and with B shadowing every request, in
    `rounds` alternating blocks of each (after a warm-up per block: the server re-reads who
    serves every 2 s, and new models load on the first requests), so that a machine that
    slows down or speeds up during the run weighs on both paths alike."""
    seen: dict[str, tuple[list[float], float, int]] = {
        "champion_only": ([], 0.0, 0),
        "shadow": ([], 0.0, 0),
    }
    for _ in range(rounds):
        for phase, mode in (("champion_only", None), ("shadow", "shadow")):
            set_test(db_url, a, b, mode)
            time.sleep(2.5)
            load(port, warmup, 1)
            latencies, wall, errors = load(port, requests // rounds, 1)
            before = seen[phase]
            seen[phase] = (before[0] + latencies, before[1] + wall, before[2] + errors)
    out = {}
    for phase, (latencies, wall, errors) in seen.items():
        ms = np.array(latencies) * 1000
        out[phase] = {
            "requests": len(latencies),
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "requests_per_s": round(len(latencies) / wall, 1),
            "errors": errors,
        }
    return out


def bare_call(
    db_url: str, mlflow_uri: str, artifacts: str, version: str, repeat: int
) -> dict[str, float]:
    """Median seconds of the model call on one window: as the service makes it (compiled
    with XLA), and on the traced graph alone (what it did before XLA, for comparison)."""
    from aifx_ml.models.versions import get_version  # noqa: PLC0415
    from aifx_ml.serving.forward import Forward  # noqa: PLC0415
    from aifx_ml.serving.inference import compile_model  # noqa: PLC0415
    from registry.mlflow_store import MlflowModelStore  # noqa: PLC0415

    engine = make_engine(db_url)
    row = get_version(engine, version)
    loaded = MlflowModelStore(mlflow_uri, mlflow_uri, artifacts).load(row)
    model = compile_model(loaded.model, loaded.card, row)
    x = (
        np.random.default_rng(0)
        .normal(size=(1, model.window, len(model.features)))
        .astype(np.float32)
    )
    forward = model._call
    assert isinstance(forward, Forward)
    forward.warm([1])  # as a service is once its first requests have been answered
    out = {}
    for name, call in (("xla", model.p_up), ("graph", forward.traced)):
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            call(x)
            times.append(time.perf_counter() - started)
        out[name] = float(np.median(times))
    engine.dispose()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    code = (
        "import uvicorn; from datetime import datetime; from aifx_ml.config import load_settings;"
        "from aifx_ml.cli.serve import build_app;"
        f"now = datetime.fromisoformat({NOW.isoformat()!r});"
        "app = build_app(load_settings(), now=lambda: now, refresh_seconds=5.0, preload=True);"
        f"uvicorn.run(app, host='127.0.0.1', port={port}, log_level='warning', access_log=False)"
    )
    return subprocess.Popen([sys.executable, "-c", code], env=env)


def load(port: int, requests: int, clients: int) -> tuple[list[float], float, int]:
    """Send `requests` predictions from `clients` threads; latencies, wall seconds, errors."""
    latencies: list[float] = []
    server_ms: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                body = {"pair": PAIRS[i % len(PAIRS)], "timeframe": "1h", "routing_key": f"k{i}"}
                started = time.perf_counter()
                response = http.post("/api/v1/predict", json=body)
                elapsed = time.perf_counter() - started
                answered = time.time()
                timing = response.headers.get("server-timing", "dur=nan").split("dur=")[-1]
                with lock:
                    if response.status_code == 200:
                        ANSWERED[response.json()["signal_id"]] = answered
                    latencies.append(elapsed)
                    server_ms.append(float(timing))
                    if response.status_code != 200:
                        errors[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    SERVER_MS.extend(server_ms)
    return latencies, time.perf_counter() - started, errors[0]


def to_stream(client: Any, signal_ids: set[str]) -> dict[str, float]:
    """Seconds from each answer (received by the client) to its ml:new_prediction entry on
    the stream (Redis' clock, same host): an upper bound of commit-to-stream, the commit
    following the answer."""
    from aifx_ml.events.consumers import read_stream  # noqa: PLC0415

    delays, after = [], "0-0"
    deadline = time.monotonic() + 30
    seen: set[str] = set()
    while len(seen) < len(signal_ids) and time.monotonic() < deadline:
        events, after = read_stream(
            client, after_id=after, channels=["ml:new_prediction"], block_ms=500
        )
        for e in events:
            sid = str(e.data.get("signal_id"))
            if sid in signal_ids and sid not in seen:
                seen.add(sid)
                added_ms = int(e.stream_id.split("-")[0])
                delays.append(added_ms / 1000 - ANSWERED[sid])
    ms = np.array(delays) * 1000
    return {
        "events": len(delays),
        "missing": len(signal_ids) - len(delays),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else float("nan"),
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else float("nan"),
        "max_ms": round(float(ms.max()), 1) if len(ms) else float("nan"),
    }


def wrk_run(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    """One wrk run: requests/s, latency percentiles (ms), non-2xx answers and socket errors."""
    threads = min(connections, 2)
    done = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s",
         str(script), url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    out = done.stdout

    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    pct = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.M))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "connections": connections,
        "seconds": seconds,
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        **{f"p{k}_ms": round(ms(v), 3) for k, v in pct.items()},
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
    }


def workers_pass(workers: dict[str, Any], bare_ms: float) -> dict[str, bool | None]:
    """The 2-worker targets (None: the phase did not run)."""
    if "loaded" not in workers:
        return dict.fromkeys(
            ("workers2_requests_per_s_min", "workers2_p99_ms_max", "one_connection_p50_vs_bare_max")
        )
    loaded, one = workers["loaded"], workers["one"]
    workers["one"]["p50_vs_bare"] = round(one["p50_ms"] / bare_ms, 3)
    clean = loaded["non_2xx"] == 0 and loaded["socket_errors"] == 0
    return {
        "workers2_requests_per_s_min": clean
        and loaded["requests_per_s"] >= TARGETS["workers2_requests_per_s_min"],
        "workers2_p99_ms_max": loaded["p99_ms"] <= TARGETS["workers2_p99_ms_max"],
        "one_connection_p50_vs_bare_max": one["p50_ms"] / bare_ms
        <= TARGETS["one_connection_p50_vs_bare_max"],
    }


def two_workers(env: dict[str, str], work: Path, connections: int, seconds: int) -> dict[str, Any]:
    """`aifx serve --workers 2` as a user starts it, loaded by wrk: 16 connections for
    throughput, then one connection for latency without queueing."""
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    port = free_port()
    server = subprocess.Popen(
        [str(AIFX), "serve", *SERVE_ARGS, "--port", str(port)],
        env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline, ready_in_a_row = time.monotonic() + 240, 0
        while ready_in_a_row < 20:  # both workers ready (a connection each lands on either)
            try:
                ok = httpx.get(f"{base}/api/v1/monitoring/ready", timeout=5).status_code == 200
            except httpx.HTTPError:
                ok = False
            ready_in_a_row = ready_in_a_row + 1 if ok else 0
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("aifx serve --workers 2 did not come up")
            time.sleep(0.05 if ok else 0.2)
        script = work / "predict.lua"
        script.write_text(WRK_SCRIPT)
        url = f"{base}/api/v1/predict"
        wrk_run(url, script, connections, 3)  # warm-up: every batch size compiled in both
        loaded = wrk_run(url, script, connections, seconds)
        one = wrk_run(url, script, 1, seconds)
        server_line = " ".join(["aifx serve", *SERVE_ARGS])
        return {"server": server_line, "client": "wrk", "loaded": loaded, "one": one}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=8, help="for the throughput phase")
    parser.add_argument("--latency-requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--no-events",
        action="store_true",
        help="Serve without Redis (events wait in the outbox), to see what relaying costs.",
    )
    parser.add_argument(
        "--shadow-rounds", type=int, default=4, help="alternating blocks of each shadow phase"
    )
    parser.add_argument("--wrk-connections", type=int, default=16, help="2-worker phase")
    parser.add_argument("--wrk-seconds", type=int, default=10, help="2-worker phase, per run")
    parser.add_argument("--workers-only", action="store_true", help="only the 2-worker phase")
    parser.add_argument(
        "--late",
        type=int,
        default=0,
        help="the candles end this many hours before the newest closed one (a late feed, as "
        "every FX weekend): the service cannot know from the grid that it has the newest",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="aifx-bench-predict-"))
    db_url, pg_name = database(work)
    server = None
    try:
        mlflow_uri = f"sqlite:///{work / 'mlflow.db'}"
        artifacts = str(work / "artifacts")
        a, b = prepare(db_url, mlflow_uri, artifacts, args.late)
        bares = bare_call(db_url, mlflow_uri, artifacts, a, 300)
        bare = bares["xla"]
        env = {
            **os.environ,
            "AIFX_DATABASE_URL": db_url,
            "MLFLOW_TRACKING_URI": mlflow_uri,
            "AIFX_DATA_DIR": str(work / "data"),
            "AIFX_REDIS_URL": "" if args.no_events else REDIS_URL,
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        }
        if args.workers_only:  # the 2-worker phase alone (quicker, while tuning it)
            set_test(db_url, a, b, "split")
            workers = two_workers(env, work, args.wrk_connections, args.wrk_seconds)
            print(json.dumps({
                "benchmark": "predict_http_workers",
                "feed_late_hours": args.late,
                "bare_model_call_ms": round(bare * 1000, 3),
                "workers2": workers,
                "targets": TARGETS,
                "pass": workers_pass(workers, bare * 1000),
            }, indent=2))  # fmt: skip
            return
        port = free_port()
        from aifx_ml.events.relay import STREAM, redis_client  # noqa: PLC0415

        redis = redis_client(REDIS_URL)
        redis.delete(STREAM)  # this run's events only
        server = serve(env, port)
        deadline = time.monotonic() + 120
        while True:  # until the service says it is ready (versions loaded and compiled)
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v1/monitoring/ready").raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not come up") from None
                time.sleep(0.05)
        # The client exists before the clock starts (building an httpx client costs ~20 ms of
        # its own, which stop 25's figure of 37 ms included); its connection does not: the
        # first request connects, as a new caller's does.
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as first_client:
            started = time.perf_counter()
            first = first_client.post("/api/v1/predict", json={"pair": PAIRS[0], "timeframe": "1h"})
            first_ms = (time.perf_counter() - started) * 1000
        first.raise_for_status()
        first_handler_ms = float(first.headers["server-timing"].split("dur=")[-1])
        load(port, args.warmup, args.clients)
        # Latency as one client sees it (no queueing behind other clients), then throughput
        # with concurrent clients (latency there is mostly waiting: clients / throughput).
        SERVER_MS.clear()
        single, single_wall, single_errors = load(port, args.latency_requests, 1)
        handler_p50 = float(np.nanpercentile(SERVER_MS, 50))
        ANSWERED.clear()
        latencies, wall, errors = load(port, args.requests, args.clients)
        # Events of the throughput phase: how soon after its answer each reached the stream.
        stream_delays = to_stream(redis, set() if args.no_events else set(ANSWERED))
        # The shadow's cost, in the same run: Production alone and Production with B
        # shadowing every request, in alternating blocks.
        paths = shadow_phases(
            port, db_url, a, b, args.latency_requests, args.warmup // 4, args.shadow_rounds
        )
        shadow_ratio = paths["shadow"]["p50_ms"] / paths["champion_only"]["p50_ms"]
        # Two worker processes, loaded by a compiled client, under the same split test. The
        # one-process server stops first: the two phases do not share the cores.
        set_test(db_url, a, b, "split")
        server.terminate()
        server.wait(timeout=30)
        server = None
        workers = two_workers(env, work, args.wrk_connections, args.wrk_seconds)
        one = np.array(single) * 1000
        ms = np.array(latencies) * 1000
        p50, p99 = float(np.percentile(one, 50)), float(np.percentile(one, 99))
        rps = len(latencies) / wall
        report: dict[str, Any] = {
            "benchmark": "predict_http",
            "database": "postgresql" if pg_name else "sqlite",
            "ab_test_active": True,
            "feed_late_hours": args.late,
            "bare_model_call_ms": round(bare * 1000, 3),
            "bare_graph_call_ms": round(bares["graph"] * 1000, 3),
            "latency": {
                "clients": 1,
                "requests": len(single),
                "p50_ms": round(p50, 3),
                "p90_ms": round(float(np.percentile(one, 90)), 3),
                "p99_ms": round(p99, 3),
                "requests_per_s": round(len(single) / single_wall, 1),
                "p50_vs_bare": round(p50 / (bare * 1000), 3),
                "handler_p50_ms": round(handler_p50, 3),
                "first_after_ready_ms": round(first_ms, 3),
                "first_after_ready_handler_ms": round(first_handler_ms, 3),
                "first_after_ready_vs_p50": round(first_ms / p50, 2),
            },
            "throughput": {
                "clients": args.clients,
                "requests": len(latencies),
                "requests_per_s": round(rps, 1),
                "p50_ms": round(float(np.percentile(ms, 50)), 3),
                "p99_ms": round(float(np.percentile(ms, 99)), 3),
            },
            "events": {
                "relay": "aifx serve's relay loop, woken by each commit that writes events",
                "requests_per_s": round(rps, 1),
                "answer_to_stream": stream_delays,
            },
            "shadow": {
                **paths,
                "p50_shadow_vs_champion_only": round(shadow_ratio, 3),
            },
            "workers2": workers,
            "errors": errors + single_errors + sum(int(p["errors"]) for p in paths.values()),
            "targets": TARGETS,
            "pass": {
                "p50_vs_bare_max": p50 / (bare * 1000) <= TARGETS["p50_vs_bare_max"],
                "p99_ms_max": p99 <= TARGETS["p99_ms_max"],
                "requests_per_s_min": rps >= TARGETS["requests_per_s_min"],
                "shadow_p50_vs_champion_only_max": shadow_ratio
                <= TARGETS["shadow_p50_vs_champion_only_max"],
                "answer_to_stream_p99_max": args.no_events
                or (
                    stream_delays["p99_ms"] <= TARGETS["answer_to_stream_p99_ms_max"]
                    and stream_delays["missing"] == 0
                ),
                "first_after_ready_vs_p50_max": first_ms / p50
                <= TARGETS["first_after_ready_vs_p50_max"],
                "no_errors": errors + single_errors + sum(p["errors"] for p in paths.values()) == 0,
                **workers_pass(workers, bare * 1000),
            },
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        }
        print(json.dumps(report, indent=2))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if pg_name:
            with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
