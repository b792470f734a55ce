"""Holdout metrics, the naive baselines and the comparison a model must win; training config.

Every expected number below is worked out by hand in the comments, never by calling the code
under test.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aifx_ml.errors import InvalidInputError
from aifx_ml.evaluation.metrics import (
    compare_with_baselines,
    holdout_metrics,
    majority_baseline,
    persistence_baseline,
    roc_auc,
)
from aifx_ml.features.engineering import FEATURE_NAMES
from aifx_ml.training.config import TrainingConfig, training_config

# 1. Holdout metrics.


def test_metrics_of_a_hand_worked_example() -> None:
    # y = up, down, up, down; P(up) = .9, .2, .4, .6.
    metrics = holdout_metrics([1, 0, 1, 0], [0.9, 0.2, 0.4, 0.6])
    assert metrics.samples == 4
    # Calls (p >= .5): up, down, down, up: the first two are right.
    assert metrics.accuracy == 0.5
    # -(ln .9 + ln .8 + ln .4 + ln .4) / 4 = (0.1053605 + 0.2231436 + 2 * 0.9162907) / 4
    assert metrics.log_loss == pytest.approx(0.5402714, abs=1e-7)
    # (.1² + .2² + .6² + .6²) / 4 = (.01 + .04 + .36 + .36) / 4
    assert metrics.brier == pytest.approx(0.1925)
    # Up/down pairs: (.9,.2) (.9,.6) (.4,.2) right, (.4,.6) wrong: 3 of 4.
    assert metrics.auc == pytest.approx(0.75)
    assert metrics.up_rate == 0.5


def test_metrics_with_tied_scores() -> None:
    y = [1, 1, 0, 0, 1, 0]
    p = [0.7, 0.5, 0.5, 0.3, 0.5, 0.7]
    metrics = holdout_metrics(y, p)
    # A probability of exactly .5 calls "up": calls 1 1 1 0 1 1, right at 0, 1, 3, 4.
    assert metrics.accuracy == pytest.approx(4 / 6)
    # Ups score .7 .5 .5, downs .5 .3 .7; a tie counts half:
    # .7 → 1 + 1 + .5 = 2.5; each .5 → .5 + 1 + 0 = 1.5; (2.5 + 3) / 9.
    assert metrics.auc == pytest.approx(5.5 / 9)
    # (.09 + .25 + .25 + .09 + .25 + .49) / 6
    assert metrics.brier == pytest.approx(1.42 / 6)


def brute_force_auc(y: list[int], score: list[float]) -> float:
    ups = [s for s, label in zip(score, y, strict=True) if label == 1]
    downs = [s for s, label in zip(score, y, strict=True) if label == 0]
    wins = sum(1.0 if u > d else 0.5 if u == d else 0.0 for u in ups for d in downs)
    return wins / (len(ups) * len(downs))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6)), min_size=2, max_size=40).filter(
        lambda pairs: len({label for label, _ in pairs}) == 2
    )
)
def test_auc_matches_the_pairwise_count_with_many_ties(pairs: list[tuple[int, int]]) -> None:
    y = [label for label, _ in pairs]
    score = [level / 6 for _, level in pairs]  # seven levels: ties everywhere
    expected = brute_force_auc(y, score)
    assert roc_auc(np.array(y, dtype=float), np.array(score)) == pytest.approx(expected)
    assert holdout_metrics(y, score).auc == pytest.approx(expected)


def test_auc_of_one_class_and_metrics_of_nothing_are_nan() -> None:
    assert math.isnan(holdout_metrics([1, 1, 1], [0.2, 0.6, 0.9]).auc)
    empty = holdout_metrics([], [])
    assert empty.samples == 0
    assert all(math.isnan(v) for k, v in empty.as_dict().items() if k != "samples")


def test_certain_and_wrong_costs_a_finite_log_loss() -> None:
    metrics = holdout_metrics([1, 0], [0.0, 1.0])
    assert metrics.accuracy == 0.0
    # Probabilities are clipped to [1e-7, 1 - 1e-7]: -ln(1e-7) = 16.1180957 per sample.
    assert metrics.log_loss == pytest.approx(16.1180957, abs=1e-6)
    assert metrics.brier == pytest.approx(1.0)


def test_auc_ranks_confident_scores_unclipped() -> None:
    # float32 sigmoid outputs: 1 - 2**-24 and 1.0 are both above 1 - 1e-7.
    assert holdout_metrics([0, 1], [1.0 - 2**-24, 1.0]).auc == 1.0
    assert holdout_metrics([0, 1], [1e-10, 1e-8]).auc == 1.0


def test_metrics_as_dict_are_prefixed_floats() -> None:
    out = holdout_metrics([1, 0, 1, 0], [0.9, 0.2, 0.4, 0.6]).as_dict("holdout_")
    assert set(out) == {
        "holdout_samples",
        "holdout_accuracy",
        "holdout_auc",
        "holdout_log_loss",
        "holdout_brier",
        "holdout_up_rate",
    }
    assert out["holdout_samples"] == 4.0
    assert all(type(v) is float for v in out.values())


# 2. Baselines.


def test_majority_baseline_is_the_training_up_rate() -> None:
    np.testing.assert_array_equal(majority_baseline([1, 1, 0, 1], 3), [0.75, 0.75, 0.75])
    np.testing.assert_array_equal(majority_baseline([], 2), [0.5, 0.5])


def test_persistence_baseline_learns_what_follows_each_move() -> None:
    # last move  +  +  +  -  -
    # target     1  0  1  0  0   → P(up | +) = 2/3, P(up | -) = 0/2
    p = persistence_baseline([1, 0, 1, 0, 0], [1, 1, 1, -1, -1], [1, -1, 0])
    np.testing.assert_allclose(p, [2 / 3, 0.0, 0.5])


def test_persistence_baseline_without_history_repeats_the_move() -> None:
    # Training never saw a down candle: after one, "the move repeats" says down.
    np.testing.assert_array_equal(persistence_baseline([1, 0], [1, 1], [-1, 1]), [0.0, 0.5])
    np.testing.assert_array_equal(persistence_baseline([], [], [1, -1, 0]), [1.0, 0.0, 0.5])


# 3. The comparison a model must win.

# Training: last move + + - - + + - +, targets 1 1 1 0 0 1 0 1
#   majority: 5/8 = .625 up; persistence: P(up | +) = 4/5 = .8, P(up | -) = 1/3.
Y_TRAIN = [1, 1, 1, 0, 0, 1, 0, 1]
MOVE_TRAIN = [1, 1, -1, -1, 1, 1, -1, 1]
# Holdout: targets 1 0 1 1 0 0, last moves + - + - - +
#   majority calls up everywhere: right 3 of 6 = .5;
#   persistence says .8 .33 .8 .33 .33 .8 → up down up down down up: right 4 of 6.
Y_HOLDOUT = [1, 0, 1, 1, 0, 0]
MOVE_HOLDOUT = [1, -1, 1, -1, -1, 1]
# Persistence log-loss: (2·-ln .8 + 2·-ln(2/3) + -ln(1/3) + -ln .2) / 6 = 3.965267 / 6.
PERSISTENCE_LOG_LOSS = 0.6608779


def compare(p_model: list[float] | np.ndarray) -> Any:
    return compare_with_baselines(Y_HOLDOUT, p_model, Y_TRAIN, MOVE_TRAIN, MOVE_HOLDOUT)


def test_baselines_are_scored_on_the_same_holdout() -> None:
    result = compare([0.5] * 6)
    assert result.baselines["majority"].accuracy == 0.5
    assert result.baselines["persistence"].accuracy == pytest.approx(4 / 6)
    assert result.baselines["persistence"].log_loss == pytest.approx(PERSISTENCE_LOG_LOSS)
    # (3·-ln .625 + 3·-ln .375) / 6
    assert result.baselines["majority"].log_loss == pytest.approx(0.7254165, abs=1e-6)
    assert result.best_baseline == "persistence"


def test_a_perfect_model_beats_the_baselines() -> None:
    result = compare([0.9, 0.1, 0.9, 0.9, 0.1, 0.1])
    assert result.model.accuracy == 1.0
    assert result.lift == pytest.approx(1 - 4 / 6)
    assert result.beats_baseline is True
    out = result.as_dict()
    assert out["beats_baseline"] is True
    assert out["best_baseline"] == "persistence"
    assert out["lift_over_baseline"] == pytest.approx(1 / 3)
    assert out["holdout_accuracy"] == 1.0
    assert out["baseline_persistence_accuracy"] == pytest.approx(4 / 6)
    assert out["baseline_majority_accuracy"] == 0.5


def test_a_model_equal_to_the_best_baseline_does_not_beat_it() -> None:
    same = persistence_baseline(Y_TRAIN, MOVE_TRAIN, MOVE_HOLDOUT)
    result = compare(same)
    assert result.lift == 0.0
    assert result.model.log_loss == pytest.approx(PERSISTENCE_LOG_LOSS)
    assert result.beats_baseline is False


def test_an_overconfident_model_does_not_beat_a_calibrated_baseline() -> None:
    # Calls up down up up down up: right 5 of 6, but certain of the wrong last one.
    overconfident = compare([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    assert overconfident.lift == pytest.approx(1 / 6)
    # -ln(1e-7) / 6 = 2.686 against the persistence baseline's .661.
    assert overconfident.model.log_loss == pytest.approx(16.1180957 / 6, abs=1e-6)
    assert overconfident.beats_baseline is False
    # The same calls made with measured confidence: (5·-ln .8 + -ln .2) / 6 = 0.4541927.
    calibrated = compare([0.8, 0.2, 0.8, 0.8, 0.2, 0.8])
    assert calibrated.lift == pytest.approx(1 / 6)
    assert calibrated.model.log_loss == pytest.approx(0.4541927, abs=1e-6)
    assert calibrated.beats_baseline is True


# 4. Training configuration.


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"pairs": ["EURUSD"]}, "invalid pair 'EURUSD'"),
        ({"pairs": ["EUR/USD", "eur/gbp"]}, "invalid pair 'eur/gbp'"),
        ({"timeframes": ["2h"]}, "invalid timeframe '2h'"),
        ({"timeframes": []}, "no timeframes"),
        ({"epochs": 0}, "invalid epochs 0"),
        ({"epochs": -5}, "invalid epochs -5"),
        ({"epochs": 2.5}, "invalid epochs 2.5"),
        ({"epochs": True}, "invalid epochs True"),
        ({"incremental_epochs": 0}, "invalid incremental_epochs 0"),
        ({"batch_size": 0}, "invalid batch_size 0"),
        ({"days": 0}, "invalid days 0"),
        ({"window": 0}, "invalid window 0"),
        ({"dense_units": -1}, "invalid dense_units -1"),
        ({"lstm_units": [128]}, r"invalid lstm_units \[128\]"),
        ({"lstm_units": [128, 64, 32]}, r"invalid lstm_units \[128, 64, 32\]"),
        ({"lstm_units": [128, 0]}, r"invalid lstm_units \[128, 0\]"),
    ],
)
def test_bad_training_values_name_their_field(values: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        training_config(**values)


def test_training_defaults_are_design_md() -> None:
    config = training_config()
    assert config == TrainingConfig()
    # Weekly: last 30 days, chronological 80/20, up to 50 epochs, batch 32, 60-candle windows.
    assert config.days == 30
    assert config.holdout_fraction == 0.2
    assert config.epochs == 50
    assert config.batch_size == 32
    assert config.lstm.window == 60
    # LSTM(128, seq) → Dropout .3 → LSTM(64) → Dropout .3 → Dense(32) → Dropout .2; Adam 1e-3.
    assert config.lstm.lstm_units == (128, 64)
    assert config.lstm.dense_units == 32
    assert config.lstm.dropout == (0.3, 0.3, 0.2)
    assert config.lstm.learning_rate == 1e-3
    assert config.lstm.n_features == len(FEATURE_NAMES)
    # Daily: last 24 h, 5 epochs, Adam 1e-4.
    assert config.incremental_hours == 24
    assert config.incremental_epochs == 5
    assert config.incremental_learning_rate == 1e-4
    assert config.timeframes == ("1h",)
    assert config.pairs == ()


def test_given_training_values_are_kept() -> None:
    config = training_config(
        ["EUR/USD", "GBP/USD"],
        ["1h", "4h"],
        days=7,
        epochs=3,
        incremental_epochs=2,
        batch_size=16,
        window=20,
        lstm_units=[16, 8],
        dense_units=4,
        seed=7,
        include_signals=True,
    )
    assert config.pairs == ("EUR/USD", "GBP/USD")
    assert config.timeframes == ("1h", "4h")
    assert (config.days, config.epochs, config.incremental_epochs) == (7, 3, 2)
    assert config.batch_size == 16
    assert (config.lstm.window, config.lstm.lstm_units, config.lstm.dense_units) == (20, (16, 8), 4)
    assert config.lstm.dropout == (0.3, 0.3, 0.2)  # what was not given keeps its default
    assert (config.seed, config.include_signals) == (7, True)
    params = config.params()
    assert "lstm" not in params
    assert params["lstm_window"] == 20
    assert params["lstm_lstm_units"] == (16, 8)
    assert params["epochs"] == 3
