"""Benchmark: vectorized signal labeling and zero-copy candle windows at a million rows.

Prints one JSON object to stdout. Timings are the best of `--repeat` runs, measured with
tracing off; peak memory comes from a separate traced run (tracemalloc sees numpy's buffers).

    .venv/bin/python benchmarks/bench_labeling_windows.py [--signals N] [--candles N]
        [--positions N] [--features F] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from aifx_ml.features.windows import WINDOW_LENGTH, build_windows, iter_batches
from aifx_ml.labeling.rules import (
    BREAKEVEN,
    BUY,
    DEFAULT_THRESHOLD,
    HOLD,
    LOSS,
    OUTCOMES,
    PENDING,
    SELL,
    SIGNALS,
    WIN,
    label_outcomes,
    label_signals,
)
from aifx_ml.markets import HORIZONS

TIMEFRAME = "1h"
PAIR = "EUR/USD"
START = pd.Timestamp("2000-01-03", tz="UTC")
STEP_NS = pd.Timedelta(hours=1).value
HORIZON_NS = HORIZONS[TIMEFRAME].value
LOOP_SIGNALS = 2_000
BATCH_SIZE = 256
MB = 1024 * 1024
TARGETS = {
    "labeling_signals_per_s": 1_000_000,
    "windows_per_s": 1_000_000,
    "window_peak_ratio_max": 2.0,
}


# --- measuring ------------------------------------------------------------------------------


def best_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Fastest wall time of `repeat` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def peak_extra_bytes(fn: Callable[[], Any]) -> int:
    """Peak bytes allocated (and not yet freed) during one call, above what existed before."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


# --- data -----------------------------------------------------------------------------------


