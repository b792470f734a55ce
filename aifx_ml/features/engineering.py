"""Model inputs from candles and their indicators: scale-free, so one model serves every pair.

Every feature of candle i uses candles up to i only (see `assert_causal`), which is what keeps
the future out of training windows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from aifx_ml.errors import AifxError

FEATURE_NAMES: tuple[str, ...] = (
    "log_return",
    "range_pct",
    "body_pct",
    "log_volume_change",
    "rsi",
    "macd_pct",
    "macd_hist_pct",
    "atr_pct",
    "bb_position",
    "bb_width",
    "ema_12_gap",
    "ema_26_gap",
    "sma_20_gap",
    "sma_50_gap",
    "adx",
    "stoch_k",
    "stoch_d",
)


class LookaheadError(AifxError):
    """A feature changed when later candles were added: it sees the future."""


def candle_features(candles: pd.DataFrame) -> pd.DataFrame:
    """FEATURE_NAMES for one series sorted by time (OHLCV plus the indicator columns).

    Prices enter as returns and ratios to the close, oscillators are rescaled to [0, 1], so
    EUR/USD at 1.08 and USD/JPY at 150 look alike to the model. Warm-up rows are NaN.
    """
    close = candles["close"]
    prev_close = close.shift(1)
    band = candles["bb_upper"] - candles["bb_lower"]
    volume = candles["volume"].clip(lower=0) + 1.0
    features = {
        "log_return": np.log(close / prev_close),
        "range_pct": (candles["high"] - candles["low"]) / close,
        "body_pct": (close - candles["open"]) / close,
        "log_volume_change": np.log(volume / volume.shift(1)),
        "rsi": candles["rsi_14"] / 100.0,
        "macd_pct": candles["macd"] / close,
        "macd_hist_pct": candles["macd_hist"] / close,
        "atr_pct": candles["atr_14"] / close,
        "bb_position": ((close - candles["bb_lower"]) / band.where(band > 0)).clip(-1.0, 2.0),
        "bb_width": band / close,
        "ema_12_gap": close / candles["ema_12"] - 1.0,
        "ema_26_gap": close / candles["ema_26"] - 1.0,
        "sma_20_gap": close / candles["sma_20"] - 1.0,
        "sma_50_gap": close / candles["sma_50"] - 1.0,
        "adx": candles["adx_14"] / 100.0,
        "stoch_k": candles["stoch_k"] / 100.0,
        "stoch_d": candles["stoch_d"] / 100.0,
    }
    frame = pd.DataFrame(features, index=candles.index, columns=list(FEATURE_NAMES))
    return frame.replace([np.inf, -np.inf], np.nan).astype(np.float64)


def assert_causal(
    make_features: Callable[[pd.DataFrame], pd.DataFrame],
    candles: pd.DataFrame,
    cut: int | None = None,
) -> None:
    """Raise LookaheadError if features of the first `cut` candles change when the rest is added."""
    cut = cut if cut is not None else len(candles) // 2
    full_frame = make_features(candles)
    full = full_frame.iloc[:cut].to_numpy(np.float64)
    prefix = make_features(candles.iloc[:cut]).to_numpy(np.float64)
    same = np.isclose(full, prefix, rtol=1e-9, atol=1e-12, equal_nan=True)
    if not same.all():
        column = full_frame.columns[int(np.argwhere(~same)[0][1])]
        raise LookaheadError(
            f"feature {column!r} of the first {cut} candles changes when later candles are "
            "added: it uses the future"
        )
