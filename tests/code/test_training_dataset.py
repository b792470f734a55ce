"""Training datasets: windows inside one series, purged chronological splits, a scaler fit on
training candles only, a stable content hash, signal examples, and no peeking into the future.

Candle frames are laid out as `load_candles` returns them and built from the pieces it uses:
TA-Lib indicators stored as JSON and read back, then `direction_target` per series.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aifx_ml.data.synth import synthesize_candles
from aifx_ml.errors import InvalidInputError
from aifx_ml.features.dataset import (
    Dataset,
    Samples,
    Scaler,
    build_dataset,
    chronological_split,
    scaler_for,
)
from aifx_ml.features.engineering import (
    FEATURE_NAMES,
    LookaheadError,
    assert_causal,
    candle_features,
)
from aifx_ml.features.indicators import (
    compute_indicators,
    indicators_from_json,
    indicators_to_json,
)
from aifx_ml.labeling.rules import direction_target
from aifx_ml.markets import step_offset
from tests.conftest import hourly_candles

WINDOW = 10
START = "2026-01-05"  # a Monday: loaded ranges start here
HOUR = pd.Timedelta(hours=1)
WARM = 60  # hours of indicator history before a loaded range (sma_50 needs 50 candles)
HISTORY_START = str(pd.Timestamp(START) - WARM * HOUR)
HORIZON = 4 * HOUR  # DESIGN.md: 1h candles are labeled 4 h on
# The last candles of an hourly series have no target yet: the price 4 h after a candle's
# close is the close of the candle opening then, five candles on, which must be in the frame.
NO_TARGET = 5


def as_loaded(ohlcv: pd.DataFrame, pair: str, timeframe: str = "1h", warm: int = 0) -> pd.DataFrame:
    """One series as `load_candles` returns it: indicators as stored (JSON and back), target.

    Indicators are computed over the whole series, as the importer stores them, and the first
    `warm` candles are then left out, as when a training range starts after the stored history.
    """
    stored = pd.Series(indicators_to_json(compute_indicators(ohlcv)), index=ohlcv.index)
    frame = pd.concat([ohlcv, indicators_from_json(stored)], axis=1).iloc[warm:]
    frame = frame.reset_index(drop=True)
    frame.insert(0, "timeframe", timeframe)
    frame.insert(0, "pair", pair)
    frame["target"] = direction_target(frame["timestamp"], frame["close"], timeframe)
    return frame


def eurusd(periods: int = 150, seed: int = 1) -> pd.DataFrame:
    """Hourly EUR/USD whose indicators are warm from the first loaded candle."""
    return as_loaded(
        hourly_candles(HISTORY_START, periods + WARM, 1.08, seed), "EUR/USD", warm=WARM
    )


def synthetic(pair: str, timeframe: str, days: int = 45) -> pd.DataFrame:
    """OHLCV of the synthetic FX generator (weekends shut), from START for `days` days."""
    start = pd.Timestamp(START, tz="UTC")
    return synthesize_candles([pair], timeframe, start, start + pd.Timedelta(days=days))[pair]


def window_ends(dataset: Dataset) -> npt.NDArray[np.int64]:
    """Row in raw_features of each sample's last candle."""
    return dataset.samples.rows + dataset.window - 1


def targets_by_key(
    dataset: Dataset, which: npt.NDArray[np.int64] | None = None
) -> dict[tuple[str, np.datetime64], float]:
    """{(series, decision time): target} of the samples, to match samples of two datasets."""
    ends = window_ends(dataset)
    series = np.empty(len(ends), dtype=object)
    for name, (lo, hi) in dataset.series_bounds.items():
        series[(ends >= lo) & (ends < hi)] = name
    picked = range(len(ends)) if which is None else which.tolist()
    return {(series[i], dataset.samples.time[i]): float(dataset.samples.target[i]) for i in picked}


def naive(stamp: pd.Timestamp) -> np.datetime64:
    moment: np.datetime64 = stamp.tz_convert("UTC").tz_localize(None).as_unit("ns").to_datetime64()
    return moment


