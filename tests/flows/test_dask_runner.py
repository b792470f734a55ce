"""The flows on a Dask cluster of real separate processes: `dask scheduler` and two
`dask worker` processes started from the CLI, the flow pointed at them by the settings alone
(AIFX_DASK_ADDRESS), as a deployment's worker would be."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from distributed import Client
from mlflow import MlflowClient
from prefect.settings import PREFECT_API_URL
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask.task_runners import DaskTaskRunner
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from aifx_ml.config import Settings, load_settings
from aifx_ml.db.models import ModelTrainingLog, ModelVersion
from aifx_ml.replay.study import StudySpec
from flows.replay_study import replay_study_flow
from flows.runner import THREAD_VARIABLES, FromSettings, task_runner
from flows.weekly_full import weekly_full_flow
from registry.mlflow_store import MlflowModelStore
from tests.conftest import TRAIN_AS_OF, _postgres_database, free_port, import_synthetic
from tests.replay_world import TINY_REPLAY

pytestmark = pytest.mark.integration
DASK = Path(sys.executable).parent / "dask"
TINY: dict[str, Any] = {"epochs": 1, "batch_size": 64, "seed": 7, "window": 8, "lstm_units": [4, 2]}


def test_the_settings_choose_the_runner_when_a_run_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing set: Prefect's thread pool. AIFX_TASK_RUNNER=dask: a local cluster of the
    settings' size, TensorFlow's threads matched to each worker's; an address: that cluster.
    The choice is read when the run starts (the flow's runner is duplicated per run)."""
    assert isinstance(task_runner(Settings()), ThreadPoolTaskRunner)
    local = task_runner(Settings(AIFX_TASK_RUNNER="dask", AIFX_DASK_WORKERS=3, AIFX_DASK_THREADS=2))
    assert isinstance(local, DaskTaskRunner)
    assert local.cluster_kwargs["n_workers"] == 3
    assert local.cluster_kwargs["threads_per_worker"] == 2
    assert local.cluster_kwargs["env"] == dict.fromkeys(THREAD_VARIABLES, "2")
    remote = task_runner(Settings(AIFX_DASK_ADDRESS="tcp://10.0.0.5:8786"))
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"

    monkeypatch.setenv("AIFX_DASK_ADDRESS", "tcp://10.0.0.6:8786")
    chosen = FromSettings().duplicate()
    assert isinstance(chosen, DaskTaskRunner) and chosen.address == "tcp://10.0.0.6:8786"
    monkeypatch.delenv("AIFX_DASK_ADDRESS")
    assert type(FromSettings().duplicate()) is ThreadPoolTaskRunner


def test_a_dask_address_with_the_process_runner_is_refused() -> None:
    with pytest.raises(ValueError, match="AIFX_DASK_ADDRESS is set but AIFX_TASK_RUNNER=process"):
        Settings(AIFX_TASK_RUNNER="process", AIFX_DASK_ADDRESS="tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="expected a scheduler address like tcp://host:8786"):
        Settings(AIFX_DASK_ADDRESS="127.0.0.1")


@dataclass
class Cluster:
    address: str
    workers: dict[str, subprocess.Popen[bytes]]  # by worker name


@pytest.fixture
def dask_cluster(prefect_api: None, tmp_path: Path) -> Iterator[Cluster]:
    """`dask scheduler` and two `dask worker` processes (one thread each), as a user starts
    them; the workers report their task runs to the same Prefect API as the flow."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    logs = tmp_path / "dask"
    logs.mkdir()
    commands = [
        [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        *[
            [str(DASK), "worker", address, "--nthreads", "1", "--no-dashboard",
             "--name", f"w{i}", "--local-directory", str(logs / f"w{i}")]
            for i in (1, 2)
        ],
    ]  # fmt: skip
    procs = []
    try:
        for i, command in enumerate(commands):
            out = (logs / f"{i}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
            if i == 0:
                _wait_for_scheduler(address, procs[0])
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield Cluster(address, {"w1": procs[1], "w2": procs[2]})
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _wait_for_scheduler(address: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with Client(address, timeout=2):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dask scheduler did not start at {address}") from None


def test_the_weekly_flow_fans_out_over_dask_workers(
    dask_cluster: Cluster,
    engine: Engine,
    db_url: str,
    mlflow_uri: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same deployed flow, pointed at the cluster by AIFX_DASK_ADDRESS alone: its mapped
    loads run on the workers (their own processes), and the training they feed completes and
    registers one version, as in process."""
    import_synthetic(engine)
    monkeypatch.setenv("AIFX_DATABASE_URL", db_url)
    monkeypatch.setenv("AIFX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("AIFX_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("AIFX_DASK_ADDRESS", dask_cluster.address)
    monkeypatch.chdir(tmp_path)
    with Client(dask_cluster.address) as client:
        before = sum(client.run(_executed).values())

    pairs = ["EUR/USD", "GBP/USD"]
    result = weekly_full_flow(pairs=pairs, as_of=TRAIN_AS_OF, dense_units=2, **TINY)

    assert result.status == "completed", result.reason
    assert result.version == "lstm-v1"
    with Client(dask_cluster.address) as client:
        executed = client.run(_executed)
    # One load per series ran on the workers, not in this process.
    assert sum(executed.values()) - before == 2, executed
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(ModelVersion)) == 1
        status = conn.scalars(select(ModelTrainingLog.status)).all()
    assert status == ["completed"]


def _executed(dask_worker: object) -> int:
    return int(dask_worker.state.executed_count)  # type: ignore[attr-defined]


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """`mlflow server` on a PostgreSQL database of its own, serving its artifacts, as step 3
    of the README's production path starts it."""
    backend = next(databases := _postgres_database())
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", backend,
         "--artifacts-destination", str(tmp_path / "mlflow-artifacts"),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=(tmp_path / "mlflow.log").open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp_path / "mlflow.log").read_text()[-2000:])
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        next(databases, None)


