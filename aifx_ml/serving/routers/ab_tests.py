"""`/api/v1/ml/ab-tests`: create, list, complete, cancel, metrics (writes need the token)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from aifx_ml.abtest.evaluation import evaluate_test, look
from aifx_ml.abtest.store import (
    DEFAULT_MODE,
    DEFAULT_PLAN,
    MAX_DAYS,
    MAX_DECIDED_PER_ARM,
    MAX_GUARDRAIL_MARGIN,
    TestPlan,
    cancel_test,
    complete_test,
    create_test,
    describe,
    get_test,
    list_tests,
)
from aifx_ml.db.models import ModelABTest
from aifx_ml.domain import TestMode
from aifx_ml.serving.deps import ServicesDep, WriteAccess, WriteRate
from aifx_ml.serving.errors import error_responses
from aifx_ml.serving.fields import Identifier, text

router = APIRouter(prefix="/api/v1/ml/ab-tests", tags=["A/B tests"])
Version = Annotated[Identifier, Field(examples=["lstm-v3"])]
Share = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1, le=MAX_DECIDED_PER_ARM)]
WRITE = [WriteRate, WriteAccess]  # counted before the token is checked: guessing costs too


class PlanIn(BaseModel):
    """The pre-registered plan; a field left out keeps the library's default (shown with it)."""

    alpha: Share = DEFAULT_PLAN.alpha
    min_decided_per_arm: Count = DEFAULT_PLAN.min_decided_per_arm
    max_decided_per_arm: Count = DEFAULT_PLAN.max_decided_per_arm
    max_days: Annotated[float, Field(gt=0, le=MAX_DAYS, allow_inf_nan=False)] = (
        DEFAULT_PLAN.max_days
    )
    guardrail_pnl_margin: Annotated[
        float, Field(ge=0, le=MAX_GUARDRAIL_MARGIN, allow_inf_nan=False)
    ] = DEFAULT_PLAN.guardrail_pnl_margin


class CreateIn(BaseModel):
    test_name: Annotated[str, text(128, min_length=1)]
    model_a_version: Version
    model_b_version: Version
    mode: TestMode = Field(
        default=DEFAULT_MODE,
        description="`split`: `traffic_split` of requests is answered by B. `shadow`: A answers "
        "every request and B answers the same ones unseen, compared request by request "
        "(decides with far fewer requests); no `traffic_split`.",
    )
    traffic_split: Annotated[
        Share | None,
        Field(description="Share of requests routed to model B (split tests only)."),
    ] = None
    plan: PlanIn | None = None


class CompleteIn(BaseModel):
    winner: Version | None = Field(default=None, description="Promoted to Production.")
    reason: Annotated[str, text(500)] = "completed by hand"


class CancelIn(BaseModel):
    reason: Annotated[str, text(500)] = "cancelled by hand"


class TestOut(BaseModel):
    id: uuid.UUID
    test_name: str
    model_type: str | None
    model_a_version: str
    model_b_version: str
    mode: TestMode
    traffic_split: float
    status: str
    winner: str | None
    created_at: datetime | None
    completed_at: datetime | None
    ended_reason: str | None
    config: dict[str, Any] | None

    @classmethod
    def of(cls, test: ModelABTest) -> TestOut:
        return cls.model_validate(describe(test))


class ListOut(BaseModel):
    tests: list[TestOut]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=WRITE,
    responses=error_responses(400, 401, 403, 409, 413, 422, 429),
)
def create(body: CreateIn, svc: ServicesDep) -> TestOut:
    """Start a test (409 if the model type already has an active one). A split test needs
    `traffic_split`; a shadow test refuses one."""
    plan = TestPlan(**body.plan.model_dump()) if body.plan else TestPlan()
    test = create_test(
        svc.engine,
        name=body.test_name,
        model_a_version=body.model_a_version,
        model_b_version=body.model_b_version,
        traffic_split=body.traffic_split,
        as_of=svc.now(),
        plan=plan,
        mode=body.mode,
    )
    svc.mark_challenger(test)
    svc.predictions.server.invalidate(test.model_type)  # route to the arms from now on
    return TestOut.of(test)


@router.get("", responses=error_responses(422))
def list_all(
    svc: ServicesDep,
    status_filter: Annotated[
        Literal["active", "completed", "cancelled"] | None, Query(alias="status")
    ] = None,
) -> ListOut:
    """Every test, newest first (filter with ?status=active)."""
    return ListOut(tests=[TestOut.of(t) for t in list_tests(svc.engine, status_filter)])


@router.get("/{test_id}", responses=error_responses(404, 422))
def one(test_id: uuid.UUID, svc: ServicesDep) -> TestOut:
    return TestOut.of(get_test(svc.engine, test_id))


@router.post(
    "/{test_id}/complete",
    dependencies=WRITE,
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429),
)
def complete(test_id: uuid.UUID, body: CompleteIn, svc: ServicesDep) -> TestOut:
    """End the test; a `winner` becomes the Production version."""
    test = complete_test(
        svc.engine,
        test_id,
        as_of=svc.now(),
        winner=body.winner,
        reason=body.reason,
        promote=svc.promote,
    )
    svc.predictions.server.invalidate(test.model_type)
    return TestOut.of(test)


@router.post(
    "/{test_id}/cancel",
    dependencies=WRITE,
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429),
)
def cancel(test_id: uuid.UUID, body: CancelIn, svc: ServicesDep) -> TestOut:
    """Stop the test with no winner; Production stays."""
    test = cancel_test(svc.engine, test_id, as_of=svc.now(), reason=body.reason)
    svc.predictions.server.invalidate(test.model_type)
    return TestOut.of(test)


@router.get("/{test_id}/metrics", responses=error_responses(404, 422))
def metrics(test_id: uuid.UUID, svc: ServicesDep) -> dict[str, Any]:
    """Per variant: signals, labeled, wins, losses, breakevens, win rate with a cluster-robust
    95% interval, mean pnl %; and the current sequential statistic and decision."""
    test = get_test(svc.engine, test_id)
    seen = look(svc.engine, test, svc.now())
    out = seen.as_dict()
    out["test"] = describe(test)
    out["variants"] = {
        "a": test.model_a_version,
        "b": test.model_b_version,
    }
    return out


@router.post(
    "/{test_id}/evaluate",
    dependencies=WRITE,
    responses=error_responses(401, 403, 404, 409, 422, 429),
)
def evaluate(test_id: uuid.UUID, svc: ServicesDep) -> dict[str, Any]:
    """Look now and act on it (promote a winner, end an inconclusive test)."""
    seen = evaluate_test(svc.engine, test_id, svc.now(), svc.promote)
    svc.predictions.server.invalidate()
    return seen.as_dict()