@pytest.fixture
def two_pairs() -> pd.DataFrame:
    """200 hourly candles each of GBP/USD and EUR/USD (GBP/USD first: build_dataset sorts)."""
    return pd.concat(
        [
            as_loaded(hourly_candles(HISTORY_START, 200 + WARM, 1.27, 2), "GBP/USD", warm=WARM),
            as_loaded(hourly_candles(HISTORY_START, 200 + WARM, 1.08, 1), "EUR/USD", warm=WARM),
        ],
        ignore_index=True,
    )


# 1. Windows: views into one array, each inside one series.


def test_windows_are_views_into_one_scaled_array(two_pairs: pd.DataFrame) -> None:
    dataset = build_dataset(two_pairs, WINDOW)
    scaler = Scaler.fit(dataset.raw_features)
    windows = dataset.windows(scaler)
    assert windows.shape == (400 - WINDOW + 1, WINDOW, len(FEATURE_NAMES))
    assert windows.dtype == np.float32
    assert not windows.flags.writeable
    # A copy per window would not overlap its neighbour; a view moves one candle per row.
    assert np.shares_memory(windows[0], windows[1])
    assert windows.strides[0] == windows.strides[1]
    scaled = scaler.transform(dataset.raw_features)
    rows = dataset.samples.rows
    for k in (0, WINDOW // 2, WINDOW - 1):
        np.testing.assert_array_equal(windows[rows, k], scaled[rows + k])


def test_windows_never_cross_two_series(two_pairs: pd.DataFrame) -> None:
    dataset = build_dataset(two_pairs, WINDOW)
    assert dataset.series_bounds == {"EUR/USD 1h": (0, 200), "GBP/USD 1h": (200, 400)}
    assert dataset.pairs == ("EUR/USD", "GBP/USD")
    starts, ends = dataset.samples.rows, window_ends(dataset)
    for name, (lo, hi) in dataset.series_bounds.items():
        mine = (ends >= lo) & (ends < hi)
        assert (starts[mine] >= lo).all(), name
        # The first candle of a series has no previous close: its window starts right after.
        assert starts[mine].min() == lo + 1, name
        # The features of a series are its own, not computed across the concatenation.
        pair = name.split()[0]
        own = candle_features(two_pairs[two_pairs["pair"] == pair].reset_index(drop=True))
        np.testing.assert_array_equal(dataset.raw_features[lo:hi], own.to_numpy(np.float64))


def test_samples_carry_their_candle_target_and_times() -> None:
    frame = eurusd(150)
    dataset = build_dataset(frame, WINDOW)
    ends = window_ends(dataset)
    np.testing.assert_array_equal(dataset.samples.target, frame["target"].to_numpy()[ends])
    decided = pd.DatetimeIndex(frame["timestamp"].iloc[ends]).tz_localize(None) + HOUR
    np.testing.assert_array_equal(dataset.samples.time, decided.to_numpy())
    # A label is known no earlier than one horizon after the decision (one candle later at
    # most: the close of the candle opening then).
    delay = dataset.samples.label_end - dataset.samples.time
    assert (delay >= HORIZON.to_timedelta64()).all()
    assert (delay <= (HORIZON + HOUR).to_timedelta64()).all()
    np.testing.assert_array_equal(
        dataset.samples.last_move, np.sign(dataset.raw_features[ends, 0]).astype(np.float32)
    )
    assert not dataset.samples.from_signal.any()
    # Every candle ends a sample once a window fits after the first (no previous close),
    # except the last ones, whose target is not known inside the frame.
    np.testing.assert_array_equal(ends, np.arange(WINDOW, 150 - NO_TARGET))


def test_samples_with_non_finite_features_are_left_out() -> None:
    clean = eurusd(150)
    dirty = clean.copy()
    dirty.loc[80, "rsi_14"] = np.nan
    dirty.loc[120, "ema_12"] = 0.0  # close / ema_12 - 1 is infinite
    assert not np.isfinite(candle_features(dirty).iloc[[80, 120]].to_numpy()).all(axis=1).any()
    dataset = build_dataset(dirty, WINDOW)
    starts, ends = dataset.samples.rows, window_ends(dataset)
    for bad in (80, 120):
        assert not ((starts <= bad) & (bad <= ends)).any()
        # Only the windows holding the bad candle go: its neighbours still end/start samples.
        assert bad - 1 in ends
        assert bad + 1 in starts
    covered = dataset.raw_features[starts[:, None] + np.arange(WINDOW)]
    assert np.isfinite(covered).all()
    assert len(build_dataset(clean, WINDOW).samples) - len(dataset.samples) == 2 * WINDOW


# 2. Chronological split with purge gaps.


@st.composite
def split_cases(draw: st.DrawFn) -> tuple[Samples, float, float, np.datetime64 | None]:
    """Candle samples of one or two series on an hourly grid with gaps, signal samples at any
    minute, shuffled; a holdout and a validation fraction; maybe a `since`."""
    n = draw(st.integers(1, 120))
    steps = np.array(draw(st.lists(st.integers(1, 60), min_size=n, max_size=n)), dtype=np.int64)
    grid = np.datetime64("2026-01-05T01:00", "ns") + np.cumsum(steps) * np.timedelta64(1, "h")
    times = np.concatenate([grid] * draw(st.integers(1, 2)))
    n_signals = draw(st.integers(0, 20))
    minutes = draw(
        st.lists(st.integers(0, int(steps.sum()) * 60), min_size=n_signals, max_size=n_signals)
    )
    signal_times = grid[0] + np.array(minutes, dtype=np.int64) * np.timedelta64(1, "m")
    time = np.concatenate([times, signal_times]).astype("datetime64[ns]")
    label_hours = draw(st.sampled_from([1, 4, 24, 168]))
    order = np.array(draw(st.permutations(range(len(time)))), dtype=np.int64)
    from_signal = np.arange(len(time)) >= len(times)
    samples = Samples(
        rows=np.arange(len(time), dtype=np.int64),
        target=np.zeros(len(time), dtype=np.float32),
        time=time,
        label_end=(time + np.timedelta64(label_hours, "h")).astype("datetime64[ns]"),
        last_move=np.zeros(len(time), dtype=np.float32),
        from_signal=from_signal,
    ).take(order)
    holdout = draw(st.floats(0.01, 0.99))
    validation = draw(st.one_of(st.just(0.0), st.floats(0.01, 0.9)))
    since = draw(st.one_of(st.none(), st.sampled_from(sorted(times.tolist()))))
    return samples, holdout, validation, None if since is None else np.datetime64(since, "ns")


@settings(max_examples=300, deadline=None)
@given(split_cases())
def test_split_is_chronological_and_purged(
    case: tuple[Samples, float, float, np.datetime64 | None],
) -> None:
    samples, holdout_fraction, validation_fraction, since = case
    eligible = np.ones(len(samples), dtype=bool) if since is None else samples.time >= since
    candles = eligible & ~samples.from_signal
    since_ts = None if since is None else pd.Timestamp(since)
    if candles.sum() < 3:
        with pytest.raises(InvalidInputError, match="too few samples"):
            chronological_split(samples, holdout_fraction, validation_fraction, since_ts)
        return
    split = chronological_split(samples, holdout_fraction, validation_fraction, since_ts)
    train, validation, holdout = split.train, split.validation, split.holdout
    time, label_end = samples.time, samples.label_end
    start = naive(split.holdout_start)

    assert not set(train) & set(validation)
    assert not set(train) & set(holdout)
    assert not set(validation) & set(holdout)
    assert eligible[np.concatenate([train, validation, holdout])].all()
    # Only candle samples are validated or held out; the holdout is every one from its start.
    assert not samples.from_signal[validation].any()
    assert not samples.from_signal[holdout].any()
    np.testing.assert_array_equal(holdout, np.flatnonzero(candles & (time >= start)))
    assert time[holdout].min() == start
    assert len(holdout) >= holdout_fraction * candles.sum() - 1e-6
    # Everything learned from is decided, and its label known, before the holdout starts.
    for part in (train, validation):
        assert (time[part] < start).all()
        assert (label_end[part] < start).all()
    if len(validation):
        assert (label_end[train] < time[validation].min()).all()
        assert (time[train] < time[validation].min()).all()
    else:
        # Without validation nothing is purged that did not have to be.
        np.testing.assert_array_equal(train, np.flatnonzero(eligible & (label_end < start)))


def test_real_dataset_split_is_purged(two_pairs: pd.DataFrame) -> None:
    samples = build_dataset(two_pairs, WINDOW).samples
    split = chronological_split(samples, 0.2, 0.2)
    start = naive(split.holdout_start)
    assert min(len(split.train), len(split.validation), len(split.holdout)) > 0
    assert samples.label_end[split.train].max() < samples.time[split.validation].min()
    assert samples.label_end[split.validation].max() < start
    # The purge drops the samples decided within one horizon (4 h, or 5 h counting the
    # horizon candle's own length) before each of the two later parts, for each pair.
    purged = len(samples) - len(split.train) - len(split.validation) - len(split.holdout)
    assert 2 * 2 * 4 <= purged <= 2 * 2 * 5
    assert split.describe(samples)["holdout"]["samples"] == len(split.holdout)


def test_signal_examples_only_ever_train(two_pairs: pd.DataFrame) -> None:
    created = pd.date_range("2026-01-05 03:30", "2026-01-13 06:30", freq="3h", tz="UTC")
    assert created[-1] < two_pairs["timestamp"].max()
    signals = pd.DataFrame(
        {
            "pair": "EUR/USD",
            "timeframe": "1h",
            "signal": "buy",
            "actual_outcome": "win",
            "created_at": created,
        }
    )
    samples = build_dataset(two_pairs, WINDOW, signals).samples
    split = chronological_split(samples, 0.25, 0.25)
    assert samples.from_signal.sum() > 20
    assert samples.from_signal[split.train].sum() > 0
    assert not samples.from_signal[split.validation].any()
    assert not samples.from_signal[split.holdout].any()
    # Signals made during the holdout exist, and are left out rather than trained on.
    assert (samples.from_signal & (samples.time >= naive(split.holdout_start))).any()


def test_since_drops_earlier_samples(two_pairs: pd.DataFrame) -> None:
    samples = build_dataset(two_pairs, WINDOW).samples
    since = pd.Timestamp(samples.time[100], tz="UTC")
    split = chronological_split(samples, 0.2, 0.1, since=since)
    used = np.concatenate([split.train, split.validation, split.holdout])
    assert (samples.time[used] >= naive(since)).all()
    assert (samples.time < naive(since)).sum() >= 100
    # The holdout is the newest fifth of what is left (two pairs: ties by two), not of all.
    left = int((samples.time >= naive(since)).sum())
    assert 0.2 * left <= len(split.holdout) <= 0.2 * left + 2
    assert len(split.holdout) < 0.2 * len(samples)
    # A naive `since` means UTC.
    naive_split = chronological_split(samples, 0.2, 0.1, since=since.tz_localize(None))
    np.testing.assert_array_equal(naive_split.train, split.train)


def test_too_few_samples_raise_invalid_input() -> None:
    samples = build_dataset(eurusd(150), WINDOW).samples
    with pytest.raises(InvalidInputError, match="too few samples to split: 2"):
        chronological_split(samples.take(np.arange(2)), 0.2)
    with pytest.raises(InvalidInputError, match="too few samples to split: 0"):
        chronological_split(samples, 0.2, since=pd.Timestamp("2027-01-01", tz="UTC"))
    # A frame with windows but no known target yet has no samples at all.
    no_targets = build_dataset(eurusd(WINDOW + 4), WINDOW)
    assert len(no_targets.samples) == 0
    with pytest.raises(InvalidInputError, match="too few samples"):
        chronological_split(no_targets.samples, 0.2)


@pytest.mark.parametrize(
    ("holdout", "validation"), [(0.0, 0.0), (1.0, 0.0), (0.2, 1.0), (0.2, -0.1)]
)
def test_fractions_out_of_range_raise_invalid_input(holdout: float, validation: float) -> None:
    samples = build_dataset(eurusd(150), WINDOW).samples
    with pytest.raises(InvalidInputError, match="fractions"):
        chronological_split(samples, holdout, validation)


def test_too_few_candles_for_a_window_raise_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="no candles"):
        build_dataset(eurusd(150).iloc[:0], WINDOW)
    with pytest.raises(InvalidInputError, match=f"need at least {WINDOW} candles"):
        build_dataset(eurusd(150).iloc[: WINDOW - 1], WINDOW)


