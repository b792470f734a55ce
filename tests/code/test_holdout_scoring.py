"""Scoring several models and the baselines on one holdout: each model through its own card,
only samples decided at or after the holdout start, only samples every model can score, and
baselines fit on the samples whose labels were known before the holdout began.

The models are fakes: callables `f(x, training=False)` returning P(up) of shape (batch, 1). The
"oracle" knows every candle's target from the scaled feature row of that candle, so it is
right on every sample only if it is shown windows that end at the candle being decided,
scaled with the scaler on its card.

The candle frames are 1h series from `as_loaded` with warm indicators, so (worked out by hand
from DESIGN.md and the dataset rules):
- candle i opens at START + i h, and its sample is decided at its close, START + (i + 1) h;
- candle 0 has no previous close (no log return), so a window of w candles first fits at
  candle w;
- the label is known when the horizon candle (opened by decision + 4 h) has closed:
  label end = decision + 5 h;
- the last NO_TARGET candles have no target yet.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from aifx_ml.errors import InvalidInputError
from aifx_ml.evaluation.holdout import score_on_holdout
from aifx_ml.features.dataset import Scaler
from aifx_ml.features.engineering import FEATURE_NAMES, candle_features
from aifx_ml.models.card import ModelCard
from tests.code.test_training_dataset import HISTORY_START, NO_TARGET, START, WARM, as_loaded
from tests.conftest import hourly_candles

PERIODS = 160  # loaded candles per series
HOUR = pd.Timedelta(hours=1)
T0 = pd.Timestamp(START, tz="UTC")
LABEL_DELAY = 5 * HOUR  # label end - decision time, for 1h candles
LAST_WITH_TARGET = PERIODS - NO_TARGET - 1  # candle 154


def series(pair: str, price: float, seed: int) -> pd.DataFrame:
    """PERIODS hourly candles of `pair` from START, as `load_candles` returns them."""
    return as_loaded(hourly_candles(HISTORY_START, PERIODS + WARM, price, seed), pair, warm=WARM)


@pytest.fixture(scope="module")
def eurusd() -> pd.DataFrame:
    return series("EUR/USD", 1.08, 1)


@pytest.fixture(scope="module")
def two_pairs() -> pd.DataFrame:
    return pd.concat([series("GBP/USD", 1.27, 2), series("EUR/USD", 1.08, 1)], ignore_index=True)


def fitted_scaler(frame: pd.DataFrame) -> Scaler:
    """A scaler that really moves the numbers (not the identity)."""
    one = frame[frame["pair"] == frame["pair"].iloc[0]]
    return Scaler.fit(candle_features(one).to_numpy(np.float64))


def card(window: int, scaler: Scaler, features: tuple[str, ...] = FEATURE_NAMES) -> ModelCard:
    return ModelCard.from_dict(
        {"window": window, "features": list(features), "scaler": scaler.to_dict()}
    )


@dataclass(frozen=True)
class Answer:
    """What the oracle knows about the candle a feature row belongs to."""

    pair: str
    candle: int  # position in its series
    target: float
    decided: pd.Timestamp


def answers(frame: pd.DataFrame, scaler: Scaler) -> dict[bytes, Answer]:
    """Scaled feature row of every candle with a target → that candle's answer."""
    out: dict[bytes, Answer] = {}
    for pair, unsorted in frame.groupby("pair", sort=False):
        one = unsorted.sort_values("timestamp").reset_index(drop=True)
        rows = scaler.transform(candle_features(one).to_numpy(np.float64))
        for i in np.flatnonzero(one["target"].notna().to_numpy() & np.isfinite(rows).all(axis=1)):
            decided = one["timestamp"].iloc[i] + HOUR
            out[rows[i].tobytes()] = Answer(
                str(pair), int(i), float(one["target"].iloc[i]), decided
            )
    assert len(out) == int(frame["target"].notna().sum()) - frame["pair"].nunique()  # candle 0
    return out


@dataclass
class Oracle:
    """A perfect model: P(up) is the known target of the window's last candle."""

    known: dict[bytes, Answer]
    window: int
    seen: list[Answer] = field(default_factory=list)

    def __call__(self, x: npt.NDArray[np.float32], training: bool = False) -> npt.NDArray[Any]:
        assert not training
        assert x.shape[1:] == (self.window, len(FEATURE_NAMES))
        picked = [self.known[row.tobytes()] for row in x[:, -1]]  # KeyError: not a known row
        self.seen += picked
        return np.array([[a.target] for a in picked], dtype=np.float32)


def coin(x: npt.NDArray[np.float32], training: bool = False) -> npt.NDArray[np.float32]:
    """Always 0.5."""
    return np.full((len(x), 1), 0.5, dtype=np.float32)


def expected_holdout(frame: pd.DataFrame, start: pd.Timestamp, window: int) -> pd.DataFrame:
    """The candles a model of `window` candles is scored on: decided at or after `start`,
    with a target, and a full window from candle 1 on."""
    decided = frame["timestamp"] + HOUR
    position = frame.groupby("pair").cumcount()
    keep = (decided >= start) & frame["target"].notna() & (position >= window)
    return frame[keep]


