"""Naive baselines every model must beat; each is a rule from past prices to a signal."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def persistence_signals(close: npt.ArrayLike, deadband: float = 0.0) -> npt.NDArray[np.str_]:
    """ "Repeat the last move": buy after an up candle, sell after a down one, else hold.

    A move of at most `deadband` (relative) counts as no move. The first candle has no
    previous close and holds.
    """
    closes = np.asarray(close, dtype=np.float64)
    change = np.full(len(closes), 0.0)
    change[1:] = np.diff(closes) / closes[:-1]
    return np.select([change > deadband, change < -deadband], ["buy", "sell"], "hold")
