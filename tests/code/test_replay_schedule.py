"""The replay's schedule: cron fields, firings over simulated time, and the same schedules as
the Prefect deployments."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from aifx_ml.errors import InvalidInputError
from aifx_ml.replay.loop import ReplaySettings, arrivals, timeline
from aifx_ml.replay.schedule import SCHEDULES, due_jobs, fire_times, parse_cron

ROOT = Path(__file__).resolve().parents[2]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_the_replay_fires_what_the_deployments_schedule() -> None:
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    crons = {d["name"]: d["schedules"][0]["cron"] for d in deployments}
    assert {name: crons[name] for name in SCHEDULES} == SCHEDULES


def test_daily_weekly_and_monthly_fire_on_their_days() -> None:
    # 2026-03-01 is a Sunday.
    after, until = at("2026-02-28T00:00:00"), at("2026-03-08T00:59:00")
    daily = fire_times(parse_cron(SCHEDULES["daily-incremental"]), after, until)
    weekly = fire_times(parse_cron(SCHEDULES["weekly-full"]), after, until)
    monthly = fire_times(parse_cron(SCHEDULES["monthly-evaluation"]), after, until)
    assert daily == [
        at(f"2026-{d}T01:00:00") for d in ["02-28", *[f"03-0{i}" for i in range(1, 8)]]
    ]
    assert weekly == [at("2026-03-01T01:00:00")]
    assert monthly == [at("2026-03-01T02:00:00")]


def test_firings_are_in_the_half_open_interval() -> None:
    hourly = parse_cron(SCHEDULES["ab-evaluation"])
    fires = fire_times(hourly, at("2026-03-02T01:00:00"), at("2026-03-02T04:00:00"))
    assert fires == [
        at("2026-03-02T02:00:00"),
        at("2026-03-02T03:00:00"),
        at("2026-03-02T04:00:00"),
    ]


def test_jobs_due_at_one_moment_run_in_schedule_order() -> None:
    due = due_jobs(at("2026-03-01T00:30:00"), at("2026-03-01T01:00:00"))
    assert due == [
        (at("2026-03-01T01:00:00"), "weekly-full"),
        (at("2026-03-01T01:00:00"), "daily-incremental"),
        (at("2026-03-01T01:00:00"), "ab-evaluation"),
    ]


def test_cron_ranges_lists_steps_and_either_day_rule() -> None:
    cron = parse_cron("0,30 8-10/2 1 * 1")
    assert cron.minutes == {0, 30} and cron.hours == {8, 10}
    # Day of month and day of week both restricted: either one matches (cron's rule).
    assert cron.matches_day(at("2026-03-01T00:00:00"))  # the 1st, a Sunday
    assert cron.matches_day(at("2026-03-02T00:00:00"))  # a Monday
    assert not cron.matches_day(at("2026-03-03T00:00:00"))
    assert parse_cron("0 0 * * 7").weekdays == {0}


@pytest.mark.parametrize(
    "expression", ["0 1 * *", "61 * * * *", "0 1 * * mon", "*/0 * * * *", "0 5-2 * * *"]
)
def test_bad_cron_is_one_clear_error(expression: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid cron"):
        parse_cron(expression)


def test_timeline_has_every_close_and_the_weekend_firings() -> None:
    stamps = pd.date_range("2026-02-27T20:00:00", periods=2, freq="h", tz="UTC")
    candles = pd.DataFrame(
        {"timestamp": stamps, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}
    )
    known = arrivals({("EUR/USD", "1h"): candles})
    assert list(known["closes_at"]) == list(stamps + pd.Timedelta(hours=1))
    plan = timeline(
        known, at("2026-02-27T20:30:00"), at("2026-03-01T01:00:00"), ReplaySettings(ab_look_hours=6)
    )
    moments = dict(plan)
    assert moments[at("2026-02-27T21:00:00")] == []
    assert moments[at("2026-02-27T22:00:00")] == []
    assert moments[at("2026-02-28T01:00:00")] == ["daily-incremental"]
    assert moments[at("2026-02-28T06:00:00")] == ["ab-evaluation"]
    assert moments[at("2026-03-01T01:00:00")] == ["weekly-full", "daily-incremental"]
    assert [m for m, _ in plan] == sorted(moments)
