"""Validation of candle rows and detection of gaps in a series, as data in, data out.

Every row read ends in exactly one of three places: valid, an identical repeat of an earlier
row of the same file (a duplicate), or rejected with the reason — so the counts add up. A large
file is validated in chunks: `SeenCandles` carries the rows accepted so far from one chunk to
the next, so a repeat is judged against its first row wherever in the file that was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from aifx_ml.markets import FIXED_STEPS, expected_grid, validate_pair, validate_timeframe

PRICE_COLUMNS = ("open", "high", "low", "close")
VALUE_COLUMNS = (*PRICE_COLUMNS, "volume")

# Epoch numbers carry no unit: it is read from each value's magnitude. Below 1e11 they are
# seconds (1e11 s is the year 5138), then milliseconds, microseconds, nanoseconds, each range
# starting where the previous unit's numbers would pass the year 5138.
_EPOCH_UNITS: tuple[tuple[float, int], ...] = ((1e11, 10**9), (1e14, 10**6), (1e17, 10**3))
_NS_LIMIT = 9.2e18  # pandas times are int64 nanoseconds: about 1677-09-21 to 2262-04-11
_DAY_NS = pd.Timedelta(days=1).value


@dataclass(frozen=True)
class ValidatedCandles:
    """The outcome of validating one file's rows (or one chunk of them)."""

    valid: pd.DataFrame  # timestamp (UTC), open, high, low, close, volume; index = row number
    rejected: pd.DataFrame  # the raw columns plus `reason`; index = row number
    duplicates: int  # rows identical to an earlier row of the same input


@dataclass
class SeenCandles:
    """The valid rows of one input so far, in input order: what later repeats are judged by."""

    frames: list[pd.DataFrame] = field(default_factory=list)
    newest: pd.Timestamp | None = None
    _by_time: pd.DataFrame | None = None  # every seen row indexed by timestamp, built on need

    def add(self, valid: pd.DataFrame) -> None:
        """Remember rows that were accepted (their timestamps are new to this input)."""
        if valid.empty:
            return
        self.frames.append(valid)
        newest = valid["timestamp"].max()
        self.newest = newest if self.newest is None else max(self.newest, newest)
        self._by_time = None

    def earlier(self, timestamps: pd.Series) -> pd.DataFrame:
        """The seen rows at these timestamps: `row` (its number) and the values, by timestamp."""
        if self.newest is None or timestamps.empty or timestamps.min() > self.newest:
            return _EMPTY_SEEN  # the usual case, a file in time order: nothing to look up
        if self._by_time is None:
            self._by_time = self.rows().reset_index().set_index("timestamp")
        return self._by_time[self._by_time.index.isin(timestamps)]

    def rows(self) -> pd.DataFrame:
        """Every seen row, in input order, as `validate_candles` returns valid rows."""
        if not self.frames:
            return _EMPTY_VALID.copy()
        if len(self.frames) > 1:  # keep one frame, so asking twice does not copy twice
            self.frames = [pd.concat(self.frames)]
        return self.frames[0]


_EMPTY_VALID = pd.DataFrame(
    {"timestamp": pd.Series(dtype="datetime64[ns, UTC]")}
    | {c: pd.Series(dtype=np.float64) for c in VALUE_COLUMNS},
    index=pd.Index([], dtype=np.int64, name="row"),
)
_EMPTY_SEEN = _EMPTY_VALID.reset_index().set_index("timestamp")


@dataclass(frozen=True)
class Gap:
    """Candles missing from a series while the market was open."""

    start: pd.Timestamp  # first missing candle open time
    end: pd.Timestamp  # last missing candle open time
    missing: int


def parse_timestamps(values: pd.Series) -> pd.Series:
    """Parse timestamps to UTC, row by row: ISO strings (aware or naive → UTC), vendor formats,
    epoch numbers in s, ms, µs or ns (the unit read from each value's magnitude). NaT where a
    value does not parse or is out of range."""
    return _parse_timestamps(values)[0]


