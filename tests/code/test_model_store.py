"""The model card and the in-memory model store: the contract the library relies on."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd  # noqa: F401
import pytest

from aifx_ml.db.models import ModelVersion
from aifx_ml.features.dataset import Scaler, build_dataset
from aifx_ml.features.engineering import FEATURE_NAMES
from aifx_ml.models.calibration import Platt, Thresholds
from aifx_ml.models.card import IncompatibleInputsError, ModelCard
from aifx_ml.models.lstm import LSTMConfig, build_lstm
from aifx_ml.models.store import (
    ArtifactIntegrityError,
    InMemoryModelStore,
    ModelStoreError,
    number_of,
    version_label,
)
from tests.code.test_training_dataset import eurusd

TRAINED = datetime(2026, 3, 1, 1, tzinfo=UTC)


def card(window: int = 8, features: tuple[str, ...] = FEATURE_NAMES) -> ModelCard:
    n = len(features)
    return ModelCard(
        model_type="lstm",
        architecture=LSTMConfig(window=window, n_features=n, lstm_units=(4, 2)).to_dict(),
        features=tuple(features),
        window=window,
        scaler=Scaler(tuple(0.0 for _ in range(n)), tuple(2.0 for _ in range(n))),
        pairs=("EUR/USD",),
        timeframes=("1h",),
        dataset_hash="abc",
        data_time_range={"start": "2026-02-01T00:00:00+00:00"},
        trained_as_of=TRAINED,
        parent_version=None,
    )


def test_card_round_trip_keeps_every_field_and_unknown_keys() -> None:
    original = card()
    data = {**original.to_dict(), "note": "from a newer trainer"}
    again = ModelCard.from_dict(data)
    assert again.to_dict() == data
    assert again.trained_as_of == TRAINED
    assert again.scaler == original.scaler


def test_card_round_trip_keeps_calibration_and_thresholds() -> None:
    thresholds = Thresholds(0.56, None, 0.61, None, 0.52, 0.51, 0.02, 30, 140)
    calibrated = replace(card(), calibration=Platt(0.4, -0.1), thresholds=thresholds)
    again = ModelCard.from_dict(calibrated.to_dict())
    assert (again.calibration, again.thresholds) == (Platt(0.4, -0.1), thresholds)
    older = {
        k: v for k, v in calibrated.to_dict().items() if k not in ("calibration", "thresholds")
    }
    assert (ModelCard.from_dict(older).calibration, ModelCard.from_dict(older).thresholds) == (
        None,
        None,
    )  # a card written before calibration existed reads back without one


def test_card_without_inputs_is_refused() -> None:
    data = card().to_dict()
    del data["scaler"]
    with pytest.raises(Exception, match="lacks scaler"):
        ModelCard.from_dict(data)


def test_card_builds_windows_with_its_own_scaler() -> None:
    dataset = build_dataset(_candles(), 8)
    windows = card().windows(dataset)
    assert np.allclose(windows, dataset.windows(card().scaler), equal_nan=True)
    # Its scaler halves every feature: not the dataset's own scaling.
    unscaled = dataset.windows(Scaler(tuple([0.0] * 17), tuple([1.0] * 17)))
    assert np.allclose(windows * 2, unscaled, equal_nan=True)


def test_card_refuses_other_inputs() -> None:
    dataset = build_dataset(_candles(), 8)
    with pytest.raises(IncompatibleInputsError, match="other features"):
        card(features=tuple(reversed(FEATURE_NAMES))).windows(dataset)
    with pytest.raises(IncompatibleInputsError, match="12-candle windows"):
        card(window=12).windows(dataset)
    assert card().accepts(dataset.feature_names, 8)
    assert not card().accepts(dataset.feature_names, 12)


def test_in_memory_store_registers_loads_copies_and_checks() -> None:
    store = InMemoryModelStore()
    model = build_lstm(LSTMConfig(window=8, n_features=17, lstm_units=(4, 2), dense_units=2))
    run = store.start_run("lstm", "full-test", {"aifx.training_type": "full"})
    store.log_metrics(run, {"loss": 0.7}, step=0)
    store.log_metrics(run, {"loss": 0.6}, step=1)
    registered = store.register(run, model, card(), np.zeros((1, 8, 17), np.float32), {})
    store.end_run(run, "FINISHED")
    assert registered.model_path == "models:/aifx-lstm/1"
    assert store.runs[run].metrics["loss"] == [(0, 0.7), (1, 0.6)]
    assert store.runs[run].status == "FINISHED"

    row = _row(registered.model_path, registered.sha256)
    assert number_of(row) == "1"
    loaded = store.load(row)
    assert loaded.card == card()
    x = np.random.default_rng(0).normal(size=(2, 8, 17)).astype(np.float32)
    assert np.allclose(loaded.model(x), model(x))

    # A fine-tune changes the loaded copy in place; what is registered stays as it was.
    loaded.model.set_weights([w + 1 for w in loaded.model.get_weights()])
    assert np.allclose(store.load(row).model(x), model(x))

    # Tampered weights are refused, as tampered files are by the MLflow store.
    stored = store.versions[("lstm", "1")].model
    stored.set_weights([w * 0 for w in stored.get_weights()])
    with pytest.raises(ArtifactIntegrityError):
        store.load(row)
    store.unregister("lstm", "1")
    with pytest.raises(ModelStoreError, match="not in the store"):
        store.load(row)
    # A number taken back out is not given again, as in MLflow.
    again = store.register(run, model, card(), np.zeros((1, 8, 17), np.float32), {})
    assert again.model_path == "models:/aifx-lstm/2"


def _row(model_path: str, sha: str) -> ModelVersion:
    return ModelVersion(
        id=uuid.uuid4(),
        version=version_label("lstm", model_path.rsplit("/", 1)[-1]),
        model_type="lstm",
        model_path=model_path,
        status="staging",
        artifact_sha256=sha,
    )


def _candles() -> pd.DataFrame:
    return eurusd(periods=80)
