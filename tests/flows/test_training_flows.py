"""Both training flows run by Prefect's own engine, and the deployments accepted by
`prefect deploy --all` against a real (temporary) Prefect API."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.settings import PREFECT_API_URL
from sqlalchemy import Engine, select

from aifx_ml.db.models import ModelABTest, ModelTrainingLog, ModelVersion
from aifx_ml.events.consumers import read_stream, stream_end
from aifx_ml.events.relay import count_pending
from flows.daily_incremental import daily_incremental_flow
from flows.weekly_full import weekly_full_flow
from registry.mlflow_store import MlflowModelStore, transition_stage
from registry.stages import change_stage
from tests.conftest import REDIS_URL, TRAIN_AS_OF, import_synthetic

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TINY = {"epochs": 2, "batch_size": 64, "seed": 7}


@pytest.fixture
def settings_env(
    engine: Engine,
    db_url: str,
    mlflow_uri: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Engine:
    """The flows read their settings from the environment, as a deployment's would."""
    import_synthetic(engine)
    monkeypatch.setenv("AIFX_DATABASE_URL", db_url)
    monkeypatch.setenv("AIFX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", mlflow_uri)
    monkeypatch.setenv("AIFX_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.chdir(tmp_path)
    return engine


def test_weekly_then_daily_through_prefect(
    prefect_api: None,
    settings_env: Engine,
    mlflow_uri: str,
    client: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = settings_env
    weekly = weekly_full_flow(
        pairs=["EUR/USD", "GBP/USD"],
        window=8,
        lstm_units=[4, 2],
        dense_units=2,
        as_of=TRAIN_AS_OF,
        **TINY,
    )
    assert weekly.status == "completed", weekly.reason
    assert weekly.version == "lstm-v1"
    # The first model ever went through the gate against the baselines: promoted if it beat
    # them, left in Staging (with the reasons) if not. Either way it serves from here on.
    offered = weekly.challenger
    assert offered is not None and offered.action in ("promoted", "refused"), offered
    if offered.action == "refused":
        assert offered.detail
        registry = MlflowModelStore(mlflow_uri, mlflow_uri, str(tmp_path / "artifacts"))
        change_stage(
            engine, registry, "lstm-v1", "production", as_of=TRAIN_AS_OF, reason="t", actor="t"
        )

    # Something changed MLflow behind the table's back: the flow reconciles before it reads.
    transition_stage(MlflowClient(mlflow_uri, mlflow_uri), "aifx-lstm", "1", "Archived")
    start = stream_end(client)
    monkeypatch.setenv("AIFX_REDIS_URL", REDIS_URL)

    daily = daily_incremental_flow(as_of=TRAIN_AS_OF + timedelta(days=3), **TINY)
    assert daily.status == "completed", daily.reason
    assert (daily.version, daily.parent_version) == ("lstm-v2", "lstm-v1")
    # A child that passes the gate is tried live against its parent, not promoted outright.
    assert daily.challenger is not None
    assert daily.challenger.action in ("ab_test_started", "refused"), daily.challenger
    with engine.connect() as conn:
        tests = conn.execute(select(ModelABTest.model_b_version, ModelABTest.status)).all()
    started = daily.challenger.action == "ab_test_started"
    assert [tuple(t) for t in tests] == ([("lstm-v2", "active")] if started else [])
    # Every stored pair was read (none named), one mapped load per series.
    assert daily.metrics["holdout_samples"] > 0

    with engine.connect() as conn:
        logged = conn.execute(
            select(ModelTrainingLog.training_type, ModelTrainingLog.status).order_by(
                ModelTrainingLog.started_at
            )
        ).all()
        parents = dict(
            conn.execute(select(ModelVersion.version, ModelVersion.parent_version)).all()
        )
    assert [tuple(r) for r in logged] == [("full", "completed"), ("incremental", "completed")]
    assert parents == {"lstm-v1": None, "lstm-v2": "lstm-v1"}
    stage = MlflowClient(mlflow_uri, mlflow_uri).get_model_version("aifx-lstm", "1").current_stage
    assert stage == "Production"
    # The flow ended by relaying everything it announced (and what waited before it).
    assert count_pending(engine) == 0
    events, _ = read_stream(client, after_id=start, channels=["ml:training_completed"])
    assert [e.data["version"] for e in events] == ["lstm-v1", "lstm-v2"]


def test_a_skipped_daily_run_is_a_successful_flow_with_the_reason(
    prefect_api: None, settings_env: Engine
) -> None:
    result = daily_incremental_flow(
        pairs=["EUR/USD"], as_of=TRAIN_AS_OF - timedelta(days=60), **TINY
    )
    # No Production model: it trains in full instead, and there are no candles that early.
    assert result.status == "skipped"
    assert result.fell_back_to_full is True
    assert result.reason is not None and result.reason.startswith(
        "no Production lstm model yet: ran a full training instead; "
    )
    assert "no candles" in result.reason


def test_prefect_deploy_all_accepts_every_deployment(prefect_api: None, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "AIFX_PROJECT_DIR": str(ROOT),
    }
    prefect = str(Path(sys.executable).parent / "prefect")

    async def create_pool() -> None:
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name="aifx", type="process"))

    asyncio.run(create_pool())
    deployed = subprocess.run(
        [prefect, "--no-prompt", "deploy", "--all"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]

    async def read() -> dict[str, tuple[list[tuple[str, str]], int | None]]:
        async with get_client() as client:
            found = await client.read_deployments()
            return {
                d.name: (
                    [(s.schedule.cron, s.schedule.timezone) for s in d.schedules],  # type: ignore[union-attr]
                    d.global_concurrency_limit.limit if d.global_concurrency_limit else None,
                )
                for d in found
            }

    deployments = asyncio.run(read())
    assert deployments["daily-incremental"] == ([("0 1 * * *", "UTC")], 1)
    assert deployments["weekly-full"] == ([("0 1 * * 0", "UTC")], 1)
    assert deployments["label-signals"][0] == [("*/5 * * * *", "UTC")]
    assert deployments["market-data"] == ([("* * * * *", "UTC")], 1)
    assert deployments["ab-evaluation"] == ([("0 * * * *", "UTC")], 1)
