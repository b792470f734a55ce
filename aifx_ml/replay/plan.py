"""What a replay replays: its parameters (stored with it, so a resume is checked against them)
and the candles it feeds the loop — synthetic, or read from CSV files."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from aifx_ml.data.reader import read_candles_csv, series_from_filename
from aifx_ml.data.synth import synthesize_candles
from aifx_ml.data.validation import validate_candles
from aifx_ml.domain import SignalPolicy, TestMode
from aifx_ml.errors import InvalidInputError
from aifx_ml.markets import expected_grid, step_offset, validate_pair, validate_timeframe

SYNTHETIC = "synthetic"
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ModelParams:
    """The model every training flow of the replay builds (small by default: a replay trains
    dozens of them)."""

    window: int = 16
    lstm_units: tuple[int, int] = (16, 8)
    dense_units: int = 8
    epochs: int = 30  # an upper bound: early stopping ends most runs sooner
    incremental_epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 0.003
    days: int = 30


@dataclass(frozen=True)
class ReplayParams:
    """Everything that decides what a replay does; equal parameters give equal replays.

    The defaults are `aifx replay`'s (its options read them from here, e.g.
    `ReplayParams.label_threshold`; tests/code/test_defaults_agree.py keeps them equal) and
    suit the synthetic market: short replays that decide A/B tests within weeks.
    """

    pairs: tuple[str, ...]
    timeframes: tuple[str, ...]
    start: datetime
    end: datetime
    source: str = SYNTHETIC  # or the CSV file / folder the candles come from
    seed: int = 7
    history_days: int = 30  # candles before `start`, there from the beginning
    # Synthetic market: each return leans on the mean of the returns 5 to 8 candles back (a
    # pattern a small LSTM learns better than the persistence baseline copies it); at
    # `pattern_switch` of the candles the lean turns from with them to against them.
    pattern_switch: float = 0.5
    pattern_strength: float = 0.65
    pattern_lags: tuple[int, int] = (5, 8)
    change_at: datetime | None = None  # a known change point (synthetic: the switch)
    # A fraction, as `aifx label --threshold` (whose 0.5 % the synthetic market rarely moves).
    label_threshold: float = 0.001
    # Global thresholds overriding every version's own (None, both: each version's own, as
    # `aifx serve` without --buy-threshold / --sell-threshold).
    buy_threshold: float | None = None
    sell_threshold: float | None = None
    ab_look_hours: int = 6  # look at an active A/B test every this many scheduled hours
    train: bool = True  # False: only serve, label and evaluate what is already registered
    challenger_mode: TestMode = TestMode.SHADOW  # how challengers are tried live
    challenger_split: float = 0.5  # share of requests to the challenger in a split test
    refresh_days: float = 7.0  # a full training may refresh Production this old (0: never)
    keep_waiting: int = 3  # candidates left waiting in Staging, newest first
    ab_min_decided: int = 60  # the A/B plan of every challenger test (see test_plan)
    ab_max_days: float = 14.0
    model: ModelParams = field(default_factory=ModelParams)

    def __post_init__(self) -> None:
        for pair in self.pairs:
            validate_pair(pair)
        for timeframe in self.timeframes:
            validate_timeframe(timeframe)
        if not self.pairs or not self.timeframes:
            raise InvalidInputError("a replay needs at least one pair and one timeframe")
        if self.end <= self.start:
            raise InvalidInputError(f"--end {self.end:%Y-%m-%d} must be after --start")
        if not 0 < self.label_threshold < 1:
            raise InvalidInputError(
                f"invalid label threshold {self.label_threshold}: expected a fraction in (0, 1)"
            )
        self.policy  # noqa: B018  (raises on thresholds out of order)
        if not self.refresh_days >= 0:
            raise InvalidInputError(f"invalid --refresh-days {self.refresh_days}: expected >= 0")
        if self.keep_waiting < 0:
            raise InvalidInputError(f"invalid --keep-waiting {self.keep_waiting}: expected >= 0")
        if self.ab_look_hours < 1 or 24 % self.ab_look_hours:
            raise InvalidInputError("--ab-look-hours must divide 24 (1, 2, 3, 4, 6, 8, 12, 24)")

    @property
    def history_start(self) -> datetime:
        return self.start - timedelta(days=self.history_days)

    @property
    def policy(self) -> SignalPolicy:
        """How the replay's requests become signals (`SignalPolicy.with_thresholds`)."""
        return SignalPolicy.with_thresholds(self.buy_threshold, self.sell_threshold)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, as stored in `replay_runs.params`."""
        return json.loads(json.dumps(asdict(self), default=_iso))  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReplayParams:
        """The parameters `as_dict()` stored (a study's replays are started from them)."""
        values = dict(data)
        for name in ("start", "end", "change_at"):
            if values.get(name) is not None:
                values[name] = datetime.fromisoformat(values[name])
        for name in ("pairs", "timeframes", "pattern_lags"):
            values[name] = tuple(values[name])
        values["challenger_mode"] = TestMode(values["challenger_mode"])
        model = dict(values.pop("model", {}))
        if "lstm_units" in model:
            model["lstm_units"] = tuple(model["lstm_units"])
        return cls(**values, model=ModelParams(**model))

    def default_name(self) -> str:
        digest = hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()
        return f"replay-{self.start:%Y%m%d}-{self.end:%Y%m%d}-{digest[:8]}"

    def test_plan(self) -> dict[str, Any]:
        """The A/B plan every challenger test of the replay runs to (TestPlan fields)."""
        return {"min_decided_per_arm": self.ab_min_decided, "max_days": self.ab_max_days}


def with_change_point(params: ReplayParams) -> ReplayParams:
    """A synthetic replay knows when its market changed: the close of the first candle after the
    switch (of the first timeframe; the others switch at the same share of their candles). A
    market with no pattern (`pattern_strength` 0) does not change."""
    if params.source != SYNTHETIC or params.change_at is not None or not params.pattern_strength:
        return params  # a file's market, a change point given, or no pattern to change
    timeframe = params.timeframes[0]
    grid = expected_grid(pd.Timestamp(params.history_start), pd.Timestamp(params.end), timeframe)
    at = min(round(params.pattern_switch * len(grid)), len(grid) - 1)
    moment = (grid[at] + step_offset(timeframe)).to_pydatetime()
    if moment > params.end:  # the switch is past the end: this market never changes
        return params
    return ReplayParams(**{**_fields(params), "change_at": moment})


def replay_candles(
    params: ReplayParams, now: datetime | None = None
) -> dict[tuple[str, str], pd.DataFrame]:
    """Every candle of the replay, history included, by (pair, timeframe); `now` (the wall
    clock) is what a file's timestamps must not be after."""
    if params.source == SYNTHETIC:
        return {
            (pair, timeframe): frame
            for timeframe in params.timeframes
            for pair, frame in synthesize_candles(
                list(params.pairs),
                timeframe,
                pd.Timestamp(params.history_start),
                pd.Timestamp(params.end),
                seed=params.seed,
                pattern_switch=params.pattern_switch,
                pattern_strength=params.pattern_strength,
                pattern_lags=params.pattern_lags,
            ).items()
        }
    return file_candles(Path(params.source), params, now)


def file_candles(
    source: Path, params: ReplayParams, now: datetime | None = None
) -> dict[tuple[str, str], pd.DataFrame]:
    """Candles from `PAIR_TIMEFRAME.csv` files (a file, or every such file of a folder), checked
    like an import; a row that fails the checks stops the replay before it starts."""
    if not source.exists():
        raise InvalidInputError(f"--data {source}: no such file or folder")
    paths = sorted(source.glob("*.csv")) if source.is_dir() else [source]
    wanted = {(p, t) for p in params.pairs for t in params.timeframes}
    candles: dict[tuple[str, str], pd.DataFrame] = {}
    for path in paths:
        series = series_from_filename(path)
        if series is None or series not in wanted:
            continue
        # Candles after `end` are history to come, not errors: they are clipped below.
        checked = validate_candles(read_candles_csv(path), *series, now or _FAR_FUTURE)
        if len(checked.rejected):
            reason = checked.rejected.iloc[0].to_dict()
            raise InvalidInputError(
                f"{path}: {len(checked.rejected)} row(s) fail the import checks (first: "
                f"{reason}); fix them or import the file with `aifx data import` to quarantine"
            )
        frame = checked.valid
        stamps = pd.to_datetime(frame["timestamp"], utc=True)
        keep = (stamps >= pd.Timestamp(params.history_start)) & (
            stamps + step_offset(series[1]) <= pd.Timestamp(params.end)
        )
        candles[series] = frame.loc[keep].reset_index(drop=True)
    missing = sorted(wanted - set(candles))
    if missing:
        names = ", ".join(f"{p.replace('/', '')}_{t}.csv" for p, t in missing)
        raise InvalidInputError(f"--data {source}: no candles for {names}")
    return candles


def _fields(params: ReplayParams) -> dict[str, Any]:
    return {name: getattr(params, name) for name in params.__dataclass_fields__}


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {value!r}")
