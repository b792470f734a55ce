"""Pure serving logic: routing by hash, probabilities into signals, staleness guards."""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from aifx_ml.abtest.routing import assign_variant, bucket
from aifx_ml.cli.serve import BUY_ENV, SELL_ENV, multiprocess_metrics_dir, policy_from_env
from aifx_ml.domain import Cutoffs, SignalPolicy, TestMode, decide
from aifx_ml.errors import InvalidInputError
from aifx_ml.features.dataset import Scaler
from aifx_ml.models.calibration import Platt
from aifx_ml.serving.inference import Assignment, ServingModel
from aifx_ml.serving.inputs import WARMUP, InputWindow, request_window
from aifx_ml.serving.metrics import MULTIPROC_ENV
from aifx_ml.serving.predict import (
    Pick,
    Prediction,
    PredictionService,
    PredictRequest,
    _row,
    no_edge,
    pick,
    staleness,
)
from aifx_ml.signals import SERVED_KEYS, SHADOW_KEYS
from tests.conftest import hourly_candles

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("split", [0.05, 0.2, 0.5, 0.8])
def test_traffic_shares_match_the_split_within_sampling_error(split: float) -> None:
    test_id = uuid.UUID(int=7)
    n = 20_000
    to_b = sum(assign_variant(f"user-{i}", test_id, split) == "b" for i in range(n))
    se = math.sqrt(split * (1 - split) / n)
    assert abs(to_b / n - split) < 4 * se  # a 4-sigma band: fails ~1 in 16,000 runs


def test_a_key_always_gets_the_same_arm_and_tests_shuffle_independently() -> None:
    first, second = uuid.UUID(int=1), uuid.UUID(int=2)
    keys = [f"acct-{i}" for i in range(2000)]
    arms_1 = [assign_variant(k, first, 0.5) for k in keys]
    assert arms_1 == [assign_variant(k, first, 0.5) for k in keys]
    arms_2 = [assign_variant(k, second, 0.5) for k in keys]
    agree = np.mean([a == b for a, b in zip(arms_1, arms_2, strict=True)])
    assert 0.45 < agree < 0.55  # unrelated tests: about half the keys change arm
    assert all(0.0 <= bucket(k, first) < 1.0 for k in keys[:100])


@pytest.mark.parametrize(
    ("p", "signal", "confidence"),
    [
        (0.55, "buy", 0.55),
        (0.9, "buy", 0.9),
        (0.45, "sell", 0.55),
        (0.1, "sell", 0.9),
        (0.5, "hold", 1.0),
        (0.54, "hold", 0.92),
        (0.46, "hold", 0.92),
    ],
)
def test_probability_to_signal(p: float, signal: str, confidence: float) -> None:
    assert decide(p, SignalPolicy().cutoffs(None)) == (signal, pytest.approx(confidence))


def test_a_direction_without_a_threshold_is_never_called() -> None:
    """A version whose sells showed no edge on validation (sell None) holds even at P = 0.01;
    one with neither holds always."""
    buys_only = Cutoffs(buy=0.53, sell=None)
    assert decide(0.53, buys_only)[0] == "buy"
    assert decide(0.01, buys_only)[0] == "hold"
    assert {decide(p, Cutoffs(None, None))[0] for p in (0.0, 0.3, 0.5, 0.7, 1.0)} == {"hold"}


def test_a_hold_for_want_of_an_edge_says_so() -> None:
    both = no_edge("lstm-v3", Cutoffs(None, None), 0.7)
    assert both == (
        "model lstm-v3 showed no edge over the baselines on held-out data: it never calls "
        "buy or sell"
    )
    buys_only = Cutoffs(0.53, None)
    assert no_edge("lstm-v3", buys_only, 0.2) == (
        "model lstm-v3 showed no edge on held-out data for sells: it never calls sell"
    )
    assert no_edge("lstm-v3", buys_only, 0.51) is None  # a hold between: it could buy higher
    assert no_edge("lstm-v3", Cutoffs(0.55, 0.45), 0.5) is None


