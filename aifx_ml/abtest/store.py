"""A/B tests in `model_ab_test`: create, list, complete, cancel — each with its event.

Promoting a winner is the registry's job: `complete_test` takes it as a function, so this
module never touches MLflow and the same code serves the API, the CLI and the flow. The
database guards the decisions: a partial unique index lets one test per model type be active
(a concurrent second create gets ConflictError), and a test is ended under a row lock
(`lock_active`), so of two concurrent completions the second changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aifx_ml.abtest import stats
from aifx_ml.db.engine import session_factory, transaction
from aifx_ml.db.models import AB_MODES, AB_STATUSES, ModelABTest, ModelVersion
from aifx_ml.domain import TestMode
from aifx_ml.errors import ConflictError, InvalidInputError, NotFoundError
from aifx_ml.events.outbox import enqueue
from aifx_ml.events.schemas import ABTestCompleted, ABTestCreated, ABTestPlan

DEFAULT_SPLIT = 0.2  # share of requests routed to B (the challenger) unless told otherwise
DEFAULT_MODE = TestMode.SPLIT  # what `aifx ab create` and the API start unless told otherwise
# Bounds of a plan (a comparison NaN fails, so NaN and infinities are refused with them).
MAX_DAYS = 365.0
MAX_DECIDED_PER_ARM = 1_000_000
MAX_GUARDRAIL_MARGIN = 100.0  # pnl percentage points
MAX_TAU = 10.0

ONE_ACTIVE_INDEX = "uq_model_ab_test_one_active"


class WinnerPromoter(Protocol):
    """How the registry ends a test with a winner: the winner promoted to Production (its
    files verified first), a losing Staging version archived and the test completed — in one
    transaction, under the test's row lock (`registry.abtest.complete_with_winner`)."""

    def __call__(
        self,
        test: ModelABTest,
        winner: str,
        *,
        as_of: datetime,
        reason: str,
        metrics: dict[str, Any] | None,
    ) -> ModelABTest: ...


