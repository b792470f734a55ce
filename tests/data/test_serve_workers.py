"""`aifx serve --workers 2` as a user runs it: two uvicorn worker processes that each build the
app from the settings and answer over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
AIFX = Path(sys.executable).parent / "aifx"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_with_two_workers_answers(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "AIFX_DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    for name in ("AIFX_DATABASE_URL", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(name, None)
    server = subprocess.Popen(
        [str(AIFX), "serve", "--workers", "2", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    started, lines = 0, []
    try:
        assert server.stderr is not None
        # uvicorn says so once per worker; a refused app ends the process (EOF) instead.
        for line in server.stderr:
            lines.append(line)
            started += "Application startup complete" in line
            if started == 2:
                break
        assert started == 2, "".join(lines[-20:])
        reply = httpx.get(f"http://127.0.0.1:{port}/api/v1/ml/ab-tests", timeout=30)
        assert reply.status_code == 200
        assert reply.json() == {"tests": []}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