def _parse_timestamps(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(parsed, out_of_range): out_of_range marks epoch numbers no unit makes a valid time."""
    text = values.astype(str).str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    numeric = numbers.notna().to_numpy() & np.isfinite(numbers.to_numpy(np.float64))
    ns = np.full(len(text), np.iinfo(np.int64).min, dtype=np.int64)  # NaT
    out_of_range = np.zeros(len(text), dtype=bool)
    if numeric.any():
        ns[numeric], out_of_range[numeric] = _epoch_ns(text[numeric], numbers[numeric])
    strings = ~numeric
    if strings.any():
        dates = _parse_date_strings(text[strings])
        ns[strings] = dates.astype("int64").to_numpy()  # NaT is int64's minimum either way
    parsed = pd.Series(pd.to_datetime(ns, utc=True), index=values.index)
    return parsed, pd.Series(out_of_range, index=values.index)


def _parse_date_strings(text: pd.Series) -> pd.Series:
    """Date strings to UTC: ISO first (in C), vendor formats and anything else after."""
    dates = _parse_iso(text)
    retry = dates.isna() & (text != "")
    if retry.any():
        # MT4 writes 2026.01.05 and Dukascopy 05.01.2026 (day first): both become ISO dates,
        # so the day and month can never swap from one row to the next.
        cleaned = text[retry].str.replace(r"^(\d{4})\.(\d{2})\.(\d{2})", r"\1-\2-\3", regex=True)
        cleaned = cleaned.str.replace(r"^(\d{2})\.(\d{2})\.(\d{4})", r"\3-\2-\1", regex=True)
        again = _parse_iso(cleaned)
        rest = again.isna()
        if rest.any():  # the slow parser, for what ISO cannot read
            again[rest] = pd.to_datetime(cleaned[rest], utc=True, errors="coerce", format="mixed")
        dates[retry] = again
    return dates


def _parse_iso(text: pd.Series) -> pd.Series:
    """ISO 8601 strings to UTC, NaT where not ISO. Zoned and naive strings are parsed apart:
    given both at once, pandas applies the first offset it meets to the naive ones."""
    zoned = text.str.contains(r"[T ]\d.*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$", regex=True)
    dates = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    for group in (zoned, ~zoned):
        if group.any():
            dates[group] = pd.to_datetime(text[group], utc=True, errors="coerce", format="ISO8601")
    return dates


def _epoch_ns(text: pd.Series, numbers: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Nanoseconds since the epoch of each number, and where that is out of range."""
    magnitude = numbers.abs().to_numpy(np.float64)
    factor = np.ones(len(numbers), dtype=np.int64)  # nanoseconds from 1e17 on
    for below, ns_per_unit in reversed(_EPOCH_UNITS):
        factor[magnitude < below] = ns_per_unit
    ns = np.zeros(len(numbers), dtype=np.int64)
    as_float = numbers.to_numpy(np.float64) * factor
    in_range = np.abs(as_float) < _NS_LIMIT
    # Integers are converted exactly (a float has too few digits for nanoseconds); fractions
    # of a second or millisecond through the float, which is exact to well under a microsecond.
    integer = text.str.fullmatch(r"[+-]?\d{1,19}").to_numpy() & in_range
    if integer.any():
        ns[integer] = text[integer].astype(np.int64).to_numpy() * factor[integer]
    fraction = in_range & ~integer
    ns[fraction] = np.round(as_float[fraction]).astype(np.int64)
    ns[~in_range] = np.iinfo(np.int64).min  # NaT
    return ns, ~in_range


def off_grid(timestamps: pd.Series, timeframe: str) -> pd.Series:
    """True where a timestamp is not a candle open time of the timeframe: 1min … 1d on their
    UTC grid counted from the epoch (1d at 00:00 UTC), 1w at 00:00 UTC (vendors start the week
    on Sunday or Monday), 1M at 00:00 UTC on the 1st. NaT is not off the grid."""
    validate_timeframe(timeframe)
    present = timestamps.notna()
    ns = timestamps.astype("int64")
    off: pd.Series
    if timeframe in FIXED_STEPS and timeframe != "1w":
        off = ns % FIXED_STEPS[timeframe].value != 0
    elif timeframe == "1w":
        off = ns % _DAY_NS != 0
    else:
        off = (ns % _DAY_NS != 0) | (timestamps.dt.day != 1)
    return present & off


def validate_candles(
    raw: pd.DataFrame,
    pair: str,
    timeframe: str,
    as_of: datetime,
    seen: SeenCandles | None = None,
) -> ValidatedCandles:
    """Check every row of a canonical candle frame (see reader.py) and sort them out.

    Rules: the timestamp parses (an epoch number in range) and is not after `as_of`; it sits on
    the timeframe's grid (see `off_grid`); prices are finite numbers > 0; high >= max(open,
    close) and low <= min(open, close); volume is a number >= 0. A later row with the timestamp
    of an earlier valid row is a duplicate when identical, rejected when it differs. Pass the
    same `seen` to every chunk of one input to judge repeats across chunks; it is updated with
    this chunk's valid rows. Reasons depend on the row alone (not on `as_of`'s value), so the
    same row is refused with the same words by every run.
    """
    validate_pair(pair)
    validate_timeframe(timeframe)
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware (UTC)")
    ts, out_of_range = _parse_timestamps(raw["timestamp"])
    prices = {c: pd.to_numeric(raw[c], errors="coerce") for c in PRICE_COLUMNS}
    volume = pd.to_numeric(raw["volume"].replace("", "0"), errors="coerce")

    reasons = pd.Series("", index=raw.index, dtype=object)

    def flag(mask: pd.Series, reason: str) -> None:
        hit = mask & (reasons == "")  # the first rule a row breaks is the one reported
        reasons[hit] = reason

    flag(out_of_range, "timestamp is out of range (epoch number)")
    flag(ts.isna(), "timestamp does not parse")
    flag(ts > pd.Timestamp(as_of), "timestamp is in the future")
    flag(off_grid(ts, timeframe), f"timestamp is not on the {timeframe} grid")
    for column, values in prices.items():
        flag(values.isna() | ~np.isfinite(values), f"{column} is not a number")
        flag(values <= 0, f"{column} is not > 0")
    flag(prices["high"] < np.maximum(prices["open"], prices["close"]), "high < max(open, close)")
    flag(prices["low"] > np.minimum(prices["open"], prices["close"]), "low > min(open, close)")
    flag(volume.isna() | ~np.isfinite(volume) | (volume < 0), "volume is not a number >= 0")

    clean = pd.DataFrame({"timestamp": ts, **prices, "volume": volume}, index=raw.index)
    clean.index.name = "row"
    ok = reasons == ""
    passed = clean[ok]
    seen = seen if seen is not None else SeenCandles()
    # Repeats are judged among rows that passed: a refused row cannot shadow a good one. Each
    # timestamp's first row (earlier chunks first) is kept; a later one is compared with it.
    candidates = pd.concat([seen.earlier(passed["timestamp"]).reset_index(), passed.reset_index()])
    first = candidates.drop_duplicates("timestamp").set_index("timestamp")
    kept = first.reindex(passed["timestamp"])
    repeat = kept["row"].to_numpy() != passed.index.to_numpy()
    same = (kept[list(VALUE_COLUMNS)].to_numpy() == passed[list(VALUE_COLUMNS)].to_numpy()).all(
        axis=1
    )
    conflicting = repeat & ~same
    if conflicting.any():
        first_rows = pd.Series(kept["row"].to_numpy()[conflicting], index=passed.index[conflicting])
        reasons[first_rows.index] = "conflicting duplicate of row " + first_rows.astype(str)
    valid = passed[~repeat]
    seen.add(valid)
    rejected = raw[reasons != ""].assign(reason=reasons[reasons != ""])
    return ValidatedCandles(valid=valid, rejected=rejected, duplicates=int((repeat & same).sum()))


def find_gaps(timestamps: pd.Series | pd.DatetimeIndex, timeframe: str) -> list[Gap]:
    """Runs of candles missing between the first and last timestamp, weekends excepted."""
    present = pd.DatetimeIndex(timestamps).sort_values().unique()
    if len(present) < 2:
        return []
    grid = expected_grid(present[0], present[-1], timeframe)
    missing = grid.difference(present)
    if missing.empty:
        return []
    # A new run starts wherever the next expected candle is not the previous missing one + 1.
    position = grid.get_indexer(missing)
    run_id = np.cumsum(np.diff(position, prepend=position[0] - 1) != 1)
    runs = pd.Series(missing, index=run_id).groupby(level=0)
    return [Gap(start=g.iloc[0], end=g.iloc[-1], missing=len(g)) for _, g in runs]
