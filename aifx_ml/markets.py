"""Pairs, timeframes, label horizons and the FX trading week: the vocabulary every stage shares.

Candle timestamps are bar *open* times in UTC. The market is taken to be closed from
Friday 21:00 to Sunday 22:00 UTC (wide enough for both the summer and the winter close).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pandas as pd

from aifx_ml.errors import InvalidInputError

PAIR_RE = re.compile(r"^[A-Z]{3}/[A-Z]{3}$")
TIMEFRAMES: tuple[str, ...] = ("1min", "5min", "15min", "30min", "1h", "4h", "1d", "1w", "1M")

# How long after a signal the market is looked at to label it (DESIGN.md).
HORIZONS: dict[str, pd.Timedelta] = {
    "1min": pd.Timedelta(minutes=5),
    "5min": pd.Timedelta(minutes=15),
    "15min": pd.Timedelta(minutes=30),
    "30min": pd.Timedelta(hours=1),
    "1h": pd.Timedelta(hours=4),
    "4h": pd.Timedelta(hours=24),
    "1d": pd.Timedelta(days=7),
    "1w": pd.Timedelta(days=30),
    "1M": pd.Timedelta(days=90),
}

# Candle lengths that are fixed durations (everything but the calendar month).
FIXED_STEPS: dict[str, pd.Timedelta] = {
    "1min": pd.Timedelta(minutes=1),
    "5min": pd.Timedelta(minutes=5),
    "15min": pd.Timedelta(minutes=15),
    "30min": pd.Timedelta(minutes=30),
    "1h": pd.Timedelta(hours=1),
    "4h": pd.Timedelta(hours=4),
    "1d": pd.Timedelta(days=1),
    "1w": pd.Timedelta(days=7),
}

WEEKEND_CLOSE = (4, 21)  # Friday 21:00 UTC
WEEKEND_OPEN = (6, 22)  # Sunday 22:00 UTC


def validate_pair(pair: str) -> str:
    """Return the pair if it looks like `EUR/USD`, else raise one clear error."""
    if not isinstance(pair, str) or not PAIR_RE.match(pair):
        raise InvalidInputError(
            f"invalid pair {pair!r}: expected three capitals/three capitals, e.g. EUR/USD"
        )
    return pair


def validate_timeframe(timeframe: str) -> str:
    """Return the timeframe if it is one DESIGN.md names, else raise one clear error."""
    if timeframe not in TIMEFRAMES:
        raise InvalidInputError(
            f"invalid timeframe {timeframe!r}: expected one of {' '.join(TIMEFRAMES)}"
        )
    return timeframe


def horizon(timeframe: str) -> pd.Timedelta:
    """The labeling horizon of a timeframe (1h → 4h, 1d → 7d, ...)."""
    return HORIZONS[validate_timeframe(timeframe)]


def step_offset(timeframe: str) -> pd.Timedelta | pd.DateOffset:
    """The length of one candle: a fixed duration, or a calendar month for `1M`."""
    validate_timeframe(timeframe)
    if timeframe == "1M":
        return pd.DateOffset(months=1)
    return FIXED_STEPS[timeframe]


def candle_close_times(timestamps: pd.DatetimeIndex, timeframe: str) -> pd.DatetimeIndex:
    """When each candle's close becomes known: its open time plus one step."""
    return timestamps + step_offset(timeframe)


def newest_closed_open(now: pd.Timestamp, timeframe: str) -> pd.Timestamp | None:
    """Open time of the newest candle on the grid that has closed by `now` (None for 1w and 1M,
    whose grids are not fixed offsets from the epoch). Whether the market was open then is
    not checked: it is the newest candle that *could* exist."""
    validate_timeframe(timeframe)
    if timeframe not in FIXED_STEPS or timeframe == "1w":
        return None
    step = FIXED_STEPS[timeframe]
    moment = pd.Timestamp(now)
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    slot = (moment - step).value // step.value * step.value  # epoch-aligned, as the grid is
    return pd.Timestamp(slot, tz="UTC")


def expected_grid(start: pd.Timestamp, end: pd.Timestamp, timeframe: str) -> pd.DatetimeIndex:
    """Every candle open time in [start, end] on the timeframe's grid while the market is open."""
    validate_timeframe(timeframe)
    if timeframe == "1M":
        grid = pd.date_range(start.normalize().replace(day=1), end, freq="MS", tz="UTC")
        return grid[grid >= start]
    grid = pd.date_range(start, end, freq=FIXED_STEPS[timeframe], tz="UTC")
    if timeframe == "1w":
        return grid
    return grid[~market_closed(grid, timeframe)]


def market_closed(timestamps: pd.DatetimeIndex, timeframe: str) -> np.ndarray:
    """True where no candle is expected because the FX market is shut for the weekend."""
    if timeframe in ("1w", "1M"):
        return np.zeros(len(timestamps), dtype=bool)
    dow = timestamps.dayofweek.to_numpy()
    if timeframe == "1d":
        return dow >= 5
    minutes = timestamps.hour.to_numpy() * 60 + timestamps.minute.to_numpy()
    close_min = WEEKEND_CLOSE[1] * 60
    open_min = WEEKEND_OPEN[1] * 60
    closed: np.ndarray = (
        ((dow == WEEKEND_CLOSE[0]) & (minutes >= close_min))
        | (dow == 5)
        | ((dow == WEEKEND_OPEN[0]) & (minutes < open_min))
    )
    return closed


def iter_series(frame: pd.DataFrame) -> Iterator[tuple[str, str, npt.NDArray[np.intp]]]:
    """(pair, timeframe, row positions) of every series in a frame with those two columns."""
    groups: dict[tuple[str, str], npt.NDArray[np.intp]] = frame.groupby(
        ["pair", "timeframe"]
    ).indices  # type: ignore[assignment]
    for (pair, timeframe), rows in groups.items():
        yield str(pair), str(timeframe), rows


def missing_candles(
    newest: pd.Timestamp, timeframe: str, now: pd.Timestamp, enough: int | None = None
) -> int:
    """How many candles after `newest` should have closed by `now` while the market was open
    (counted up to `enough` when given: all a staleness check needs to know)."""
    step = step_offset(timeframe)
    first, last = pd.Timestamp(newest) + step, pd.Timestamp(now) - step  # opens closed by now
    if enough is not None and timeframe in FIXED_STEPS and timeframe != "1w":
        # Any span of `enough` bars plus three days holds `enough` trading bars (the weekend
        # is 49 h), so a series dead for a year costs no more than one a day behind.
        last = min(last, first + enough * FIXED_STEPS[timeframe] + pd.Timedelta(days=3))
    if last < first:
        return 0
    count = len(expected_grid(first, last, timeframe))
    return count if enough is None else min(count, enough)


def approx_step(timeframe: str) -> pd.Timedelta:
    """A candle's length, a calendar month counted as 31 days."""
    return FIXED_STEPS.get(timeframe, pd.Timedelta(days=31))
