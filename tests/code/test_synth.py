"""Synthetic candles: reproducible, on the market grid, OHLC-consistent, FX-like, learnable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aifx_ml.data.synth import synthesize_candles, write_synthetic_csv
from aifx_ml.errors import InvalidInputError
from aifx_ml.markets import expected_grid

START = pd.Timestamp("2026-01-05")  # a Monday
WEEK_END = pd.Timestamp("2026-01-16 23:00")
YEAR_END = pd.Timestamp("2026-12-31 23:00")
PRICE_COLUMNS = ["open", "high", "low", "close"]


@pytest.fixture(scope="module")
def year() -> dict[str, pd.DataFrame]:
    """A year of 1h candles for four pairs (about 6,200 rows each)."""
    return synthesize_candles(["EUR/USD", "GBP/USD", "USD/CHF", "USD/JPY"], "1h", START, YEAR_END)


def _log_returns(frame: pd.DataFrame) -> np.ndarray:
    return np.diff(np.log(frame["close"].to_numpy()))


def test_same_arguments_give_identical_frames() -> None:
    first = synthesize_candles(["EUR/USD", "USD/JPY"], "1h", START, WEEK_END, seed=7)
    second = synthesize_candles(["EUR/USD", "USD/JPY"], "1h", START, WEEK_END, seed=7)
    assert list(first) == ["EUR/USD", "USD/JPY"]
    for pair in first:
        pd.testing.assert_frame_equal(first[pair], second[pair], check_exact=True)


def test_different_seed_gives_different_prices() -> None:
    first = synthesize_candles(["EUR/USD"], "1h", START, WEEK_END, seed=1)["EUR/USD"]
    second = synthesize_candles(["EUR/USD"], "1h", START, WEEK_END, seed=2)["EUR/USD"]
    assert not np.array_equal(first["close"].to_numpy(), second["close"].to_numpy())


def test_adding_a_pair_leaves_the_others_unchanged() -> None:
    alone = synthesize_candles(["EUR/USD"], "1h", START, WEEK_END)
    more = synthesize_candles(["GBP/JPY", "EUR/USD", "USD/CAD"], "1h", START, WEEK_END)
    pd.testing.assert_frame_equal(alone["EUR/USD"], more["EUR/USD"], check_exact=True)


def test_naive_bounds_are_utc() -> None:
    naive = synthesize_candles(["EUR/USD"], "15min", START, WEEK_END)["EUR/USD"]
    aware = synthesize_candles(
        ["EUR/USD"],
        "15min",
        START.tz_localize("UTC").tz_convert("Asia/Tokyo"),
        WEEK_END.tz_localize("UTC"),
    )["EUR/USD"]
    pd.testing.assert_frame_equal(naive, aware, check_exact=True)


@pytest.mark.parametrize("timeframe", ["5min", "1h", "4h", "1d", "1w", "1M"])
def test_schema_and_grid(timeframe: str) -> None:
    end = pd.Timestamp("2026-06-30") if timeframe in ("1w", "1M") else WEEK_END
    frame = synthesize_candles(["EUR/USD"], timeframe, START, end)["EUR/USD"]
    assert list(frame.columns) == ["timestamp", "open", "high", "low", "close", "volume"]
    assert str(frame["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert all(frame[c].dtype == np.float64 for c in [*PRICE_COLUMNS, "volume"])
    grid = expected_grid(START.tz_localize("UTC"), end.tz_localize("UTC"), timeframe)
    assert pd.DatetimeIndex(frame["timestamp"]).equals(grid)
    assert frame["timestamp"].is_monotonic_increasing


def test_no_saturday_candle_and_a_weekend_gap() -> None:
    stamps = synthesize_candles(["EUR/USD"], "1h", START, WEEK_END)["EUR/USD"]["timestamp"]
    assert not (stamps.dt.dayofweek == 5).any()
    gaps = stamps.diff()
    jump = int(gaps.idxmax())
    assert stamps[jump - 1] == pd.Timestamp("2026-01-09 20:00", tz="UTC")  # last Friday candle
    assert stamps[jump] == pd.Timestamp("2026-01-11 22:00", tz="UTC")  # Sunday reopening
    assert (gaps.dropna() == pd.Timedelta(hours=1)).sum() == len(stamps) - 2


def test_ohlc_consistency(year: dict[str, pd.DataFrame]) -> None:
    for frame in year.values():
        prices = frame[PRICE_COLUMNS].to_numpy()
        assert np.isfinite(prices).all() and (prices > 0).all()
        assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()
        assert (frame["low"] <= frame[["open", "close"]].min(axis=1)).all()
        assert (frame["volume"] > 0).all()
        after_weekend = (frame["timestamp"].diff() > pd.Timedelta(hours=1)).to_numpy()[1:]
        continuous = frame["open"].to_numpy()[1:] == frame["close"].to_numpy()[:-1]
        assert continuous[~after_weekend].all()
        assert not continuous[after_weekend].all()  # the weekend gap moves the price a little


def test_prices_start_at_sensible_levels(year: dict[str, pd.DataFrame]) -> None:
    expected = {"EUR/USD": 1.08, "GBP/USD": 1.27, "USD/CHF": 0.88, "USD/JPY": 150.0}
    for pair, level in expected.items():
        assert year[pair]["open"].iloc[0] == pytest.approx(level, rel=1e-9)
        assert year[pair]["close"].between(0.7 * level, 1.3 * level).all()
    other = synthesize_candles(["XAU/XAG"], "1h", START, WEEK_END)["XAU/XAG"]
    assert 0.5 <= other["open"].iloc[0] <= 2.0


def test_volatility_scales_with_timeframe(year: dict[str, pd.DataFrame]) -> None:
    hourly = np.std(_log_returns(year["EUR/USD"]))
    assert 0.0004 < hourly < 0.0009
    four_hour = synthesize_candles(["EUR/USD"], "4h", START, YEAR_END)["EUR/USD"]
    assert np.std(_log_returns(four_hour)) / hourly == pytest.approx(2.0, rel=0.25)


def test_volatility_clusters_and_drives_volume(year: dict[str, pd.DataFrame]) -> None:
    for frame in year.values():
        size = np.abs(_log_returns(frame))
        assert np.corrcoef(size[:-1], size[1:])[0, 1] > 0.1
        assert np.corrcoef(size, frame["volume"].to_numpy()[1:])[0, 1] > 0.2


def test_usd_factor_correlates_pairs(year: dict[str, pd.DataFrame]) -> None:
    returns = {pair: _log_returns(frame) for pair, frame in year.items()}
    assert np.corrcoef(returns["EUR/USD"], returns["GBP/USD"])[0, 1] > 0.4
    assert np.corrcoef(returns["EUR/USD"], returns["USD/CHF"])[0, 1] < -0.4
    assert np.corrcoef(returns["USD/CHF"], returns["USD/JPY"])[0, 1] > 0.4


def test_pattern_switches_from_momentum_to_reversion(year: dict[str, pd.DataFrame]) -> None:
    for frame in year.values():
        returns = _log_returns(frame)
        recent = np.convolve(returns, np.ones(3) / 3, mode="valid")[:-1]
        following = returns[3:]
        # following[k] is the return into candle k + 4; the switch is at candle round(0.5 * n).
        before = np.arange(4, len(frame)) < round(0.5 * len(frame))
        agree = np.sign(following) == np.sign(recent)
        assert 0.52 < agree[before].mean() < 0.65
        assert 0.35 < agree[~before].mean() < 0.48


def test_no_pattern_without_strength() -> None:
    frame = synthesize_candles(["EUR/USD"], "1h", START, YEAR_END, pattern_strength=0.0)["EUR/USD"]
    returns = _log_returns(frame)
    recent = np.convolve(returns, np.ones(3) / 3, mode="valid")[:-1]
    assert abs((np.sign(returns[3:]) == np.sign(recent)).mean() - 0.5) < 0.03


@pytest.mark.parametrize(
    ("pairs", "timeframe", "start", "end", "options"),
    [
        (["EURUSD"], "1h", START, WEEK_END, {}),
        (["EUR/USD", "EUR/USD"], "1h", START, WEEK_END, {}),
        ([], "1h", START, WEEK_END, {}),
        ("EUR/USD", "1h", START, WEEK_END, {}),
        (["EUR/USD"], "2h", START, WEEK_END, {}),
        (["EUR/USD"], "1h", WEEK_END, START, {}),
        (["EUR/USD"], "1h", START, START, {}),
        (["EUR/USD"], "1h", pd.Timestamp("2026-01-10"), pd.Timestamp("2026-01-11 12:00"), {}),
        (["EUR/USD"], "1h", START, WEEK_END, {"pattern_switch": 1.5}),
        (["EUR/USD"], "1h", START, WEEK_END, {"pattern_switch": -0.1}),
        (["EUR/USD"], "1h", START, WEEK_END, {"pattern_switch": float("nan")}),
        (["EUR/USD"], "1h", START, WEEK_END, {"pattern_strength": 1.0}),
        (["EUR/USD"], "1h", START, WEEK_END, {"seed": -1}),
    ],
)
def test_invalid_inputs_raise(
    pairs: list[str],
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    options: dict[str, float],
) -> None:
    with pytest.raises(InvalidInputError):
        synthesize_candles(pairs, timeframe, start, end, **options)


def test_csv_round_trip(tmp_path: Path) -> None:
    frames = synthesize_candles(["EUR/USD", "USD/JPY"], "1h", START, WEEK_END)
    out_dir = tmp_path / "nested" / "csv"
    paths = write_synthetic_csv(frames, out_dir, "1h")
    assert paths == [out_dir / "EURUSD_1h.csv", out_dir / "USDJPY_1h.csv"]
    first_line = paths[0].read_text().splitlines()[:2]
    assert first_line[0] == "timestamp,open,high,low,close,volume"
    assert first_line[1].startswith("2026-01-05T00:00:00Z,")
    for path, frame in zip(paths, frames.values(), strict=True):
        back = pd.read_csv(path, dtype={"volume": np.float64})  # whole tick counts print as ints
        back["timestamp"] = pd.to_datetime(back["timestamp"], utc=True).dt.as_unit("ns")
        pd.testing.assert_frame_equal(back, frame, check_exact=False, rtol=1e-9)
