"""A/B test decisions in the registry: the winner becomes Production, a losing challenger is
archived, each stage change recorded with the test's id."""

from __future__ import annotations

from datetime import datetime

from mlflow import MlflowClient
from sqlalchemy import Engine

from aifx_ml.db.models import ModelABTest
from registry.stages import change_stage, set_challenger
from registry.versions import get_version


def promote_winner(
    engine: Engine,
    client: MlflowClient,
    test: ModelABTest,
    winner: str,
    *,
    as_of: datetime,
    actor: str,
) -> None:
    """Make `winner` Production (if it is not already) and archive a losing Staging version."""
    loser = test.model_b_version if winner == test.model_a_version else test.model_a_version
    if get_version(engine, winner).status != "production":
        change_stage(
            engine,
            client,
            winner,
            "production",
            as_of=as_of,
            reason=f"won A/B test {test.test_name!r}",
            actor=actor,
            ab_test_id=test.id,
        )
    if get_version(engine, loser).status == "staging":
        change_stage(
            engine,
            client,
            loser,
            "archived",
            as_of=as_of,
            reason=f"lost A/B test {test.test_name!r}",
            actor=actor,
            ab_test_id=test.id,
        )
    if test.model_type is not None:
        set_challenger(engine, client, None, test.model_type)


def mark_challenger(engine: Engine, client: MlflowClient, test: ModelABTest) -> None:
    """Point the `challenger` alias at the test's B version while it is in Staging."""
    row = get_version(engine, test.model_b_version)
    if row.status == "staging" and test.model_type is not None:
        set_challenger(engine, client, row.version, test.model_type)