# 1. A perfect model and a coin on the same samples.


def test_a_perfect_model_scores_one_and_a_coin_scores_half_auc(eurusd: pd.DataFrame) -> None:
    scaler = fitted_scaler(eurusd)
    oracle = Oracle(answers(eurusd, scaler), 8)
    start = T0 + 100 * HOUR  # decided at or after it: candles 99 .. 154
    scores = score_on_holdout(
        {"oracle": (oracle, card(8, scaler)), "coin": (coin, card(8, scaler))}, eurusd, start
    )
    held = expected_holdout(eurusd, start, 8)
    assert len(held) == LAST_WITH_TARGET - 99 + 1 == 56
    up_rate = float(held["target"].mean())
    assert 0.2 < up_rate < 0.8  # both classes, so AUC is defined

    perfect = scores.models["oracle"]
    assert perfect.samples == 56
    assert perfect.accuracy == 1.0
    assert perfect.auc == 1.0
    assert perfect.brier == 0.0
    assert perfect.log_loss < 1e-6
    assert perfect.up_rate == pytest.approx(up_rate)

    flat = scores.models["coin"]
    assert flat.samples == 56
    assert flat.auc == 0.5
    assert flat.accuracy == pytest.approx(up_rate)  # 0.5 calls "up"
    assert flat.log_loss == pytest.approx(np.log(2))
    assert flat.brier == pytest.approx(0.25)
    assert scores.holdout["samples"] == 56
    # The oracle was shown exactly the held-out candles, each once.
    assert sorted(a.candle for a in oracle.seen) == list(range(99, LAST_WITH_TARGET + 1))


def test_each_model_sees_the_samples_through_the_scaler_on_its_card(
    eurusd: pd.DataFrame,
) -> None:
    scaler = fitted_scaler(eurusd)
    other = Scaler(tuple(m + 0.5 for m in scaler.mean), scaler.std)
    start = T0 + 100 * HOUR
    right = score_on_holdout(
        {"m": (Oracle(answers(eurusd, other), 8), card(8, other))}, eurusd, start
    )
    assert right.models["m"].accuracy == 1.0
    # Knowing the rows as scaled by `scaler`, but carded with `other`: no row is recognised.
    with pytest.raises(KeyError):
        score_on_holdout({"m": (Oracle(answers(eurusd, scaler), 8), card(8, other))}, eurusd, start)


# 2. The same samples for every model.


def test_models_with_different_windows_are_scored_on_the_same_samples(
    eurusd: pd.DataFrame,
) -> None:
    scaler = fitted_scaler(eurusd)
    known = answers(eurusd, scaler)
    start = T0 + 6 * HOUR  # decided at or after it: candles 5 .. 154
    short, long = Oracle(known, 8), Oracle(known, 12)
    both = score_on_holdout(
        {"short": (short, card(8, scaler)), "long": (long, card(12, scaler))}, eurusd, start
    )
    # Alone, the 8-candle model scores candles 8 .. 154; the 12-candle one 12 .. 154.
    alone = score_on_holdout({"short": (Oracle(known, 8), card(8, scaler))}, eurusd, start)
    assert alone.models["short"].samples == LAST_WITH_TARGET - 8 + 1 == 147
    assert len(expected_holdout(eurusd, start, 12)) == LAST_WITH_TARGET - 12 + 1 == 143
    # Together, the longer window drops the early samples for both.
    assert both.models["short"].samples == both.models["long"].samples == 143
    assert both.holdout["samples"] == 143
    assert [a.candle for a in short.seen] == [a.candle for a in long.seen]
    assert min(a.candle for a in short.seen) == 12
    assert both.models["short"] == both.models["long"]
    assert both.holdout["start"] == (T0 + 13 * HOUR).isoformat()  # candle 12's close


def test_every_scored_sample_is_decided_at_or_after_the_holdout_start(
    eurusd: pd.DataFrame,
) -> None:
    scaler = fitted_scaler(eurusd)
    known = answers(eurusd, scaler)
    for start, first in ((T0 + 100 * HOUR, 99), (T0 + 100 * HOUR + pd.Timedelta(minutes=1), 100)):
        oracle = Oracle(known, 8)
        scores = score_on_holdout({"m": (oracle, card(8, scaler))}, eurusd, start)
        decided = [a.decided for a in oracle.seen]
        assert min(decided) >= start
        assert min(a.candle for a in oracle.seen) == first
        assert pd.Timestamp(scores.holdout["start"]) >= start
        assert pd.Timestamp(scores.holdout["start"]) == min(decided)
        assert pd.Timestamp(scores.holdout["end"]) == max(decided) == T0 + 155 * HOUR
        assert scores.holdout["samples"] == len(oracle.seen) == LAST_WITH_TARGET - first + 1


