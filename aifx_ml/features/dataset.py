"""Training datasets: candle windows over every series, chronological splits, a scaler.

All series are concatenated into one (candles, features) array so that every window is a
zero-copy view into it; a window is usable only if it lies inside one series with finite
features. A sample is (window row, target, time, label end): the label of a sample ending at
candle i is decided by prices up to its *label end* — when the horizon candle (the last one
opened by i's close time + horizon) has closed — and a purge keeps every training label end
before the first holdout sample, so no label leaks across, even between timeframes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from aifx_ml.errors import InvalidInputError
from aifx_ml.features.engineering import FEATURE_NAMES, candle_features
from aifx_ml.features.windows import WINDOW_LENGTH, build_windows
from aifx_ml.markets import candle_close_times, horizon, iter_series, step_offset

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
DT = npt.NDArray[np.datetime64]


@dataclass(frozen=True)
class Scaler:
    """Per-feature standardization fit on training candles only; saved with the model."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, features: npt.NDArray[np.floating]) -> Scaler:
        finite = features[np.isfinite(features).all(axis=1)]
        if len(finite) == 0:
            raise InvalidInputError("no finite feature rows to fit the scaler on")
        std = finite.std(axis=0)
        return cls(tuple(finite.mean(axis=0).tolist()), tuple(np.where(std > 0, std, 1.0).tolist()))

    def transform(self, features: npt.NDArray[np.floating]) -> F32:
        scaled = (features - np.asarray(self.mean)) / np.asarray(self.std)
        return np.ascontiguousarray(scaled, dtype=np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, list[float]]) -> Scaler:
        return cls(tuple(data["mean"]), tuple(data["std"]))


@dataclass
class Samples:
    """Parallel arrays, one entry per training example."""

    rows: I64  # window row in Dataset.windows
    target: F32  # 1.0 up, 0.0 down
    time: DT  # when the example's decision is made (its last candle's close)
    label_end: DT  # when its label is known: the horizon candle has closed
    last_move: F32  # +1/-1/0: the last candle's direction (for the persistence baseline)
    from_signal: npt.NDArray[np.bool_]  # added from a labeled trading signal

    def take(self, which: npt.NDArray[np.bool_] | npt.NDArray[np.intp] | I64) -> Samples:
        return Samples(*(getattr(self, f)[which] for f in self.__dataclass_fields__))

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class Dataset:
    """Raw features of every candle, sample arrays, and provenance."""

    raw_features: npt.NDArray[np.float64]  # (candles, features), unscaled
    candle_time: DT  # open time of each candle
    window: int
    samples: Samples
    feature_names: tuple[str, ...] = FEATURE_NAMES
    pairs: tuple[str, ...] = ()
    timeframes: tuple[str, ...] = ()
    series_bounds: dict[str, tuple[int, int]] = field(default_factory=dict)

    def windows(self, scaler: Scaler) -> F32:
        """Scaled windows (a view over one scaled copy of the candle features)."""
        return build_windows(scaler.transform(self.raw_features), self.window)

    def time_range(self) -> dict[str, str]:
        return {
            "start": pd.Timestamp(self.candle_time.min(), tz="UTC").isoformat(),
            "end": pd.Timestamp(self.candle_time.max(), tz="UTC").isoformat(),
        }

    def content_hash(self) -> str:
        """SHA-256 of the features, the samples and their order: same data, same hash."""
        digest = hashlib.sha256()
        digest.update(json.dumps([self.feature_names, self.window, self.series_bounds]).encode())
        digest.update(np.ascontiguousarray(self.raw_features).tobytes())
        for name in ("rows", "target", "time", "from_signal"):
            digest.update(np.ascontiguousarray(getattr(self.samples, name)).tobytes())
        return digest.hexdigest()