def test_each_version_signals_at_its_own_thresholds_unless_overridden() -> None:
    own = Cutoffs(buy=0.52, sell=None)
    assert SignalPolicy().cutoffs(own) == own
    assert SignalPolicy().cutoffs(None) == Cutoffs(0.55, 0.45)  # a card without thresholds
    # --buy-threshold alone: both global ones, for every version.
    override = SignalPolicy.with_thresholds(0.6, None)
    assert override.override and override.cutoffs(own) == Cutoffs(0.6, 0.45)
    assert SignalPolicy.with_thresholds(None, None) == SignalPolicy()
    assert "own thresholds" in SignalPolicy().describe()
    assert "override" in override.describe()


def test_serve_hands_its_workers_the_override_or_nothing() -> None:
    assert policy_from_env({}) == SignalPolicy()
    assert policy_from_env({BUY_ENV: "0.6"}) == SignalPolicy.with_thresholds(0.6, None)
    both = policy_from_env({BUY_ENV: "0.6", SELL_ENV: "0.3"})
    assert both.override and both.cutoffs(Cutoffs(0.51, None)) == Cutoffs(0.6, 0.3)


def test_thresholds_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="thresholds"):
        SignalPolicy(buy_threshold=0.4, sell_threshold=0.6)
    with pytest.raises(InvalidInputError, match="thresholds"):
        SignalPolicy.with_thresholds(None, 0.6)  # above the default buy threshold
    with pytest.raises(InvalidInputError, match="invalid thresholds buy 0.4, sell 0.6"):
        Cutoffs(0.4, 0.6)


def test_a_serving_model_answers_with_its_calibrated_probability() -> None:
    """The network says 0.7; the version's Platt calibration (a = 0.5, b = −0.2) turns it
    into σ(0.5 · logit 0.7 − 0.2), batched or not."""
    platt = Platt(0.5, -0.2)
    served = replace(model(), calibration=platt)
    expected = float(platt(0.7))
    assert expected == pytest.approx(1 / (1 + math.exp(-(0.5 * math.log(0.7 / 0.3) - 0.2))))
    window = np.zeros((3, 1), dtype=np.float32)
    assert served.p_up(np.stack([window, window])) == pytest.approx([expected, expected])
    assert served.p_up_each([window]) == pytest.approx([expected])
    assert served.p_up_later([window])() == pytest.approx([expected])
    assert model().p_up_each([window]) == pytest.approx([0.7])  # no calibration: as it is


def model(version: str = "lstm-v1", trained: datetime | None = NOW) -> ServingModel:
    return ServingModel(
        version=version,
        model_type="lstm",
        window=3,
        features=("f",),
        scaler=Scaler((0.0,), (1.0,)),
        trained_at=trained,
        promoted_at=None,
        _call=lambda x: np.full((len(x), 1), 0.7, dtype=np.float32),
    )


def inputs(closed: datetime) -> InputWindow:
    ts = pd.Timestamp(closed)
    return InputWindow(np.zeros((3, 1)), ts - pd.Timedelta(hours=1), ts, 1.1)


def test_stale_model_and_stale_inputs_are_named() -> None:
    policy = SignalPolicy(max_model_age=timedelta(days=14), max_input_bars=2)
    fresh = inputs(NOW - timedelta(hours=1))
    assert staleness(model(), fresh, "1h", NOW, policy) is None
    old = model(trained=NOW - timedelta(days=20))
    reason = staleness(old, fresh, "1h", NOW, policy)
    assert reason is not None and "trained 20.0 days ago" in reason
    # Two bars late is still fine; a moment more is not.
    assert staleness(model(), inputs(NOW - timedelta(hours=2)), "1h", NOW, policy) is None
    late = staleness(model(), inputs(NOW - timedelta(hours=2, minutes=1)), "1h", NOW, policy)
    assert late is not None and "more than 2 bars" in late


def test_production_serves_without_a_test_and_arms_split_with_one() -> None:
    a, b = model("lstm-v1"), model("lstm-v2")
    assert pick(Assignment("lstm", production=a), "k") == Pick(a)
    test = Assignment(
        "lstm", production=a, test_id=uuid.UUID(int=3), test_split=0.5, arm_a=a, arm_b=b
    )
    chosen = {pick(test, f"k{i}").variant for i in range(50)}
    assert chosen == {"a", "b"}
    key = next(f"k{i}" for i in range(50) if assign_variant(f"k{i}", uuid.UUID(int=3), 0.5) == "b")
    assert pick(test, key) == Pick(b, "b")
    with pytest.raises(Exception, match="no Production lstm model"):
        pick(Assignment("lstm", production=None), "k")