def test_a_naive_holdout_start_means_utc(eurusd: pd.DataFrame) -> None:
    scaler = fitted_scaler(eurusd)
    models = {"coin": (coin, card(8, scaler))}
    aware = score_on_holdout(models, eurusd, T0 + 100 * HOUR)
    naive = score_on_holdout(models, eurusd, (T0 + 100 * HOUR).tz_localize(None))
    assert naive == aware
    shifted = score_on_holdout(models, eurusd, (T0 + 100 * HOUR).tz_convert("Asia/Tokyo"))
    assert shifted == aware


# 3. Baselines: fit on what was known before the holdout.


@pytest.mark.parametrize("hours", [100, 101])
def test_baselines_are_fit_only_on_labels_known_before_the_holdout(
    eurusd: pd.DataFrame, hours: int
) -> None:
    scaler = fitted_scaler(eurusd)
    start = T0 + hours * HOUR
    scores = score_on_holdout({"coin": (coin, card(8, scaler))}, eurusd, start)
    # Label end of candle i: START + (i + 1) h + 5 h < start  <=>  i <= hours - 7; a window of 8
    # first fits at candle 8. A label ending exactly at the start is not known before it.
    decided = eurusd["timestamp"] + HOUR
    position = eurusd.groupby("pair").cumcount()
    train = eurusd[(decided + LABEL_DELAY < start) & eurusd["target"].notna() & (position >= 8)]
    assert len(train) == (hours - 7) - 8 + 1
    assert scores.holdout["baseline_train_samples"] == len(train)
    # The majority baseline predicts the training rate of "up" for every held-out sample.
    rate = float(train["target"].mean())
    held = expected_holdout(eurusd, start, 8)["target"].to_numpy()
    majority = scores.baselines["majority"]
    assert majority.samples == len(held)
    expected_log_loss = -np.mean(held * np.log(rate) + (1 - held) * np.log(1 - rate))
    assert majority.log_loss == pytest.approx(expected_log_loss)
    assert majority.brier == pytest.approx(np.mean((rate - held) ** 2))
    assert majority.accuracy == pytest.approx(np.mean(held == (1.0 if rate >= 0.5 else 0.0)))
    assert set(scores.baselines) == {"majority", "persistence"}
    assert scores.baselines["persistence"].samples == len(held)


def test_the_order_the_models_are_given_in_changes_nothing(eurusd: pd.DataFrame) -> None:
    scaler = fitted_scaler(eurusd)
    start = T0 + 100 * HOUR
    first = score_on_holdout(
        {"a": (coin, card(8, scaler)), "b": (coin, card(16, scaler))}, eurusd, start
    )
    second = score_on_holdout(
        {"b": (coin, card(16, scaler)), "a": (coin, card(8, scaler))}, eurusd, start
    )
    assert first.holdout == second.holdout
    assert first.baselines == second.baselines


# 4. Several series.


def test_two_pairs_in_one_frame_are_both_scored(two_pairs: pd.DataFrame) -> None:
    scaler = fitted_scaler(two_pairs)
    oracle = Oracle(answers(two_pairs, scaler), 8)
    start = T0 + 100 * HOUR
    scores = score_on_holdout({"m": (oracle, card(8, scaler))}, two_pairs, start)
    per_pair = Counter(a.pair for a in oracle.seen)
    assert per_pair == {"EUR/USD": 56, "GBP/USD": 56}
    assert scores.models["m"].samples == scores.holdout["samples"] == 112
    assert scores.models["m"].accuracy == 1.0
    # Both pairs' earlier labels train the baselines: (93 - 8 + 1) each.
    assert scores.holdout["baseline_train_samples"] == 2 * 86
    assert len(expected_holdout(two_pairs, start, 8)) == 112


# 5. What cannot be scored.


def test_a_model_trained_on_other_features_is_refused(eurusd: pd.DataFrame) -> None:
    scaler = fitted_scaler(eurusd)
    for features in (FEATURE_NAMES[:-1], tuple(reversed(FEATURE_NAMES))):
        models = {"ok": (coin, card(8, scaler)), "odd": (coin, card(8, scaler, features))}
        with pytest.raises(InvalidInputError, match="model odd was trained on other features"):
            score_on_holdout(models, eurusd, T0 + 100 * HOUR)


def test_no_models_is_refused(eurusd: pd.DataFrame) -> None:
    with pytest.raises(InvalidInputError, match="no models to score"):
        score_on_holdout({}, eurusd, T0 + 100 * HOUR)


def test_a_holdout_start_after_all_data_is_refused(eurusd: pd.DataFrame) -> None:
    scaler = fitted_scaler(eurusd)
    models = {"coin": (coin, card(8, scaler))}
    # Candle 154 is the last with a target, decided at START + 155 h: one minute later, none.
    assert score_on_holdout(models, eurusd, T0 + 155 * HOUR).holdout["samples"] == 1
    late = T0 + 155 * HOUR + pd.Timedelta(minutes=1)
    with pytest.raises(InvalidInputError, match="no samples to score since"):
        score_on_holdout(models, eurusd, late)
    with pytest.raises(InvalidInputError, match="no samples to score since"):
        score_on_holdout(models, eurusd, T0 + pd.Timedelta(days=365))
