"""The two training types: weekly full (from scratch) and daily incremental (fine-tuning the
Production model). Each compares its result with the Production model and the baselines on
the same holdout; `lifecycle` does the bookkeeping around both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from aifx_ml.domain import TrainingStatus, TrainingType
from aifx_ml.evaluation.metrics import (
    baseline_probabilities,
    compare_with_baselines,
    holdout_metrics,
)
from aifx_ml.features.dataset import (
    Dataset,
    Split,
    build_dataset,
    scaler_for,
)
from aifx_ml.features.engineering import FEATURE_NAMES
from aifx_ml.models.calibration import Platt, Thresholds, choose_thresholds, fit_platt, log_loss
from aifx_ml.models.lstm import LSTMConfig, build_lstm, compile_for_training
from aifx_ml.models.predict import predict_proba
from aifx_ml.models.store import LoadedModel
from aifx_ml.models.versions import production_version
from aifx_ml.training.config import Stores, TrainingConfig, TrainingResult, TrainingSkipped
from aifx_ml.training.data import (
    load_start,
    load_training_candles,
    load_training_signals,
    samples_since,
)
from aifx_ml.training.fit import fit_full, fit_model
from aifx_ml.training.lifecycle import (
    OnEpoch,
    complete,
    epoch_logger,
    log_candidates,
    model_card,
    start_store_run,
    training_run,
)
from aifx_ml.training.splits import split_for, split_samples
from aifx_ml.training.sweep import CandidateFit, FitCandidates, best, fit_each, widest


def train_full(
    stores: Stores,
    config: TrainingConfig,
    as_of: datetime,
    candles: pd.DataFrame | None = None,
    on_epoch: OnEpoch | None = None,
    signals: pd.DataFrame | None = None,
    candidates: Sequence[TrainingConfig] = (),
    fit_candidates: FitCandidates = fit_each,
) -> TrainingResult:
    """Train from scratch on the last `config.days` days before `as_of` (80/20 chronological).

    The current Production model, if any, is scored on the same holdout for comparison.
    With several `candidates` (a sweep, `training.sweep`), `fit_candidates` fits each (on a
    task runner's workers, or here one after another), the one with the best validation loss
    becomes the run's model, finished like a single training, and every candidate is logged
    as a nested run of this one. Whatever fails in the sweep fails the run, recorded.
    """
    since = samples_since(stores.engine, config, TrainingType.FULL, as_of)
    with training_run(stores, config, TrainingType.FULL, as_of) as run:
        if run.result.status != TrainingStatus.RUNNING:
            return run.result
        if candles is None:
            start = load_start(since, widest(config, candidates))
            candles = load_training_candles(stores.engine, config, start, as_of)
        if candles.empty:
            raise TrainingSkipped(f"no candles between {since.isoformat()} and {as_of.isoformat()}")
        if config.include_signals and signals is None:
            signals = load_training_signals(stores.engine, config, since, as_of)
        used_signals = signals if config.include_signals else None
        sweep: list[CandidateFit] = []
        chosen = None
        if len(candidates) > 1:
            sweep = list(fit_candidates(candidates, candles, used_signals, since))
            chosen = best(sweep)
            config = run.config = chosen.config
        dataset = build_dataset(candles, config.lstm.window, used_signals)
        split = split_for(dataset, config, since)
        scaler = scaler_for(dataset, split)
        windows = dataset.windows(scaler)
        start_store_run(run, dataset, split, {"candidates": len(sweep)} if sweep else {})
        lstm = replace(config.lstm, n_features=len(dataset.feature_names), window=dataset.window)
        model = build_lstm(lstm, seed=config.seed)
        if chosen is not None:
            log_candidates(run, sweep, chosen)
            model.set_weights(chosen.weights)
            history = chosen.history
        else:
            history = fit_full(
                model, windows, dataset.samples, split, config, [epoch_logger(run, on_epoch)]
            )
        metrics = _evaluate(model, windows, dataset, split, history)
        production = production_version(stores.engine, config.model_type)
        if production is not None:
            metrics.update(_versus(stores.models.load(production), dataset, split, metrics))
        calibration, thresholds, fitted = _calibrate(model, windows, dataset, split)
        metrics.update(fitted)
        card = model_card(
            config, lstm, scaler, dataset, as_of, parent=None,
            calibration=calibration, thresholds=thresholds,
        )  # fmt: skip
        complete(run, model, card, dataset, split, history, metrics, windows)
    return run.result


def train_incremental(
    stores: Stores,
    config: TrainingConfig,
    as_of: datetime,
    candles: pd.DataFrame | None = None,
    on_epoch: OnEpoch | None = None,
) -> TrainingResult:
    """Fine-tune the Production model on data since the last successful run.

    The holdout is the newest part of that data: neither the parent nor the child has
    trained on it, so the two are compared fairly. No Production model yet: a full
    training runs instead, and the result says so.
    """
    parent_row = production_version(stores.engine, config.model_type)
    if parent_row is None:
        result = train_full(stores, config, as_of, on_epoch=on_epoch)
        result.fell_back_to_full = True
        fallback = f"no Production {config.model_type} model yet: ran a full training instead"
        result.reason = f"{fallback}; {result.reason}" if result.reason else fallback
        return result
    since = samples_since(stores.engine, config, TrainingType.INCREMENTAL, as_of)
    with training_run(stores, config, TrainingType.INCREMENTAL, as_of) as run:
        if run.result.status != TrainingStatus.RUNNING:
            return run.result
        run.result.parent_version = parent_row.version
        if candles is None:
            candles = load_training_candles(stores.engine, config, load_start(since, config), as_of)
        if candles.empty:
            raise TrainingSkipped(f"no candles since {since.isoformat()}")
        parent = stores.models.load(parent_row)
        parent.card.check_features(FEATURE_NAMES, f"parent {parent.version}")
        dataset = build_dataset(candles, parent.card.window)
        split = split_samples(dataset, config, 0.0, since)
        # The child must see its inputs exactly as its parent did.
        scaler = parent.card.scaler
        windows = parent.card.windows(dataset, f"parent {parent.version}")
        start_store_run(run, dataset, split, {"parent_version": parent.version})
        # Score the parent before fine-tuning changes its weights in place.
        before = _versus(parent, dataset, split, None)
        model = parent.model
        compile_for_training(model, config.incremental_learning_rate)
        history = fit_model(
            model,
            windows,
            dataset.samples,
            split.train,
            None,
            epochs=config.incremental_epochs,
            batch_size=config.batch_size,
            callbacks=[epoch_logger(run, on_epoch)],
            seed=config.seed,
        )
        metrics = _evaluate(model, windows, dataset, split, history)
        metrics.update(before)
        metrics["lift_over_production"] = (
            metrics["holdout_accuracy"] - before["production_holdout_accuracy"]
        )
        lstm = LSTMConfig.from_dict(dict(parent.card.architecture))
        # No validation split of its own (its new data trains it or judges it): the parent's
        # calibration and thresholds carry over.
        if parent.card.thresholds is not None:
            metrics.update(parent.card.thresholds.as_metrics())
        card = model_card(
            config, lstm, scaler, dataset, as_of, parent=parent.version,
            calibration=parent.card.calibration, thresholds=parent.card.thresholds,
        )  # fmt: skip
        complete(run, model, card, dataset, split, history, metrics, windows)
    return run.result


def _versus(
    reference: LoadedModel, dataset: Dataset, split: Split, metrics: dict[str, Any] | None
) -> dict[str, Any]:
    """The reference (Production) model scored on the same holdout, with its own scaler.

    With `metrics` of the new model, also the lift over the reference's accuracy. A reference
    with another window length or feature list cannot be scored on these samples; that is
    recorded rather than guessed around.
    """
    out: dict[str, Any] = {"production_version": reference.version}
    same_inputs = reference.card.accepts(dataset.feature_names, dataset.window)
    out["production_comparable"] = same_inputs
    if not same_inputs:
        return out
    windows = reference.card.windows(dataset)
    holdout = split.holdout
    scored = holdout_metrics(
        dataset.samples.target[holdout],
        predict_proba(reference.model, windows, dataset.samples.rows[holdout]),
    )
    out.update(scored.as_dict("production_holdout_"))
    if metrics is not None:
        out["lift_over_production"] = metrics["holdout_accuracy"] - scored.accuracy
    return out


def _evaluate(
    model: Any, windows: Any, dataset: Dataset, split: Split, history: dict[str, list[float]]
) -> dict[str, Any]:
    s = dataset.samples
    p = predict_proba(model, windows, s.rows[split.holdout])
    comparison = compare_with_baselines(
        s.target[split.holdout],
        p,
        s.target[split.train],
        s.last_move[split.train],
        s.last_move[split.holdout],
    )
    return {
        **comparison.as_dict(),
        "epochs_run": len(history.get("loss", [])),
        "train_samples": int(len(split.train)),
        "signal_samples": int(s.from_signal[split.train].sum()),
        "validation_samples": int(len(split.validation)),
        "holdout_samples": int(len(split.holdout)),
        "holdout_start": split.holdout_start.isoformat(),
    }


def _calibrate(
    model: Any, windows: Any, dataset: Dataset, split: Split
) -> tuple[Platt | None, Thresholds | None, dict[str, Any]]:
    """Calibration and the version's own thresholds (`aifx_ml.models.calibration`), fit on
    every sample the version did not learn from: its validation split (which only stopped
    training early) and the gate's holdout, the newest. The gate and the refresh rule judge
    the network's direction on the holdout, which neither calibration (it keeps 0.5) nor the
    thresholds change, so no decision is taken twice on the same data; the numbers go to the
    run's metrics. Fewer than 2 such samples: neither."""
    s = dataset.samples
    judged = np.sort(np.concatenate([split.validation, split.holdout]))
    if len(judged) < 2:
        return None, None, {"calibration_samples": int(len(judged))}
    raw = predict_proba(model, windows, s.rows[judged])
    outcome = s.target[judged]
    platt = fit_platt(raw, outcome)
    calibrated = platt(raw)
    baselines = baseline_probabilities(
        s.target[split.train], s.last_move[split.train], s.last_move[judged], len(judged)
    )
    thresholds = choose_thresholds(calibrated, outcome, baselines)
    return (
        platt,
        thresholds,
        {
            "calibration_samples": int(len(judged)),
            "calibration_a": platt.a,
            "calibration_b": platt.b,
            "calibration_log_loss_raw": log_loss(raw, outcome),
            "calibration_log_loss_calibrated": log_loss(calibrated, outcome),
            **thresholds.as_metrics(),
        },
    )
