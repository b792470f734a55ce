"""MLflow's own stores on PostgreSQL, written as a user writes them (`postgresql://…`): the
settings speak psycopg 3 to them, so runs, the registry and reconcile work without psycopg2."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aifx_ml.config import load_settings
from aifx_ml.db.engine import make_engine, upgrade
from registry.identity import mlflow_identity, table_identity
from registry.mlflow_store import MlflowModelStore
from registry.reconcile import reconcile
from tests.conftest import _postgres_database

pytestmark = pytest.mark.integration
NOW = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.fixture
def mlflow_pg() -> Iterator[str]:
    """A fresh PostgreSQL database for MLflow, as `postgresql://` (no driver named)."""
    url = next(iter(databases := _postgres_database()))
    yield url.replace("postgresql+psycopg://", "postgresql://")
    next(databases, None)


def test_postgresql_uris_work_for_runs_registry_and_reconcile(
    mlflow_pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_pg)
    monkeypatch.setenv("AIFX_DATA_DIR", str(tmp_path))
    settings = load_settings(env_file=None)
    assert settings.tracking_uri.startswith("postgresql+psycopg://")
    store = MlflowModelStore.from_settings(settings)
    store.ping()
    run = store.start_run("lstm", "probe", {"aifx.probe": "yes"})
    store.end_run(run, "FINISHED")
    assert store.client.get_run(run).info.status == "FINISHED"
    engine = make_engine(settings.db_url)
    upgrade(engine)
    assert reconcile(engine, store, NOW, "test") == []
    assert table_identity(engine) == mlflow_identity(store) is not None
    engine.dispose()