# 3. The scaler: fit on training candles only, saved with the model.


def test_scaler_is_fit_only_on_candles_of_training_windows() -> None:
    ohlcv = hourly_candles(HISTORY_START, 200 + WARM, 1.08, 1)
    dataset = build_dataset(as_loaded(ohlcv, "EUR/USD", warm=WARM), WINDOW)
    split = chronological_split(dataset.samples, 0.25, 0.2)
    scaler = scaler_for(dataset, split)
    first = int(dataset.samples.rows[split.train].min())
    last = int(window_ends(dataset)[split.train].max())
    assert scaler == Scaler.fit(dataset.raw_features[first : last + 1])

    def perturbed(position: int) -> Scaler:
        """The scaler after prices and volumes from loaded candle `position` on change."""
        changed = ohlcv.copy()
        later = changed.index >= WARM + position
        noise = np.random.default_rng(5).uniform(1.0, 1.3, later.sum())
        for column in ("open", "high", "low", "close"):
            changed.loc[later, column] *= noise
        changed.loc[later, "volume"] *= 7.0
        again = build_dataset(as_loaded(changed, "EUR/USD", warm=WARM), WINDOW)
        assert not np.allclose(again.raw_features[position:], dataset.raw_features[position:])
        again_split = chronological_split(again.samples, 0.25, 0.2)
        np.testing.assert_array_equal(again_split.train, split.train)
        return scaler_for(again, again_split)

    assert perturbed(last + 1) == scaler  # validation and holdout candles: no effect
    assert perturbed(last) != scaler  # the last candle a training window covers: an effect