def test_in_a_shadow_test_a_answers_every_request_and_b_shadows_it() -> None:
    a, b = model("lstm-v1"), model("lstm-v2")
    test = Assignment(
        "lstm", production=a, test_id=uuid.UUID(int=3), test_mode=TestMode.SHADOW, arm_a=a, arm_b=b
    )
    assert all(pick(test, f"k{i}") == Pick(a, "a", b) for i in range(50))


def test_request_candles_need_a_warm_up_and_give_the_newest_window() -> None:
    candles = hourly_candles("2026-01-05", 8 + WARMUP)
    window = request_window(candles, "1h", 8)
    assert window.features.shape == (8, 17) and np.isfinite(window.features).all()
    assert window.entry_price == pytest.approx(candles["close"].iloc[-1])
    assert window.closed_at == candles["timestamp"].iloc[-1] + pd.Timedelta(hours=1)
    with pytest.raises(InvalidInputError, match=f"need at least {8 + WARMUP} candles"):
        request_window(candles.iloc[1:], "1h", 8)
    repeated = pd.concat([candles, candles.iloc[[-1]]])
    with pytest.raises(InvalidInputError, match="repeat a timestamp"):
        request_window(repeated, "1h", 8)


def test_the_service_builds_rows_the_writer_stores_in_one_statement() -> None:
    """`signals.SERVED_KEYS` and `SHADOW_KEYS` restate what `_row` and `_shadow_row` build:
    rows of another shape still get stored, by the slower transaction, so a key added on one
    side only would cost every round its single statement without failing anything."""
    answer = Prediction(
        signal_id=uuid.uuid4(), pair="EUR/USD", timeframe="1h", signal="buy", confidence=0.3,
        probability=0.7, entry_price=1.1, created_at=NOW, model_version="lstm-v1",
        ab_test_id=uuid.uuid4(), variant="a", reason=None,
    )  # fmt: skip
    service = SimpleNamespace(policy=SignalPolicy())
    shadow = PredictionService._shadow_row(
        service,  # type: ignore[arg-type]  (only its policy is read)
        model("lstm-v2"), inputs(NOW), lambda: 0.4, answer, PredictRequest("EUR/USD", "1h"), NOW,
    )  # fmt: skip
    assert set(_row(answer, "acct-1")) == SERVED_KEYS
    assert set(shadow) == SHADOW_KEYS


def test_the_workers_metric_files_go_to_shared_memory_emptied_unless_a_folder_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`aifx serve --workers N` puts prometheus_client's files in shared memory (writes to a
    disk-backed folder cost throughput), one folder per data dir, emptied of a previous run's
    samples; PROMETHEUS_MULTIPROC_DIR wins; without shared memory, `<data dir>/prometheus`."""
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    shm, data = tmp_path / "shm", tmp_path / "data"
    shm.mkdir()
    first = multiprocess_metrics_dir(data, shared_memory=shm)
    assert first.parent == shm and first.name.startswith("aifx-prometheus-")
    assert os.environ[MULTIPROC_ENV] == str(first)
    (first / "histogram_123.db").write_bytes(b"old")
    monkeypatch.delenv(MULTIPROC_ENV)
    assert multiprocess_metrics_dir(data, shared_memory=shm) == first
    assert not list(first.iterdir())  # the previous run's samples are gone
    monkeypatch.delenv(MULTIPROC_ENV)
    assert multiprocess_metrics_dir(tmp_path / "other", shared_memory=shm) != first

    monkeypatch.delenv(MULTIPROC_ENV)
    assert multiprocess_metrics_dir(data, shared_memory=tmp_path / "none") == data / "prometheus"

    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "given"))
    assert multiprocess_metrics_dir(data, shared_memory=shm) == tmp_path / "given"
    assert (tmp_path / "given").is_dir()
