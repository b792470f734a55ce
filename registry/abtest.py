"""A/B test decisions in the registry: the winner becomes Production, a losing challenger is
archived, each stage change recorded with the test's id."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from aifx_ml.db.models import ModelABTest
from aifx_ml.domain import ModelStatus
from aifx_ml.models.versions import get_version
from registry.mlflow_store import MlflowModelStore
from registry.stages import change_stage, set_challenger


def promote_winner(
    engine: Engine,
    store: MlflowModelStore,
    test: ModelABTest,
    winner: str,
    *,
    as_of: datetime,
    actor: str,
) -> None:
    """Make `winner` Production (if it is not already) and archive a losing Staging version."""
    loser = test.model_b_version if winner == test.model_a_version else test.model_a_version
    if get_version(engine, winner).status != ModelStatus.PRODUCTION:
        change_stage(
            engine,
            store,
            winner,
            ModelStatus.PRODUCTION,
            as_of=as_of,
            reason=f"won A/B test {test.test_name!r}",
            actor=actor,
            ab_test_id=test.id,
        )
    if get_version(engine, loser).status == ModelStatus.STAGING:
        change_stage(
            engine,
            store,
            loser,
            ModelStatus.ARCHIVED,
            as_of=as_of,
            reason=f"lost A/B test {test.test_name!r}",
            actor=actor,
            ab_test_id=test.id,
        )
    if test.model_type is not None:
        set_challenger(engine, store, None, test.model_type)


def mark_challenger(engine: Engine, store: MlflowModelStore, test: ModelABTest) -> None:
    """Point the `challenger` alias at the test's B version while it is in Staging."""
    row = get_version(engine, test.model_b_version)
    if row.status == ModelStatus.STAGING and test.model_type is not None:
        set_challenger(engine, store, row.version, test.model_type)
