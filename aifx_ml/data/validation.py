"""Validation of candle rows and detection of gaps in a series, as data in, data out.

Every row read ends in exactly one of three places: valid, an identical repeat of an earlier
row of the same file (a duplicate), or rejected with the reason — so the counts add up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
import pandas as pd

from aifx_ml.markets import FIXED_STEPS, expected_grid, validate_pair, validate_timeframe

PRICE_COLUMNS = ("open", "high", "low", "close")
# Intraday candles must open on their grid; daily and longer bars follow the vendor's own day
# (often the New York close), so they are not checked.
_ALIGNED = ("1min", "5min", "15min", "30min", "1h")


@dataclass(frozen=True)
class ValidatedCandles:
    """The outcome of validating one file's rows."""

    valid: pd.DataFrame  # timestamp (UTC), open, high, low, close, volume; index = row number
    rejected: pd.DataFrame  # the raw columns plus `reason`; index = row number
    duplicates: int  # rows identical to an earlier row of the same input


@dataclass(frozen=True)
class Gap:
    """Candles missing from a series while the market was open."""

    start: pd.Timestamp  # first missing candle open time
    end: pd.Timestamp  # last missing candle open time
    missing: int


def parse_timestamps(values: pd.Series) -> pd.Series:
    """Parse timestamps to UTC: ISO strings (aware or naive → UTC), vendor formats, epoch s/ms."""
    numeric = pd.to_numeric(values, errors="coerce")
    if len(values) and numeric.notna().all():
        # Epoch numbers: milliseconds once they are too large to be seconds.
        unit: Literal["ms", "s"] = "ms" if float(numeric.abs().max()) > 1e11 else "s"
        parsed: pd.Series = pd.to_datetime(numeric, unit=unit, utc=True)
        return parsed
    # MT4 writes 2026.01.05 and Dukascopy 05.01.2026 (day first): both become ISO dates, so
    # the day and month can never swap from one row to the next.
    cleaned = values.str.replace(r"^(\d{4})\.(\d{2})\.(\d{2})", r"\1-\2-\3", regex=True)
    cleaned = cleaned.str.replace(r"^(\d{2})\.(\d{2})\.(\d{4})", r"\3-\2-\1", regex=True)
    return pd.to_datetime(cleaned, utc=True, errors="coerce", format="mixed")


def validate_candles(
    raw: pd.DataFrame, pair: str, timeframe: str, as_of: datetime
) -> ValidatedCandles:
    """Check every row of a canonical candle frame (see reader.py) and sort them out.

    Rules: the timestamp parses and is not after `as_of`; intraday timestamps sit on the
    timeframe's grid; prices are finite numbers > 0; high >= max(open, close) and
    low <= min(open, close); volume is a number >= 0. A later row with the timestamp of an
    earlier valid row is a duplicate when identical, rejected when it differs.
    """
    validate_pair(pair)
    validate_timeframe(timeframe)
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware (UTC)")
    ts = parse_timestamps(raw["timestamp"])
    prices = {c: pd.to_numeric(raw[c], errors="coerce") for c in PRICE_COLUMNS}
    volume = pd.to_numeric(raw["volume"].replace("", "0"), errors="coerce")

    reasons = pd.Series("", index=raw.index, dtype=object)

    def flag(mask: pd.Series, reason: str) -> None:
        hit = mask & (reasons == "")  # the first rule a row breaks is the one reported
        reasons[hit] = reason

    flag(ts.isna(), "timestamp does not parse")
    flag(
        ts > pd.Timestamp(as_of),
        f"timestamp is in the future (after {pd.Timestamp(as_of).isoformat()})",
    )
    if timeframe in _ALIGNED:
        step_ns = FIXED_STEPS[timeframe].value
        off_grid = ts.notna() & (ts.astype("int64") % step_ns != 0)
        flag(off_grid, f"timestamp is not on the {timeframe} grid")
    for column, values in prices.items():
        flag(values.isna() | ~np.isfinite(values), f"{column} is not a number")
        flag(values <= 0, f"{column} is not > 0")
    flag(prices["high"] < np.maximum(prices["open"], prices["close"]), "high < max(open, close)")
    flag(prices["low"] > np.minimum(prices["open"], prices["close"]), "low > min(open, close)")
    flag(volume.isna() | ~np.isfinite(volume) | (volume < 0), "volume is not a number >= 0")

    clean = pd.DataFrame({"timestamp": ts, **prices, "volume": volume}, index=raw.index)
    ok = reasons == ""
    # Repeats are judged among rows that passed: a refused row cannot shadow a good one.
    repeat = clean["timestamp"].where(ok).duplicated(keep="first") & ok
    identical = repeat & clean[ok].duplicated(keep="first").reindex(raw.index, fill_value=False)
    first_row = clean[ok].reset_index().drop_duplicates("timestamp").set_index("timestamp")["row"]
    conflicting = repeat & ~identical
    if conflicting.any():
        kept = clean.loc[conflicting, "timestamp"].map(first_row)
        reasons[conflicting] = "conflicting duplicate of row " + kept.astype(str)
    valid = clean[ok & ~repeat]
    rejected = raw[reasons != ""].assign(reason=reasons[reasons != ""])
    return ValidatedCandles(valid=valid, rejected=rejected, duplicates=int(identical.sum()))


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