def build_dataset(
    candles: pd.DataFrame, window: int = WINDOW_LENGTH, signals: pd.DataFrame | None = None
) -> Dataset:
    """Samples from candles (as `aifx_ml.data.candles.load_candles` returns them).

    Every candle with a known target whose window lies inside its series with finite
    features is a sample. Labeled `signals` (pair, timeframe, signal, actual_outcome,
    created_at) add examples: a buy that won or a sell that lost says "up", the opposite
    "down"; holds and breakevens say nothing about direction and are left out.
    """
    if candles.empty:
        raise InvalidInputError("no candles to build a dataset from")
    candles = candles.sort_values(["pair", "timeframe", "timestamp"], kind="stable").reset_index(
        drop=True
    )
    parts, bounds, samples = [], {}, []
    offset = 0
    for pair, timeframe, positions in iter_series(candles):
        series = candles.iloc[positions]
        feats = candle_features(series).to_numpy(np.float64)
        parts.append(feats)
        bounds[f"{pair} {timeframe}"] = (offset, offset + len(series))
        samples.append(_candle_samples(series, feats, offset, window, timeframe))
        if signals is not None and len(signals):
            mine = signals[(signals["pair"] == pair) & (signals["timeframe"] == timeframe)]
            samples.append(_signal_samples(series, feats, mine, offset, window, timeframe))
        offset += len(series)
    raw = np.concatenate(parts)
    if offset < window:
        raise InvalidInputError(f"need at least {window} candles for one window, got {offset}")
    merged = Samples(
        *(np.concatenate([getattr(s, f) for s in samples]) for f in Samples.__dataclass_fields__)
    )
    order = np.argsort(merged.time, kind="stable")
    return Dataset(
        raw_features=raw,
        candle_time=candles["timestamp"].to_numpy("datetime64[ns]"),
        window=window,
        samples=merged.take(order),
        pairs=tuple(sorted(candles["pair"].unique())),
        timeframes=tuple(sorted(candles["timeframe"].unique())),
        series_bounds=bounds,
    )


def _usable_ends(feats: npt.NDArray[np.float64], window: int) -> npt.NDArray[np.bool_]:
    """Per candle: does the window ending here lie in the series with all features finite?"""
    bad = np.cumsum(~np.isfinite(feats).all(axis=1))
    ok = np.zeros(len(feats), dtype=bool)
    if len(feats) >= window:
        before = np.concatenate([[0], bad[:-window]])
        ok[window - 1 :] = (bad[window - 1 :] - before) == 0
    return ok


def _candle_samples(
    series: pd.DataFrame, feats: npt.NDArray[np.float64], offset: int, window: int, timeframe: str
) -> Samples:
    target = series["target"].to_numpy(np.float64)
    keep = _usable_ends(feats, window) & np.isfinite(target)
    ends = np.flatnonzero(keep)
    stamps = pd.DatetimeIndex(series["timestamp"].iloc[ends])
    decided = candle_close_times(stamps, timeframe)
    return Samples(
        rows=(ends + offset - (window - 1)).astype(np.int64),
        target=target[ends].astype(np.float32),
        time=_naive(decided),
        label_end=_naive(decided + horizon(timeframe) + step_offset(timeframe)),
        last_move=np.sign(feats[ends, 0]).astype(np.float32),
        from_signal=np.zeros(len(ends), dtype=bool),
    )


def _signal_samples(
    series: pd.DataFrame,
    feats: npt.NDArray[np.float64],
    signals: pd.DataFrame,
    offset: int,
    window: int,
    timeframe: str,
) -> Samples:
    direction = np.select(
        [
            ((signals["signal"] == "buy") & (signals["actual_outcome"] == "win"))
            | ((signals["signal"] == "sell") & (signals["actual_outcome"] == "loss")),
            ((signals["signal"] == "buy") & (signals["actual_outcome"] == "loss"))
            | ((signals["signal"] == "sell") & (signals["actual_outcome"] == "win")),
        ],
        [1.0, 0.0],
        np.nan,
    )
    created = pd.DatetimeIndex(pd.to_datetime(signals["created_at"], utc=True))
    # The newest candle whose close was known when the signal was made.
    closes = candle_close_times(pd.DatetimeIndex(series["timestamp"]), timeframe)
    ends = np.searchsorted(_naive(closes), _naive(created), side="right") - 1
    usable = _usable_ends(feats, window)
    keep = np.isfinite(direction) & (ends >= 0)
    keep[keep] &= usable[ends[keep]]
    ends = ends[keep]
    return Samples(
        rows=(ends + offset - (window - 1)).astype(np.int64),
        target=direction[keep].astype(np.float32),
        time=_naive(created[keep]),
        label_end=_naive(created[keep] + horizon(timeframe) + step_offset(timeframe)),
        last_move=np.sign(feats[ends, 0]).astype(np.float32),
        from_signal=np.ones(len(ends), dtype=bool),
    )


