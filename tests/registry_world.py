"""A small trained registry, built once per test session and copied into each test's database.

Training even a tiny LSTM costs seconds, so three versions (weekly runs as of three Sundays,
all in Staging) are trained once on SQLite; each test gets its own copy of the MLflow store
and of the registry tables, on SQLite or PostgreSQL. The model files themselves are shared
read-only (MLflow records their absolute location). Under `pytest -n` the workers share one
build (the `world` fixture in tests/conftest.py), found through the manifest written last.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from mlflow import MlflowClient
from sqlalchemy import Engine, insert, select

from aifx_ml.db.engine import make_engine, upgrade
from aifx_ml.db.models import Base
from aifx_ml.training.config import Stores
from aifx_ml.training.runs import train_full
from registry.mlflow_store import MlflowModelStore
from tests.conftest import TRAIN_AS_OF, import_synthetic, tiny_training_config

SUNDAYS = [TRAIN_AS_OF - timedelta(days=14), TRAIN_AS_OF - timedelta(days=7), TRAIN_AS_OF]
REGISTRY_TABLES = ("model_training_log", "model_versions", "model_stage_history", "store_identity")


@dataclass(frozen=True)
class World:
    """Where the trained template lives."""

    root: Path
    db_url: str
    mlflow_db: Path
    versions: tuple[str, ...]


def build_world(root: Path) -> World:
    """Train lstm-v1..v3 (weekly, as of three Sundays) into a fresh SQLite + MLflow store."""
    db_url = f"sqlite:///{root / 'aifx.db'}"
    engine = make_engine(db_url)
    upgrade(engine)
    import_synthetic(engine)
    mlflow_uri = f"sqlite:///{root / 'mlflow.db'}"
    stores = Stores(engine, store_for(mlflow_uri, root / "artifacts"), root / "locks")
    versions = []
    for sunday in SUNDAYS:
        result = train_full(stores, tiny_training_config(days=14), sunday)
        assert result.status == "completed" and result.version, result.reason
        versions.append(result.version)
    engine.dispose()
    return World(root, db_url, root / "mlflow.db", tuple(versions))


MANIFEST = "world.json"


def save_world(world: World) -> World:
    """Write the manifest that marks `world.root` as complete (the last step of a build)."""
    manifest = {
        "db_url": world.db_url,
        "mlflow_db": str(world.mlflow_db),
        "versions": world.versions,
    }
    (world.root / MANIFEST).write_text(json.dumps(manifest))
    return world


def load_world(root: Path) -> World | None:
    """The world built in `root` by another process, or None if none was completed there."""
    path = root / MANIFEST
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return World(root, data["db_url"], Path(data["mlflow_db"]), tuple(data["versions"]))


def copy_world(world: World, engine: Engine, into: Path) -> str:
    """Candles and registry rows into `engine` (migrated), the MLflow store into `into`;
    returns the copy's MLflow URI."""
    import_synthetic(engine)
    source = make_engine(world.db_url)
    # The models' own tables, so values convert to and from each database's types.
    with source.connect() as src, engine.begin() as dst:
        for name in REGISTRY_TABLES:
            table = Base.metadata.tables[name]
            rows = [dict(r._mapping) for r in src.execute(select(table))]
            if rows:
                dst.execute(insert(table), rows)
    source.dispose()
    target = into / "mlflow.db"
    shutil.copy(world.mlflow_db, target)
    return f"sqlite:///{target}"


def store_for(uri: str, artifact_root: str | Path | None = None) -> MlflowModelStore:
    """The model store on one MLflow URI (tracking and registry alike). New experiments go
    under `artifact_root`, by default an `artifacts` folder next to a SQLite store's file."""
    if artifact_root is None:
        artifact_root = Path(uri.removeprefix("sqlite:///")).parent / "artifacts"
    return MlflowModelStore(uri, uri, str(artifact_root))


def client_for(uri: str) -> MlflowClient:
    """The raw MLflow client of `store_for(uri)`, for arranging or inspecting MLflow itself."""
    return store_for(uri).client


def stages_agree(engine: Engine, uri: str) -> dict[str, tuple[str, str]]:
    """Versions whose MLflow stage differs from the table, plus a wrong champion alias."""
    from aifx_ml.db.models import ModelVersion
    from aifx_ml.models.store import number_of, registered_name
    from registry.mlflow_store import MLFLOW_STAGES

    client = client_for(uri)
    with engine.connect() as conn:
        rows = conn.execute(select(ModelVersion)).all()
    wrong: dict[str, tuple[str, str]] = {}
    for row in rows:
        row_obj = ModelVersion(**row._mapping)
        have = client.get_model_version(
            registered_name(row_obj.model_type), number_of(row_obj)
        ).current_stage
        if have != MLFLOW_STAGES[row_obj.status]:
            wrong[row_obj.version] = (row_obj.status, have)
    production = [ModelVersion(**r._mapping) for r in rows if r.status == "production"]
    aliases = client.get_registered_model("aifx-lstm").aliases or {}
    champion = None if aliases.get("champion") is None else str(aliases["champion"])
    expected = number_of(production[0]) if production else None
    if champion != expected:
        wrong["champion"] = (str(expected), str(champion))
    return wrong


def promote_now(engine: Engine, uri: str, version: str, as_of: datetime) -> None:
    """A forced stage change (no gate), for arranging a test's starting point."""
    from registry.stages import change_stage

    change_stage(
        engine, store_for(uri), version, "production", as_of=as_of, reason="arrange", actor="test"
    )
