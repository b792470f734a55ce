"""The words of the domain, each defined once: signals and their outcomes, the statuses of
training runs, model versions and A/B tests, and the policy that turns a model's P(up) into a
signal. Everything else (tables, events, the API, the replay) compares against these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from aifx_ml.errors import InvalidInputError


class Signal(StrEnum):
    BUY = "buy"
    SELL = "sell"
    HOLD = "hold"


class Outcome(StrEnum):
    PENDING = "pending"
    WIN = "win"
    LOSS = "loss"
    BREAKEVEN = "breakeven"


class TrainingType(StrEnum):
    FULL = "full"
    INCREMENTAL = "incremental"


class TrainingStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


class ModelStatus(StrEnum):
    """`model_versions.status`: where a version stands in the registry."""

    TRAINING = "training"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


class TestStatus(StrEnum):
    """`model_ab_test.status`."""

    __test__ = False  # not a pytest test class, whatever its name

    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class TestMode(StrEnum):
    """`model_ab_test.mode`: how a test compares its two versions.

    split: a share of requests is answered by the challenger (B), the rest by Production (A);
    shadow: Production answers every request and the challenger answers the same requests
    unseen (recorded in `shadow_signals`), so the two are compared request by request.
    """

    __test__ = False  # not a pytest test class, whatever its name

    SPLIT = "split"
    SHADOW = "shadow"


class Recommendation(StrEnum):
    """What a monthly evaluation recommends for a Production version."""

    KEEP = "keep"
    RETRAIN = "retrain"
    ROLLBACK = "rollback"


SIGNALS: tuple[str, ...] = tuple(s.value for s in Signal)
OUTCOMES: tuple[str, ...] = tuple(o.value for o in Outcome)


@dataclass(frozen=True)
class SignalPolicy:
    """How probabilities become signals, and when not to trust them."""

    buy_threshold: float = 0.55  # P(up) at or above: buy
    sell_threshold: float = 0.45  # P(up) at or below: sell
    max_model_age: timedelta = timedelta(days=14)  # since it was trained
    max_input_bars: int = 2  # the newest candle may be this many bars old

    def __post_init__(self) -> None:
        if not 0 <= self.sell_threshold <= self.buy_threshold <= 1:
            raise InvalidInputError(
                "invalid thresholds: need 0 <= sell_threshold <= buy_threshold <= 1"
            )

    def ageing(self, trained_at: datetime, now: datetime, notice: timedelta) -> Ageing:
        """Past `max_model_age` a model is stale (it answers hold); within `notice` of it,
        ageing."""
        age = now - trained_at
        if age > self.max_model_age:
            return Ageing.STALE
        if age >= self.max_model_age - notice:
            return Ageing.AGEING
        return Ageing.OK


class Ageing(StrEnum):
    """A serving model's age against the staleness limit (`SignalPolicy.max_model_age`)."""

    OK = "ok"
    AGEING = "ageing"  # within the notice of the limit
    STALE = "stale"  # past it: every answer is a forced hold


AGEING_NOTICE = timedelta(days=2)  # Production this close to the limit raises an alert


@dataclass(frozen=True)
class ProductionAge:
    """The Production version of a model type, when it was trained, and the challenger of its
    running test if one runs (a candidate that passed the gate and may replace it)."""

    model_type: str
    version: str
    trained_at: datetime
    candidate: str | None = None

    def late(self, state: Ageing) -> bool:
        """Whether its age (`SignalPolicy.ageing`) needs people: stale, or ageing with no
        candidate under test to replace it."""
        return state == Ageing.STALE or (state == Ageing.AGEING and self.candidate is None)


def decide(p_up: float, policy: SignalPolicy) -> tuple[Signal, float]:
    """(signal, confidence) from P(up): buy / sell past the thresholds, hold between.

    Confidence is the probability of the direction called; for a hold, how close P(up) is
    to even (1 at 0.5).
    """
    if p_up >= policy.buy_threshold:
        return Signal.BUY, p_up
    if p_up <= policy.sell_threshold:
        return Signal.SELL, 1.0 - p_up
    return Signal.HOLD, 1.0 - 2.0 * abs(p_up - 0.5)
