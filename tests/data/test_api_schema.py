"""Schemathesis against the running app (uvicorn on a real socket) over a seeded store, with
every check, with and without the token: no server error, nothing the schema does not say.

The examples per operation are bounded and the seed fixed, so a run takes well under a minute
and a failure is found again by running the test again.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn

from aifx_ml.cli.serve import build_app
from aifx_ml.config import load_settings
from aifx_ml.data.importer import import_frame
from aifx_ml.db.engine import make_engine, upgrade
from tests.serving_helpers import register_constant, trending_candles

pytestmark = pytest.mark.integration
TOKEN = "s3cret"
EXAMPLES = 5  # per operation and phase
SEED = 13
NOW = datetime(2026, 3, 2, tzinfo=UTC)
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture
def base_url(mlflow_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The app on a free local port over a SQLite store with candles, a Production and a
    Staging model (PostgreSQL adds minutes here and nothing the schema checks)."""
    db_url = f"sqlite:///{tmp_path / 'aifx.db'}"
    engine = make_engine(db_url)
    upgrade(engine)
    frame = trending_candles(str((NOW - timedelta(days=4)).date()), 24 * 4)
    import_frame(engine, frame, "EUR/USD", "1h", NOW, source="test")
    trained, art = NOW - timedelta(days=1), str(tmp_path / "art")
    register_constant(engine, mlflow_uri, art, 0.8, trained, "production")
    register_constant(engine, mlflow_uri, art, 0.3, trained)
    for name, value in {
        "AIFX_DATABASE_URL": db_url,
        "AIFX_DATA_DIR": str(tmp_path / "data"),
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "AIFX_API_TOKEN": TOKEN,
        "AIFX_RATE_LIMIT_WRITES": "100000/minute",  # the run itself must not be the flood
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    app = build_app(load_settings(), engine=engine, now=lambda: NOW, refresh_seconds=0)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # connections wait in the backlog until uvicorn has started
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        listener.close()
        engine.dispose()


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    base_url: str, tmp_path: Path
) -> None:
    for token, phases in (
        (TOKEN, "examples,coverage,fuzzing,stateful"),
        (None, "coverage"),
    ):
        # With the token every phase (writes get past auth); anonymous, the phase that varies
        # each field to its bounds (examples, fuzzing and sequences would mostly meet 401s).
        command = [
            *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run"),
            *(f"{base_url}/openapi.json", "--checks", "all", "--seed", str(SEED)),
            *("--max-examples", str(EXAMPLES), "--workers", "1", "--no-shrink"),
            *("--phases", phases),
            *("--report", "junit", "--report-dir", str(tmp_path / "report")),
            *(("--header", f"Authorization: Bearer {token}") if token else ()),
        ]
        run = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        who = "with the token" if token else "anonymous"
        assert run.returncode == 0, f"{who}:\n{run.stdout[-12000:]}{run.stderr[-3000:]}"
        counted = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
        assert counted and counted[1] == counted[2] and int(counted[1]) > 100, run.stdout[-3000:]
