"""Auto-labeling rules, checked against a hand-computed table (DESIGN.md's labeling rules).

Every expected outcome and pnl below was worked out by hand from the rules, never by calling
the code under test. Unless a test says otherwise the entry price is e = 100.0, so a close of
100.6 is a change of +0.6 % and the default ±0.5 % band is [99.5, 100.5].

Rules in short: horizon candle = last candle of the series with open time <= t + horizon;
pending while no candle at or after t + horizon exists; buy wins above +threshold (strict),
loses below -threshold; sell mirrors; hold wins when every candle with open time in
(t, t + horizon] keeps high and low within ±threshold of e (inclusive); pnl % = 100·change
(buy), -100·change (sell), 0 (hold).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aifx_ml.labeling.rules import direction_target, label_signals

E = 100.0
OUTCOME_CATEGORIES = ["pending", "win", "loss", "breakeven"]


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def make_candles(
    pair: str, timeframe: str, rows: list[tuple[str, float, float, float]]
) -> pd.DataFrame:
    """Candles from (open time, high, low, close) rows."""
    return pd.DataFrame(
        {
            "pair": pair,
            "timeframe": timeframe,
            "timestamp": pd.DatetimeIndex([ts(r[0]) for r in rows]),
            "high": [float(r[1]) for r in rows],
            "low": [float(r[2]) for r in rows],
            "close": [float(r[3]) for r in rows],
        }
    )


def make_signals(rows: list[tuple[str, str, str, float, str]], index: Any = None) -> pd.DataFrame:
    """Signals from (pair, timeframe, signal, entry price, created_at) rows."""
    return pd.DataFrame(
        {
            "pair": [r[0] for r in rows],
            "timeframe": [r[1] for r in rows],
            "signal": [r[2] for r in rows],
            "entry_price": [float(r[3]) for r in rows],
            "created_at": pd.DatetimeIndex([ts(r[4]) for r in rows]),
        },
        index=index,
    )


def one_signal(timeframe: str, signal: str, created_at: str, entry: float = E) -> pd.DataFrame:
    return make_signals([("EUR/USD", timeframe, signal, entry, created_at)])


def assert_label(result: pd.DataFrame, row: Any, outcome: str, pnl: float) -> None:
    got_outcome = result.loc[row, "actual_outcome"]
    got_pnl = result.loc[row, "actual_pnl_percent"]
    assert got_outcome == outcome, f"outcome of {row!r}: expected {outcome}, got {got_outcome}"
    if math.isnan(pnl):
        assert math.isnan(got_pnl), f"pnl of {row!r}: expected NaN, got {got_pnl}"
    else:
        assert got_pnl == pytest.approx(pnl, abs=1e-9), f"pnl of {row!r}"


def label_one(
    timeframe: str,
    signal: str,
    created_at: str,
    rows: list[tuple[str, float, float, float]],
    threshold: float | None = None,
) -> tuple[str, float]:
    candles = make_candles("EUR/USD", timeframe, rows)
    signals = one_signal(timeframe, signal, created_at)
    if threshold is None:
        result = label_signals(signals, candles)
    else:
        result = label_signals(signals, candles, threshold=threshold)
    return str(result["actual_outcome"].iloc[0]), float(result["actual_pnl_percent"].iloc[0])


# --------------------------------------------------------------------------------------------
# 1. The full table: signal × outcome × timeframe.
# --------------------------------------------------------------------------------------------

# Per timeframe: signal time t, a candle inside (t, t+h), the horizon candle (last open time
# <= t + h) and a later candle (open time >= t + h, so the horizon has elapsed).
#   1min: h = 5min  -> t + h = 10:05 exactly on a candle.
#   1h:   h = 4h    -> t + h = 14:00 exactly on a candle.
#   4h:   h = 24h   -> t + h = 2024-03-06 08:00 exactly on a candle.
#   1d:   h = 7d    -> t + h = Tue 2024-03-12 exactly on a candle.
#   1w:   h = 30d   -> t + h = Wed 2024-01-31; weekly (Monday) candles: horizon candle is
#                      Mon 01-29, the Mon 02-05 candle shows the horizon has elapsed.
#   1M:   h = 90d   -> t + h = 2024-03-31; monthly candles: horizon candle is 03-01, the
#                      04-01 candle shows the horizon has elapsed.
SETUPS: dict[str, tuple[str, str, str, str]] = {
    "1min": ("2024-03-05 10:00", "2024-03-05 10:02", "2024-03-05 10:05", "2024-03-05 10:06"),
    "1h": ("2024-03-05 10:00", "2024-03-05 12:00", "2024-03-05 14:00", "2024-03-05 15:00"),
    "4h": ("2024-03-05 08:00", "2024-03-05 20:00", "2024-03-06 08:00", "2024-03-06 12:00"),
    "1d": ("2024-03-05", "2024-03-08", "2024-03-12", "2024-03-13"),
    "1w": ("2024-01-01", "2024-01-15", "2024-01-29", "2024-02-05"),
    "1M": ("2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"),
}

# (signal, mid candle (high, low, close), horizon candle (high, low, close), outcome, pnl %).
# The later candle is always (103.5, 96.5, 103.0): outside the band and far from e, so using it
# by mistake would change every outcome below.
SCENARIOS: list[tuple[str, tuple[float, ...], tuple[float, ...], str, float, str]] = [
    # buy: change = (close - 100) / 100
    ("buy", (100.3, 99.8, 100.1), (100.7, 100.0, 100.6), "win", 0.6, ""),
    ("buy", (100.2, 99.4, 99.6), (99.7, 99.1, 99.2), "loss", -0.8, ""),
    ("buy", (100.3, 99.9, 100.0), (100.4, 100.0, 100.2), "breakeven", 0.2, ""),
    # sell: pnl = -100 * change
    ("sell", (100.1, 99.6, 99.7), (99.8, 99.2, 99.3), "win", 0.7, ""),
    ("sell", (100.6, 100.0, 100.5), (101.0, 100.4, 100.9), "loss", -0.9, ""),
    ("sell", (100.1, 99.6, 99.8), (100.0, 99.6, 99.7), "breakeven", 0.3, ""),
    # hold: highs <= 100.5 and lows >= 99.5 inside the window, pnl 0
    ("hold", (100.4, 99.7, 100.0), (100.3, 99.6, 100.1), "win", 0.0, ""),
    # the mid candle's high breaks +0.5 % although the horizon close is back at 100.1
    ("hold", (100.8, 99.9, 100.2), (100.3, 99.8, 100.1), "loss", 0.0, "-by-high"),
    # the horizon candle's low breaks -0.5 %
    ("hold", (100.2, 99.7, 100.0), (100.1, 99.3, 99.9), "loss", 0.0, "-by-low"),
]

TABLE = [
    pytest.param(tf, *sc[:5], id=f"{tf}-{sc[0]}-{sc[3]}{sc[5]}")
    for tf in SETUPS
    for sc in SCENARIOS
]


@pytest.mark.parametrize(("timeframe", "signal", "mid", "at_horizon", "outcome", "pnl"), TABLE)
def test_outcome_table(
    timeframe: str,
    signal: str,
    mid: tuple[float, float, float],
    at_horizon: tuple[float, float, float],
    outcome: str,
    pnl: float,
) -> None:
    t, mid_ts, horizon_ts, later_ts = SETUPS[timeframe]
    rows = [
        (mid_ts, *mid),
        (horizon_ts, *at_horizon),
        (later_ts, 103.5, 96.5, 103.0),
    ]
    assert label_one(timeframe, signal, t, rows) == (outcome, pytest.approx(pnl, abs=1e-9))


# --------------------------------------------------------------------------------------------
# 2. Boundaries of the ±0.5 % band.
# --------------------------------------------------------------------------------------------


def test_boundary_prices_are_exact_in_float() -> None:
    # Precondition of the boundary cases: with e = 100 these changes are exactly ±0.005 (and
    # ±0.01), so the cases really sit on the threshold rather than a rounding error next to it.
    assert (100.5 - 100.0) / 100.0 == 0.005
    assert (99.5 - 100.0) / 100.0 == -0.005
    assert (101.0 - 100.0) / 100.0 == 0.01
    assert (99.0 - 100.0) / 100.0 == -0.01


BOUNDARY = [
    # exactly on the threshold: not strictly beyond it -> breakeven
    pytest.param("buy", 100.5, "breakeven", 0.5, id="buy-exactly-plus-0.5pct"),
    pytest.param("buy", 99.5, "breakeven", -0.5, id="buy-exactly-minus-0.5pct"),
    pytest.param("sell", 100.5, "breakeven", -0.5, id="sell-exactly-plus-0.5pct"),
    pytest.param("sell", 99.5, "breakeven", 0.5, id="sell-exactly-minus-0.5pct"),
    # a hair beyond (±0.50001 %) -> decided
    pytest.param("buy", 100.50001, "win", 0.50001, id="buy-just-above"),
    pytest.param("buy", 99.49999, "loss", -0.50001, id="buy-just-below"),
    pytest.param("sell", 99.49999, "win", 0.50001, id="sell-just-below"),
    pytest.param("sell", 100.50001, "loss", -0.50001, id="sell-just-above"),
    # a hair inside (±0.49999 %) -> breakeven
    pytest.param("buy", 100.49999, "breakeven", 0.49999, id="buy-just-inside-up"),
    pytest.param("buy", 99.50001, "breakeven", -0.49999, id="buy-just-inside-down"),
    pytest.param("sell", 100.49999, "breakeven", -0.49999, id="sell-just-inside-up"),
    pytest.param("sell", 99.50001, "breakeven", 0.49999, id="sell-just-inside-down"),
]


@pytest.mark.parametrize(("signal", "close", "outcome", "pnl"), BOUNDARY)
def test_directional_boundaries(signal: str, close: float, outcome: str, pnl: float) -> None:
    rows = [("2024-03-05 14:00", max(close, E), min(close, E), close)]
    rows.append(("2024-03-05 15:00", E, E, E))
    assert label_one("1h", signal, "2024-03-05 10:00", rows) == (
        outcome,
        pytest.approx(pnl, abs=1e-9),
    )


HOLD_BOUNDARY = [
    pytest.param(100.5, 99.9, "win", id="high-exactly-plus-0.5pct"),
    pytest.param(100.1, 99.5, "win", id="low-exactly-minus-0.5pct"),
    pytest.param(100.5, 99.5, "win", id="both-exactly-on-the-band"),
    pytest.param(100.50001, 99.9, "loss", id="high-just-above"),
    pytest.param(100.1, 99.49999, "loss", id="low-just-below"),
]


@pytest.mark.parametrize(("high", "low", "outcome"), HOLD_BOUNDARY)
def test_hold_boundaries(high: float, low: float, outcome: str) -> None:
    rows = [
        ("2024-03-05 11:00", 100.2, 99.8, 100.0),
        ("2024-03-05 12:00", high, low, 100.0),
        ("2024-03-05 14:00", 100.2, 99.8, 100.0),
        ("2024-03-05 15:00", 100.2, 99.8, 100.0),
    ]
    assert label_one("1h", "hold", "2024-03-05 10:00", rows) == (outcome, 0.0)


# --------------------------------------------------------------------------------------------
# 3. Pending and the choice of the horizon candle (1h: h = 4h, t = 10:00, t + h = 14:00).
# --------------------------------------------------------------------------------------------

HOURLY = {
    "11:00": (100.1, 99.9, 100.0),
    "12:00": (100.2, 99.9, 100.1),
    "13:00": (100.3, 100.0, 100.2),
    "14:00": (100.7, 100.1, 100.6),
    "15:00": (100.0, 98.9, 99.0),
    "16:00": (99.2, 98.8, 99.0),
}


def hourly(*hours: str) -> list[tuple[str, float, float, float]]:
    return [(f"2024-03-05 {h}", *HOURLY[h]) for h in hours]


PENDING_CASES = [
    pytest.param(
        "buy", hourly("11:00", "12:00", "13:00"), "pending", math.nan, id="last-candle-before-t+h"
    ),
    pytest.param("buy", [], "pending", math.nan, id="no-candles-at-all"),
    pytest.param("hold", hourly("11:00", "12:00", "13:00"), "pending", math.nan, id="hold-pending"),
    pytest.param("sell", hourly("11:00", "12:00", "13:00"), "pending", math.nan, id="sell-pending"),
    # a candle opening exactly at t + h = 14:00 both elapses the horizon and is the horizon
    # candle: close 100.6 -> +0.6 %
    pytest.param(
        "buy", hourly("11:00", "12:00", "13:00", "14:00"), "win", 0.6, id="candle-exactly-at-t+h"
    ),
    # later candles (close 99.0) exist, but the horizon candle is still 14:00
    pytest.param(
        "buy",
        hourly("11:00", "12:00", "13:00", "14:00", "15:00", "16:00"),
        "win",
        0.6,
        id="later-candles-ignored",
    ),
    pytest.param(
        "sell",
        hourly("11:00", "12:00", "13:00", "14:00", "15:00", "16:00"),
        "loss",
        -0.6,
        id="sell-later-candles-ignored",
    ),
    # 14:00 missing: the horizon candle is 13:00 (close 100.2 -> +0.2 %); 15:00 elapses it
    pytest.param(
        "buy", hourly("11:00", "12:00", "13:00", "15:00"), "breakeven", 0.2, id="gap-at-t+h"
    ),
]


@pytest.mark.parametrize(("signal", "rows", "outcome", "pnl"), PENDING_CASES)
def test_pending_and_horizon_candle(
    signal: str, rows: list[tuple[str, float, float, float]], outcome: str, pnl: float
) -> None:
    got_outcome, got_pnl = label_one("1h", signal, "2024-03-05 10:00", rows)
    assert got_outcome == outcome
    if math.isnan(pnl):
        assert math.isnan(got_pnl)
    else:
        assert got_pnl == pytest.approx(pnl, abs=1e-9)


def test_signal_between_candle_opens() -> None:
    # t = 10:30, t + h = 14:30. Until a candle at or after 14:30 exists the signal is pending;
    # then the horizon candle is 14:00 (the last open time <= 14:30), close 100.6.
    before = hourly("11:00", "12:00", "13:00", "14:00")
    assert label_one("1h", "buy", "2024-03-05 10:30", before)[0] == "pending"
    after = hourly("11:00", "12:00", "13:00", "14:00", "15:00")
    assert label_one("1h", "buy", "2024-03-05 10:30", after) == ("win", pytest.approx(0.6))


@pytest.mark.parametrize(
    ("signal", "hours", "outcome", "pnl"),
    [
        # same expectations as in time order: horizon candle 14:00 (close 100.6)
        pytest.param("buy", ["16:00", "15:00", "14:00", "13:00", "12:00", "11:00"], "win", 0.6),
        pytest.param("sell", ["14:00", "16:00", "11:00", "15:00", "13:00", "12:00"], "loss", -0.6),
        # 14:00's high 100.7 is in the window -> loss
        pytest.param("hold", ["15:00", "11:00", "14:00", "16:00", "12:00", "13:00"], "loss", 0.0),
        # only 11:00..13:00 (all within the band) but in reverse: still pending
        pytest.param("buy", ["13:00", "12:00", "11:00"], "pending", math.nan),
    ],
    ids=["buy-reversed", "sell-shuffled", "hold-shuffled", "pending-reversed"],
)
def test_candle_row_order_does_not_matter(
    signal: str, hours: list[str], outcome: str, pnl: float
) -> None:
    candles = make_candles("EUR/USD", "1h", hourly(*hours))
    result = label_signals(one_signal("1h", signal, "2024-03-05 10:00"), candles)
    assert_label(result, 0, outcome, pnl)


def test_pending_result_has_nan_pnl_and_categorical_outcome() -> None:
    candles = make_candles("EUR/USD", "1h", hourly("11:00", "12:00"))
    result = label_signals(one_signal("1h", "buy", "2024-03-05 10:00"), candles)
    assert list(result.columns) == ["actual_outcome", "actual_pnl_percent"]
    assert isinstance(result["actual_outcome"].dtype, pd.CategoricalDtype)
    assert list(result["actual_outcome"].cat.categories) == OUTCOME_CATEGORIES
    assert result["actual_pnl_percent"].dtype == np.float64
    assert result["actual_outcome"].iloc[0] == "pending"
    assert np.isnan(result["actual_pnl_percent"].iloc[0])


# --------------------------------------------------------------------------------------------
# 4. The weekend: 1h signal on Friday 2024-03-08 20:30 UTC, t + h = Saturday 00:30.
# --------------------------------------------------------------------------------------------

FRIDAY = [
    ("2024-03-08 19:00", 100.1, 99.9, 100.0),
    # opens 20:00, before t: not in (t, t + h] even though it spans t, high 101.0 ignored
    ("2024-03-08 20:00", 101.0, 99.9, 100.0),
    # the last candle before the close, the horizon candle: close 100.4 (+0.4 % on e = 100)
    ("2024-03-08 21:00", 100.5, 100.0, 100.4),
]
SUNDAY = [("2024-03-10 22:00", 100.0, 97.0, 97.5)]


@pytest.mark.parametrize(
    ("signal", "created_at", "with_sunday", "outcome", "pnl", "entry"),
    [
        pytest.param(
            "buy", "2024-03-08 20:30", False, "pending", math.nan, E, id="buy-friday-only"
        ),
        pytest.param(
            "hold", "2024-03-08 20:30", False, "pending", math.nan, E, id="hold-friday-only"
        ),
        # horizon candle = Fri 21:00 (close 100.4 -> +0.4 %), not Sunday's 97.5
        pytest.param("buy", "2024-03-08 20:30", True, "breakeven", 0.4, E, id="buy-after-sunday"),
        pytest.param(
            "sell", "2024-03-08 20:30", True, "breakeven", -0.4, E, id="sell-after-sunday"
        ),
        # only Fri 21:00 (100.5/100.0) is in (t, t + h]: inside the band; Sunday's low of 97.0
        # is after t + h and Friday 20:00's high of 101.0 is before t
        pytest.param("hold", "2024-03-08 20:30", True, "win", 0.0, E, id="hold-after-sunday"),
        # t = Fri 21:30: no candle at all in (t, t + h] (market closed) -> win
        pytest.param("hold", "2024-03-08 21:30", True, "win", 0.0, E, id="hold-market-closed"),
        pytest.param(
            "hold", "2024-03-08 21:30", False, "pending", math.nan, E, id="hold-closed-pending"
        ),
        # t = Fri 21:30: horizon candle is still Fri 21:00 (close 100.4), entry 99.8 ->
        # change = 0.6 / 99.8 = +0.6012 %
        pytest.param("buy", "2024-03-08 21:30", True, "win", 60 / 99.8, 99.8, id="buy-after-close"),
    ],
)
def test_weekend(
    signal: str, created_at: str, with_sunday: bool, outcome: str, pnl: float, entry: float
) -> None:
    rows = FRIDAY + (SUNDAY if with_sunday else [])
    candles = make_candles("EUR/USD", "1h", rows)
    result = label_signals(one_signal("1h", signal, created_at, entry), candles)
    assert_label(result, 0, outcome, pnl)


# --------------------------------------------------------------------------------------------
# 5. Hold: which candles count (1h, t = 10:00, window (10:00, 14:00]).
# --------------------------------------------------------------------------------------------

CALM = (100.2, 99.8, 100.0)


@pytest.mark.parametrize(
    ("breaker_at", "breaker", "outcome"),
    [
        pytest.param(None, None, "win", id="all-calm"),
        # low 99.4 (-0.6 %) at 12:00 even though that candle closes back at 100.0
        pytest.param("12:00", (100.1, 99.4, 100.0), "loss", id="low-breaks-inside-close-back"),
        pytest.param("11:00", (100.9, 99.9, 100.1), "loss", id="high-breaks-first-candle"),
        # the right end of the window is closed: 14:00 = t + h counts
        pytest.param("14:00", (100.1, 99.3, 100.0), "loss", id="breaks-exactly-at-t+h"),
        # the left end is open: the candle opening at t does not count
        pytest.param("10:00", (101.0, 99.0, 100.0), "win", id="breaks-exactly-at-t-ignored"),
        # a candle before t does not count either
        pytest.param("09:00", (101.0, 99.0, 100.0), "win", id="breaks-before-t-ignored"),
        # after t + h does not count
        pytest.param("15:00", (101.0, 99.0, 100.0), "win", id="breaks-after-t+h-ignored"),
    ],
)
def test_hold_window(
    breaker_at: str | None, breaker: tuple[float, float, float] | None, outcome: str
) -> None:
    hours = ["09:00", "10:00", "11:00", "12:00", "13:00", "14:00", "15:00"]
    rows = [(f"2024-03-05 {h}", *(breaker if h == breaker_at and breaker else CALM)) for h in hours]
    assert label_one("1h", "hold", "2024-03-05 10:00", rows) == (outcome, 0.0)


# --------------------------------------------------------------------------------------------
# 6. A custom threshold (1 %, band [99.0, 101.0]).
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signal", "high", "low", "close", "threshold", "outcome", "pnl"),
    [
        # +0.6 % is a win at 0.5 % but only breakeven at 1 %
        pytest.param("buy", 100.7, 100.0, 100.6, 0.005, "win", 0.6, id="buy-0.6pct-default"),
        pytest.param("buy", 100.7, 100.0, 100.6, 0.01, "breakeven", 0.6, id="buy-0.6pct-at-1pct"),
        pytest.param("buy", 101.3, 100.0, 101.2, 0.01, "win", 1.2, id="buy-1.2pct-at-1pct"),
        pytest.param("buy", 101.0, 100.0, 101.0, 0.01, "breakeven", 1.0, id="buy-exactly-1pct"),
        pytest.param("buy", 100.0, 98.7, 98.8, 0.01, "loss", -1.2, id="buy-minus-1.2pct"),
        pytest.param("sell", 100.0, 98.4, 98.5, 0.01, "win", 1.5, id="sell-minus-1.5pct"),
        pytest.param("sell", 100.0, 99.1, 99.2, 0.01, "breakeven", 0.8, id="sell-minus-0.8pct"),
        pytest.param("sell", 100.0, 99.0, 99.0, 0.01, "breakeven", 1.0, id="sell-exactly-1pct"),
        pytest.param("sell", 101.2, 100.0, 101.1, 0.01, "loss", -1.1, id="sell-plus-1.1pct"),
        # +0.2 % is breakeven at 0.5 % but a win at 0.1 %
        pytest.param("buy", 100.3, 100.0, 100.2, 0.001, "win", 0.2, id="buy-0.2pct-at-0.1pct"),
        # hold: high 100.8 leaves the 0.5 % band but not the 1 % band
        pytest.param("hold", 100.8, 99.9, 100.0, 0.005, "loss", 0.0, id="hold-0.8pct-default"),
        pytest.param("hold", 100.8, 99.9, 100.0, 0.01, "win", 0.0, id="hold-0.8pct-at-1pct"),
        pytest.param("hold", 101.0, 99.0, 100.0, 0.01, "win", 0.0, id="hold-exactly-1pct"),
        pytest.param("hold", 100.5, 98.9, 100.0, 0.01, "loss", 0.0, id="hold-low-1.1pct"),
    ],
)
def test_custom_threshold(
    signal: str,
    high: float,
    low: float,
    close: float,
    threshold: float,
    outcome: str,
    pnl: float,
) -> None:
    rows = [
        ("2024-03-05 14:00", high, low, close),
        ("2024-03-05 15:00", 100.0, 100.0, 100.0),
    ]
    got = label_one("1h", signal, "2024-03-05 10:00", rows, threshold=threshold)
    assert got == (outcome, pytest.approx(pnl, abs=1e-9))


# --------------------------------------------------------------------------------------------
# 7. Several pairs and timeframes in one call; a non-default index.
# --------------------------------------------------------------------------------------------


def mixed_inputs() -> tuple[pd.DataFrame, pd.DataFrame]:
    signals = make_signals(
        [
            ("EUR/USD", "1h", "buy", 100.0, "2024-03-05 10:00"),  # s-eur-buy
            ("GBP/USD", "1h", "buy", 100.0, "2024-03-05 10:00"),  # s-gbp-buy
            ("GBP/USD", "1h", "hold", 100.0, "2024-03-05 10:00"),  # s-gbp-hold
            ("EUR/USD", "1h", "hold", 100.0, "2024-03-05 10:00"),  # s-eur-hold
            ("EUR/USD", "4h", "sell", 100.0, "2024-03-05 08:00"),  # s-eur-4h
            ("USD/JPY", "1h", "buy", 150.0, "2024-03-05 10:00"),  # s-jpy-buy
            ("USD/CHF", "1h", "sell", 0.9, "2024-03-05 10:00"),  # s-chf-none
        ],
        index=pd.Index(
            [
                "s-eur-buy",
                "s-gbp-buy",
                "s-gbp-hold",
                "s-eur-hold",
                "s-eur-4h",
                "s-jpy-buy",
                "s-chf-none",
            ],
            name="signal_id",
        ),
    )
    eur_1h = make_candles(
        "EUR/USD",
        "1h",
        [
            ("2024-03-05 12:00", 101.0, 99.9, 100.3),  # breaks the EUR band
            ("2024-03-05 14:00", 100.7, 100.2, 100.6),  # EUR horizon close: +0.6 %
            ("2024-03-05 15:00", 100.7, 100.5, 100.6),
            # these would end the 4h EUR signal's horizon (08:00 + 24h) if timeframes mixed
            ("2024-03-06 08:00", 100.0, 98.0, 98.0),
            ("2024-03-06 09:00", 100.0, 98.0, 98.0),
        ],
    )
    gbp_1h = make_candles(
        "GBP/USD",
        "1h",
        [
            ("2024-03-05 12:00", 100.1, 99.8, 99.9),  # calm
            ("2024-03-05 14:00", 100.0, 99.6, 99.7),  # GBP horizon close: -0.3 %
            ("2024-03-05 15:00", 100.0, 99.6, 99.7),
        ],
    )
    eur_4h = make_candles(
        "EUR/USD",
        "4h",
        [
            ("2024-03-05 12:00", 100.2, 99.8, 100.0),
            ("2024-03-05 16:00", 100.2, 99.8, 100.0),
            ("2024-03-05 20:00", 100.2, 99.6, 99.7),  # last 4h candle so far: t + h not reached
        ],
    )
    jpy_1h = make_candles(
        "USD/JPY",
        "1h",
        [
            ("2024-03-05 14:00", 151.0, 150.0, 150.9),  # +0.9 / 150 = +0.6 %
            ("2024-03-05 15:00", 151.0, 150.0, 150.9),
        ],
    )
    # interleaved and shuffled: the code must group and sort by itself
    candles = pd.concat([eur_1h, gbp_1h, eur_4h, jpy_1h], ignore_index=True)
    candles = candles.iloc[[12, 3, 7, 0, 11, 5, 9, 1, 6, 2, 10, 4, 8]].reset_index(drop=True)
    return signals, candles


MIXED_EXPECTED = {
    "s-eur-buy": ("win", 0.6),
    "s-gbp-buy": ("breakeven", -0.3),
    "s-gbp-hold": ("win", 0.0),  # EUR's 12:00 candle breaking its band is irrelevant here
    "s-eur-hold": ("loss", 0.0),
    "s-eur-4h": ("pending", math.nan),  # the EUR 1h candles of 03-06 do not end a 4h horizon
    "s-jpy-buy": ("win", 0.6),
    "s-chf-none": ("pending", math.nan),  # no candles of that pair
}


def test_series_are_labeled_independently() -> None:
    signals, candles = mixed_inputs()
    assert len(candles) == 13
    result = label_signals(signals, candles)
    assert result.index.equals(signals.index)
    for row, (outcome, pnl) in MIXED_EXPECTED.items():
        assert_label(result, row, outcome, pnl)


def test_result_follows_a_shuffled_integer_index() -> None:
    signals, candles = mixed_inputs()
    order = [4, 0, 6, 2, 5, 1, 3]
    shuffled = signals.iloc[order].copy()
    names = list(shuffled.index)
    shuffled.index = pd.Index([70, 10, 30, 50, 20, 60, 40])
    result = label_signals(shuffled, candles)
    assert result.index.equals(shuffled.index)
    for new, old in zip(shuffled.index, names, strict=True):
        outcome, pnl = MIXED_EXPECTED[old]
        assert_label(result, new, outcome, pnl)


# --------------------------------------------------------------------------------------------
# 8. Unknown signal values.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["strong_buy", "long", ""])
def test_unknown_signal_raises(bad: str) -> None:
    candles = make_candles("EUR/USD", "1h", hourly("11:00", "14:00", "15:00"))
    signals = make_signals(
        [
            ("EUR/USD", "1h", "buy", E, "2024-03-05 10:00"),
            ("EUR/USD", "1h", bad, E, "2024-03-05 10:00"),
        ]
    )
    with pytest.raises(ValueError):
        label_signals(signals, candles)


# --------------------------------------------------------------------------------------------
# 9. direction_target.
# --------------------------------------------------------------------------------------------

# 1h: decision time = open + 1h, horizon end = open + 1h + 4h = open + 5h. With hourly candles
# 00:00..07:00 the horizon candle of candle i is candle i + 5, which exists only for i <= 2.
H_TIMES = pd.date_range("2024-03-05 00:00", periods=8, freq="1h", tz="UTC")
H_CLOSE = [100.0, 101.0, 102.0, 103.0, 104.0, 105.0, 100.0, 102.0]
NAN = math.nan


@pytest.mark.parametrize(
    ("min_move", "expected"),
    [
        # i=0: 105 vs 100 up; i=1: 100 vs 101 down; i=2: 102 vs 102 flat; i>=3: pending
        pytest.param(0.0, [1.0, 0.0, NAN, NAN, NAN, NAN, NAN, NAN], id="up-down-flat-pending"),
        # |change| of i=1 is 1/101 = 0.0099 <= 0.01 -> NaN; i=0 is +0.05 > 0.01
        pytest.param(0.01, [1.0, NAN, NAN, NAN, NAN, NAN, NAN, NAN], id="min-move-1pct"),
        # |change| of i=1 is 0.0099 > 0.009 -> kept
        pytest.param(0.009, [1.0, 0.0, NAN, NAN, NAN, NAN, NAN, NAN], id="min-move-0.9pct"),
        # i=0: (105 - 100) / 100 = 0.05 exactly, not > 0.05 -> NaN
        pytest.param(0.05, [NAN] * 8, id="min-move-equal-to-change"),
    ],
)
def test_direction_target_hourly(min_move: float, expected: list[float]) -> None:
    got = direction_target(pd.Series(H_TIMES), np.array(H_CLOSE), "1h", min_move=min_move)
    np.testing.assert_array_equal(got, np.array(expected))


def test_direction_target_hourly_with_gap() -> None:
    # candles 00:00, 01:00, 02:00, then nothing until 10:00 (a gap)
    # i=0: end 05:00 -> horizon candle 02:00 (101 > 100) -> 1; 10:00 elapses it
    # i=1: end 06:00 -> horizon candle 02:00 (101 < 103) -> 0
    # i=2: end 07:00 -> horizon candle is itself (no change) -> NaN
    # i=3: end 15:00 -> no candle at or after 15:00 -> NaN
    times = pd.DatetimeIndex(
        [
            ts("2024-03-05 00:00"),
            ts("2024-03-05 01:00"),
            ts("2024-03-05 02:00"),
            ts("2024-03-05 10:00"),
        ]
    )
    got = direction_target(times, [100.0, 103.0, 101.0, 99.0], "1h")
    np.testing.assert_array_equal(got, np.array([1.0, 0.0, NAN, NAN]))


def test_direction_target_daily() -> None:
    # Weekday candles Mon 03-04 .. Thu 03-14 (no weekend). Decision = open + 1d, horizon end
    # = open + 8d: i=0 (03-04) -> 03-12, i=1 (03-05) -> 03-13, i=2 (03-06) -> 03-14 (exactly
    # the last candle), i=3 (03-07) -> 03-15: no candle at or after it yet -> NaN.
    days = ["04", "05", "06", "07", "08", "11", "12", "13", "14"]
    times = pd.DatetimeIndex([ts(f"2024-03-{d}") for d in days])
    close = [1.10, 1.11, 1.12, 1.13, 1.14, 1.15, 1.12, 1.10, 1.12]
    # i=0: 1.12 > 1.10 -> 1; i=1: 1.10 < 1.11 -> 0; i=2: 1.12 == 1.12 -> NaN
    got = direction_target(times, close, "1d")
    np.testing.assert_array_equal(got, np.array([1.0, 0.0] + [NAN] * 7))


def test_direction_target_monthly_uses_calendar_months() -> None:
    # 1M: decision = open + 1 calendar month, horizon end = decision + 90d (2024 is a leap year).
    # i=0 (Jan): decision Feb 1, end May 1 -> horizon candle May (101.5 > 100) -> 1
    #   (a 30-day "month" would give Jan 31 + 90d = Apr 30 -> April, 99 < 100 -> 0)
    # i=1 (Feb): decision Mar 1, end May 30 -> horizon candle May (101.5 < 102) -> 0;
    #   June 1 >= May 30 elapses it
    # i=2 (Mar): decision Apr 1, end Jun 30 -> no candle at or after it -> NaN
    times = pd.date_range("2024-01-01", periods=6, freq="MS", tz="UTC")
    close = [100.0, 102.0, 101.0, 99.0, 101.5, 100.0]
    got = direction_target(times, close, "1M")
    np.testing.assert_array_equal(got, np.array([1.0, 0.0, NAN, NAN, NAN, NAN]))


# --------------------------------------------------------------------------------------------
# 10. Pure functions: same inputs, same outputs, inputs untouched.
# --------------------------------------------------------------------------------------------


def test_label_signals_is_idempotent_and_pure() -> None:
    signals, candles = mixed_inputs()
    signals_before, candles_before = signals.copy(deep=True), candles.copy(deep=True)
    first = label_signals(signals, candles)
    second = label_signals(signals, candles)
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    pd.testing.assert_frame_equal(signals, signals_before, check_exact=True)
    pd.testing.assert_frame_equal(candles, candles_before, check_exact=True)


def test_direction_target_is_idempotent() -> None:
    close = np.array(H_CLOSE)
    first = direction_target(H_TIMES, close, "1h")
    second = direction_target(H_TIMES, close, "1h")
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(close, np.array(H_CLOSE))