def test_scaler_round_trips_through_json() -> None:
    features = np.random.default_rng(0).normal(3.0, 2.0, (50, 4))
    features[7, 2] = np.nan  # rows with a non-finite feature are not fit on
    features[:, 3] = 1.5  # a constant feature gets std 1, not a division by zero
    scaler = Scaler.fit(features)
    assert scaler.std[3] == 1.0
    assert scaler.mean[0] == pytest.approx(np.delete(features, 7, axis=0)[:, 0].mean())
    again = Scaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert again == scaler
    scaled = again.transform(features)
    assert scaled.dtype == np.float32
    np.testing.assert_array_equal(scaled, scaler.transform(features))
    fitted = np.delete(scaled, 7, axis=0)
    assert fitted.mean(axis=0) == pytest.approx([0, 0, 0, 0], abs=1e-6)
    assert fitted[:, :3].std(axis=0) == pytest.approx([1, 1, 1], abs=1e-5)


def test_scaler_without_finite_rows_or_training_samples_raises() -> None:
    with pytest.raises(InvalidInputError, match="no finite feature rows"):
        Scaler.fit(np.full((5, 3), np.nan))
    dataset = build_dataset(eurusd(150), WINDOW)
    split = chronological_split(dataset.samples, 0.99)
    assert len(split.train) == 0
    with pytest.raises(InvalidInputError, match="no training samples"):
        scaler_for(dataset, split)


