"""Synthetic multi-pair FX candles with realistic texture and a weak, regime-switching pattern.

They stand in for real market data in tests, demos and benchmarks: prices, volatility and
cross-pair correlation look like FX, and a model can learn a little, but only a little.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from aifx_ml.errors import InvalidInputError
from aifx_ml.markets import expected_grid, step_offset, validate_pair, validate_timeframe

FloatArray = npt.NDArray[np.float64]

CSV_COLUMNS: tuple[str, ...] = ("timestamp", "open", "high", "low", "close", "volume")

# Value of one unit of each currency in USD; a pair's base price is the ratio of its two legs,
# which reproduces the usual quotes (EUR/GBP 0.85, EUR/JPY 162) for every cross of these.
_USD_VALUE: dict[str, float] = {
    "USD": 1.0,
    "EUR": 1.08,
    "GBP": 1.27,
    "JPY": 1.0 / 150.0,
    "AUD": 0.66,
    "CHF": 1.0 / 0.88,
    "CAD": 1.0 / 1.36,
    "NZD": 0.60,
}
# Relative volatility (1.0 = EUR/USD); other pairs get a name-derived value in [0.8, 1.4].
_VOL_MULT: dict[str, float] = {
    "EUR/USD": 1.0,
    "GBP/USD": 1.15,
    "USD/JPY": 1.1,
    "AUD/USD": 1.25,
    "USD/CHF": 1.0,
    "USD/CAD": 0.9,
    "NZD/USD": 1.3,
    "EUR/GBP": 0.7,
    "EUR/JPY": 1.2,
}
_HOURLY_VOL = 0.0006  # EUR/USD log-return standard deviation per trading hour
_USD_LOADING = np.sqrt(0.6)  # two USD pairs correlate at about +-0.6, as majors roughly do
_GARCH_ALPHA, _GARCH_BETA = 0.05, 0.93
_REGIME_HOURS = (400.0, 100.0)  # mean stay in calm / volatile, in trading hours
_REGIME_VOL = (0.85, 1.6)
_DRIFT_COMMON, _DRIFT_PAIR = 0.03, 0.02  # per-episode drift sd, in hourly sigmas per hour
_GAP_SIGMAS = 2.0  # weekend gap sd, in hourly sigmas
_TICKS_PER_HOUR = 1500.0
# Trading hours per candle where the calendar length would overstate it (weekends are shut).
_TRADING_HOURS: dict[str, float] = {"1d": 24.0, "1w": 120.0, "1M": 521.0}
# Intraday activity by UTC hour: quiet Asia, busy London, busiest London/New York overlap.
_SESSION = np.array(
    [0.75] * 7 + [1.0] + [1.15] * 4 + [1.4] * 4 + [1.1] + [0.85] * 4 + [0.6] * 3, dtype=np.float64
)
_SESSION = _SESSION / np.sqrt(np.mean(_SESSION**2))


def synthesize_candles(
    pairs: Sequence[str],
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    seed: int = 42,
    pattern_switch: float = 0.5,
    pattern_strength: float = 0.25,
    switch_volatility: float = 1.0,
    pattern_lags: tuple[int, int] = (1, 3),
    pattern_after: tuple[float, int, int] | None = None,
) -> dict[str, pd.DataFrame]:
    """Candles for each pair on `expected_grid(start, end, timeframe)`, keyed by pair.

    Returns follow a GARCH(1,1) variance under a hidden calm/volatile regime with a small
    per-episode drift, share a common USD factor (XXX/USD up, USD/XXX down, crosses neutral)
    and gap a little over weekends. Each return also leans by `pattern_strength` on the mean of
    the returns `pattern_lags` = (first, last) candles back (default: the previous three):
    with them (momentum) for the first round(pattern_switch * candles) candles, against them
    (mean reversion) afterwards — or, with `pattern_after` = (strength, first, last), by that
    strength (negative: against them) on those lags afterwards. A negative `pattern_strength`
    starts against them. From the switch on volatility is also multiplied by `switch_volatility`
    (1.0: the market only changes its habit, not its size).
    Same arguments give identical frames; a pair's candles depend only on (seed, pair, grid),
    not on which other pairs are asked for.
    """
    if isinstance(pairs, str) or len(pairs) == 0:
        raise InvalidInputError(f"pairs must be a non-empty list of pairs, got {pairs!r}")
    for pair in pairs:
        validate_pair(pair)
    if len(set(pairs)) != len(pairs):
        raise InvalidInputError(f"pairs must not repeat, got {list(pairs)}")
    validate_timeframe(timeframe)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0.0 <= pattern_switch <= 1.0:
        raise InvalidInputError(f"pattern_switch must be in [0, 1], got {pattern_switch}")
    if not 0.0 < switch_volatility <= 10.0:
        raise InvalidInputError(f"switch_volatility must be in (0, 10], got {switch_volatility}")
    before = (pattern_strength, *pattern_lags)
    after = pattern_after or (-pattern_strength, *pattern_lags)
    for name, (strength, first_lag, last_lag) in (("", before), ("pattern_after ", after)):
        if not 1 <= first_lag <= last_lag <= 48:
            raise InvalidInputError(
                f"{name or 'pattern_'}lags must be 1 <= first <= last <= 48, got "
                f"{(first_lag, last_lag)}"
            )
        if not -1.0 < strength < 1.0:
            # At |1| or more the autoregressive lean would make returns explode.
            raise InvalidInputError(
                f"{name or 'pattern_'}strength must be in (-1, 1), got {strength}"
            )
    start_utc, end_utc = _as_utc(start), _as_utc(end)
    if end_utc <= start_utc:
        raise InvalidInputError(f"end {end_utc} must be after start {start_utc}")
    grid = expected_grid(start_utc, end_utc, timeframe).as_unit("ns")
    if len(grid) == 0:
        raise InvalidInputError(
            f"no {timeframe} candle opens between {start_utc} and {end_utc} with the market open"
        )
    n = len(grid)
    step_hours = _trading_hours(timeframe)
    gap = _gap_mask(grid, timeframe)
    season = _session_vol(grid, step_hours)

    common = np.random.default_rng(np.random.SeedSequence([seed, _key(f"common/{timeframe}")]))
    factor = common.standard_normal(n)
    factor_gap = common.standard_normal(n)
    volatile = _regime_path(common.random(n), step_hours)
    episode = np.cumsum(np.diff(volatile.astype(np.int64), prepend=volatile[0]) != 0)
    common_drift = common.normal(0.0, _DRIFT_COMMON, episode[-1] + 1)[episode]
    regime_vol = np.where(volatile, _REGIME_VOL[1], _REGIME_VOL[0])
    trend_hours = min(step_hours, *_REGIME_HOURS)

    n_switch = round(pattern_switch * n)
    after_switch = np.where(np.arange(n) < n_switch, 1.0, switch_volatility)

    frames: dict[str, pd.DataFrame] = {}
    for pair in pairs:
        rng = np.random.default_rng(np.random.SeedSequence([seed, _key(f"pair/{pair}")]))
        idio, idio_gap, noise = rng.standard_normal((3, n))
        u_high, u_low = 1.0 - rng.random((2, n))  # in (0, 1] so their logs are finite
        pair_drift = rng.normal(0.0, _DRIFT_PAIR, episode[-1] + 1)[episode]

        loading = _usd_loading(pair)
        mix = np.sqrt(1.0 - loading**2)
        z = loading * factor + mix * idio
        hourly = _HOURLY_VOL * _pair_vol_mult(pair)
        variance = _garch_variance(z)
        # In units of the pair's normal volatility.
        vol = regime_vol * season * np.sqrt(variance) * after_switch
        sigma = hourly * np.sqrt(step_hours) * vol
        # A trend lasts about one regime episode: longer candles average several out.
        drift = hourly * trend_hours * (loading * common_drift + pair_drift)
        gap_ret = np.where(gap, _GAP_SIGMAS * hourly * (loading * factor_gap + mix * idio_gap), 0.0)
        returns = _lean_returns(drift + sigma * z + gap_ret, n_switch, before, after)

        base = _base_price(pair)
        close = base * np.exp(np.cumsum(returns))
        prev_close = np.concatenate(([base], close[:-1]))
        open_ = np.where(gap, prev_close * np.exp(gap_ret), prev_close)
        # Exact extremes of a Brownian bridge from open to close, sampled by inverse transform.
        body = np.log(close / open_)
        spread = -2.0 * sigma**2
        high = open_ * np.exp(0.5 * (body + np.sqrt(body**2 + spread * np.log(u_high))))
        low = open_ * np.exp(0.5 * (body - np.sqrt(body**2 + spread * np.log(u_low))))
        # exp/log round-off could leave an extreme a hair inside the body.
        high = np.maximum(high, np.maximum(open_, close))
        low = np.minimum(low, np.minimum(open_, close))
        ticks = _TICKS_PER_HOUR * step_hours * vol * (0.75 + 0.25 * np.abs(z))
        # Subtracting sd**2 / 2 keeps the lognormal noise's mean at 1.
        volume = np.maximum(1.0, np.round(ticks * np.exp(0.25 * noise - 0.25**2 / 2)))

        frames[pair] = pd.DataFrame(
            {
                "timestamp": grid,
                "open": open_,
                "high": high,
                "low": low,
                "close": close,
                "volume": volume,
            }
        )
    return frames


def write_synthetic_csv(
    frames: Mapping[str, pd.DataFrame], out_dir: Path, timeframe: str
) -> list[Path]:
    """Write one CSV per pair (`EURUSD_1h.csv`) and return the paths in pair order.

    Columns are timestamp,open,high,low,close,volume with ISO-8601 UTC timestamps such as
    2026-01-05T00:00:00Z. Creates out_dir.
    """
    validate_timeframe(timeframe)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for pair, frame in frames.items():
        validate_pair(pair)
        missing = [c for c in CSV_COLUMNS if c not in frame.columns]
        if missing:
            raise InvalidInputError(f"frame for {pair} lacks columns {missing}")
        out = frame.loc[:, list(CSV_COLUMNS)].copy()
        stamps = pd.to_datetime(out["timestamp"], utc=True)
        out["timestamp"] = stamps.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        path = out_dir / f"{pair.replace('/', '')}_{timeframe}.csv"
        # Ten significant digits keep prices exact to well below a pipette.
        out.to_csv(path, index=False, float_format="%.10g", lineterminator="\n")
        paths.append(path)
    return paths


def _as_utc(moment: pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _key(text: str) -> int:
    # hashlib, not hash(): Python salts str hashes per process, which would break reproducibility.
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _unit(text: str) -> float:
    """A stable pseudo-random number in [0, 1) derived from a name."""
    return _key(text) / 2.0**64


def _base_price(pair: str) -> float:
    base, quote = pair.split("/")
    if base in _USD_VALUE and quote in _USD_VALUE:
        return _USD_VALUE[base] / _USD_VALUE[quote]
    return 0.5 + 1.5 * _unit(f"price/{pair}")


def _pair_vol_mult(pair: str) -> float:
    return _VOL_MULT.get(pair, 0.8 + 0.6 * _unit(f"vol/{pair}"))


def _usd_loading(pair: str) -> float:
    # A weaker dollar lifts XXX/USD and drops USD/XXX; in a cross the dollar cancels out.
    base, quote = pair.split("/")
    return float(_USD_LOADING * ((quote == "USD") - (base == "USD")))


def _trading_hours(timeframe: str) -> float:
    if timeframe in _TRADING_HOURS:
        return _TRADING_HOURS[timeframe]
    step = step_offset(timeframe)
    assert isinstance(step, pd.Timedelta)
    return step.total_seconds() / 3600.0


def _gap_mask(grid: pd.DatetimeIndex, timeframe: str) -> npt.NDArray[np.bool_]:
    """True for candles that open after a market closure (longer than one step since the last)."""
    if timeframe in ("1w", "1M"):
        return np.zeros(len(grid), dtype=np.bool_)
    step = step_offset(timeframe)
    assert isinstance(step, pd.Timedelta)
    opens = grid.tz_localize(None).to_numpy()
    return np.asarray(np.diff(opens, prepend=opens[:1]) > step.to_timedelta64(), dtype=np.bool_)


def _session_vol(grid: pd.DatetimeIndex, step_hours: float) -> FloatArray:
    """Intraday volatility multiplier: RMS of the hourly session factor over each candle."""
    if step_hours >= 24.0:
        return np.ones(len(grid), dtype=np.float64)
    hours = grid.hour.to_numpy()[:, None] + np.arange(max(1, int(step_hours)))
    return np.asarray(np.sqrt(np.mean(_SESSION[hours % 24] ** 2, axis=1)), dtype=np.float64)


def _regime_path(uniforms: FloatArray, step_hours: float) -> npt.NDArray[np.bool_]:
    """Hidden two-state Markov chain (False calm, True volatile), switching rarely."""
    leave = [1.0 - np.exp(-step_hours / hours) for hours in _REGIME_HOURS]
    stationary_volatile = _REGIME_HOURS[1] / sum(_REGIME_HOURS)
    volatile = np.empty(len(uniforms), dtype=np.bool_)
    state = bool(uniforms[0] < stationary_volatile)
    volatile[0] = state
    for t in range(1, len(uniforms)):
        if uniforms[t] < leave[state]:
            state = not state
        volatile[t] = state
    return volatile


def _garch_variance(z: FloatArray) -> FloatArray:
    """GARCH(1,1) variance with unit long-run mean, driven by the standardized shocks z."""
    persistence = (_GARCH_ALPHA * z**2 + _GARCH_BETA).tolist()
    omega = 1.0 - _GARCH_ALPHA - _GARCH_BETA
    variance = [1.0] * len(persistence)
    # Plain floats: element access on numpy arrays would cost ten times more per step.
    for t in range(1, len(variance)):
        variance[t] = omega + persistence[t - 1] * variance[t - 1]
    return np.array(variance, dtype=np.float64)


def _lean_returns(
    innovations: FloatArray,
    n_switch: int,
    before: tuple[float, int, int],
    after: tuple[float, int, int],
) -> FloatArray:
    """r[t] = innovations[t] + strength * mean(r[t - last] .. r[t - first]), with (strength,
    first, last) = `before` for t < n_switch and `after` from then on."""
    pad = max(before[2], after[2])
    returns = [0.0] * (len(innovations) + pad)  # zero history before the first candle
    for t, shock in enumerate(innovations.tolist()):
        strength, first, last = before if t < n_switch else after
        i = t + pad
        weight = strength / (last - first + 1)  # the same rounding as a precomputed lean
        returns[i] = shock + weight * sum(returns[i - last : i - first + 1])
    return np.array(returns[pad:], dtype=np.float64)
