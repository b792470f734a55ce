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
class Cutoffs:
    """Where P(up) becomes a signal: buy at or above `buy`, sell at or below `sell`, hold
    between; None: that direction is never called."""

    buy: float | None
    sell: float | None

    def __post_init__(self) -> None:
        buy = 1.0 if self.buy is None else self.buy
        sell = 0.0 if self.sell is None else self.sell
        if not 0 <= sell <= buy <= 1:
            raise InvalidInputError(
                f"invalid thresholds buy {self.buy}, sell {self.sell}: need 0 <= sell <= buy <= 1"
            )


@dataclass(frozen=True)
class SignalPolicy:
    """How probabilities become signals, and when not to trust them.

    Each version signals at its own thresholds, chosen on the data it did not learn from
    (`aifx_ml.models.calibration`); `buy_threshold` / `sell_threshold` serve versions that
    have none (cards from before calibration), or every version when `override` is set.
    """

    buy_threshold: float = 0.55  # P(up) at or above: buy
    sell_threshold: float = 0.45  # P(up) at or below: sell
    max_model_age: timedelta = timedelta(days=14)  # since it was trained
    max_input_bars: int = 2  # the newest candle may be this many bars old
    override: bool = False  # the global thresholds above for every version, not its own

    def __post_init__(self) -> None:
        Cutoffs(self.buy_threshold, self.sell_threshold)  # raises on thresholds out of order

    @classmethod
    def with_thresholds(cls, buy: float | None, sell: float | None) -> SignalPolicy:
        """The policy of a command line's `--buy-threshold` / `--sell-threshold`: neither
        given, each version's own; either given, both global ones (the other at its default)
        override every version's."""
        if buy is None and sell is None:
            return cls()
        return cls(
            buy_threshold=cls.buy_threshold if buy is None else buy,
            sell_threshold=cls.sell_threshold if sell is None else sell,
            override=True,
        )

    def cutoffs(self, own: Cutoffs | None) -> Cutoffs:
        """The thresholds a version answers with: its `own` unless overridden or absent."""
        if own is not None and not self.override:
            return own
        return Cutoffs(self.buy_threshold, self.sell_threshold)

    def describe(self) -> str:
        """The rule in words, for reports and logs."""
        global_ = f"buy at P(up) ≥ {self.buy_threshold}, sell at ≤ {self.sell_threshold}"
        if self.override:
            return f"every version: {global_} (override)"
        return f"each version's own thresholds (where a version has none: {global_})"

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


def decide(p_up: float, cutoffs: Cutoffs) -> tuple[Signal, float]:
    """(signal, confidence) from P(up): buy / sell past the thresholds, hold between.

    Confidence is the probability of the direction called; for a hold, how close P(up) is
    to even (1 at 0.5).
    """
    if cutoffs.buy is not None and p_up >= cutoffs.buy:
        return Signal.BUY, p_up
    if cutoffs.sell is not None and p_up <= cutoffs.sell:
        return Signal.SELL, 1.0 - p_up
    return Signal.HOLD, 1.0 - 2.0 * abs(p_up - 0.5)
