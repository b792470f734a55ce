"""Confidence intervals shared by the library: one 95% quantile, one Wilson score interval."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
Z95 = 1.959963984540054  # two-sided 95%


def wilson_interval(successes: npt.ArrayLike, n: npt.ArrayLike, z: float = Z95) -> tuple[F64, F64]:
    """Wilson score interval of a proportion, element-wise, within [0, 1]; NaN where n is 0
    (z = 0: the proportion itself, twice)."""
    k, total = np.asarray(successes, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / total
        denom = 1.0 + z**2 / total
        center = (p + z**2 / (2.0 * total)) / denom
        half = z * np.sqrt(p * (1.0 - p) / total + z**2 / (4.0 * total**2)) / denom
    lo, hi = np.clip([center - half, center + half], 0.0, 1.0)
    return np.asarray(lo), np.asarray(hi)
