"""When the scheduled flows fire over a stretch of simulated time: the deployments' cron
schedules (prefect.yaml; a test keeps the two equal), evaluated without Prefect."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aifx_ml.errors import InvalidInputError

# The order in which jobs due at the same moment run: the month's verdict first, then a fresh
# model, then the fine-tune, then the A/B look (which may promote what the others offered).
SCHEDULES: dict[str, str] = {
    "monthly-evaluation": "0 2 1 * *",
    "weekly-full": "0 1 * * 0",
    "daily-incremental": "0 1 * * *",
    "ab-evaluation": "0 * * * *",
}

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("dow", 0, 7))


@dataclass(frozen=True)
class Cron:
    """A five-field cron expression as sets of allowed values (UTC)."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month is '*'
    any_weekday: bool  # day of week is '*'

    def matches_day(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        by_day, by_weekday = day.day in self.days, (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:  # cron: one '*' means the other decides
            return by_day and by_weekday
        return by_day or by_weekday


def parse_cron(expression: str) -> Cron:
    """`*`, `*/n`, `a`, `a-b`, `a-b/n` and comma lists in each of the five fields."""
    parts = expression.split()
    if len(parts) != len(_FIELDS):
        raise InvalidInputError(f"invalid cron {expression!r}: expected five fields")
    values = [
        _field(part, name, lo, hi, expression)
        for part, (name, lo, hi) in zip(parts, _FIELDS, strict=True)
    ]
    weekdays = frozenset(d % 7 for d in values[4])  # 7 is Sunday too
    return Cron(
        frozenset(values[0]),
        frozenset(values[1]),
        frozenset(values[2]),
        frozenset(values[3]),
        weekdays,
        any_day=parts[2] == "*",
        any_weekday=parts[4] == "*",
    )


def fire_times(cron: Cron, after: datetime, until: datetime) -> list[datetime]:
    """Every moment in (after, until] the schedule fires at, in order."""
    fires: list[datetime] = []
    day = datetime(after.year, after.month, after.day, tzinfo=UTC)
    while day <= until:
        if cron.matches_day(day):
            fires += [
                moment
                for hour in sorted(cron.hours)
                for minute in sorted(cron.minutes)
                if after < (moment := day + timedelta(hours=hour, minutes=minute)) <= until
            ]
        day += timedelta(days=1)
    return fires


def due_jobs(
    after: datetime, until: datetime, schedules: Mapping[str, str] = SCHEDULES
) -> list[tuple[datetime, str]]:
    """(moment, job) for every firing in (after, until], by moment and then by the order of
    `schedules`."""
    rank = {name: i for i, name in enumerate(schedules)}
    due = [
        (moment, name)
        for name, expression in schedules.items()
        for moment in fire_times(parse_cron(expression), after, until)
    ]
    return sorted(due, key=lambda item: (item[0], rank[item[1]]))


def _field(part: str, name: str, lo: int, hi: int, expression: str) -> set[int]:
    allowed: set[int] = set()
    for item in part.split(","):
        span, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if span == "*":
                first, last = lo, hi
            elif "-" in span:
                first, last = (int(x) for x in span.split("-", 1))
            else:
                first = last = int(span)
        except ValueError:
            raise InvalidInputError(f"invalid cron {expression!r}: bad {name} {item!r}") from None
        if step < 1 or not lo <= first <= last <= hi:
            raise InvalidInputError(f"invalid cron {expression!r}: {name} {item!r} out of range")
        allowed.update(range(first, last + 1, step))
    return allowed
