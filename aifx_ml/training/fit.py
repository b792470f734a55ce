"""Fitting a Keras model on dataset windows, streamed in batches (one batch in memory at a time)."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import keras
import numpy as np
import numpy.typing as npt

from aifx_ml.features.dataset import Samples, Split
from aifx_ml.training.config import TrainingConfig


class WindowBatches(keras.utils.PyDataset):  # type: ignore[misc]
    """Batches of (windows[rows], target) gathered from a zero-copy window view."""

    def __init__(
        self,
        windows: npt.NDArray[np.float32],
        rows: npt.NDArray[np.int64],
        target: npt.NDArray[np.float32],
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.windows, self.rows, self.target = windows, rows, target
        self.batch_size, self.shuffle = batch_size, shuffle
        self._rng = np.random.default_rng(seed)
        self._order = np.arange(len(rows))
        if shuffle:
            self._rng.shuffle(self._order)

    def __len__(self) -> int:
        return int(np.ceil(len(self.rows) / self.batch_size))

    def __getitem__(self, index: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        take = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        return np.take(self.windows, self.rows[take], axis=0), self.target[take]

    def on_epoch_end(self) -> None:
        if self.shuffle:
            # A new array, not a shuffle in place: tf.data reads batches from another thread.
            self._order = self._rng.permutation(len(self.rows))


class EpochCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Calls `on_epoch(epoch, logs)` after every epoch (progress bars, MLflow metrics)."""

    def __init__(self, on_epoch: Callable[[int, dict[str, float]], None]) -> None:
        super().__init__()
        self._on_epoch = on_epoch

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._on_epoch(epoch, {k: float(v) for k, v in (logs or {}).items()})


def fit_model(
    model: keras.Model,
    windows: npt.NDArray[np.float32],
    samples: Samples,
    train: npt.NDArray[np.int64],
    validation: npt.NDArray[np.int64] | None = None,
    *,
    epochs: int,
    batch_size: int = 32,
    early_stopping_patience: int | None = None,
    reduce_lr_patience: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    seed: int = 42,
) -> dict[str, list[float]]:
    """Train on samples[train]; returns the per-epoch history.

    With validation samples, early stopping and learning-rate reduction watch the validation
    loss and the best weights are restored; without, they watch the training loss.
    """
    keras.utils.set_random_seed(seed)
    has_validation = validation is not None and len(validation) > 0
    monitor = "val_loss" if has_validation else "loss"
    watchers: list[keras.callbacks.Callback] = []
    if early_stopping_patience is not None:
        watchers.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, patience=early_stopping_patience, restore_best_weights=True
            )
        )
    if reduce_lr_patience is not None:
        watchers.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, factor=0.5, patience=reduce_lr_patience, min_lr=1e-6
            )
        )
    val_data = None
    if has_validation and validation is not None:
        val_data = WindowBatches(
            windows, samples.rows[validation], samples.target[validation], batch_size
        )
    train_data = WindowBatches(
        windows, samples.rows[train], samples.target[train], batch_size, shuffle=True, seed=seed
    )
    with _trainer_for(model) as trainer:
        _load_state(trainer, model)
        history = trainer.fit(
            train_data,
            validation_data=val_data,
            epochs=epochs,
            # The batches are shuffled above, from `seed`. Keras's own shuffle of a PyDataset's
            # batch order draws from Python's global `random`, which other threads of a flow run
            # (Prefect names its task runs with it) move: the same run would train another model.
            shuffle=False,
            callbacks=[*watchers, *callbacks],
            verbose=0,
        )
        _copy_back(trainer, model)
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


# --- One traced trainer per architecture ---------------------------------------------------------
#
# Keras traces a model's training step into a TensorFlow graph on its first fit: ~2.4 s for the
# seed LSTM here, more than a small fit itself. A new model is built (or a parent loaded) for
# every training run, so every run paid it again. A trainer is a compiled copy of the
# architecture that keeps its traced step; each fit loads the model's variables (weights and
# the dropout layers' seed states) and a fresh optimizer state into it, trains it, and copies the
# variables and the optimizer's state back. The same ops run on the same values, so the model
# ends exactly as if it had been fitted itself.

_TRAINERS_KEPT = 8
_trainers: OrderedDict[str, tuple[keras.Model, threading.Lock]] = OrderedDict()
_trainers_lock = threading.Lock()


def _architecture_key(model: keras.Model) -> str:
    """The architecture and how it is compiled, but not the learning rate (set per fit)."""
    compiled = dict(model.get_compile_config())
    optimizer = dict(compiled.pop("optimizer"))
    optimizer["config"] = {
        k: v for k, v in optimizer.get("config", {}).items() if k not in ("learning_rate", "name")
    }
    return json.dumps(
        _nameless({"model": model.get_config(), "compile": compiled, "optimizer": optimizer}),
        sort_keys=True,
        default=str,
    )


def _nameless(config: Any) -> Any:
    """A config without its layers' names: Keras numbers them per process (dense_1, dense_2)."""
    if isinstance(config, dict):
        return {k: _nameless(v) for k, v in config.items() if k != "name"}
    if isinstance(config, list | tuple):
        return [_nameless(v) for v in config]
    return config


@contextmanager
def _trainer_for(model: keras.Model) -> Iterator[keras.Model]:
    """The trainer of the model's architecture, for this thread alone while it trains."""
    key = _architecture_key(model)
    with _trainers_lock:
        if key in _trainers:
            _trainers.move_to_end(key)
        else:
            trainer = keras.models.clone_model(model)
            trainer.compile_from_config(model.get_compile_config())
            _trainers[key] = (trainer, threading.Lock())
            while len(_trainers) > _TRAINERS_KEPT:
                _trainers.popitem(last=False)
        trainer, lock = _trainers[key]
    with lock:
        yield trainer


def _load_state(trainer: keras.Model, model: keras.Model) -> None:
    """The model's variables, and an optimizer as `compile` would leave it: no step taken yet,
    no moments, the model's learning rate."""
    for mine, theirs in zip(trainer.variables, model.variables, strict=True):
        mine.assign(theirs)
    learning_rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    for variable in trainer.optimizer.variables:
        variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
    trainer.optimizer.learning_rate.assign(learning_rate)


def _copy_back(trainer: keras.Model, model: keras.Model) -> None:
    """The trained variables, and the optimizer's state (saved with the model, as its own fit
    would have left it)."""
    for mine, trained in zip(model.variables, trainer.variables, strict=True):
        mine.assign(trained)
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    for mine, trained in zip(model.optimizer.variables, trainer.optimizer.variables, strict=True):
        mine.assign(trained)


def fit_full(
    model: keras.Model,
    windows: npt.NDArray[np.float32],
    samples: Samples,
    split: Split,
    config: TrainingConfig,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> dict[str, list[float]]:
    """`fit_model` as a full training (or a sweep's candidate) runs it: on the split's training
    part, early-stopping on its validation part, with the configuration's knobs."""
    return fit_model(
        model,
        windows,
        samples,
        split.train,
        split.validation,
        epochs=config.epochs,
        batch_size=config.batch_size,
        early_stopping_patience=config.early_stopping_patience,
        reduce_lr_patience=config.reduce_lr_patience,
        callbacks=callbacks,
        seed=config.seed,
    )
