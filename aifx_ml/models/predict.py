"""Offline P(up) of a Keras model over dataset windows, batch by batch (evaluation, reports;
serving has its own compiled path)."""

from __future__ import annotations

import keras
import numpy as np
import numpy.typing as npt


def predict_proba(
    model: keras.Model,
    windows: npt.NDArray[np.float32],
    rows: npt.NDArray[np.int64],
    batch_size: int = 1024,
) -> npt.NDArray[np.float64]:
    """P(up) for the given window rows, batch by batch (offline evaluation, not serving)."""
    if len(rows) == 0:
        return np.empty(0)
    parts = [
        np.asarray(model(np.take(windows, rows[i : i + batch_size], axis=0), training=False))
        for i in range(0, len(rows), batch_size)
    ]
    return np.concatenate([p.reshape(-1) for p in parts]).astype(np.float64)
