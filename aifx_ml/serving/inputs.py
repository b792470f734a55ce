"""The input of one prediction: the newest `window` candles of a series, as features.

Either the stored candles (the default: their indicators were computed at import) or candles
sent with the request (checked like an imported row, indicators computed here, which needs a
warm-up before the window). A candle counts once it has closed by `now`, exactly as training
saw them. The service's own view of the market is the stored candles: a signal computed on a
caller's candles is unverified, and its entry price is the stored close where there is one.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import Engine, select

from aifx_ml.data.validation import validate_candles
from aifx_ml.db.engine import session_factory
from aifx_ml.db.models import MarketData
from aifx_ml.db.notices import series_of
from aifx_ml.errors import InvalidInputError
from aifx_ml.features.dataset import Scaler
from aifx_ml.features.engineering import candle_features
from aifx_ml.features.indicators import compute_indicators, indicators_from_json
from aifx_ml.markets import newest_closed_open, step_offset

WARMUP = 60  # candles TA-Lib needs before every indicator has a value (SMA 50, ADX 14)


@dataclass(frozen=True)
class InputWindow:
    """Unscaled features of the newest `window` candles, and where they end."""

    features: npt.NDArray[np.float64]  # (window, features)
    last_open: pd.Timestamp
    closed_at: pd.Timestamp  # when the newest candle closed: the signal's moment
    entry_price: float  # its close
    _scaled: dict[str, npt.NDArray[np.float32]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def scaled(self, version: str, scaler: Scaler) -> npt.NDArray[np.float32]:
        """The features scaled by `version`'s scaler, computed once per window and version
        (read-only): the requests between two candles share it."""
        found = self._scaled.get(version)
        if found is None:
            found = scaler.transform(self.features).astype(np.float32)
            found.flags.writeable = False
            self._scaled[version] = found  # two threads racing compute the same array
        return found


def stored_window(
    engine: Engine, pair: str, timeframe: str, window: int, now: datetime
) -> InputWindow:
    """The newest `window` stored candles of a series closed by `now`."""
    last_open = pd.Timestamp(now) - step_offset(timeframe)
    with session_factory(engine)() as session:
        rows = session.execute(
            select(
                MarketData.timestamp,
                MarketData.open,
                MarketData.high,
                MarketData.low,
                MarketData.close,
                MarketData.volume,
                MarketData.technical_indicators,
            )
            .where(
                MarketData.pair == pair,
                MarketData.timeframe == timeframe,
                MarketData.timestamp <= last_open.to_pydatetime(),
            )
            .order_by(MarketData.timestamp.desc())
            .limit(window + 1)  # one more: returns need the previous close
        ).all()
    if not rows:
        raise InvalidInputError(f"no stored {pair} {timeframe} candles closed by {now.isoformat()}")
    frame = pd.DataFrame(
        rows[::-1],
        columns=["timestamp", "open", "high", "low", "close", "volume", "technical_indicators"],
    )
    indicators = indicators_from_json(frame.pop("technical_indicators"))
    return _window(pd.concat([frame, indicators], axis=1), timeframe, window, f"{pair} {timeframe}")


def request_window(candles: pd.DataFrame, timeframe: str, window: int) -> InputWindow:
    """The window from candles sent with a request (timestamp, open, high, low, close[, volume]),
    indicators computed over them: at least `window + WARMUP` candles are needed."""
    need = window + WARMUP
    if len(candles) < need:
        raise InvalidInputError(
            f"need at least {need} candles ({window} for the window and {WARMUP} to warm the "
            f"indicators up), got {len(candles)}"
        )
    frame = candles.sort_values("timestamp").reset_index(drop=True)
    if frame["timestamp"].duplicated().any():
        raise InvalidInputError("candles repeat a timestamp")
    if "volume" not in frame:
        frame["volume"] = 0.0
    frame = pd.concat([frame, compute_indicators(frame)], axis=1)
    return _window(frame, timeframe, window, "the candles sent")


def check_request_candles(candles: pd.DataFrame, pair: str, timeframe: str, now: datetime) -> None:
    """Candles sent with a request pass the import's row rules (finite prices > 0, high and
    low around open and close, on the timeframe's grid, not after `now`), or InvalidInputError
    names the first one that does not."""
    raw = candles.assign(timestamp=[pd.Timestamp(t).isoformat() for t in candles["timestamp"]])
    if "volume" not in raw:
        raw["volume"] = 0.0
    rows = raw.reset_index(drop=True).rename_axis("row")  # as the import reader numbers them
    rejected = validate_candles(rows, pair, timeframe, now).rejected
    if len(rejected):
        row = int(rejected.index[0])
        more = f" ({len(rejected) - 1} more refused)" if len(rejected) > 1 else ""
        raise InvalidInputError(
            f"candle {row} ({raw['timestamp'].iloc[row]}): {rejected['reason'].iloc[0]}{more}"
        )


def stored_close(
    engine: Engine, pair: str, timeframe: str, open_time: pd.Timestamp
) -> float | None:
    """The stored close of the candle of a series that opened at `open_time` (None: none)."""
    with engine.connect() as conn:
        found = conn.execute(
            select(MarketData.close).where(
                MarketData.pair == pair,
                MarketData.timeframe == timeframe,
                MarketData.timestamp == open_time.to_pydatetime(),
            )
        ).scalar_one_or_none()
    return None if found is None else float(found)


def _window(frame: pd.DataFrame, timeframe: str, window: int, label: str) -> InputWindow:
    features = candle_features(frame).to_numpy(np.float64)[-window:]
    if len(features) < window or not np.isfinite(features).all():
        raise InvalidInputError(
            f"{label}: the newest {window} candles do not all have complete features "
            f"(got {len(frame)} candles; indicators need a warm-up)"
        )
    last_open = pd.Timestamp(frame["timestamp"].iloc[-1])
    last_open = last_open.tz_localize("UTC") if last_open.tzinfo is None else last_open
    return InputWindow(
        features=features,
        last_open=last_open,
        closed_at=last_open + step_offset(timeframe),
        entry_price=float(frame["close"].iloc[-1]),
    )


class SeriesChanges:
    """What this process has heard of changes to stored candles, per series.

    `changed(payload)` is called for each announcement on the market-data channel (this
    process's commits, and on PostgreSQL every process's through a `db.notices.Listener`);
    `listening()` / `deaf()` when that listener starts and stops hearing. `token(pair,
    timeframe)` is equal at two moments only if nothing was announced for the series in
    between *and* the listener heard everything meanwhile; it is None while not listening
    (then nothing can be known without asking the database).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epochs = itertools.count()
        self._epoch: int | None = None
        self._counts: dict[tuple[str, str], int] = {}

    def listening(self) -> None:
        with self._lock:
            self._epoch = next(self._epochs)  # tokens from before the gap never match again

    def deaf(self) -> None:
        with self._lock:
            self._epoch = None

    def changed(self, payload: str) -> None:
        series = series_of(payload)
        with self._lock:
            self._counts[series] = self._counts.get(series, 0) + 1

    def token(self, pair: str, timeframe: str) -> tuple[int, int] | None:
        with self._lock:
            if self._epoch is None:
                return None
            return self._epoch, self._counts.get((pair, timeframe), 0)


