"""Importing candle files into a real database: counts add up, re-imports change nothing,
bad rows are quarantined with reasons, and a malformed file writes nothing at all."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, func, select

from aifx_ml.data.importer import (
    CandleFile,
    ImportReport,
    import_csv,
    import_csv_files,
    import_frame,
)
from aifx_ml.db.models import DataQuarantine, EventOutbox, MarketData
from aifx_ml.errors import InvalidInputError, MalformedFileError
from aifx_ml.events.schemas import NewMarketData
from aifx_ml.features.indicators import compute_indicators, indicators_from_json
from tests.conftest import hourly_candles, snapshot
from tests.event_payloads import outbox_payloads

pytestmark = pytest.mark.integration


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    out = frame.rename(columns=str.capitalize).rename(columns={"Timestamp": "Datetime"})
    out.to_csv(path, index=False)
    return path


def counts_add_up(report: ImportReport) -> None:
    assert report.accepted + report.duplicates + report.quarantined == report.rows_read


def stored(engine: Engine, pair: str = "EUR/USD") -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(
            select(MarketData.timestamp, MarketData.close, MarketData.technical_indicators)
            .where(MarketData.pair == pair)
            .order_by(MarketData.timestamp)
        ).all()
    return pd.DataFrame(rows, columns=["timestamp", "close", "technical_indicators"])


def test_good_file_then_same_file_again(engine: Engine, tmp_path: Path, as_of: datetime) -> None:
    path = write_csv(hourly_candles("2026-01-05", 120), tmp_path / "eurusd.csv")

    first = import_csv(engine, path, "EUR/USD", "1h", as_of)
    assert (first.rows_read, first.inserted, first.duplicates, first.quarantined) == (
        120,
        120,
        0,
        0,
    )
    counts_add_up(first)
    frame = stored(engine)
    assert len(frame) == 120
    # Indicators are stored per candle; the warm-up rows hold nulls, later rows numbers.
    assert frame["technical_indicators"].iloc[-1]["sma_50"] == pytest.approx(
        frame["close"].iloc[-50:].mean()
    )
    assert frame["technical_indicators"].iloc[0]["sma_50"] is None

    before = snapshot(engine)
    second = import_csv(engine, path, "EUR/USD", "1h", as_of)
    assert (second.inserted, second.updated, second.duplicates) == (0, 0, 120)
    counts_add_up(second)
    assert snapshot(engine) == before  # not a row, timestamp or event changed


def test_bad_rows_are_quarantined_with_reasons(
    engine: Engine, tmp_path: Path, as_of: datetime
) -> None:
    frame = hourly_candles("2026-01-05", 30).astype({"high": object, "timestamp": object})
    frame.loc[3, "high"] = frame.loc[3, "low"] * 0.99  # high below the body
    frame.loc[7, "timestamp"] = "not a time"
    frame.loc[9, "timestamp"] = "2031-01-01 00:00"  # future relative to as_of
    frame.loc[12, "close"] = -1.0
    path = write_csv(frame, tmp_path / "bad_rows.csv")

    report = import_csv(engine, path, "EUR/USD", "1h", as_of)
    assert (report.rows_read, report.accepted, report.quarantined) == (30, 26, 4)
    counts_add_up(report)
    with engine.connect() as conn:
        reasons = dict(conn.execute(select(DataQuarantine.row_number, DataQuarantine.reason)).all())
    assert reasons == {
        4: "high < max(open, close)",
        8: "timestamp does not parse",
        10: "timestamp is in the future",
        13: "close is not > 0",
    }
    # The missing candles left holes in the series, and the report says where.
    assert sum(g.missing for g in report.gaps) == 4

    before = snapshot(engine)
    again = import_csv(engine, path, "EUR/USD", "1h", as_of)
    assert (again.accepted, again.duplicates, again.quarantined) == (0, 26, 4)
    assert snapshot(engine) == before  # the same bad rows are not quarantined twice


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"Datetime,Open,Close\n2026-01-05 00:00,1,1\n", "missing column(s) high, low"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary content"),
        (b"", "empty file"),
    ],
    ids=["missing-columns", "binary", "empty"],
)
def test_malformed_file_writes_nothing(
    engine: Engine, tmp_path: Path, as_of: datetime, content: bytes, problem: str
) -> None:
    import_csv(
        engine,
        write_csv(hourly_candles("2026-01-05", 10), tmp_path / "ok.csv"),
        "EUR/USD",
        "1h",
        as_of,
    )
    before = snapshot(engine)
    path = tmp_path / "broken.csv"
    path.write_bytes(content)
    with pytest.raises(MalformedFileError) as caught:
        import_csv(engine, path, "EUR/USD", "1h", as_of)
    message = str(caught.value)
    assert str(path) in message and problem in message and "\n" not in message
    assert snapshot(engine) == before


def test_invalid_pair_writes_nothing(engine: Engine, tmp_path: Path, as_of: datetime) -> None:
    path = write_csv(hourly_candles("2026-01-05", 10), tmp_path / "x.csv")
    before = snapshot(engine)
    with pytest.raises(InvalidInputError, match="EURUSD"):
        import_csv(engine, path, "EURUSD", "1h", as_of)
    assert snapshot(engine) == before


def test_correction_updates_row_and_later_indicators(
    engine: Engine, tmp_path: Path, as_of: datetime
) -> None:
    candles = hourly_candles("2026-01-05", 100)
    import_frame(engine, candles, "EUR/USD", "1h", as_of, source="vendor")
    corrected = candles.copy()
    corrected.loc[60, ["close", "high"]] = (
        corrected.loc[60, "close"] * 1.01,
        corrected.loc[60, "high"] * 1.01,
    )

    report = import_frame(engine, corrected, "EUR/USD", "1h", as_of, source="vendor-fix")
    assert (report.inserted, report.updated, report.duplicates) == (0, 1, 99)
    frame = stored(engine)
    expected = compute_indicators(corrected)
    got = indicators_from_json(frame["technical_indicators"])
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-9, equal_nan=True)


def test_import_order_does_not_change_indicators(engine: Engine, as_of: datetime) -> None:
    candles = hourly_candles("2026-01-05", 150, seed=3)
    # Later half first, then the earlier half: a backfill.
    import_frame(engine, candles.iloc[75:], "GBP/USD", "1h", as_of, source="late")
    import_frame(engine, candles.iloc[:75], "GBP/USD", "1h", as_of, source="early")
    got = indicators_from_json(stored(engine, "GBP/USD")["technical_indicators"])
    expected = compute_indicators(candles)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-9, equal_nan=True)


def test_import_announces_new_data_in_the_outbox(engine: Engine, as_of: datetime) -> None:
    candles = hourly_candles("2026-01-05", 20)
    import_frame(engine, candles, "EUR/USD", "1h", as_of, source="vendor")
    import_frame(engine, candles, "EUR/USD", "1h", as_of, source="vendor")  # nothing new: no event
    with engine.connect() as conn:
        events = conn.execute(select(EventOutbox.channel, EventOutbox.payload)).all()
    assert len(events) == 1
    channel, payload = events[0]
    assert channel == "ml:new_market_data"
    assert set(payload) == {"schema_version", "timestamp", "channel", "data"}
    assert payload["data"]["last_timestamp"] == candles["timestamp"].iloc[-1].isoformat()
    (event,) = outbox_payloads(engine)
    assert event == NewMarketData(
        pair="EUR/USD",
        timeframe="1h",
        inserted=20,
        updated=0,
        first_timestamp=candles["timestamp"].iloc[0],
        last_timestamp=candles["timestamp"].iloc[-1],
        source="vendor",
    )


def test_timezones_are_normalized_to_utc(engine: Engine, tmp_path: Path, as_of: datetime) -> None:
    path = tmp_path / "tz.csv"
    path.write_text(
        "Date,Open,High,Low,Close\n"
        "2026-01-05 10:00:00+02:00,1.1,1.2,1.0,1.15\n"  # 08:00 UTC
        "2026-01-05 09:00:00,1.1,1.2,1.0,1.15\n"  # naive: UTC
    )
    report = import_csv(engine, path, "EUR/USD", "1h", as_of)
    assert report.accepted == 2
    with engine.connect() as conn:
        stamps = (
            conn.execute(select(MarketData.timestamp).order_by(MarketData.timestamp))
            .scalars()
            .all()
        )
    assert [s.isoformat() for s in stamps] == [
        "2026-01-05T08:00:00+00:00",
        "2026-01-05T09:00:00+00:00",
    ]


def test_series_are_independent(engine: Engine, as_of: datetime) -> None:
    candles = hourly_candles("2026-01-05", 10)
    candles["timestamp"] = pd.date_range("2026-01-05", periods=10, freq="4h", tz="UTC")
    import_frame(engine, candles, "EUR/USD", "1h", as_of, source="a")
    report = import_frame(engine, candles, "EUR/USD", "4h", as_of, source="a")
    assert report.inserted == 10  # same timestamps, different timeframe: a different series
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(MarketData)).scalar() == 20


def test_reimport_on_a_later_run_adds_no_quarantine_row(
    engine: Engine, tmp_path: Path, as_of: datetime
) -> None:
    # The future-timestamp reason used to embed the run's moment, so every run hashed a new row.
    frame = hourly_candles("2026-01-05", 10).astype({"timestamp": object, "close": object})
    frame.loc[4, "timestamp"] = "2031-01-01 00:00"
    frame.loc[6, "close"] = "abc"
    path = write_csv(frame, tmp_path / "future.csv")
    import_csv(engine, path, "EUR/USD", "1h", as_of)
    before = snapshot(engine)
    again = import_csv(engine, path, "EUR/USD", "1h", as_of + timedelta(days=3))
    assert (again.accepted, again.duplicates, again.quarantined) == (0, 8, 2)
    assert snapshot(engine) == before


def epoch_file(path: Path, stamps: list[str]) -> Path:
    rows = "".join(f"{t},1.1,1.2,1.0,1.15,10\n" for t in stamps)
    path.write_text("timestamp,open,high,low,close,volume\n" + rows)
    return path


def stored_times(engine: Engine) -> list[pd.Timestamp]:
    with engine.connect() as conn:
        stamps = conn.execute(select(MarketData.timestamp).order_by(MarketData.timestamp))
        return [pd.Timestamp(s) for s in stamps.scalars()]


def test_one_millisecond_row_does_not_move_second_rows_to_1970(
    engine: Engine, tmp_path: Path, as_of: datetime
) -> None:
    # The reproduction: 100 daily candles in epoch seconds and one in milliseconds.
    days = pd.date_range("2025-06-02", periods=101, freq="1D", tz="UTC")
    seconds = [str(int(d.timestamp())) for d in days[:100]]
    path = epoch_file(tmp_path / "epochs.csv", [*seconds, str(int(days[100].timestamp()) * 1000)])
    report = import_csv(engine, path, "EUR/USD", "1d", as_of)
    assert (report.inserted, report.quarantined) == (101, 0)
    assert stored_times(engine) == list(days)


def test_out_of_range_epoch_is_quarantined_and_the_rest_imported(
    engine: Engine, tmp_path: Path, as_of: datetime
) -> None:
    hours = pd.date_range("2026-01-05", periods=5, freq="1h", tz="UTC")
    stamps = [str(int(h.timestamp())) for h in hours]
    path = epoch_file(tmp_path / "overflow.csv", [*stamps[:2], "1e20", *stamps[2:]])
    report = import_csv(engine, path, "EUR/USD", "1h", as_of)  # used to raise OverflowError
    assert (report.rows_read, report.inserted, report.quarantined) == (6, 5, 1)
    with engine.connect() as conn:
        quarantined = conn.execute(select(DataQuarantine.row_number, DataQuarantine.reason)).all()
    assert quarantined == [(3, "timestamp is out of range (epoch number)")]
    assert stored_times(engine) == list(hours)


def test_chunked_import_matches_a_whole_file_import(
    engine: Engine, tmp_path: Path, as_of: datetime
) -> None:
    # Small chunks: repeats and conflicts span chunks, the file is out of order, a bad row.
    candles = hourly_candles("2026-01-05", 60).astype({"close": object})
    frame = pd.concat([candles.iloc[30:], candles.iloc[:30], candles.iloc[[3, 40]]])
    frame = frame.reset_index(drop=True)
    frame.loc[len(frame) - 1, "close"] = str(float(frame["close"].iloc[-1]) * 1.0001)
    frame.loc[5, "close"] = "abc"
    path = write_csv(frame, tmp_path / "shuffled.csv")
    report = import_csv(engine, path, "EUR/USD", "1h", as_of, chunk_rows=7)
    assert (report.rows_read, report.inserted, report.duplicates, report.quarantined) == (
        62,
        59,
        1,
        2,
    )
    counts_add_up(report)
    with engine.connect() as conn:
        reasons = dict(conn.execute(select(DataQuarantine.row_number, DataQuarantine.reason)).all())
    assert reasons == {6: "close is not a number", 62: "conflicting duplicate of row 11"}
    expected = compute_indicators(hourly_candles("2026-01-05", 60).drop(index=35))
    got = indicators_from_json(stored(engine)["technical_indicators"])
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-9, equal_nan=True)
    before = snapshot(engine)
    again = import_csv(engine, path, "EUR/USD", "1h", as_of, chunk_rows=5)
    assert (again.accepted, again.duplicates, again.quarantined) == (0, 60, 2)
    assert snapshot(engine) == before


def test_a_bad_line_deep_in_a_file_rolls_back_every_file(
    engine: Engine, tmp_path: Path, as_of: datetime
) -> None:
    # Chunks are written as they are read: a broken line near the end must undo all of it,
    # including the quarantined rows of earlier chunks and the files before it.
    good = write_csv(hourly_candles("2026-01-05", 30), tmp_path / "good.csv")
    frame = hourly_candles("2026-02-02", 40).astype({"close": object})
    frame.loc[2, "close"] = "abc"
    broken = write_csv(frame, tmp_path / "broken.csv")
    with broken.open("a") as handle:
        handle.write("2026-03-01 00:00,1,1,1,1,1,1,1\n")  # too many fields
    before = snapshot(engine)
    files = [CandleFile(good, "EUR/USD", "1h"), CandleFile(broken, "GBP/USD", "1h")]
    with pytest.raises(MalformedFileError, match="broken.csv"):
        import_csv_files(engine, files, as_of, chunk_rows=8)
    assert snapshot(engine) == before
