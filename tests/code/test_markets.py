"""Pairs, timeframes, horizons and the FX trading week."""

from __future__ import annotations

import pandas as pd
import pytest

from aifx_ml.errors import InvalidInputError
from aifx_ml.markets import (
    TIMEFRAMES,
    candle_close_times,
    expected_grid,
    horizon,
    market_closed,
    validate_pair,
    validate_timeframe,
)

DESIGN_TIMEFRAMES = ["1min", "5min", "15min", "30min", "1h", "4h", "1d", "1w", "1M"]


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def _index(*texts: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex([_ts(t) for t in texts])


@pytest.mark.parametrize("pair", ["EUR/USD", "USD/JPY", "GBP/CHF"])
def test_validate_pair_accepts(pair: str) -> None:
    assert validate_pair(pair) == pair


@pytest.mark.parametrize(
    "pair", ["EURUSD", "eur/usd", "EUR/US", "EUR-USD", "EUR/USDX", " EUR/USD", ""]
)
def test_validate_pair_rejects_naming_the_value(pair: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_pair(pair)
    assert repr(pair) in str(info.value)


def test_timeframes_are_the_design_list() -> None:
    assert list(TIMEFRAMES) == DESIGN_TIMEFRAMES


@pytest.mark.parametrize("timeframe", DESIGN_TIMEFRAMES)
def test_validate_timeframe_accepts(timeframe: str) -> None:
    assert validate_timeframe(timeframe) == timeframe


@pytest.mark.parametrize("timeframe", ["2h", "1H", "1m", "60min", "1D", "daily", ""])
def test_validate_timeframe_rejects_naming_the_value(timeframe: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_timeframe(timeframe)
    assert repr(timeframe) in str(info.value)


@pytest.mark.parametrize(
    ("timeframe", "expected"),
    [
        ("1min", pd.Timedelta(minutes=5)),
        ("5min", pd.Timedelta(minutes=15)),
        ("15min", pd.Timedelta(minutes=30)),
        ("30min", pd.Timedelta(hours=1)),
        ("1h", pd.Timedelta(hours=4)),
        ("4h", pd.Timedelta(hours=24)),
        ("1d", pd.Timedelta(days=7)),
        ("1w", pd.Timedelta(days=30)),
        ("1M", pd.Timedelta(days=90)),
    ],
)
def test_horizon_matches_design(timeframe: str, expected: pd.Timedelta) -> None:
    assert horizon(timeframe) == expected


def test_horizon_of_unknown_timeframe_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError):
        horizon("2h")


@pytest.mark.parametrize(
    ("when", "closed"),
    [
        ("2026-01-09 20:00", False),  # Friday
        ("2026-01-09 21:00", True),
        ("2026-01-10 12:00", True),  # Saturday
        ("2026-01-11 21:00", True),  # Sunday
        ("2026-01-11 22:00", False),
        ("2026-01-07 03:00", False),  # Wednesday
    ],
)
def test_market_closed_1h(when: str, closed: bool) -> None:
    assert market_closed(_index(when), "1h").tolist() == [closed]


def test_market_closed_daily_and_longer() -> None:
    days = _index("2026-01-09", "2026-01-10", "2026-01-11", "2026-01-12")  # Fri..Mon
    assert market_closed(days, "1d").tolist() == [False, True, True, False]
    assert market_closed(days, "1w").tolist() == [False] * 4
    assert market_closed(days, "1M").tolist() == [False] * 4


def test_expected_grid_1h_skips_the_weekend() -> None:
    grid = expected_grid(_ts("2026-01-09 19:00"), _ts("2026-01-11 23:00"), "1h")
    assert grid.equals(
        _index("2026-01-09 19:00", "2026-01-09 20:00", "2026-01-11 22:00", "2026-01-11 23:00")
    )


def test_expected_grid_1m_uses_month_starts() -> None:
    grid = expected_grid(_ts("2026-01-15"), _ts("2026-04-10"), "1M")
    assert grid.equals(_index("2026-02-01", "2026-03-01", "2026-04-01"))
    from_start = expected_grid(_ts("2026-01-01"), _ts("2026-03-01"), "1M")
    assert from_start.equals(_index("2026-01-01", "2026-02-01", "2026-03-01"))


def test_expected_grid_1w_keeps_every_step() -> None:
    grid = expected_grid(_ts("2026-01-04"), _ts("2026-01-25"), "1w")  # Sundays
    assert len(grid) == 4


@pytest.mark.parametrize(
    ("timeframe", "opens", "closes"),
    [
        ("1min", ["2026-01-05 10:59"], ["2026-01-05 11:00"]),
        ("1h", ["2026-01-05 10:00", "2026-01-31 23:00"], ["2026-01-05 11:00", "2026-02-01"]),
        ("4h", ["2026-01-05 20:00"], ["2026-01-06 00:00"]),
        ("1d", ["2026-01-05"], ["2026-01-06"]),
        ("1w", ["2026-01-04"], ["2026-01-11"]),
        (
            "1M",
            ["2026-01-01", "2026-02-01", "2026-12-01"],
            ["2026-02-01", "2026-03-01", "2027-01-01"],
        ),
    ],
)
def test_candle_close_times_add_one_step(
    timeframe: str, opens: list[str], closes: list[str]
) -> None:
    assert candle_close_times(_index(*opens), timeframe).equals(_index(*closes))