# 4. Lineage: the content hash.


def test_content_hash_is_stable_and_follows_every_price(two_pairs: pd.DataFrame) -> None:
    digest = build_dataset(two_pairs, WINDOW).content_hash()
    assert build_dataset(two_pairs.copy(), WINDOW).content_hash() == digest
    shuffled = two_pairs.sample(frac=1.0, random_state=3)
    assert build_dataset(shuffled, WINDOW).content_hash() == digest
    changed = two_pairs.copy()
    changed["close"] = changed["close"].where(changed.index != 250, changed["close"] * 1.0001)
    assert build_dataset(changed, WINDOW).content_hash() != digest
    assert build_dataset(two_pairs, WINDOW + 1).content_hash() != digest


# 5. Labeled trading signals as extra examples.


def test_signal_examples_say_which_way_the_market_went() -> None:
    frame = eurusd(150)  # hourly from Monday 2026-01-05 00:00
    rows = [
        ("EUR/USD", "1h", "buy", "win", "2026-01-06 12:30", 1.0),
        ("EUR/USD", "1h", "sell", "win", "2026-01-06 13:00", 0.0),
        ("EUR/USD", "1h", "buy", "loss", "2026-01-06 14:10", 0.0),
        ("EUR/USD", "1h", "sell", "loss", "2026-01-06 15:59", 1.0),
        ("EUR/USD", "1h", "hold", "win", "2026-01-06 16:30", None),
        ("EUR/USD", "1h", "hold", "loss", "2026-01-06 16:40", None),
        ("EUR/USD", "1h", "buy", "breakeven", "2026-01-06 17:30", None),
        ("EUR/USD", "1h", "sell", "breakeven", "2026-01-06 17:40", None),
        ("GBP/USD", "1h", "buy", "win", "2026-01-06 18:30", None),  # no such series
        ("EUR/USD", "4h", "buy", "win", "2026-01-06 19:30", None),  # nor this one
        ("EUR/USD", "1h", "buy", "win", "2026-01-05 06:30", None),  # before a full window
    ]
    signals = pd.DataFrame(
        {
            "pair": [r[0] for r in rows],
            "timeframe": [r[1] for r in rows],
            "signal": [r[2] for r in rows],
            "actual_outcome": [r[3] for r in rows],
            "created_at": pd.to_datetime([r[4] for r in rows], utc=True),
        }
    )
    dataset = build_dataset(frame, WINDOW, signals)
    examples = dataset.samples.take(dataset.samples.from_signal)
    np.testing.assert_array_equal(examples.target, [1.0, 0.0, 0.0, 1.0])
    created = pd.DatetimeIndex(signals["created_at"][:4]).tz_localize(None)
    np.testing.assert_array_equal(examples.time, created.to_numpy())
    # Known once the horizon candle (opened by created + horizon at the latest) has closed.
    np.testing.assert_array_equal(examples.label_end, (created + HORIZON + HOUR).to_numpy())
    # Each example's window ends at the newest candle closed when the signal was made.
    last_candle = frame["timestamp"].iloc[window_ends(dataset)[dataset.samples.from_signal]]
    expected = ["2026-01-06 11:00", "2026-01-06 12:00", "2026-01-06 13:00", "2026-01-06 14:00"]
    assert list(last_candle) == list(pd.to_datetime(expected, utc=True))
    # The candle samples are the same with or without signals.
    plain = build_dataset(frame, WINDOW).samples
    mixed = dataset.samples.take(~dataset.samples.from_signal)
    np.testing.assert_array_equal(mixed.rows, plain.rows)
    np.testing.assert_array_equal(mixed.target, plain.target)