@dataclass(frozen=True)
class TestPlan:
    """What a test is set up to do, fixed when it starts (a pre-registered plan): the
    sequential test's parameters (`aifx_ml.abtest.stats`) and a maximum duration."""

    __test__ = False  # not a pytest class, whatever its name says

    alpha: float = stats.ALPHA
    tau: float = stats.TAU
    min_decided_per_arm: int = stats.MIN_DECIDED
    max_decided_per_arm: int = stats.MAX_DECIDED
    max_days: float = 30.0
    guardrail_pnl_margin: float = stats.GUARDRAIL_MARGIN
    srm_threshold: float = stats.SRM_THRESHOLD

    def __post_init__(self) -> None:
        # Every field finite and bounded: a plan is stored as JSON and read at every look, so
        # a value JSON or a timedelta cannot hold would break the test for good.
        if not 0 < self.alpha < 1:
            raise InvalidInputError(f"invalid alpha {self.alpha}: expected a value in (0, 1)")
        if not 0 < self.tau <= MAX_TAU:
            raise InvalidInputError(f"invalid tau {self.tau}: expected a value in (0, {MAX_TAU}]")
        if not (1 <= self.min_decided_per_arm <= self.max_decided_per_arm <= MAX_DECIDED_PER_ARM):
            raise InvalidInputError(
                "invalid sample plan: need 1 <= min_decided_per_arm <= max_decided_per_arm "
                f"<= {MAX_DECIDED_PER_ARM}"
            )
        if not 0 < self.max_days <= MAX_DAYS:
            raise InvalidInputError(
                f"invalid max_days {self.max_days}: expected more than 0 and at most {MAX_DAYS:g}"
            )
        if not 0 <= self.guardrail_pnl_margin <= MAX_GUARDRAIL_MARGIN:
            raise InvalidInputError(
                f"invalid guardrail_pnl_margin {self.guardrail_pnl_margin}: expected 0 to "
                f"{MAX_GUARDRAIL_MARGIN:g} pnl percentage points"
            )
        if not 0 < self.srm_threshold < 1:
            raise InvalidInputError(
                f"invalid srm_threshold {self.srm_threshold}: expected a value in (0, 1)"
            )

    def sequential(self) -> stats.SequentialPlan:
        return stats.SequentialPlan(
            alpha=self.alpha,
            tau=self.tau,
            min_decided_per_arm=self.min_decided_per_arm,
            max_decided_per_arm=self.max_decided_per_arm,
            srm_threshold=self.srm_threshold,
            guardrail_pnl_margin=self.guardrail_pnl_margin,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TestPlan:
        """The stored plan; a null field (how JSON stored a non-finite value before plans were
        bounded) reads as its default, so such a test can still be evaluated."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in (data or {}).items() if k in known and v is not None})


# The pre-registered plan a test runs to unless told otherwise: `aifx ab create` and the API's
# create body read their defaults from it (tests/code/test_defaults_agree.py keeps them equal).
DEFAULT_PLAN = TestPlan()


TEST_ID_NAMESPACE = uuid.UUID("5b0c1f6e-4a1d-4f3e-9c55-2f1d7a0e6b11")


def create_test(
    engine: Engine,
    *,
    name: str,
    model_a_version: str,
    model_b_version: str,
    traffic_split: float | None,
    as_of: datetime,
    plan: TestPlan | None = None,
    mode: TestMode | str = TestMode.SPLIT,
) -> ModelABTest:
    """Start a test: A (usually Production) against B.

    A split test sends `traffic_split` of requests to B; a shadow test (`mode="shadow"`) has
    A answer every request and B answer the same ones unseen, so it takes no split (None or 0).
    Refused: an unknown or archived version, two versions of different types or the same one,
    an unknown mode, a split outside (0, 1) for a split test or a split for a shadow test —
    InvalidInputError; a second active test of the model type — ConflictError.
    """
    name = name.strip()
    if not name or len(name) > 128:
        raise InvalidInputError("invalid test_name: expected 1 to 128 characters")
    if mode not in AB_MODES:
        raise InvalidInputError(f"invalid mode {mode!r}: expected one of {AB_MODES}")
    mode = TestMode(mode)
    if mode == TestMode.SHADOW:
        if traffic_split:
            raise InvalidInputError(
                f"invalid traffic_split {traffic_split}: a shadow test sends no traffic to B "
                "(it answers every request unseen); leave the split out"
            )
        traffic_split = 0.0
    elif traffic_split is None or not 0 < traffic_split < 1:
        raise InvalidInputError(
            f"invalid traffic_split {traffic_split}: expected a share of traffic in (0, 1)"
        )
    if model_a_version == model_b_version:
        raise InvalidInputError("model_a_version and model_b_version must differ")
    plan = plan or TestPlan()
    try:
        return _insert_test(
            engine, name, model_a_version, model_b_version, traffic_split, as_of, plan, mode
        )
    except IntegrityError as exc:
        # Another create of the same model type committed between our check and our insert.
        if not _one_active_violated(exc):
            raise
        raise ConflictError(
            f"another A/B test of {_model_type_of(engine, model_a_version)} became active "
            "meanwhile: complete or cancel it first"
        ) from None


def _insert_test(
    engine: Engine,
    name: str,
    model_a_version: str,
    model_b_version: str,
    traffic_split: float,
    as_of: datetime,
    plan: TestPlan,
    mode: TestMode,
) -> ModelABTest:
    with transaction(engine) as session:
        versions = {
            v.version: v
            for v in session.execute(
                select(ModelVersion).where(
                    ModelVersion.version.in_([model_a_version, model_b_version])
                )
            ).scalars()
        }
        for version in (model_a_version, model_b_version):
            if version not in versions:
                raise InvalidInputError(f"unknown model version {version!r}")
            if versions[version].status in ("archived", "training"):
                raise InvalidInputError(
                    f"model version {version} is {versions[version].status}: it cannot serve"
                )
        types = {v.model_type for v in versions.values()}
        if len(types) != 1:
            raise InvalidInputError(f"the two versions are of different model types: {types}")
        model_type = types.pop()
        running = session.execute(
            select(ModelABTest.id, ModelABTest.test_name).where(
                ModelABTest.model_type == model_type, ModelABTest.status == "active"
            )
        ).first()
        if running is not None:
            raise ConflictError(
                f"A/B test {running.test_name!r} ({running.id}) is already active for "
                f"{model_type}: complete or cancel it first"
            )
        # Derived from what the test is: routing hashes the id, so a replay of the same history
        # routes the same requests to the same arms. A test started again under the same name
        # at the same moment (after a cancel) gets a random one.
        test_id = uuid.uuid5(TEST_ID_NAMESPACE, f"{model_type}|{name}|{as_of.isoformat()}")
        if session.get(ModelABTest, test_id) is not None:
            test_id = uuid.uuid4()
        test = ModelABTest(
            id=test_id,
            test_name=name,
            model_type=model_type,
            model_a_version=model_a_version,
            model_b_version=model_b_version,
            mode=mode.value,
            traffic_split=float(traffic_split),
            status="active",
            config=plan.as_dict(),
            created_at=as_of,
        )
        session.add(test)
        session.flush()
        enqueue(session, created_event(test), as_of)
    return test


def _one_active_violated(exc: IntegrityError) -> bool:
    """The partial unique index refused the insert (PostgreSQL names the index, SQLite the
    column it covers)."""
    message = str(exc.orig)
    return ONE_ACTIVE_INDEX in message or "model_ab_test.model_type" in message


def _model_type_of(engine: Engine, version: str) -> str:
    with session_factory(engine)() as session:
        found = session.execute(
            select(ModelVersion.model_type).where(ModelVersion.version == version)
        ).scalar_one_or_none()
    return found or "this model type"


def list_tests(engine: Engine, status: str | None = None) -> list[ModelABTest]:
    """Tests, newest first; `status` one of active, completed, cancelled."""
    if status is not None and status not in AB_STATUSES:
        raise InvalidInputError(f"invalid status {status!r}: expected one of {AB_STATUSES}")
    query = select(ModelABTest).order_by(ModelABTest.created_at.desc())
    if status is not None:
        query = query.where(ModelABTest.status == status)
    with session_factory(engine)() as session:
        return list(session.execute(query).scalars())


def get_test(engine: Engine, test_id: uuid.UUID | str) -> ModelABTest:
    """One test, or NotFoundError naming the id."""
    try:
        key = test_id if isinstance(test_id, uuid.UUID) else uuid.UUID(str(test_id))
    except ValueError:
        raise NotFoundError(f"no A/B test {test_id!r}") from None
    with session_factory(engine)() as session:
        test = session.get(ModelABTest, key)
    if test is None:
        raise NotFoundError(f"no A/B test {test_id}")
    return test


def active_test(engine: Engine, model_type: str) -> ModelABTest | None:
    """The running test of a model type, if any (at most one)."""
    with session_factory(engine)() as session:
        return session.execute(
            select(ModelABTest).where(
                ModelABTest.model_type == model_type, ModelABTest.status == "active"
            )
        ).scalar_one_or_none()


def complete_test(
    engine: Engine,
    test_id: uuid.UUID | str,
    *,
    as_of: datetime,
    winner: str | None,
    reason: str,
    metrics: dict[str, Any] | None = None,
    promote: WinnerPromoter | None = None,
) -> ModelABTest:
    """End an active test; with a winner (one of its two versions), `promote` makes it the
    Production version and completes the test in the same transaction. Of two concurrent
    completions one wins; the other gets ConflictError and changes nothing."""
    test = require_active(engine, test_id)
    if winner is not None and winner not in (test.model_a_version, test.model_b_version):
        raise InvalidInputError(
            f"invalid winner {winner!r}: expected {test.model_a_version} or {test.model_b_version}"
        )
    if winner is not None and promote is not None:
        return promote(test, winner, as_of=as_of, reason=reason, metrics=metrics)
    return _end(engine, test, "completed", as_of, reason, winner, metrics)


def cancel_test(
    engine: Engine, test_id: uuid.UUID | str, *, as_of: datetime, reason: str
) -> ModelABTest:
    """Stop an active test without a winner; Production stays as it is."""
    return _end(engine, require_active(engine, test_id), "cancelled", as_of, reason, None, None)


def record_evaluation(
    engine: Engine, test_id: uuid.UUID, metrics: dict[str, Any], as_of: datetime
) -> None:
    """Keep the latest look at a running test (its numbers and decision) with it."""
    with transaction(engine) as session:
        session.execute(
            update(ModelABTest)
            .where(ModelABTest.id == test_id)
            .values(metrics=metrics, evaluated_at=as_of)
        )


def describe(test: ModelABTest) -> dict[str, Any]:
    """The JSON face of a test in API responses; its events carry the same fields, as typed
    payloads (`created_event`, `completed_event`)."""
    return {
        "id": str(test.id),
        "test_name": test.test_name,
        "model_type": test.model_type,
        "model_a_version": test.model_a_version,
        "model_b_version": test.model_b_version,
        "mode": test.mode,
        "traffic_split": test.traffic_split,
        "status": test.status,
        "winner": test.winner,
        "created_at": test.created_at.isoformat() if test.created_at else None,
        "completed_at": test.completed_at.isoformat() if test.completed_at else None,
        "ended_reason": test.ended_reason,
        "config": test.config,
    }


def created_event(test: ModelABTest) -> ABTestCreated:
    """The `ml:ab_test_created` payload of a test that has just started."""
    return ABTestCreated(
        **_event_fields(test), status=test.status, winner=None, completed_at=None, ended_reason=None
    )


def completed_event(test: ModelABTest) -> ABTestCompleted:
    """The `ml:ab_test_completed` payload of a test that has just ended."""
    return ABTestCompleted(
        **_event_fields(test),
        status=test.status,
        winner=test.winner,
        completed_at=test.completed_at,
        ended_reason=test.ended_reason,
    )


def _event_fields(test: ModelABTest) -> dict[str, Any]:
    """What both A/B test events say about the test (as `describe` does for the API)."""
    return {
        "id": test.id,
        "test_name": test.test_name,
        "model_type": test.model_type,
        "model_a_version": test.model_a_version,
        "model_b_version": test.model_b_version,
        "mode": test.mode,
        "traffic_split": test.traffic_split,
        "created_at": test.created_at,
        "config": ABTestPlan.model_validate(test.config),
    }


def require_active(engine: Engine, test_id: uuid.UUID | str) -> ModelABTest:
    """The test, still active (ConflictError otherwise: a concurrent completion or cancel won;
    `lock_active` checks again under the row lock)."""
    test = get_test(engine, test_id)
    if test.status != "active":
        raise ConflictError(f"A/B test {test.id} is already {test.status}")
    return test


def _end(
    engine: Engine,
    test: ModelABTest,
    status: str,
    as_of: datetime,
    reason: str,
    winner: str | None,
    metrics: dict[str, Any] | None,
) -> ModelABTest:
    with transaction(engine) as session:
        return end_locked(
            session, lock_active(session, test.id), status, as_of, reason, winner, metrics
        )


def lock_active(session: Session, test_id: uuid.UUID) -> ModelABTest:
    """The test's row, locked until the caller's transaction ends (`SELECT … FOR UPDATE` on
    PostgreSQL; SQLite lets one writer in at a time anyway) — ConflictError if it is no longer
    active: a concurrent completion or cancel got there first."""
    if session.get_bind().dialect.name != "postgresql":
        # SQLite: take the write lock before reading, or a writer that committed between our
        # read and our write would make the write fail instead of waiting its turn.
        session.execute(
            update(ModelABTest).where(ModelABTest.id == test_id).values(status=ModelABTest.status)
        )
    test = session.execute(
        select(ModelABTest).where(ModelABTest.id == test_id).with_for_update()
    ).scalar_one_or_none()
    if test is None:
        raise NotFoundError(f"no A/B test {test_id}")
    if test.status != "active":
        raise ConflictError(f"A/B test {test.id} is already {test.status}")
    return test


def end_locked(
    session: Session,
    test: ModelABTest,
    status: str,
    as_of: datetime,
    reason: str,
    winner: str | None,
    metrics: dict[str, Any] | None,
) -> ModelABTest:
    """Mark a test locked by `lock_active` ended, with its `ml:ab_test_completed` event."""
    test.status, test.winner, test.completed_at, test.ended_reason = status, winner, as_of, reason
    if metrics is not None:
        test.metrics = metrics
    session.flush()
    enqueue(session, completed_event(test), as_of)
    return test
