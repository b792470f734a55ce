"""A replay's plan: its parameters refuse bad input, name themselves stably, know the synthetic
change point, and feed candles — synthetic, or read and checked from CSV files."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aifx_ml.data.synth import synthesize_candles, write_synthetic_csv
from aifx_ml.errors import InvalidInputError
from aifx_ml.markets import expected_grid, step_offset
from aifx_ml.replay.plan import (
    ModelParams,
    ReplayParams,
    file_candles,
    replay_candles,
    with_change_point,
)

START = datetime(2026, 1, 12, tzinfo=UTC)  # a Monday
END = datetime(2026, 1, 14, tzinfo=UTC)
HISTORY_START = datetime(2026, 1, 9, tzinfo=UTC)  # START minus HISTORY_DAYS: a Friday
HISTORY_DAYS = 3


def params(**changes: Any) -> ReplayParams:
    """A small valid replay: one pair, hourly candles, five days in all."""
    values: dict[str, Any] = {
        "pairs": ("EUR/USD",),
        "timeframes": ("1h",),
        "start": START,
        "end": END,
        "history_days": HISTORY_DAYS,
    }
    values.update(changes)
    return ReplayParams(**values)


def write_csvs(folder: Path, pairs: list[str], start: str, end: str) -> list[Path]:
    """Hourly synthetic candles with opens in [start, end], one `PAIR_1h.csv` per pair."""
    frames = synthesize_candles(pairs, "1h", pd.Timestamp(start), pd.Timestamp(end), seed=3)
    return write_synthetic_csv(frames, folder, "1h")


# --- parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"end": START - timedelta(days=1)}, "--end 2026-01-11 must be after --start"),
        ({"end": START}, "--end 2026-01-12 must be after --start"),
        ({"pairs": ("EURUSD",)}, "invalid pair 'EURUSD'"),
        ({"pairs": ("EUR/USD", "gbp/usd")}, "invalid pair 'gbp/usd'"),
        ({"timeframes": ("2h",)}, "invalid timeframe '2h'"),
        ({"pairs": ()}, "at least one pair and one timeframe"),
        ({"timeframes": ()}, "at least one pair and one timeframe"),
        # A fraction: 5 is someone meaning 5 %, and 1 would label nothing ever.
        (
            {"label_threshold": 5.0},
            r"invalid label threshold 5\.0: expected a fraction in \(0, 1\)",
        ),
        ({"label_threshold": 1.0}, "invalid label threshold 1.0"),
        ({"label_threshold": 0.0}, "invalid label threshold 0.0"),
        ({"label_threshold": -0.001}, "invalid label threshold -0.001"),
        ({"ab_look_hours": 5}, "--ab-look-hours must divide 24"),
        ({"ab_look_hours": 0}, "--ab-look-hours must divide 24"),
        ({"ab_look_hours": 48}, "--ab-look-hours must divide 24"),
        ({"refresh_days": -1.0}, r"invalid --refresh-days -1\.0: expected >= 0"),
        ({"keep_waiting": -1}, "invalid --keep-waiting -1: expected >= 0"),
    ],
)
def test_bad_parameters_are_one_clear_error(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as caught:
        params(**changes)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "changes",
    [{"label_threshold": 0.5}, {"ab_look_hours": 24}, {"refresh_days": 0.0}, {"keep_waiting": 0}],
)
def test_edge_values_inside_the_ranges_are_accepted(changes: dict[str, Any]) -> None:
    assert params(**changes)


def test_as_dict_is_json_and_survives_a_round_trip() -> None:
    p = params(change_at=datetime(2026, 1, 13, 5, tzinfo=UTC))
    stored = p.as_dict()
    assert json.loads(json.dumps(stored)) == stored  # what `replay_runs.params` gives back
    assert stored["change_at"] == "2026-01-13T05:00:00+00:00"
    assert stored["start"] == "2026-01-12T00:00:00+00:00"
    assert stored["pairs"] == ["EUR/USD"]
    assert stored["model"]["lstm_units"] == [16, 8]


def test_default_name_is_stable_for_equal_parameters() -> None:
    name = params().default_name()
    assert name == params().default_name()
    assert name.startswith("replay-20260112-20260114-")
    assert len(name.rsplit("-", 1)[1]) == 8


@pytest.mark.parametrize(
    "changes",
    [
        {"seed": 8},
        {"label_threshold": 0.002},
        {"pairs": ("EUR/USD", "GBP/USD")},
        {"history_days": 4},
        {"source": "/data/candles"},
        {"train": False},
        {"change_at": datetime(2026, 1, 13, tzinfo=UTC)},
        {"model": ModelParams(epochs=5)},
    ],
)
def test_default_name_changes_with_any_parameter(changes: dict[str, Any]) -> None:
    assert params(**changes).default_name() != params().default_name()


# --- the change point ---------------------------------------------------------------------


@pytest.mark.parametrize("timeframe", ["1h", "4h", "1d"])
@pytest.mark.parametrize("switch", [0.25, 0.5, 0.75])
def test_a_synthetic_replay_knows_its_change_point(timeframe: str, switch: float) -> None:
    p = params(
        timeframes=(timeframe,), pattern_switch=switch, end=datetime(2026, 1, 16, tzinfo=UTC)
    )
    change_at = with_change_point(p).change_at
    assert change_at is not None
    assert p.history_start < change_at <= p.end
    # On a candle close of the replay's own candles: the first one after the switch, i.e.
    # the candles closed before it are the switch's share of them.
    frame = replay_candles(p)[("EUR/USD", timeframe)]
    closes = pd.to_datetime(frame["timestamp"], utc=True) + step_offset(timeframe)
    assert pd.Timestamp(change_at) in set(closes)
    assert (closes < pd.Timestamp(change_at)).sum() == round(switch * len(frame))


def test_a_market_with_no_pattern_has_no_change_point() -> None:
    """`--pattern-strength 0`: nothing to learn before the switch, nothing after it."""
    flat = params(pattern_strength=0.0, pattern_switch=0.5)
    assert with_change_point(flat).change_at is None
    closes = replay_candles(flat)[("EUR/USD", "1h")]["close"].to_numpy()
    assert len(closes) > 50 and np.isfinite(closes).all()


def test_a_given_change_point_is_left_alone() -> None:
    given = datetime(2026, 1, 13, 7, tzinfo=UTC)
    p = params(change_at=given)
    assert with_change_point(p) == p
    assert with_change_point(p).change_at == given


def test_a_file_replay_has_no_change_point_unless_given(tmp_path: Path) -> None:
    p = params(source=str(tmp_path))
    assert with_change_point(p) == p
    assert with_change_point(p).change_at is None


def test_the_change_point_keeps_every_other_parameter() -> None:
    p = params(seed=11, label_threshold=0.002, model=ModelParams(epochs=4))
    moved = with_change_point(p)
    assert replace(moved, change_at=None) == p


# --- synthetic candles --------------------------------------------------------------------


def test_synthetic_candles_cover_every_series_from_the_history_start() -> None:
    p = params(pairs=("EUR/USD", "USD/JPY"), timeframes=("1h", "4h"))
    candles = replay_candles(p)
    assert set(candles) == {(pr, tf) for pr in p.pairs for tf in p.timeframes}
    for (_, timeframe), frame in candles.items():
        stamps = pd.to_datetime(frame["timestamp"], utc=True)
        assert stamps.iloc[0] == pd.Timestamp(HISTORY_START)
        assert stamps.iloc[-1] <= pd.Timestamp(END)
        assert stamps.is_monotonic_increasing
        grid = expected_grid(pd.Timestamp(HISTORY_START), pd.Timestamp(END), timeframe)
        assert list(stamps) == list(grid)


def test_synthetic_candles_are_the_same_for_equal_parameters() -> None:
    p = params(pairs=("EUR/USD", "GBP/USD"))
    first, again = replay_candles(p), replay_candles(params(pairs=("EUR/USD", "GBP/USD")))
    for series, frame in first.items():
        pd.testing.assert_frame_equal(frame, again[series])
    other = replay_candles(params(pairs=("EUR/USD", "GBP/USD"), seed=8))
    assert not first[("EUR/USD", "1h")]["close"].equals(other[("EUR/USD", "1h")]["close"])


# --- candles from files -------------------------------------------------------------------


def test_a_missing_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(InvalidInputError, match="no such file or folder") as caught:
        file_candles(missing, params(source=str(missing)))
    assert str(missing) in str(caught.value)


def test_a_missing_series_names_the_file_expected(tmp_path: Path) -> None:
    write_csvs(tmp_path, ["EUR/USD", "USD/JPY"], "2026-01-09", "2026-01-14")
    p = params(pairs=("EUR/USD", "GBP/USD"), source=str(tmp_path))
    with pytest.raises(InvalidInputError, match="no candles for GBPUSD_1h.csv") as caught:
        file_candles(tmp_path, p)
    assert "EURUSD_1h.csv" not in str(caught.value)
    assert str(tmp_path) in str(caught.value)


def test_a_bad_row_stops_the_replay_and_says_how_many(tmp_path: Path) -> None:
    (path,) = write_csvs(tmp_path, ["EUR/USD"], "2026-01-09", "2026-01-14")
    frame = pd.read_csv(path, dtype=str)
    low = frame["low"].astype(float)
    frame["high"] = frame["high"].where(frame.index != 5, str(low[5] * 0.99))  # high < low
    frame.to_csv(path, index=False)
    with pytest.raises(InvalidInputError) as caught:
        file_candles(tmp_path, params(source=str(tmp_path)))
    message = str(caught.value)
    assert message.startswith(f"{path}: 1 row(s) fail the import checks")
    assert "high < max(open, close)" in message
    assert "`aifx data import`" in message


def test_a_good_folder_gives_the_candles_from_history_start_to_end(tmp_path: Path) -> None:
    # From a week before the history starts up to a candle opening at `end` (closing after it);
    # a file of another series and a CSV that names none are ignored.
    write_csvs(tmp_path, ["EUR/USD", "USD/JPY"], "2026-01-05", "2026-01-14")
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    p = params(source=str(tmp_path))
    candles = file_candles(tmp_path, p)
    assert set(candles) == {("EUR/USD", "1h")}
    stamps = pd.to_datetime(candles[("EUR/USD", "1h")]["timestamp"], utc=True)
    assert stamps.iloc[0] == pd.Timestamp(HISTORY_START)
    assert stamps.iloc[-1] == pd.Timestamp("2026-01-13 23:00", tz="UTC")  # closes at `end`
    assert list(stamps) == list(expected_grid(stamps.iloc[0], stamps.iloc[-1], "1h"))
    assert list(candles[("EUR/USD", "1h")].index) == list(range(len(stamps)))
    # The same through `replay_candles`, and from the file alone.
    pd.testing.assert_frame_equal(replay_candles(p)[("EUR/USD", "1h")], candles[("EUR/USD", "1h")])
    single = tmp_path / "EURUSD_1h.csv"
    pd.testing.assert_frame_equal(
        file_candles(single, params(source=str(single)))[("EUR/USD", "1h")],
        candles[("EUR/USD", "1h")],
    )


def test_candles_after_the_end_are_clipped_not_refused(tmp_path: Path) -> None:
    # A folder of history usually runs past the stretch being replayed.
    write_csvs(tmp_path, ["EUR/USD"], "2026-01-05", "2026-01-20")
    candles = file_candles(tmp_path, params(source=str(tmp_path)))
    stamps = pd.to_datetime(candles[("EUR/USD", "1h")]["timestamp"], utc=True)
    assert stamps.iloc[0] == pd.Timestamp(HISTORY_START)
    assert stamps.iloc[-1] == pd.Timestamp("2026-01-13 23:00", tz="UTC")
