"""The README's "To production" section, run as a user runs it: every `bash` block between its
`production-path` markers, in order, in one shell, from the repository's root, against this
machine's PostgreSQL and Redis — a real MLflow tracking server on PostgreSQL, a Prefect server
with its work pool, deployments and a process worker, `aifx serve --workers 2`.

What changes from the text is only what would collide with other runs: the databases get this
run's names, the services free ports, the data folder a temporary one and Redis the test
database. Each of those strings must still be in the README, so an edit there that drops one
fails here rather than going untested."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg.conninfo import make_conninfo

from tests.conftest import POSTGRES_ADMIN_DSN, REDIS_URL, free_port

pytestmark = [pytest.mark.integration, pytest.mark.long]
ROOT = Path(__file__).resolve().parents[2]
SECTION = re.compile(r"<!-- production-path: begin -->(.*?)<!-- production-path: end -->", re.S)
BASH = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
TIMEOUT = 900  # seconds for the whole walk (two servers, a training run, a served model)


def stop_group(pgid: int, grace: float = 30.0) -> None:
    """End the walk's background services (its process group): SIGTERM, then SIGKILL for
    whatever is still there after `grace` seconds (a Prefect worker busy with a flow run
    was once seen to outlive the SIGTERM)."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def readme_script() -> str:
    """The section's shell commands, in order, as one script."""
    found = SECTION.search((ROOT / "README.md").read_text("utf-8"))
    assert found, "README.md has no production-path section"
    blocks = BASH.findall(found.group(1))
    assert len(blocks) >= 8, f"expected the section's steps, found {len(blocks)} bash blocks"
    return "\n".join(blocks)


def substituted(script: str, changes: dict[str, str]) -> str:
    for written, here in changes.items():
        assert written in script, f"the README's production path no longer says {written!r}"
        script = script.replace(written, here)
    return script


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    """Two empty database names for the walk to create, dropped afterwards."""
    suffix = uuid.uuid4().hex[:8]
    names = (f"aifx_readme_{suffix}", f"mlflow_readme_{suffix}")
    yield names
    with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
        for name in names:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_production_path_works_as_written(databases: tuple[str, str], tmp_path: Path) -> None:
    aifx_db, mlflow_db = databases
    mlflow, prefect, serve = free_port(), free_port(), free_port()
    data_dir = tmp_path / "aifx"
    script = substituted(
        readme_script(),
        {
            "CREATE DATABASE aifx": f"CREATE DATABASE {aifx_db}",
            "CREATE DATABASE mlflow": f"CREATE DATABASE {mlflow_db}",
            "127.0.0.1:5432/aifx": f"127.0.0.1:5432/{aifx_db}",
            "127.0.0.1:5432/mlflow": f"127.0.0.1:5432/{mlflow_db}",
            "redis://127.0.0.1:6379/0": REDIS_URL,
            "/var/lib/aifx": str(data_dir),
            "127.0.0.1:5000": f"127.0.0.1:{mlflow}",
            "--port 5000": f"--port {mlflow}",
            "127.0.0.1:4200": f"127.0.0.1:{prefect}",
            "--port 4200": f"--port {prefect}",
            "127.0.0.1:8000": f"127.0.0.1:{serve}",
            "--port 8000": f"--port {serve}",
        },
    )
    redis.Redis.from_url(REDIS_URL).flushdb()  # this walk's events only
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIFX_", "MLFLOW_", "PREFECT_"))
    }
    # Prefect's own files (its server's database, profiles) in this run's folder, not ~/.prefect.
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    log = tmp_path / "walk.log"
    with log.open("w") as out:
        walk = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its background services die with it, below
        )
        try:
            code = walk.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            stop_group(walk.pid)
            walk.wait(timeout=60)
    said = log.read_text("utf-8", errors="replace")
    assert code == 0, f"the walk ended with {code}; its last lines:\n{said[-6000:]}"

    # The service answered a signal from the model the weekly flow trained through the worker.
    assert re.search(r'"signal":\s*"(buy|sell|hold)"', said), said[-3000:]
    assert '"model_version":"lstm-v1"' in said.replace(" ", ""), said[-3000:]
    # The pushed candle was taken, and the stream held what happened.
    assert '"inserted":1' in said.replace(" ", ""), said[-3000:]
    assert "aifx_http_request_duration_seconds_count" in said
    # MLflow kept the run and the version in its own PostgreSQL database, and the artifacts in
    # the folder its server serves (not in a local folder of the client).
    with psycopg.connect(make_conninfo(POSTGRES_ADMIN_DSN, dbname=mlflow_db)) as conn:
        models = [r[0] for r in conn.execute("SELECT name FROM registered_models").fetchall()]
    assert models == ["aifx-lstm"]
    assert list((data_dir / "mlflow-artifacts").rglob("MLmodel")), "no model in served artifacts"
    assert not (data_dir / "mlartifacts").exists()
