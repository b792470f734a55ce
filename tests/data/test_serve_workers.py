"""`aifx serve --workers 2` as a user runs it: two uvicorn worker processes that each build the
app from the settings and answer over HTTP, and whose metrics add up in one scrape."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
AIFX = Path(sys.executable).parent / "aifx"
ASKED = 12


def served_list(text: str) -> float:
    """How many GET /api/v1/ml/ab-tests answered 200, read from a Prometheus scrape."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "aifx_http_request_duration_seconds_count" and sample.labels == {
                "method": "GET",
                "route": "/api/v1/ml/ab-tests",
                "status": "200",
            }:
                return sample.value
    return 0.0


def test_serve_with_two_workers_answers(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "AIFX_DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    for name in ("AIFX_DATABASE_URL", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(name, None)
    digest = hashlib.sha256(str(tmp_path.resolve()).encode()).hexdigest()[:12]
    metrics_dir = Path("/dev/shm") / f"aifx-prometheus-{digest}"  # where the command puts it
    server = subprocess.Popen(
        [str(AIFX), "serve", "--workers", "2", "--no-access-log", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # uvicorn's access log goes to stdout, the rest to stderr
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    both_started = threading.Event()

    def watch() -> None:
        # uvicorn says so once per worker; a refused app ends the process (EOF) instead.
        assert server.stdout is not None
        for line in server.stdout:
            lines.append(line)
            if sum("Application startup complete" in seen for seen in lines) == 2:
                both_started.set()
        both_started.set()  # EOF: the server ended

    threading.Thread(target=watch, daemon=True).start()
    try:
        # A deadline, not a hang: workers that never start (uvicorn killing and respawning
        # them) fail the test.
        both_started.wait(timeout=240)
        started = sum("Application startup complete" in line for line in lines)
        assert started == 2, "".join(lines[-20:])
        assert not [line for line in lines if "died" in line], "".join(lines)
        for _ in range(ASKED):  # a connection each: the kernel hands them to either worker
            reply = httpx.get(f"http://127.0.0.1:{port}/api/v1/ml/ab-tests", timeout=30)
            assert reply.status_code == 200
            assert reply.json() == {"tests": []}
        # Whichever worker answers a scrape, it counts every worker's requests
        # (prometheus_client's multiprocess mode, in shared memory: the command says where).
        for _ in range(4):
            scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
            assert scrape.status_code == 200
            assert served_list(scrape.text) == ASKED
        assert str(metrics_dir) in " ".join(lines).replace("\n", " ")  # the command says where
        assert list(metrics_dir.glob("histogram_*.db"))
        # --no-access-log: uvicorn wrote no line per request (the proxy in front logs them).
        assert not [line for line in lines if "GET /api/v1/ml/ab-tests" in line], "".join(lines)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    assert not metrics_dir.exists()  # removed as the command ended
