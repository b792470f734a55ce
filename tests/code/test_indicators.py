"""Indicators: the columns, warm-up, sanity values, causality, and the JSON round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from aifx_ml.features.indicators import (
    INDICATOR_COLUMNS,
    compute_indicators,
    indicators_from_json,
    indicators_to_json,
)

# Rows without a value at the start of a series (TA-Lib lookback) for each column.
WARM_UP = {
    "rsi_14": 14,
    "macd": 33,
    "macd_signal": 33,
    "macd_hist": 33,
    "atr_14": 14,
    "bb_upper": 19,
    "bb_middle": 19,
    "bb_lower": 19,
    "ema_12": 11,
    "ema_26": 25,
    "sma_20": 19,
    "sma_50": 49,
    "adx_14": 27,
    "stoch_k": 17,
    "stoch_d": 17,
}


def _candles(close: np.ndarray, spread: float = 0.0005) -> pd.DataFrame:
    opens = np.r_[close[0], close[:-1]]
    index = pd.date_range("2026-01-05", periods=len(close), freq="h", tz="UTC")
    return pd.DataFrame(
        {
            "open": opens,
            "high": np.maximum(opens, close) + spread,
            "low": np.minimum(opens, close) - spread,
            "close": close,
            "volume": 1.0,
        },
        index=index,
    )


@pytest.fixture(scope="module")
def walk() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return _candles(1.1 + np.cumsum(rng.normal(0, 0.001, 120)))


def test_columns_and_index(walk: pd.DataFrame) -> None:
    indicators = compute_indicators(walk)
    assert list(indicators.columns) == list(INDICATOR_COLUMNS)
    assert set(WARM_UP) == set(INDICATOR_COLUMNS)
    assert indicators.index.equals(walk.index)
    assert (indicators.dtypes == np.float64).all()


@pytest.mark.parametrize("column", INDICATOR_COLUMNS)
def test_nan_only_in_the_warm_up(walk: pd.DataFrame, column: str) -> None:
    values = compute_indicators(walk)[column].to_numpy()
    warm_up = WARM_UP[column]
    assert np.isnan(values[:warm_up]).all()
    assert np.isfinite(values[warm_up:]).all()


def test_sma_50_warm_up_is_49_rows(walk: pd.DataFrame) -> None:
    sma = compute_indicators(walk)["sma_50"]
    assert sma.iloc[:49].isna().all()
    assert sma.iloc[49:].notna().all()
    assert sma.iloc[49] == pytest.approx(walk["close"].iloc[:50].mean(), rel=1e-12)


def test_constant_series() -> None:
    indicators = compute_indicators(_candles(np.full(60, 1.25), spread=0.0))
    last = indicators.iloc[-1]
    for column in ("sma_20", "sma_50", "ema_12", "ema_26", "bb_middle", "bb_upper", "bb_lower"):
        assert last[column] == pytest.approx(1.25, rel=1e-12), column
    assert last["macd"] == pytest.approx(0.0, abs=1e-12)
    assert last["atr_14"] == pytest.approx(0.0, abs=1e-12)


def test_rsi_of_a_strictly_rising_series_is_100() -> None:
    rsi = compute_indicators(_candles(np.linspace(1.0, 1.6, 60)))["rsi_14"].dropna()
    assert len(rsi) == 60 - 14
    assert np.allclose(rsi.to_numpy(), 100.0)


def test_rsi_of_a_strictly_falling_series_is_0() -> None:
    rsi = compute_indicators(_candles(np.linspace(1.6, 1.0, 60)))["rsi_14"].dropna()
    assert np.allclose(rsi.to_numpy(), 0.0)


def test_bands_are_ordered(walk: pd.DataFrame) -> None:
    indicators = compute_indicators(walk).dropna()
    assert (indicators["bb_upper"] >= indicators["bb_middle"]).all()
    assert (indicators["bb_middle"] >= indicators["bb_lower"]).all()
    assert (indicators["bb_upper"] > indicators["bb_lower"]).any()
    assert np.allclose(indicators["bb_middle"], indicators["sma_20"])
    assert np.allclose(indicators["macd_hist"], indicators["macd"] - indicators["macd_signal"])
    assert indicators[["rsi_14", "stoch_k", "stoch_d", "adx_14"]].stack().between(0, 100).all()


@pytest.mark.parametrize("k", [1, 20, 34, 50, 80, 119])
def test_indicators_are_causal(walk: pd.DataFrame, k: int) -> None:
    full = compute_indicators(walk)
    prefix = compute_indicators(walk.iloc[:k])
    assert prefix.index.equals(full.index[:k])
    assert np.allclose(
        prefix.to_numpy(), full.iloc[:k].to_numpy(), rtol=1e-12, atol=1e-15, equal_nan=True
    )


def test_changing_a_late_candle_leaves_earlier_rows_alone(walk: pd.DataFrame) -> None:
    changed = walk.copy()
    changed.iloc[100, changed.columns.get_loc("close")] *= 1.01
    changed.iloc[100, changed.columns.get_loc("high")] *= 1.01
    before = compute_indicators(walk).iloc[:100].to_numpy()
    after = compute_indicators(changed)
    assert np.array_equal(after.iloc[:100].to_numpy(), before, equal_nan=True)
    assert not np.allclose(after.iloc[100:].to_numpy(), compute_indicators(walk).iloc[100:])


def test_to_json_turns_nan_into_none_and_keeps_floats(walk: pd.DataFrame) -> None:
    indicators = compute_indicators(walk)
    records = indicators_to_json(indicators)
    assert len(records) == len(walk)
    assert all(list(r) == list(INDICATOR_COLUMNS) for r in records)
    assert records[0]["sma_50"] is None
    assert records[0]["rsi_14"] is None
    last = records[-1]
    assert all(isinstance(v, float) and math.isfinite(v) for v in last.values())
    assert last["sma_50"] == indicators["sma_50"].iloc[-1]
    json.dumps(records, allow_nan=False)  # strict JSON: no NaN anywhere


def test_json_round_trip(walk: pd.DataFrame) -> None:
    indicators = compute_indicators(walk)
    records = pd.Series(indicators_to_json(indicators), index=indicators.index)
    back = indicators_from_json(records)
    pd.testing.assert_frame_equal(back, indicators, check_exact=True)


def test_from_json_missing_keys_and_none_are_nan() -> None:
    records = pd.Series([{"rsi_14": 55.5, "macd": None}, None, {}], index=[10, 11, 12])
    frame = indicators_from_json(records)
    assert list(frame.columns) == list(INDICATOR_COLUMNS)
    assert frame.index.tolist() == [10, 11, 12]
    assert (frame.dtypes == np.float64).all()
    assert frame.loc[10, "rsi_14"] == 55.5
    assert np.isnan(frame.loc[10, "macd"])
    assert frame.drop(columns="rsi_14").isna().all().all()
    assert frame.loc[[11, 12]].isna().all().all()
