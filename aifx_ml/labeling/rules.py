"""The labeling rules of DESIGN.md as one vectorized pass over arrays.

A signal created at t with entry price e is judged on the *horizon candle*: the last candle
of its pair and timeframe with open time <= t + horizon; change = (its close - e) / e.
It stays pending until a candle at or after t + horizon has arrived. Thresholds are strict:
a buy wins when change > +threshold, loses when change < -threshold, else breaks even; a
sell mirrors it; a hold wins when every candle in (t, t + horizon] keeps its high and low
within ±threshold of e (inclusive), else loses. pnl % = 100·change (buy), -100·change
(sell), 0 (hold).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from aifx_ml.domain import OUTCOMES, SIGNALS
from aifx_ml.markets import candle_close_times, horizon, iter_series

DEFAULT_THRESHOLD = 0.005

PENDING, WIN, LOSS, BREAKEVEN = 0, 1, 2, 3
BUY, SELL, HOLD = 0, 1, 2

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]


def horizon_positions(candle_ts: I64, event_ts: I64, horizon_ns: int) -> tuple[I64, Bool]:
    """Index of each event's horizon candle, and whether its horizon has elapsed.

    `candle_ts` is sorted ascending (ns since epoch, one series). The index is -1 when no
    candle opens at or before t + horizon; such an event cannot be labeled yet.
    """
    end = event_ts + horizon_ns
    j = np.searchsorted(candle_ts, end, side="right").astype(np.int64) - 1
    elapsed = np.zeros(len(event_ts), dtype=bool)
    if len(candle_ts):
        elapsed = (candle_ts[-1] >= end) & (j >= 0)
    return j, elapsed


def _range_extreme(values: F64, lo: I64, hi: I64, ufunc: np.ufunc) -> F64:
    """ufunc-reduce of values[lo:hi+1] per row (rows with hi < lo get NaN), in one pass.

    np.ufunc.reduceat over the interleaved bounds [lo0, hi0+1, lo1, hi1+1, ...] reduces every
    range at once; the odd slots are the stretches between ranges and are thrown away.
    """
    out = np.full(len(lo), np.nan)
    ok = hi >= lo
    if not ok.any():
        return out
    padded = np.append(values, np.nan)  # so hi + 1 == len(values) is still a valid index
    bounds = np.empty(2 * int(ok.sum()), dtype=np.int64)
    bounds[0::2] = lo[ok]
    bounds[1::2] = hi[ok] + 1
    out[ok] = ufunc.reduceat(padded, bounds)[0::2]
    return out


def label_outcomes(
    signal_ts: I64,
    signal_kind: npt.NDArray[np.int8],
    entry_price: F64,
    candle_ts: I64,
    high: F64,
    low: F64,
    close: F64,
    horizon_ns: int,
    threshold: float = DEFAULT_THRESHOLD,
) -> tuple[npt.NDArray[np.int8], F64]:
    """Outcome codes (PENDING/WIN/LOSS/BREAKEVEN) and pnl % for signals of one series.

    Arrays of signals are parallel; `signal_kind` holds BUY/SELL/HOLD codes; candles are
    sorted by open time. pnl % is NaN while a signal is pending.
    """
    j, elapsed = horizon_positions(candle_ts, signal_ts, horizon_ns)
    outcome = np.full(len(signal_ts), PENDING, dtype=np.int8)
    pnl = np.full(len(signal_ts), np.nan)
    if not elapsed.any():
        return outcome, pnl

    jj = np.where(elapsed, j, 0)
    change = (close[jj] - entry_price) / entry_price
    buy = elapsed & (signal_kind == BUY)
    sell = elapsed & (signal_kind == SELL)
    hold = elapsed & (signal_kind == HOLD)

    up, down = change > threshold, change < -threshold
    outcome[buy] = np.select([up[buy], down[buy]], [WIN, LOSS], BREAKEVEN)
    outcome[sell] = np.select([down[sell], up[sell]], [WIN, LOSS], BREAKEVEN)
    pnl[buy] = 100.0 * change[buy]
    pnl[sell] = -100.0 * change[sell]

    if hold.any():
        # Candles strictly after t up to the horizon candle: the window a hold must survive.
        first = np.searchsorted(candle_ts, signal_ts[hold], side="right").astype(np.int64)
        last = j[hold]
        order = np.argsort(first, kind="stable")  # sorted ranges keep reduceat's gaps short
        hi_max = np.empty(len(first))
        lo_min = np.empty(len(first))
        hi_max[order] = _range_extreme(high, first[order], last[order], np.maximum)
        lo_min[order] = _range_extreme(low, first[order], last[order], np.minimum)
        e = entry_price[hold]
        within = ((hi_max - e) / e <= threshold) & ((lo_min - e) / e >= -threshold)
        # No candle in (t, t + horizon] (a closed market): nothing left the band.
        within |= np.isnan(hi_max)
        outcome[hold] = np.where(within, WIN, LOSS)
        pnl[hold] = 0.0
    return outcome, pnl


def label_signals(
    signals: pd.DataFrame, candles: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD
) -> pd.DataFrame:
    """Label signals against candles; returns `actual_outcome` and `actual_pnl_percent`.

    `signals`: pair, timeframe, signal, entry_price, created_at (UTC). `candles`: pair,
    timeframe, timestamp (UTC open time), high, low, close. The result is indexed like
    `signals`; signals whose horizon has not elapsed are `pending` with a NaN pnl.
    """
    outcome = np.full(len(signals), PENDING, dtype=np.int8)
    pnl = np.full(len(signals), np.nan)
    kinds = pd.Categorical(signals["signal"], categories=SIGNALS)
    if (kinds.codes < 0).any():
        bad = sorted(set(signals["signal"][kinds.codes < 0].astype(str)))
        raise ValueError(f"unknown signal value(s) {bad}: expected one of {SIGNALS}")
    codes = kinds.codes.astype(np.int8)
    candle_groups = {(pair, tf): idx for pair, tf, idx in iter_series(candles)}
    for pair, timeframe, rows in iter_series(signals):
        idx = candle_groups.get((pair, timeframe))
        if idx is None:
            continue
        series = candles.iloc[idx].sort_values("timestamp")
        out, p = label_outcomes(
            _ns(signals["created_at"].iloc[rows]),
            codes[rows],
            signals["entry_price"].iloc[rows].to_numpy(np.float64),
            _ns(series["timestamp"]),
            series["high"].to_numpy(np.float64),
            series["low"].to_numpy(np.float64),
            series["close"].to_numpy(np.float64),
            horizon(timeframe).value,
            threshold,
        )
        outcome[rows], pnl[rows] = out, p
    return pd.DataFrame(
        {
            "actual_outcome": pd.Categorical.from_codes(
                outcome.tolist(), categories=pd.Index(OUTCOMES)
            ),
            "actual_pnl_percent": pnl,
        },
        index=signals.index,
    )


def direction_target(
    timestamps: pd.Series | pd.DatetimeIndex,
    close: npt.ArrayLike,
    timeframe: str,
    min_move: float = 0.0,
) -> F64:
    """The candle-level training target: 1.0 if the market went up over the horizon, else 0.0.

    A candle's close is known when the candle ends (open time + one step); from then, it is
    treated exactly like a signal with that close as entry price: the horizon candle's close is
    compared with it. NaN where the horizon has not elapsed or |change| <= min_move (no
    direction to learn). One series, sorted by open time.
    """
    ts = pd.DatetimeIndex(timestamps)
    closes = np.asarray(close, dtype=np.float64)
    decided_at = _ns(candle_close_times(ts, timeframe))
    j, elapsed = horizon_positions(_ns(ts), decided_at, horizon(timeframe).value)
    change = np.where(elapsed, (closes[np.where(elapsed, j, 0)] - closes) / closes, np.nan)
    target = np.where(change > 0, 1.0, 0.0)
    target[~elapsed | ~(np.abs(change) > min_move)] = np.nan
    return target


def _ns(values: pd.Series | pd.DatetimeIndex) -> I64:
    """UTC timestamps as int64 nanoseconds."""
    index = pd.DatetimeIndex(values)
    if index.tz is None:
        index = index.tz_localize("UTC")
    nanos: I64 = index.tz_convert("UTC").tz_localize(None).as_unit("ns").to_numpy().view(np.int64)
    return nanos