@dataclass(frozen=True)
class Split:
    """Which samples train, validate (early stopping) and are held out (evaluation only)."""

    train: I64
    validation: I64
    holdout: I64
    holdout_start: pd.Timestamp

    def describe(self, samples: Samples) -> dict[str, Any]:
        def span(idx: I64) -> dict[str, Any]:
            if len(idx) == 0:
                return {"samples": 0}
            return {
                "samples": int(len(idx)),
                "first": pd.Timestamp(samples.time[idx].min(), tz="UTC").isoformat(),
                "last": pd.Timestamp(samples.time[idx].max(), tz="UTC").isoformat(),
            }

        return {
            "train": span(self.train),
            "validation": span(self.validation),
            "holdout": span(self.holdout),
        }


def chronological_split(
    samples: Samples,
    holdout_fraction: float = 0.2,
    validation_fraction: float = 0.0,
    since: pd.Timestamp | None = None,
) -> Split:
    """Split samples by time: [train | purge | validation | purge | holdout].

    Only candle samples are held out (signal examples may only train). A training or
    validation sample whose label end is not strictly before the next part's first sample
    time is purged. `since` drops samples decided before it (daily fine-tuning uses only
    data its parent never saw).
    """
    if not 0 < holdout_fraction < 1 or not 0 <= validation_fraction < 1:
        raise InvalidInputError("holdout and validation fractions must be in (0, 1) and [0, 1)")
    eligible = np.ones(len(samples), dtype=bool)
    if since is not None:
        eligible &= samples.time >= naive_utc(since)
    candle_times = np.sort(samples.time[eligible & ~samples.from_signal])
    if len(candle_times) < 3:
        raise InvalidInputError(f"too few samples to split: {len(candle_times)}")
    holdout_start = candle_times[int(np.floor(len(candle_times) * (1 - holdout_fraction)))]
    holdout = eligible & ~samples.from_signal & (samples.time >= holdout_start)
    before = eligible & (samples.label_end < holdout_start) & (samples.time < holdout_start)
    validation = np.zeros(len(samples), dtype=bool)
    if validation_fraction > 0:
        train_times = np.sort(samples.time[before & ~samples.from_signal])
        if len(train_times) >= 3:
            validation_start = train_times[
                int(np.floor(len(train_times) * (1 - validation_fraction)))
            ]
            validation = before & ~samples.from_signal & (samples.time >= validation_start)
            before &= samples.label_end < validation_start
    return Split(
        train=np.flatnonzero(before),
        validation=np.flatnonzero(validation),
        holdout=np.flatnonzero(holdout),
        holdout_start=pd.Timestamp(holdout_start, tz="UTC"),
    )


def scaler_for(dataset: Dataset, split: Split) -> Scaler:
    """Fit the scaler on the candles the training windows cover, and nothing after them."""
    rows = dataset.samples.rows[split.train]
    if len(rows) == 0:
        raise InvalidInputError("no training samples to fit the scaler on")
    covered = np.zeros(len(dataset.raw_features), dtype=bool)
    starts = np.unique(rows)
    # Mark [start, start + window) for every training window without a Python loop per row.
    marks = np.zeros(len(covered) + 1, dtype=np.int64)
    np.add.at(marks, starts, 1)
    np.add.at(marks, starts + dataset.window, -1)
    covered = np.cumsum(marks[:-1]) > 0
    return Scaler.fit(dataset.raw_features[covered])


def _naive(stamps: pd.DatetimeIndex) -> DT:
    return stamps.tz_convert("UTC").tz_localize(None).to_numpy("datetime64[ns]")


def naive_utc(stamp: pd.Timestamp) -> np.datetime64:
    """A moment as naive UTC nanoseconds, comparable with sample times (naive: UTC)."""
    ts = pd.Timestamp(stamp)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    moment: np.datetime64 = ts.tz_localize(None).as_unit("ns").to_datetime64()
    return moment