def make_candles(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """One 1h series: a log random walk on an unbroken hourly grid (weekends not skipped)."""
    ts = START.value + STEP_NS * np.arange(n, dtype=np.int64)
    close = 1.10 * np.exp(np.cumsum(rng.normal(0.0, 0.002, n)))
    open_ = np.concatenate([[1.10], close[:-1]])
    wick = np.abs(rng.normal(0.0, 0.001, (2, n)))
    high = np.maximum(open_, close) * (1.0 + wick[0])
    low = np.minimum(open_, close) * (1.0 - wick[1])
    return {"ts": ts, "high": high, "low": low, "close": close}


def make_signals(rng: np.random.Generator, n: int, candles: dict[str, np.ndarray]) -> dict:
    """Signals in creation order at random times within the candle range; entry = the close of
    the candle open at/before the signal time. Those in the last 4h stay pending."""
    ts = candles["ts"]
    times = np.sort(rng.integers(ts[0], ts[-1] + STEP_NS, n, dtype=np.int64))
    entry = candles["close"][np.searchsorted(ts, times, side="right") - 1]
    kind = rng.choice(np.array([BUY, SELL, HOLD], dtype=np.int8), n, p=[0.4, 0.4, 0.2])
    return {"ts": times, "kind": kind, "entry": entry}


def as_frames(signals: dict, candles: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The same data in the shape `label_signals` takes."""
    signal_frame = pd.DataFrame(
        {
            "pair": PAIR,
            "timeframe": TIMEFRAME,
            "signal": np.array(SIGNALS, dtype=object)[signals["kind"]],
            "entry_price": signals["entry"],
            "created_at": pd.to_datetime(signals["ts"], utc=True),
        }
    )
    candle_frame = pd.DataFrame(
        {
            "pair": PAIR,
            "timeframe": TIMEFRAME,
            "timestamp": pd.to_datetime(candles["ts"], utc=True),
            "high": candles["high"],
            "low": candles["low"],
            "close": candles["close"],
        }
    )
    return signal_frame, candle_frame


# --- the old way: one signal at a time ------------------------------------------------------


def loop_label(signals: dict, candles: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per-signal Python loop, as an old system would label: find the horizon candle, decide."""
    ts, high, low, close = candles["ts"], candles["high"], candles["low"], candles["close"]
    n = len(signals["ts"])
    outcome = np.full(n, PENDING, dtype=np.int8)
    pnl = np.full(n, np.nan)
    for i in range(n):
        t, kind, e = signals["ts"][i], signals["kind"][i], signals["entry"][i]
        end = t + HORIZON_NS
        j = np.searchsorted(ts, end, side="right") - 1
        if j < 0 or ts[-1] < end:
            continue
        change = (close[j] - e) / e
        if kind == HOLD:
            ok = True
            for k in range(np.searchsorted(ts, t, side="right"), j + 1):
                if (high[k] - e) / e > DEFAULT_THRESHOLD or (low[k] - e) / e < -DEFAULT_THRESHOLD:
                    ok = False
                    break
            outcome[i], pnl[i] = (WIN if ok else LOSS), 0.0
            continue
        move = change if kind == BUY else -change
        if move > DEFAULT_THRESHOLD:
            outcome[i] = WIN
        elif move < -DEFAULT_THRESHOLD:
            outcome[i] = LOSS
        else:
            outcome[i] = BREAKEVEN
        pnl[i] = 100.0 * move
    return outcome, pnl


# --- benchmarks -----------------------------------------------------------------------------


def bench_labeling(signals: dict, candles: dict, repeat: int) -> dict:
    def vectorized() -> tuple[np.ndarray, np.ndarray]:
        return label_outcomes(
            signals["ts"],
            signals["kind"],
            signals["entry"],
            candles["ts"],
            candles["high"],
            candles["low"],
            candles["close"],
            HORIZON_NS,
        )

    signal_frame, candle_frame = as_frames(signals, candles)
    n = len(signals["ts"])
    seconds, (outcome, _) = best_time(vectorized, repeat)
    frame_seconds, labeled = best_time(lambda: label_signals(signal_frame, candle_frame), repeat)
    assert np.array_equal(labeled["actual_outcome"].cat.codes.to_numpy(), outcome)
    counts = np.bincount(outcome, minlength=len(OUTCOMES)).tolist()
    mix = np.bincount(signals["kind"], minlength=len(SIGNALS)).tolist()
    return {
        "label_outcomes": {
            "seconds": round(seconds, 4),
            "signals_per_s": round(n / seconds),
            "peak_mb": round(peak_extra_bytes(vectorized) / MB, 1),
        },
        "label_signals": {
            "seconds": round(frame_seconds, 4),
            "signals_per_s": round(n / frame_seconds),
            "peak_mb": round(
                peak_extra_bytes(lambda: label_signals(signal_frame, candle_frame)) / MB, 1
            ),
        },
        "outcomes": dict(zip(OUTCOMES, counts, strict=True)),
        "signal_mix": dict(zip(SIGNALS, mix, strict=True)),
    }


def bench_loop_reference(signals: dict, candles: dict, repeat: int) -> dict:
    """The per-signal loop on an evenly spread subset, checked against `label_outcomes`."""
    pick = np.linspace(0, len(signals["ts"]) - 1, min(LOOP_SIGNALS, len(signals["ts"]))).astype(int)
    subset = {key: value[pick] for key, value in signals.items()}
    seconds, (loop_outcome, loop_pnl) = best_time(lambda: loop_label(subset, candles), repeat)
    outcome, pnl = label_outcomes(
        subset["ts"],
        subset["kind"],
        subset["entry"],
        candles["ts"],
        candles["high"],
        candles["low"],
        candles["close"],
        HORIZON_NS,
    )
    agree = bool(
        np.array_equal(loop_outcome, outcome) and np.allclose(loop_pnl, pnl, equal_nan=True)
    )
    assert agree, "per-signal loop and label_outcomes disagree"
    return {
        "signals": len(pick),
        "seconds": round(seconds, 4),
        "signals_per_s": round(len(pick) / seconds),
        "agree": agree,
    }


def bench_windows(positions: int, n_features: int, repeat: int, rng: np.random.Generator) -> dict:
    length = WINDOW_LENGTH
    features = rng.standard_normal((positions + length - 1, n_features), dtype=np.float32)
    array_mb = features.nbytes / MB

    seconds, windows = best_time(lambda: build_windows(features, length), repeat)
    assert windows.shape == (positions, length, n_features)
    build_peak = peak_extra_bytes(lambda: build_windows(features, length))

    rows = np.arange(positions, dtype=np.int64)

    def stream() -> int:
        seen = 0
        for x, _ in iter_batches(windows, rows, BATCH_SIZE):
            seen += len(x)
        return seen

    stream_seconds, seen = best_time(stream, repeat)
    assert seen == positions
    stream_peak = peak_extra_bytes(stream)
    return {
        "window_length": length,
        "candle_array_mb": round(array_mb, 1),
        "build": {
            "seconds": round(seconds, 6),
            "windows_per_s": round(positions / seconds),
            "shares_memory": bool(np.shares_memory(windows, features)),
            "peak_extra_mb": round(build_peak / MB, 4),
            # Everything alive at the peak (the candle array plus what the build added).
            "peak_ratio": round((features.nbytes + build_peak) / features.nbytes, 4),
        },
        "stream": {
            "batch_size": BATCH_SIZE,
            "seconds": round(stream_seconds, 4),
            "windows_per_s": round(positions / stream_seconds),
            "peak_extra_mb": round(stream_peak / MB, 2),
            "peak_ratio": round((features.nbytes + stream_peak) / features.nbytes, 4),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=1_000_000)
    parser.add_argument("--candles", type=int, default=1_000_000)
    parser.add_argument("--positions", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    started = time.perf_counter()
    rng = np.random.default_rng(0)
    candles = make_candles(rng, args.candles)
    signals = make_signals(rng, args.signals, candles)
    labeling = bench_labeling(signals, candles, args.repeat)
    loop = bench_loop_reference(signals, candles, args.repeat)
    windows = bench_windows(args.positions, args.features, args.repeat, rng)

    vectorized = labeling["label_outcomes"]["signals_per_s"]
    loop["label_outcomes_speedup"] = round(vectorized / loop["signals_per_s"], 1)
    peak_ratio = max(windows["build"]["peak_ratio"], windows["stream"]["peak_ratio"])
    report = {
        "config": {
            "signals": args.signals,
            "candles": args.candles,
            "positions": args.positions,
            "features": args.features,
            "repeat": args.repeat,
            "timeframe": TIMEFRAME,
            "horizon": f"{HORIZONS[TIMEFRAME] / pd.Timedelta(hours=1):g}h",
            "threshold": DEFAULT_THRESHOLD,
            "seed": 0,
        },
        "labeling": labeling,
        "loop_reference": loop,
        "windows": windows,
        "targets": TARGETS,
        "pass": {
            "labeling_signals_per_s": vectorized >= TARGETS["labeling_signals_per_s"],
            "windows_per_s": windows["build"]["windows_per_s"] >= TARGETS["windows_per_s"],
            "window_peak_ratio_max": peak_ratio < TARGETS["window_peak_ratio_max"],
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pandas": pd.__version__,
        },
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
