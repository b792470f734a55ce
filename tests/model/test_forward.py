"""The service's forward pass: XLA gives the traced graph's answers at every batch size
(padded to its bucket, split beyond the largest), and a size not compiled yet is answered by
the graph while XLA compiles it in the background."""

from __future__ import annotations

import numpy as np
import pytest

from aifx_ml.models.lstm import LSTMConfig, build_lstm
from aifx_ml.serving.forward import BUCKETS, Forward

CONFIG = LSTMConfig(window=6, n_features=3, lstm_units=(4, 2), dense_units=2)


@pytest.fixture(scope="module")
def forward() -> Forward:
    return Forward(build_lstm(CONFIG, seed=3), CONFIG.window, CONFIG.n_features, name="tiny")


def windows(n: int) -> np.ndarray:
    rng = np.random.default_rng(n)
    return rng.normal(size=(n, CONFIG.window, CONFIG.n_features)).astype(np.float32)


def test_a_size_not_compiled_yet_is_answered_by_the_graph_then_by_xla(forward: Forward) -> None:
    x = windows(3)
    assert 4 not in forward.compiled()
    first = forward(x)  # bucket 4 starts compiling in the background; the graph answers now
    np.testing.assert_array_equal(first, forward.traced(x))
    forward.warm([3])  # waits for that compilation instead of starting a second one
    assert 4 in forward.compiled()
    np.testing.assert_allclose(forward(x), first, atol=1e-6)
    assert forward(x).shape == (3, 1)


def test_xla_answers_as_the_graph_does_at_every_size_split_beyond_the_largest(
    forward: Forward,
) -> None:
    forward.warm([1, 8, BUCKETS[-1]])
    for n in (1, 5, 8, BUCKETS[-1] + 7):  # 5 pads to 8; 71 is 64 + 7 (padded to 8)
        x = windows(n)
        out = forward(x)
        assert out.shape == (n, 1)
        np.testing.assert_allclose(out, forward.traced(x), atol=1e-6)
    assert {1, 8, BUCKETS[-1]} <= set(forward.compiled())
