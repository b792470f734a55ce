"""Which MLflow store the tables belong to.

A random identity is written on first use in both places: the `store_identity` table, and a
tag of MLflow's `aifx-identity` experiment. Before reconcile changes anything in MLflow it
checks that the two agree, so pointing `AIFX_DATABASE_URL` (or `MLFLOW_TRACKING_URI`) at a
store that belongs to another installation stops with one line instead of archiving a
registry. `adopt` makes the pair one again after a deliberate move (a migrated MLflow
database, a restored backup): the table's identity is written to MLflow, or MLflow's to the
table.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError

from aifx_ml.db.engine import session_factory, transaction
from aifx_ml.db.models import StoreIdentity
from aifx_ml.errors import RefusedError
from registry.mlflow_store import MlflowModelStore, experiment_named

EXPERIMENT = "aifx-identity"
TAG = "aifx.store_identity"
KIND = "mlflow"
ADOPT = "`aifx models reconcile --adopt-store`"


class StoreMismatchError(RefusedError):
    """The tables and the MLflow store do not belong together."""


def check_store(
    engine: Engine,
    store: MlflowModelStore,
    as_of: datetime,
    adopt: bool = False,
    record: bool = True,
) -> str:
    """The identity the tables and `store` share, written on first use; StoreMismatchError
    (nothing written) when they belong to different installations, unless `adopt`.
    Without `record` nothing is written (a dry run): the identity is what would be."""
    table, mlflow = table_identity(engine), mlflow_identity(store)
    if table is not None and table == mlflow:
        return table
    if (table is None and mlflow is None) or adopt:
        identity = table or mlflow or str(uuid.uuid4())
        if not record:
            return identity
        return _record(engine, store, identity, as_of)
    recorded = _recorded_uri(engine)
    if table is None:
        raise StoreMismatchError(
            f"the MLflow store at {shown(store.uri)} belongs to another database (its identity is "
            f"{mlflow}; this database has none): point AIFX_DATABASE_URL at that database, "
            f"or MLFLOW_TRACKING_URI at this database's store; {ADOPT} makes them one pair"
        )
    if mlflow is None:
        raise StoreMismatchError(
            f"this database belongs to the MLflow store first seen at {recorded} (identity "
            f"{table}); the store at {shown(store.uri)} has no identity: point "
            f"MLFLOW_TRACKING_URI at the database's store, or {ADOPT} if this is that store, moved"
        )
    raise StoreMismatchError(
        f"this database belongs to the MLflow store first seen at {recorded} (identity "
        f"{table}), not to the one at {shown(store.uri)} (identity {mlflow}): point "
        f"MLFLOW_TRACKING_URI at the database's store, or AIFX_DATABASE_URL at the store's "
        "database"
    )


def table_identity(engine: Engine) -> str | None:
    with session_factory(engine)() as session:
        return session.execute(
            select(StoreIdentity.identity).where(StoreIdentity.store == KIND)
        ).scalar_one_or_none()


def mlflow_identity(store: MlflowModelStore) -> str | None:
    found = store.client.get_experiment_by_name(EXPERIMENT)
    if found is None:
        return None
    value = (found.tags or {}).get(TAG)
    return str(value) if value else None


def _recorded_uri(engine: Engine) -> str:
    with session_factory(engine)() as session:
        uri = session.execute(
            select(StoreIdentity.uri).where(StoreIdentity.store == KIND)
        ).scalar_one_or_none()
    return uri or "(unknown)"


def _record(engine: Engine, store: MlflowModelStore, identity: str, as_of: datetime) -> str:
    """Write `identity` to MLflow, then to the table (replacing what either held); the
    identity both hold afterwards."""
    store.client.set_experiment_tag(_experiment(store), TAG, identity)
    try:
        with transaction(engine) as session:
            row = session.get(StoreIdentity, KIND)
            if row is None:
                session.add(
                    StoreIdentity(
                        store=KIND, identity=identity, uri=shown(store.uri), recorded_at=as_of
                    )
                )
            else:
                row.identity, row.uri, row.recorded_at = identity, shown(store.uri), as_of
    except IntegrityError:  # another process recorded the first identity at the same moment
        pass
    return table_identity(engine) or identity


def shown(uri: str) -> str:
    """A store URI as it may be printed and recorded: without its password."""
    try:
        return make_url(uri).render_as_string(hide_password=True)
    except ArgumentError:  # not a database URL (a path, http://…): nothing secret in it
        return uri


def _experiment(store: MlflowModelStore) -> str:
    return experiment_named(store.client, EXPERIMENT, store.artifact_root)
