"""Candle windows: zero-copy read-only views, aligned positions, batches copied one at a time."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from aifx_ml.errors import InvalidInputError
from aifx_ml.features.windows import build_windows, iter_batches, window_end_positions

N, L, F = 10, 4, 3


@pytest.fixture
def features() -> np.ndarray:
    """Row i of feature j holds 100*i + j, so any row is recognizable."""
    return (100.0 * np.arange(N)[:, None] + np.arange(F)[None, :]).astype(np.float32)


def test_shape_is_windows_by_length_by_features(features: np.ndarray) -> None:
    assert build_windows(features, L).shape == (N - L + 1, L, F)


def test_row_k_is_the_candles_k_to_k_plus_length(features: np.ndarray) -> None:
    windows = build_windows(features, L)
    for k in range(N - L + 1):
        np.testing.assert_array_equal(windows[k], features[k : k + L])


def test_default_length_is_sixty() -> None:
    assert build_windows(np.zeros((61, 2), dtype=np.float32)).shape == (2, 60, 2)


def test_windows_share_memory_with_the_input(features: np.ndarray) -> None:
    windows = build_windows(features, L)
    assert np.shares_memory(windows, features)
    features[5, 1] = -1.0  # a change in the series shows through every window holding it
    assert windows[2, 3, 1] == -1.0
    assert windows[5, 0, 1] == -1.0


def test_windows_are_read_only(features: np.ndarray) -> None:
    windows = build_windows(features, L)
    assert not windows.flags.writeable
    with pytest.raises(ValueError):
        windows[0, 0, 0] = 1.0
    assert features[0, 0] == 0.0


def test_window_end_positions_align_with_rows(features: np.ndarray) -> None:
    ends = window_end_positions(N, L)
    windows = build_windows(features, L)
    assert ends.dtype == np.int64
    np.testing.assert_array_equal(ends, np.arange(L - 1, N))
    assert len(ends) == len(windows)
    for k, end in enumerate(ends):
        np.testing.assert_array_equal(windows[k, -1], features[end])


def test_length_one_windows_are_the_candles(features: np.ndarray) -> None:
    np.testing.assert_array_equal(build_windows(features, 1)[:, 0], features)


def test_exactly_length_candles_give_one_window(features: np.ndarray) -> None:
    windows = build_windows(features[:L], L)
    assert windows.shape == (1, L, F)
    np.testing.assert_array_equal(window_end_positions(L, L), [L - 1])


@pytest.mark.parametrize(
    ("shape", "length", "message"),
    [
        ((N,), L, "2-D"),
        ((N, F, 1), L, "2-D"),
        ((N, F), 0, "length must be >= 1"),
        ((N, F), -3, "length must be >= 1"),
        ((L - 1, F), L, f"need at least {L} candles"),
    ],
)
def test_bad_input_raises_invalid_input(shape: tuple[int, ...], length: int, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        build_windows(np.zeros(shape, dtype=np.float32), length)


def test_batches_cover_the_selected_rows_in_order(features: np.ndarray) -> None:
    windows = build_windows(features, L)  # 7 windows
    rows = np.array([6, 0, 2, 3, 5], dtype=np.int64)
    batches = list(iter_batches(windows, rows, 2))
    assert [len(x) for x, _ in batches] == [2, 2, 1]  # the last batch is smaller
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), windows[rows])
    assert all(y is None for _, y in batches)


def test_batch_size_larger_than_rows_gives_one_batch(features: np.ndarray) -> None:
    windows = build_windows(features, L)
    rows = np.arange(len(windows), dtype=np.int64)
    batches = list(iter_batches(windows, rows, 100))
    assert len(batches) == 1
    np.testing.assert_array_equal(batches[0][0], windows)


def test_no_rows_give_no_batches(features: np.ndarray) -> None:
    windows = build_windows(features, L)
    assert list(iter_batches(windows, np.array([], dtype=np.int64), 4)) == []


def test_batches_are_contiguous_copies(features: np.ndarray) -> None:
    windows = build_windows(features, L)
    for x, _ in iter_batches(windows, np.arange(len(windows), dtype=np.int64), 3):
        assert x.flags.c_contiguous
        assert x.flags.writeable
        assert not np.shares_memory(x, features)
        x[...] = -7.0  # the consumer may scribble on its batch; the series is untouched
    np.testing.assert_array_equal(features[:, 0], 100.0 * np.arange(N))


def test_targets_travel_with_their_rows(features: np.ndarray) -> None:
    windows = build_windows(features, L)
    ends = window_end_positions(N, L)
    targets = ends.astype(np.float64) * 10.0  # the target of window k names its end candle
    rows = np.array([4, 1, 6, 0, 3], dtype=np.int64)
    for x, y in iter_batches(windows, rows, 2, targets):
        assert y is not None
        assert len(y) == len(x)
        # Each batch row ends at the candle its target names.
        np.testing.assert_array_equal(x[:, -1, 0], 100.0 * (y / 10.0))
    ys = [y for _, y in iter_batches(windows, rows, 2, targets)]
    np.testing.assert_array_equal(np.concatenate(ys), targets[rows])


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batch_size_below_one_raises_invalid_input(features: np.ndarray, batch_size: int) -> None:
    windows = build_windows(features, L)
    with pytest.raises(InvalidInputError, match="batch size"):
        next(iter_batches(windows, np.arange(3, dtype=np.int64), batch_size))


def test_building_windows_allocates_almost_nothing() -> None:
    """A copy would cost 60x the candles (about 190 MB here); the view costs a few hundred bytes."""
    candles = np.ones((100_000, 8), dtype=np.float32)  # 3.2 MB
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        windows = build_windows(candles, 60)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert windows.shape == (100_000 - 59, 60, 8)
    assert peak < 0.1 * candles.nbytes


def test_iterating_batches_holds_about_one_batch() -> None:
    candles = np.ones((20_000, 8), dtype=np.float32)  # 640 kB; all windows copied: 38 MB
    windows = build_windows(candles, 60)
    rows = np.arange(len(windows), dtype=np.int64)
    batch_bytes = 256 * 60 * 8 * 4
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        seen = sum(len(x) for x, _ in iter_batches(windows, rows, 256))
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert seen == len(windows)
    assert peak < 3 * batch_bytes