# 6. No look into the future.


def with_indicators(ohlcv: pd.DataFrame) -> pd.DataFrame:
    """The model inputs straight from OHLCV: indicators, then features."""
    return candle_features(pd.concat([ohlcv, compute_indicators(ohlcv)], axis=1))


def next_close_leak(candles: pd.DataFrame) -> pd.DataFrame:
    close = candles["close"]
    return with_indicators(candles).assign(log_return=np.log(close.shift(-1) / close))


def centered_mean_leak(candles: pd.DataFrame) -> pd.DataFrame:
    smooth = candles["close"].rolling(5, center=True, min_periods=1).mean()
    return with_indicators(candles).assign(sma_20_gap=candles["close"] / smooth - 1.0)


def whole_series_zscore_leak(candles: pd.DataFrame) -> pd.DataFrame:
    volume = candles["volume"]
    return with_indicators(candles).assign(
        log_volume_change=(volume - volume.mean()) / volume.std()
    )


@pytest.mark.parametrize(
    ("leaky", "column"),
    [
        (next_close_leak, "log_return"),
        (centered_mean_leak, "sma_20_gap"),
        (whole_series_zscore_leak, "log_volume_change"),
    ],
)
def test_a_feature_that_reads_later_candles_is_caught(
    leaky: Callable[[pd.DataFrame], pd.DataFrame], column: str
) -> None:
    ohlcv = synthetic("EUR/USD", "1h", days=14)
    assert_causal(with_indicators, ohlcv)  # the same features without the leak pass
    with pytest.raises(LookaheadError, match=column):
        assert_causal(leaky, ohlcv)


