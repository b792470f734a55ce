"""Model behaviour, as Made-With-ML's tests/model: the seed LSTM is DESIGN.md's, training is
reproducible, and a model trained on trending data calls the trend's direction.

Models here are tiny (LSTM 8 → 4, windows of 10 candles) so the whole file trains in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from aifx_ml.data.synth import synthesize_candles
from aifx_ml.evaluation.metrics import compare_with_baselines
from aifx_ml.features.dataset import (
    Dataset,
    Split,
    build_dataset,
    chronological_split,
    scaler_for,
)
from aifx_ml.features.engineering import FEATURE_NAMES
from aifx_ml.features.windows import build_windows
from aifx_ml.models.lstm import LSTMConfig, build_lstm, compile_for_training
from aifx_ml.models.predict import predict_proba
from aifx_ml.training.fit import WindowBatches, fit_model
from tests.code.test_training_dataset import as_loaded

TINY = LSTMConfig(
    window=10,
    n_features=len(FEATURE_NAMES),
    lstm_units=(8, 4),
    dense_units=4,
    learning_rate=1e-2,  # a few epochs are enough to learn a strong pattern
)
BATCH = 64


@dataclass(frozen=True)
class Trending:
    """Windows over candles whose returns lean on the previous three (momentum throughout)."""

    dataset: Dataset
    split: Split
    windows: npt.NDArray[np.float32]


@pytest.fixture(scope="module")
def trending() -> Trending:
    start = pd.Timestamp("2026-01-05", tz="UTC")
    ohlcv = synthesize_candles(
        ["EUR/USD"],
        "1h",
        start,
        start + pd.Timedelta(days=120),
        seed=1,
        pattern_switch=1.0,
        pattern_strength=0.9,
    )["EUR/USD"]
    dataset = build_dataset(as_loaded(ohlcv, "EUR/USD"), TINY.window)
    split = chronological_split(dataset.samples, holdout_fraction=0.25)
    return Trending(dataset, split, dataset.windows(scaler_for(dataset, split)))


def last_moves(
    data: Trending, rows: npt.NDArray[np.int64], candles: int
) -> npt.NDArray[np.float64]:
    """Log returns of the last `candles` candles of each window, newest last."""
    ends = rows + data.dataset.window - 1
    returns = data.dataset.raw_features[:, FEATURE_NAMES.index("log_return")]
    return np.stack([returns[ends - k] for k in range(candles - 1, -1, -1)], axis=1)


# 1. Architecture.


def test_default_architecture_is_design_md() -> None:
    config = LSTMConfig()
    model = build_lstm(config)
    assert model.input_shape == (None, 60, len(FEATURE_NAMES))
    assert model.output_shape == (None, 1)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["LSTM", "Dropout", "LSTM", "Dropout", "Dense", "Dropout", "Dense"]
    first, drop1, second, drop2, dense, drop3, out = (layer.get_config() for layer in model.layers)
    assert (first["units"], first["return_sequences"]) == (128, True)
    assert drop1["rate"] == 0.3
    assert (second["units"], second["return_sequences"]) == (64, False)
    assert drop2["rate"] == 0.3
    assert (dense["units"], dense["activation"]) == (32, "relu")
    assert drop3["rate"] == 0.2
    assert (out["units"], out["activation"]) == (1, "sigmoid")
    # Weights: LSTM 4·(128·(17 + 128) + 128) = 74752, LSTM 4·(64·(128 + 64) + 64) = 49408,
    # Dense 64·32 + 32 = 2080, Dense 32 + 1 = 33.
    assert model.count_params() == 74752 + 49408 + 2080 + 33
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    assert model.loss == "binary_crossentropy"


# 2. Reproducibility.


def test_same_seed_gives_same_weights_and_same_training(trending: Trending) -> None:
    first, second = build_lstm(TINY, seed=11), build_lstm(TINY, seed=11)
    initial = first.get_weights()
    for a, b in zip(initial, second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    other = build_lstm(TINY, seed=12).get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(initial, other, strict=True))

    train = trending.split.train[:640]
    rows = trending.dataset.samples.rows[trending.split.holdout]
    runs = []
    for model in (first, second):
        history = fit_model(
            model, trending.windows, trending.dataset.samples, train, epochs=1, batch_size=BATCH
        )
        runs.append((history, predict_proba(model, trending.windows, rows)))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    # Training did change the model: identical predictions are not untrained ones.
    assert any(not np.array_equal(a, b) for a, b in zip(initial, first.get_weights(), strict=True))


def own_fit(
    model: keras.Model, data: Trending, train: npt.NDArray[np.int64], **kwargs: object
) -> dict[str, list[float]]:
    """What fit_model did before it shared a traced trainer: the model's own `fit`."""
    samples, seed = data.dataset.samples, 42
    keras.utils.set_random_seed(seed)
    batches = WindowBatches(
        data.windows, samples.rows[train], samples.target[train], BATCH, shuffle=True, seed=seed
    )
    history = model.fit(batches, shuffle=False, verbose=0, **kwargs)
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def test_a_shared_trainer_trains_exactly_as_the_model_itself(trending: Trending) -> None:
    """fit_model trains a traced copy of the architecture and copies the result back: the
    weights, dropout seeds and history must be the model's own fit's, bit for bit, whatever
    that copy trained before (another model, another learning rate, a plateau's lower rate)."""
    samples, split = trending.dataset.samples, trending.split
    train, validation = split.train[:320], split.holdout[:128]
    rows = samples.rows[split.holdout]
    reduce = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=0)
    mine, shared = build_lstm(TINY, seed=3), build_lstm(TINY, seed=3)
    val = WindowBatches(trending.windows, samples.rows[validation], samples.target[validation], 64)
    expected = own_fit(mine, trending, train, epochs=3, validation_data=val, callbacks=[reduce])
    got = fit_model(
        shared,
        trending.windows,
        samples,
        train,
        validation,
        epochs=3,
        batch_size=BATCH,
        reduce_lr_patience=0,
    )
    assert got == expected
    # Then fine-tuning at another rate, after the trainer has trained someone else.
    fit_model(build_lstm(TINY, seed=4), trending.windows, samples, split.train, epochs=1)
    for model in (mine, shared):
        compile_for_training(model, 1e-3)
    expected = own_fit(mine, trending, split.train[320:640], epochs=2)
    got = fit_model(
        shared, trending.windows, samples, split.train[320:640], epochs=2, batch_size=BATCH
    )
    assert got == expected
    # The weights, the seed states and the optimizer's state (it is saved with the model).
    pairs = [*zip(mine.variables, shared.variables, strict=True)]
    pairs += zip(mine.optimizer.variables, shared.optimizer.variables, strict=True)
    for a, b in pairs:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    np.testing.assert_array_equal(
        predict_proba(mine, trending.windows, rows), predict_proba(shared, trending.windows, rows)
    )


