"""Auto-labeling: what the market did over a signal's horizon, and the candle direction target."""

from aifx_ml.domain import OUTCOMES, SIGNALS
from aifx_ml.labeling.rules import (
    DEFAULT_THRESHOLD,
    direction_target,
    horizon_positions,
    label_outcomes,
    label_signals,
)

__all__ = [
    "DEFAULT_THRESHOLD",
    "OUTCOMES",
    "SIGNALS",
    "direction_target",
    "horizon_positions",
    "label_outcomes",
    "label_signals",
]
