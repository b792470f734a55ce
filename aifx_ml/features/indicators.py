"""Technical indicators from TA-Lib, computed for a whole series in one call each.

Indicators are causal (a value depends only on candles up to its own), so computing them over
the full stored series and writing only the rows that changed gives the same numbers however
the data arrived. The warm-up rows, where TA-Lib has no value yet, hold None.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import talib

from aifx_ml.db.types import to_rows

INDICATOR_COLUMNS: tuple[str, ...] = (
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "atr_14",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "ema_12",
    "ema_26",
    "sma_20",
    "sma_50",
    "adx_14",
    "stoch_k",
    "stoch_d",
)


def compute_indicators(candles: pd.DataFrame) -> pd.DataFrame:
    """Indicator columns (INDICATOR_COLUMNS) for one series sorted by time, same index."""
    high = candles["high"].to_numpy(np.float64)
    low = candles["low"].to_numpy(np.float64)
    close = candles["close"].to_numpy(np.float64)
    macd, macd_signal, macd_hist = talib.MACD(close, fastperiod=12, slowperiod=26, signalperiod=9)
    bb_upper, bb_middle, bb_lower = talib.BBANDS(close, timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
    stoch_k, stoch_d = talib.STOCH(
        high, low, close, fastk_period=14, slowk_period=3, slowd_period=3
    )
    values = {
        "rsi_14": talib.RSI(close, timeperiod=14),
        "macd": macd,
        "macd_signal": macd_signal,
        "macd_hist": macd_hist,
        "atr_14": talib.ATR(high, low, close, timeperiod=14),
        "bb_upper": bb_upper,
        "bb_middle": bb_middle,
        "bb_lower": bb_lower,
        "ema_12": talib.EMA(close, timeperiod=12),
        "ema_26": talib.EMA(close, timeperiod=26),
        "sma_20": talib.SMA(close, timeperiod=20),
        "sma_50": talib.SMA(close, timeperiod=50),
        "adx_14": talib.ADX(high, low, close, timeperiod=14),
        "stoch_k": stoch_k,
        "stoch_d": stoch_d,
    }
    # copy=False: the arrays are ours, and copying a long series' 15 columns doubles the peak.
    return pd.DataFrame(values, index=candles.index, columns=list(INDICATOR_COLUMNS), copy=False)


def indicators_to_json(indicators: pd.DataFrame) -> list[dict[str, Any]]:
    """One JSON-ready dict per row; NaN (warm-up) becomes None because JSON has no NaN."""
    return to_rows(indicators)


def indicators_from_json(records: pd.Series) -> pd.DataFrame:
    """Expand a column of indicator dicts back into INDICATOR_COLUMNS (missing → NaN)."""
    if records.empty:
        return pd.DataFrame(index=records.index, columns=list(INDICATOR_COLUMNS), dtype=np.float64)
    frame = pd.DataFrame.from_records(
        [r if isinstance(r, dict) else {} for r in records], index=records.index
    )
    return frame.reindex(columns=list(INDICATOR_COLUMNS)).astype(np.float64)