# 3. Direction: trained on momentum, the model follows the trend.


@pytest.fixture(scope="module")
def trained(trending: Trending) -> keras.Model:
    model = build_lstm(TINY, seed=7)
    samples, split = trending.dataset.samples, trending.split
    fit_model(model, trending.windows, samples, split.train, epochs=3, batch_size=BATCH, seed=7)
    return model


def test_rising_windows_get_a_higher_p_up_than_falling_ones(
    trending: Trending, trained: keras.Model
) -> None:
    samples, holdout = trending.dataset.samples, trending.split.holdout
    rows = samples.rows[holdout]
    moves = last_moves(trending, rows, 3)
    rising, falling = (moves > 0).all(axis=1), (moves < 0).all(axis=1)
    assert min(rising.sum(), falling.sum()) >= 30
    # The data has the pattern: after three rises the market mostly went on up.
    truth = samples.target[holdout]
    assert truth[rising].mean() > 0.7
    assert truth[falling].mean() < 0.3
    p_up = predict_proba(trained, trending.windows, rows)
    assert p_up[rising].mean() > p_up[falling].mean() + 0.3
    assert np.median(p_up[rising]) > 0.5 > np.median(p_up[falling])


def test_trained_model_beats_the_majority_baseline_on_the_holdout(
    trending: Trending, trained: keras.Model
) -> None:
    samples, split = trending.dataset.samples, trending.split
    p_up = predict_proba(trained, trending.windows, samples.rows[split.holdout])
    result = compare_with_baselines(
        samples.target[split.holdout],
        p_up,
        samples.target[split.train],
        samples.last_move[split.train],
        samples.last_move[split.holdout],
    )
    majority = result.baselines["majority"]
    assert result.model.accuracy > majority.accuracy + 0.05
    # Also better than the best constant guess made knowing the holdout's up rate.
    assert result.model.accuracy > max(majority.up_rate, 1 - majority.up_rate)
    assert result.model.auc > 0.7


# 4. Minimum functionality: what the model is fed and what comes out.


def test_batches_pair_each_window_with_its_target() -> None:
    # Candle i carries the value i, so the last value of window k is k + 3 (windows of 4).
    windows = build_windows(np.arange(20, dtype=np.float32)[:, None], 4)
    rows = np.array([9, 2, 14, 0, 5, 11, 3], dtype=np.int64)
    target = rows.astype(np.float32) + 3.0  # each target names its window's last candle
    batches = WindowBatches(windows, rows, target, batch_size=3)
    assert len(batches) == 3
    x, y = batches[0]
    assert x.shape == (3, 4, 1)
    np.testing.assert_array_equal(np.concatenate([batches[i][0] for i in range(3)]), windows[rows])
    for i in range(len(batches)):
        x, y = batches[i]
        np.testing.assert_array_equal(x[:, -1, 0], y)


def test_shuffled_batches_cover_every_row_once_per_epoch() -> None:
    windows = build_windows(np.arange(300, dtype=np.float32)[:, None], 4)
    rows = np.arange(0, 290, 2, dtype=np.int64)
    target = rows.astype(np.float32) + 3.0

    def epoch(batches: WindowBatches) -> npt.NDArray[np.float32]:
        seen = [batches[i] for i in range(len(batches))]
        for x, y in seen:
            np.testing.assert_array_equal(x[:, -1, 0], y)
        return np.concatenate([y for _, y in seen])

    batches = WindowBatches(windows, rows, target, batch_size=32, shuffle=True, seed=3)
    first = epoch(batches)
    batches.on_epoch_end()
    second = epoch(batches)
    for order in (first, second):
        np.testing.assert_array_equal(np.sort(order), target)
    assert not np.array_equal(first, target)  # shuffled
    assert not np.array_equal(first, second)  # reshuffled every epoch
    again = WindowBatches(windows, rows, target, batch_size=32, shuffle=True, seed=3)
    np.testing.assert_array_equal(epoch(again), first)  # the seed fixes the order


def test_predictions_are_probabilities_whatever_the_batch_size(trending: Trending) -> None:
    model = build_lstm(TINY, seed=5)
    rows = trending.dataset.samples.rows[trending.split.holdout]
    p_up = predict_proba(model, trending.windows, rows, batch_size=1024)
    assert p_up.shape == (len(rows),)
    assert ((p_up > 0) & (p_up < 1)).all()
    np.testing.assert_allclose(
        predict_proba(model, trending.windows, rows, batch_size=100), p_up, atol=1e-6
    )
    assert predict_proba(model, trending.windows, rows[:0]).shape == (0,)