@pytest.mark.parametrize("cut", [30, 61, 150, None])
def test_real_features_and_indicators_are_causal(cut: int | None) -> None:
    for pair in ("EUR/USD", "USD/JPY"):
        ohlcv = synthetic(pair, "1h", days=14)
        assert_causal(with_indicators, ohlcv, cut)
        assert_causal(candle_features, as_loaded(ohlcv, pair), cut)


def rescaled_from(ohlcv: pd.DataFrame, moment: pd.Timestamp, seed: int) -> pd.DataFrame:
    """The candles with every price of those opened after `moment` scaled at random."""
    changed = ohlcv.copy()
    later = changed["timestamp"] > moment
    factor = np.random.default_rng(seed).uniform(0.5, 1.5, int(later.sum()))
    for column in ("open", "high", "low", "close"):
        changed.loc[later, column] *= factor
    return changed


def test_a_target_uses_no_price_after_its_label_end() -> None:
    """Prices of candles opened after a sample's label end never change its target.

    (Whether the target is known yet does depend on a later candle: by DESIGN.md's rule the
    label stays pending until a candle at or after the label end arrives, which over a
    weekend is Sunday's first candle. Its price is not used.)
    """
    ohlcv = synthetic("EUR/USD", "1h", days=21)
    dataset = build_dataset(as_loaded(ohlcv, "EUR/USD"), WINDOW)
    targets = targets_by_key(dataset)
    checked = flipped = 0
    for i in range(0, len(dataset.samples), 29):
        key = ("EUR/USD 1h", dataset.samples.time[i])
        label_end = pd.Timestamp(dataset.samples.label_end[i], tz="UTC")
        after = rescaled_from(ohlcv, label_end, seed=i)
        again = targets_by_key(build_dataset(as_loaded(after, "EUR/USD"), WINDOW))
        assert again[key] == targets[key], key
        checked += 1
        # The same change from the candle opening one horizon after the decision on reaches
        # the price the target is decided on.
        decided = pd.Timestamp(dataset.samples.time[i], tz="UTC")
        earlier = rescaled_from(ohlcv, decided + HORIZON - HOUR, seed=i)
        flipped += (
            targets_by_key(build_dataset(as_loaded(earlier, "EUR/USD"), WINDOW)).get(key)
            != targets[key]
        )
    assert checked >= 10
    assert flipped >= 3


def training_labels_known_by_holdout_start(frames: dict[tuple[str, str], pd.DataFrame]) -> None:
    """Each training target comes out the same from only the candles closed by the holdout's
    start: no training label depends on a price the holdout period produced."""
    candles = pd.concat([as_loaded(f, p, tf) for (p, tf), f in frames.items()], ignore_index=True)
    dataset = build_dataset(candles, WINDOW)
    split = chronological_split(dataset.samples, 0.2)
    start = split.holdout_start
    closed = [
        as_loaded(f[f["timestamp"] + step_offset(tf) <= start], p, tf)
        for (p, tf), f in frames.items()
    ]
    known = targets_by_key(build_dataset(pd.concat(closed, ignore_index=True), WINDOW))
    train = targets_by_key(dataset, split.train)
    assert len(train) > 100
    late = {key: target for key, target in train.items() if known.get(key) != target}
    assert not late, f"{len(late)} training labels need candles after {start}: {list(late)[:3]}"


def test_training_labels_are_known_when_the_holdout_starts() -> None:
    frames = {
        ("EUR/USD", "1h"): synthetic("EUR/USD", "1h"),
        ("GBP/USD", "1h"): synthetic("GBP/USD", "1h"),
    }
    training_labels_known_by_holdout_start(frames)


def test_training_labels_are_known_when_the_holdout_starts_across_timeframes() -> None:
    frames = {
        ("EUR/USD", "1h"): synthetic("EUR/USD", "1h"),
        ("EUR/USD", "4h"): synthetic("EUR/USD", "4h"),
    }
    training_labels_known_by_holdout_start(frames)
