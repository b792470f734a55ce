"""Fixed-length candle windows as zero-copy views, and batches copied only when consumed.

A window ending at candle i holds candles i-length+1 .. i. Windows never cross series:
build them per (pair, timeframe) and keep the positions of the ones to use.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from aifx_ml.errors import InvalidInputError

WINDOW_LENGTH = 60


def build_windows(
    features: npt.NDArray[np.floating], length: int = WINDOW_LENGTH
) -> npt.NDArray[np.floating]:
    """All windows of `length` consecutive rows of a (candles, features) array, without copying.

    Returns a read-only view of shape (candles - length + 1, length, features); row k is the
    window ending at candle k + length - 1.
    """
    if features.ndim != 2:
        raise InvalidInputError(
            f"features must be 2-D (candles, features), got shape {features.shape}"
        )
    if length < 1:
        raise InvalidInputError(f"window length must be >= 1, got {length}")
    if len(features) < length:
        raise InvalidInputError(
            f"need at least {length} candles for one window, got {len(features)}"
        )
    view = np.lib.stride_tricks.sliding_window_view(features, (length, features.shape[1]))
    return view[:, 0]  # sliding_window_view is read-only already: callers cannot corrupt the series


def window_end_positions(n_candles: int, length: int = WINDOW_LENGTH) -> npt.NDArray[np.int64]:
    """Candle index at which each window of `build_windows` ends."""
    return np.arange(length - 1, n_candles, dtype=np.int64)


def iter_batches(
    windows: npt.NDArray[np.floating],
    rows: npt.NDArray[np.int64],
    batch_size: int,
    targets: npt.NDArray[np.floating] | None = None,
) -> Iterator[tuple[npt.NDArray[np.floating], npt.NDArray[np.floating] | None]]:
    """Yield (x, y) batches of the selected window rows; only one batch is ever materialized."""
    if batch_size < 1:
        raise InvalidInputError(f"batch size must be >= 1, got {batch_size}")
    for start in range(0, len(rows), batch_size):
        take = rows[start : start + batch_size]
        yield np.ascontiguousarray(windows[take]), None if targets is None else targets[take]