@pytest.mark.long
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_sweep_on_dask_survives_a_lost_worker_and_logs_to_the_tracking_server(
    dask_cluster: Cluster,
    mlflow_server: str,
    engine: Engine,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """K = 4 candidates on two workers, every process logging to an `mlflow server` on
    PostgreSQL. One worker (its nanny too) is killed while it fits a candidate: Dask fits it
    again on the other, and the flow completes with one version registered, four nested runs
    under the weekly run, and artifacts the serving path loads through the server."""
    import_synthetic(engine)
    monkeypatch.setenv("AIFX_DATABASE_URL", db_url)
    monkeypatch.setenv("AIFX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("AIFX_DASK_ADDRESS", dask_cluster.address)
    monkeypatch.chdir(tmp_path)
    killed: list[str] = []
    watcher = threading.Thread(target=_kill_a_fitting_worker, args=(dask_cluster, killed))
    watcher.start()
    try:
        result = weekly_full_flow(
            pairs=["EUR/USD", "GBP/USD"],
            as_of=TRAIN_AS_OF,
            dense_units=2,
            candidates=4,
            search_space={"window": [6, 8, 10], "learning_rate": [0.001, 0.01]},
            auto_challenger=False,
            **TINY,
        )
    finally:
        watcher.join(timeout=300)

    assert killed, "no worker was fitting a candidate to kill"
    assert dask_cluster.workers[killed[0]].poll() is not None
    assert result.status == "completed", result.reason
    client = MlflowClient(mlflow_server)
    parent = client.get_run(result.mlflow_run_id)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(c.data.tags["aifx.candidate"] for c in children) == ["0", "1", "2", "3"]
    with Session(engine) as session:
        rows = session.scalars(select(ModelVersion)).all()
    assert [r.version for r in rows] == ["lstm-v1"]
    # Served artifacts: the serving path loads the version through the tracking server.
    loaded = MlflowModelStore.from_settings(load_settings()).load(rows[0])
    assert loaded.card.window == int(parent.data.params["lstm_window"])
    assert loaded.model.predict(
        np.zeros((1, loaded.card.window, len(loaded.card.features))), verbose=0
    ).shape == (1, 1)


def _kill_a_fitting_worker(cluster: Cluster, killed: list[str]) -> None:
    """Kill (SIGKILL, its nanny too) the first worker seen fitting a candidate."""
    with Client(cluster.address, timeout=30) as client:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            for address, keys in client.processing().items():
                if any("fit_candidate" in str(key) for key in keys):
                    name = client.scheduler_info()["workers"][address]["name"]
                    os.killpg(cluster.workers[name].pid, signal.SIGKILL)
                    killed.append(name)
                    return
            time.sleep(0.02)


@pytest.mark.long
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_two_replay_study_runs_on_the_workers_and_logs_to_the_tracking_server(
    dask_cluster: Cluster,
    mlflow_server: str,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`aifx replay study`'s flow on the same two workers: each replay a task on a worker (a
    process and store of its own under the study's folder), the study run and a nested run
    per replay in the tracking server, and a report that lists both replays."""
    monkeypatch.setenv("AIFX_DATABASE_URL", db_url)
    monkeypatch.setenv("AIFX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("AIFX_DASK_ADDRESS", dask_cluster.address)
    monkeypatch.chdir(tmp_path)
    with Client(dask_cluster.address) as client:
        before = client.run(_executed)
    spec = StudySpec(seeds=(3, 4))

    result = replay_study_flow(
        name="on-dask", base=TINY_REPLAY.as_dict(), spec=spec.as_dict(), folder=str(tmp_path / "s")
    )

    with Client(dask_cluster.address) as client:
        after = client.run(_executed)
    # One replay on each worker: they ran side by side, not in this process.
    assert sorted(after[w] - before[w] for w in after) == [1, 1], (before, after)
    report = json.loads(Path(result["json"]).read_text())
    assert [(r["name"], r["status"]) for r in report["replays"]] == [
        ("on-dask-r01", "completed"),
        ("on-dask-r02", "completed"),
    ]
    html = Path(result["html"]).read_text()
    assert "on-dask-r01" in html and "on-dask-r02" in html
    client = MlflowClient(mlflow_server)
    parent = client.get_run(result["mlflow_run_id"])
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(c.info.run_name for c in children) == ["on-dask-r01", "on-dask-r02"]
    # Artifacts served by the tracking server: the study's report and each replay's own.
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {
        "study-report.html",
        "study-report.json",
    }
    for child in children:
        names = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert names == {"replay-report.html", "replay-report.json"}