@dataclass(frozen=True)
class _Asked:
    """The answer of one question for a series' newest window."""

    began: float  # monotonic, when the question began
    window: InputWindow
    token: tuple[int, int] | None  # SeriesChanges' token just before asking
    newest_possible: pd.Timestamp | None  # the grid's newest closed candle then


class WindowCache:
    """The newest window per (pair, timeframe, length), reused until a newer candle arrives.

    A window that already ends at the newest candle the grid allows is used as it is; otherwise
    the database is asked only for the newest candle's open time (one indexed row), and the
    features are rebuilt only when that changed. A series answers its requests between two
    candles from memory.

    When the window cannot end at the grid's newest candle (a weekend, a feed that is late),
    a request must ask, unless `changes` (a `SeriesChanges` that is listening) says no candle
    of the series was stored since the last question and the grid's newest candle is still
    the same: then that answer stands (it is checked again after `recheck_seconds` in any
    case). Without `changes`, or while it is not listening, every such request asks.
    Concurrent requests for one series then share one question: a request that waited while
    another asked takes that answer if the asking began after it arrived (it is as fresh as
    its own would have been), so a burst of requests costs one query, not one pooled
    connection each.
    """

    def __init__(
        self,
        engine: Engine,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        changes: SeriesChanges | None = None,
        recheck_seconds: float = 10.0,
    ) -> None:
        self._engine = engine
        self._monotonic = monotonic
        self._changes, self._recheck = changes, recheck_seconds
        self._windows: dict[tuple[str, str, int], InputWindow] = {}
        self._lock = threading.Lock()
        self._asking: dict[tuple[str, str, int], threading.Lock] = {}
        self._asked: dict[tuple[str, str, int], _Asked] = {}

    def in_memory(
        self, pair: str, timeframe: str, window: int, now: datetime
    ) -> InputWindow | None:
        """The window `get` would give if it needs no question (None: it must ask)."""
        key = (pair, timeframe, window)
        cached = self._windows.get(key)
        newest_possible = newest_closed_open(pd.Timestamp(now), timeframe)
        if cached is not None and cached.last_open == newest_possible:
            return cached  # it already ends at the newest candle there can be
        asked = self._asked.get(key)
        if (
            asked is not None
            and asked.token is not None
            and newest_possible is not None
            and asked.newest_possible == newest_possible
            and self._changes is not None
            and self._changes.token(pair, timeframe) == asked.token
            and self._monotonic() - asked.began < self._recheck
        ):
            return asked.window  # nothing stored for the series since it was asked
        return None

    def get(self, pair: str, timeframe: str, window: int, now: datetime) -> InputWindow:
        key = (pair, timeframe, window)
        cached = self.in_memory(pair, timeframe, window, now)
        if cached is not None:
            return cached
        arrived = self._monotonic()
        with self._lock:
            asking = self._asking.setdefault(key, threading.Lock())
        with asking:
            answered = self._asked.get(key)
            if answered is not None and answered.began >= arrived:
                return answered.window  # asked after this request arrived: as fresh as asking
            token = None if self._changes is None else self._changes.token(pair, timeframe)
            began = self._monotonic()
            fresh = self._ask(key, now)
            newest_possible = newest_closed_open(pd.Timestamp(now), timeframe)
            self._asked[key] = _Asked(began, fresh, token, newest_possible)
            return fresh

    def _ask(self, key: tuple[str, str, int], now: datetime) -> InputWindow:
        pair, timeframe, window = key
        cached = self._windows.get(key)
        last_open = pd.Timestamp(now) - step_offset(timeframe)
        with self._engine.connect() as conn:
            newest = conn.execute(
                select(MarketData.timestamp)
                .where(
                    MarketData.pair == pair,
                    MarketData.timeframe == timeframe,
                    MarketData.timestamp <= last_open.to_pydatetime(),
                )
                .order_by(MarketData.timestamp.desc())
                .limit(1)
            ).scalar_one_or_none()
        if cached is not None and newest is not None and cached.last_open == pd.Timestamp(newest):
            return cached
        fresh = stored_window(self._engine, pair, timeframe, window, now)
        with self._lock:
            self._windows[key] = fresh
        return fresh
