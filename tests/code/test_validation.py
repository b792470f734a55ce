"""Validation of candle rows (every row lands in exactly one place) and gap detection."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aifx_ml.data.validation import (
    Gap,
    SeenCandles,
    ValidatedCandles,
    find_gaps,
    parse_timestamps,
    validate_candles,
)
from aifx_ml.errors import InvalidInputError

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
COLUMNS = ["timestamp", "open", "high", "low", "close", "volume"]
GOOD = ["2026-01-05 10:00", "1.1", "1.2", "1.0", "1.15", "10"]


def _raw(*rows: list[str]) -> pd.DataFrame:
    """A canonical frame as reader.py returns it: string columns, 1-based row index."""
    return pd.DataFrame(
        [list(r) for r in rows], columns=COLUMNS, index=pd.RangeIndex(1, len(rows) + 1, name="row")
    )


def _row(timestamp: str = GOOD[0], **values: str) -> list[str]:
    row = dict(zip(COLUMNS, GOOD, strict=True))
    row["timestamp"] = timestamp
    row.update(values)
    return [row[c] for c in COLUMNS]


def _validate(raw: pd.DataFrame, timeframe: str = "1h") -> ValidatedCandles:
    """validate_candles plus the invariant every call must keep: each row lands exactly once."""
    result = validate_candles(raw, "EUR/USD", timeframe, AS_OF)
    assert len(result.valid) + len(result.rejected) + result.duplicates == len(raw)
    assert set(result.valid.index).isdisjoint(result.rejected.index)
    assert set(result.valid.index) | set(result.rejected.index) <= set(raw.index)
    assert result.valid["timestamp"].is_unique
    return result


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# --- parse_timestamps ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-05 13:00", "2026-01-05 13:00"),  # naive is taken as UTC
        ("2026-01-05T13:00:00+01:00", "2026-01-05 12:00"),
        ("2026-01-05T13:00:00Z", "2026-01-05 13:00"),
        ("2026.01.05 13:00", "2026-01-05 13:00"),  # MT4
    ],
)
def test_parse_timestamps_strings(text: str, expected: str) -> None:
    parsed = parse_timestamps(pd.Series([text]))
    assert str(parsed.dt.tz) == "UTC"
    assert parsed.iloc[0] == _ts(expected)


def test_parse_timestamps_mixed_offsets_in_one_column() -> None:
    parsed = parse_timestamps(pd.Series(["2026-01-05 13:00", "2026-01-05T15:00:00+02:00"]))
    assert parsed.tolist() == [_ts("2026-01-05 13:00"), _ts("2026-01-05 13:00")]
    # Zoned first, then naive: the naive row must not borrow the first row's offset.
    parsed = parse_timestamps(pd.Series(["2026-01-05T15:00:00+02:00", "2026-01-05 13:00"]))
    assert parsed.tolist() == [_ts("2026-01-05 13:00"), _ts("2026-01-05 13:00")]


def test_parse_timestamps_dukascopy_day_first() -> None:
    # Dukascopy ("Gmt time", recognized by the reader) writes DD.MM.YYYY HH:MM:SS.fff.
    parsed = parse_timestamps(pd.Series(["05.01.2026 10:00:00.000", "13.01.2026 10:00:00.000"]))
    assert parsed.tolist() == [_ts("2026-01-05 10:00"), _ts("2026-01-13 10:00")]


def test_parse_timestamps_epoch_seconds_and_milliseconds() -> None:
    seconds = int(_ts("2026-01-05 13:00").timestamp())
    assert parse_timestamps(pd.Series([str(seconds)])).iloc[0] == _ts("2026-01-05 13:00")
    millis = parse_timestamps(pd.Series([str(seconds * 1000), str(seconds * 1000 + 3_600_000)]))
    assert millis.tolist() == [_ts("2026-01-05 13:00"), _ts("2026-01-05 14:00")]


def test_parse_timestamps_epoch_unit_is_read_per_row() -> None:
    # One millisecond row among second rows used to turn every row into milliseconds (1970).
    seconds = int(_ts("2026-01-05 13:00").timestamp())
    values = [str(seconds + 3600 * i) for i in range(100)] + [str((seconds + 360_000) * 1000)]
    parsed = parse_timestamps(pd.Series(values))
    expected = pd.date_range("2026-01-05 13:00", periods=101, freq="1h", tz="UTC")
    assert parsed.tolist() == expected.tolist()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1767618000", "2026-01-05 13:00"),  # seconds
        ("1767618000.5", "2026-01-05 13:00:00.5"),
        ("1767618000000", "2026-01-05 13:00"),  # milliseconds
        ("1767618000000000", "2026-01-05 13:00"),  # microseconds
        ("1767618000000000001", "2026-01-05 13:00:00.000000001"),  # nanoseconds, exactly
        ("-86400", "1969-12-31 00:00"),
        ("0", "1970-01-01 00:00"),
    ],
)
def test_parse_timestamps_epoch_units(value: str, expected: str) -> None:
    assert parse_timestamps(pd.Series([value])).iloc[0] == _ts(expected)


@pytest.mark.parametrize(
    "value", ["1e20", "99999999999999999999", "9999999999", "-1e19", "50000000000000"]
)
def test_out_of_range_epoch_is_quarantined_not_an_error(value: str) -> None:
    # 9999999999 s is the year 2286 and 5e13 ms the year 3554: past what a timestamp can hold.
    result = _validate(_raw(_row(), _row(value)))
    assert result.valid.index.tolist() == [1]
    assert result.rejected.loc[2, "reason"] == "timestamp is out of range (epoch number)"


def test_epoch_rows_off_the_daily_grid_are_refused() -> None:
    # Seconds read as milliseconds land at odd moments of January 1970: the 1d grid catches
    # any such misreading even though it is now read per row.
    midnight = int(_ts("2026-01-05").timestamp())
    result = _validate(_raw(_row(str(midnight)), _row(str(midnight * 1000 + 1))), "1d")
    assert result.valid["timestamp"].tolist() == [_ts("2026-01-05")]
    assert result.rejected.loc[2, "reason"] == "timestamp is not on the 1d grid"


def test_future_reason_does_not_depend_on_the_run() -> None:
    raw = _raw(_row("2027-01-05 10:00"))
    reasons = {
        validate_candles(raw, "EUR/USD", "1h", as_of).rejected.loc[1, "reason"]
        for as_of in (AS_OF, datetime(2026, 7, 1, tzinfo=UTC))
    }
    assert reasons == {"timestamp is in the future"}


def test_parse_timestamps_garbage_is_nat() -> None:
    parsed = parse_timestamps(pd.Series(["not a date", "", "2026-01-05 13:00"]))
    assert parsed.isna().tolist() == [True, True, False]


# --- validate_candles: one rule at a time -------------------------------------------------


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (_row("yesterday-ish"), "timestamp does not parse"),
        (_row("2027-01-05 10:00"), "timestamp is in the future"),
        (_row("2026-01-05 10:30"), "timestamp is not on the 1h grid"),
        (_row(open="abc"), "open is not a number"),
        (_row(high=""), "high is not a number"),
        (_row(open="0"), "open is not > 0"),
        (_row(low="-1.0"), "low is not > 0"),
        (_row(close="inf"), "close is not a number"),
        (_row(open="nan"), "open is not a number"),
        (_row(high="1.12"), "high < max(open, close)"),  # close is 1.15
        (_row(low="1.11"), "low > min(open, close)"),  # open is 1.1
        (_row(volume="-1"), "volume is not a number >= 0"),
        (_row(volume="lots"), "volume is not a number >= 0"),
    ],
)
def test_each_rule_rejects_with_its_reason(row: list[str], reason: str) -> None:
    result = _validate(_raw(_row(), row))
    assert result.valid.index.tolist() == [1]
    assert result.rejected.index.tolist() == [2]
    assert result.rejected.loc[2, "reason"].startswith(reason)
    assert result.duplicates == 0


def test_rejected_keeps_the_raw_values() -> None:
    result = _validate(_raw(_row(open="abc")))
    assert result.rejected.loc[1, COLUMNS].tolist() == _row(open="abc")


def test_a_good_row_comes_out_typed_in_utc() -> None:
    result = _validate(_raw(_row(), _row("2026-01-05T12:00:00+01:00", volume="")))
    valid = result.valid
    assert valid.index.tolist() == [1, 2]
    assert valid["timestamp"].tolist() == [_ts("2026-01-05 10:00"), _ts("2026-01-05 11:00")]
    assert valid["close"].tolist() == [1.15, 1.15]
    assert valid["volume"].tolist() == [10.0, 0.0]  # blank volume counts as 0
    assert result.rejected.empty


def test_timestamp_equal_to_as_of_is_not_future() -> None:
    result = _validate(_raw(_row("2026-06-01 00:00")))
    assert len(result.valid) == 1


@pytest.mark.parametrize(
    ("timeframe", "timestamp", "on_grid"),
    [
        ("1min", "2026-01-05 10:31:00", True),
        ("1min", "2026-01-05 10:31:30", False),
        ("5min", "2026-01-05 10:35", True),
        ("5min", "2026-01-05 10:36", False),
        ("15min", "2026-01-05 10:45", True),
        ("15min", "2026-01-05 10:50", False),
        ("30min", "2026-01-05 10:30", True),
        ("30min", "2026-01-05 10:15", False),
        ("1h", "2026-01-05 10:00:01", False),
        ("4h", "2026-01-05 08:00", True),
        ("4h", "2026-01-05 10:30", False),  # the 4h grid was not checked before
        ("4h", "2026-01-05 10:00", False),
        ("1d", "2026-01-05 00:00", True),
        ("1d", "2026-01-05 10:30", False),  # nor the daily one
        ("1d", "2026-01-04 22:00", False),  # a New York close bar: days open at 00:00 UTC
        ("1w", "2026-01-05 00:00", True),  # Monday
        ("1w", "2026-01-04 00:00", True),  # Sunday: vendors differ, midnight is what counts
        ("1w", "2026-01-05 10:00", False),
        ("1M", "2026-01-01 00:00", True),
        ("1M", "2026-01-05 00:00", False),
        ("1M", "2026-01-01 12:00", False),
    ],
)
def test_every_timeframe_is_grid_checked(timeframe: str, timestamp: str, on_grid: bool) -> None:
    result = _validate(_raw(_row(timestamp)), timeframe)
    assert len(result.valid) == int(on_grid)
    if not on_grid:
        assert result.rejected.iloc[0]["reason"] == f"timestamp is not on the {timeframe} grid"


def test_a_row_breaking_two_rules_reports_the_first() -> None:
    result = _validate(
        _raw(_row("2027-01-05 10:00", open="-1"), _row(open="abc", volume="-5")),
    )
    assert result.rejected.loc[1, "reason"].startswith("timestamp is in the future")
    assert result.rejected.loc[2, "reason"] == "open is not a number"


def test_identical_repeat_is_a_duplicate() -> None:
    result = _validate(_raw(_row(), _row("2026-01-05 11:00"), _row()))
    assert result.duplicates == 1
    assert result.valid.index.tolist() == [1, 2]
    assert result.rejected.empty


def test_conflicting_repeat_is_rejected_naming_the_first_row() -> None:
    result = _validate(_raw(_row("2026-01-05 09:00"), _row(), _row(close="1.16")))
    assert result.valid.index.tolist() == [1, 2]
    assert result.rejected.index.tolist() == [3]
    assert result.rejected.loc[3, "reason"] == "conflicting duplicate of row 2"
    assert result.duplicates == 0


def test_repeat_of_a_rejected_row_does_not_conflict_with_it() -> None:
    # Row 1 is rejected, so row 2 (same timestamp, good values) is the first valid one and
    # must not be called a conflicting duplicate (of itself, or of a row that was not kept).
    result = _validate(_raw(_row(open="abc"), _row()))
    assert result.rejected["reason"].tolist() == ["open is not a number"]
    assert result.valid.index.tolist() == [2]


def test_repeats_across_chunks_are_judged_against_the_first_row() -> None:
    # A file validated in chunks: later chunks' repeats are compared with an earlier chunk's rows.
    seen = SeenCandles()
    first = validate_candles(_raw(_row("2026-01-05 09:00"), _row()), "EUR/USD", "1h", AS_OF, seen)
    later = _raw(_row(), _row(close="1.16"), _row("2026-01-05 11:00"), _row("2026-01-05 09:00"))
    later.index = pd.RangeIndex(3, 7, name="row")
    second = validate_candles(later, "EUR/USD", "1h", AS_OF, seen)
    assert first.valid.index.tolist() == [1, 2]
    assert second.valid.index.tolist() == [5]
    assert second.duplicates == 2  # rows 3 and 6
    assert second.rejected["reason"].to_dict() == {4: "conflicting duplicate of row 2"}
    assert seen.rows().index.tolist() == [1, 2, 5]
    whole = _validate(_raw(*first_rows(), *later.to_numpy().tolist()))
    assert whole.valid.index.tolist() == [1, 2, 5]
    assert whole.rejected["reason"].to_dict() == {4: "conflicting duplicate of row 2"}


def first_rows() -> list[list[str]]:
    return [_row("2026-01-05 09:00"), _row()]


def test_empty_input() -> None:
    result = _validate(_raw())
    assert result.valid.empty and result.rejected.empty and result.duplicates == 0


@pytest.mark.parametrize("pair", ["EURUSD", "eur/usd", "EUR/US", ""])
def test_invalid_pair_is_refused(pair: str) -> None:
    with pytest.raises(InvalidInputError):
        validate_candles(_raw(_row()), pair, "1h", AS_OF)


@pytest.mark.parametrize("timeframe", ["2h", "1H", "60min", ""])
def test_invalid_timeframe_is_refused(timeframe: str) -> None:
    with pytest.raises(InvalidInputError):
        validate_candles(_raw(_row()), "EUR/USD", timeframe, AS_OF)


# --- random mixes: the counts always add up -----------------------------------------------

_VARIANTS: list[dict[str, str]] = [
    {},
    {},
    {},
    {"open": "abc"},
    {"high": "1.12"},
    {"low": "1.11"},
    {"close": "0"},
    {"close": "nan"},
    {"volume": "-3"},
    {"volume": ""},
    {"open": "-1", "volume": "-1"},
]
_TIMESTAMPS = [
    "2026-01-05 10:00",
    "2026-01-05 11:00",
    "2026-01-05T12:00:00Z",
    "2026-01-05 12:00",  # same instant as the previous one
    "2026-01-05 10:30",  # off grid
    "garbage",
    "2030-01-01 00:00",  # future
]


def _mixed_rows(picks: list[tuple[int, int]]) -> pd.DataFrame:
    return _raw(*[_row(_TIMESTAMPS[t], **_VARIANTS[v]) for t, v in picks])


def test_random_mixes_keep_the_counts() -> None:
    rng = np.random.default_rng(20260105)
    for _ in range(40):
        n = int(rng.integers(0, 25))
        picks = [
            (int(rng.integers(len(_TIMESTAMPS))), int(rng.integers(len(_VARIANTS))))
            for _ in range(n)
        ]
        _validate(_mixed_rows(picks))


def test_property_counts_add_up() -> None:
    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.integers(0, len(_TIMESTAMPS) - 1),
                st.integers(0, len(_VARIANTS) - 1),
            ),
            max_size=30,
        ),
        st.sampled_from(["1min", "1h", "4h", "1d"]),
    )
    def check(picks: list[tuple[int, int]], timeframe: str) -> None:
        _validate(_mixed_rows(picks), timeframe)

    check()


# --- find_gaps ----------------------------------------------------------------------------


def _hours(start: str, end: str) -> pd.DatetimeIndex:
    return pd.date_range(start, end, freq="h", tz="UTC")


def test_no_gap_across_a_normal_weekend() -> None:
    friday = _hours("2026-01-09 15:00", "2026-01-09 20:00")
    sunday = _hours("2026-01-11 22:00", "2026-01-12 03:00")
    assert find_gaps(friday.append(sunday), "1h") == []


def test_missing_wednesday_hour_is_one_gap() -> None:
    day = _hours("2026-01-07 00:00", "2026-01-07 23:00")
    gaps = find_gaps(day.delete(5), "1h")
    assert gaps == [Gap(start=_ts("2026-01-07 05:00"), end=_ts("2026-01-07 05:00"), missing=1)]


def test_two_holes_are_two_gaps() -> None:
    day = _hours("2026-01-07 00:00", "2026-01-07 23:00")
    gaps = find_gaps(pd.Series(day.delete([5, 10, 11])), "1h")
    assert gaps == [
        Gap(start=_ts("2026-01-07 05:00"), end=_ts("2026-01-07 05:00"), missing=1),
        Gap(start=_ts("2026-01-07 10:00"), end=_ts("2026-01-07 11:00"), missing=2),
    ]


def test_unsorted_input_with_repeats_is_fine() -> None:
    day = _hours("2026-01-07 00:00", "2026-01-07 05:00")
    shuffled = day[[3, 0, 5, 1, 1, 2, 4]]
    assert find_gaps(shuffled, "1h") == []


def test_daily_series_skipping_weekends_has_no_gap() -> None:
    days = pd.date_range("2026-01-05", "2026-01-23", freq="D", tz="UTC")
    weekdays = days[days.dayofweek < 5]
    assert find_gaps(weekdays, "1d") == []


def test_missing_weekday_is_a_daily_gap() -> None:
    days = pd.date_range("2026-01-05", "2026-01-23", freq="D", tz="UTC")
    weekdays = days[days.dayofweek < 5]
    gaps = find_gaps(weekdays.delete(2), "1d")  # Wednesday 7 January
    assert gaps == [Gap(start=_ts("2026-01-07"), end=_ts("2026-01-07"), missing=1)]


def test_fewer_than_two_timestamps_have_no_gaps() -> None:
    assert find_gaps(pd.DatetimeIndex([], tz="UTC"), "1h") == []
    assert find_gaps(pd.DatetimeIndex([_ts("2026-01-07 05:00")]), "1h") == []
    assert find_gaps(pd.DatetimeIndex([_ts("2026-01-07 05:00")] * 3), "1h") == []
