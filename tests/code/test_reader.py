"""Reading candle CSVs: header spellings, delimiters, encodings, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from aifx_ml.data.reader import CANONICAL, iter_candles_csv, read_candles_csv
from aifx_ml.errors import MalformedFileError

ROW = ["2026-01-05 10:00", "1.1", "1.2", "1.0", "1.15", "42"]


def _write(tmp_path: Path, content: str | bytes, name: str = "candles.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def _malformed(path: Path) -> str:
    """The MalformedFileError message for `path`, checked to be one line naming the file."""
    with pytest.raises(MalformedFileError) as info:
        read_candles_csv(path)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    assert str(path) in message, message
    return message


@pytest.mark.parametrize(
    "header",
    [
        "timestamp,open,high,low,close,volume",
        "Timestamp,Open,High,Low,Close,Volume",
        "Date,Open,High,Low,Close,Volume",
        "Datetime,Open,High,Low,Close,Volume",
        "Gmt time,Open,High,Low,Close,Volume",  # Dukascopy
        "DATETIME,OPEN,HIGH,LOW,CLOSE,VOLUME",
        "time,o,h,l,c,v",
    ],
)
def test_header_spellings_map_to_canonical_columns(tmp_path: Path, header: str) -> None:
    path = _write(tmp_path, f"{header}\n{','.join(ROW)}\n")
    frame = read_candles_csv(path)
    assert list(frame.columns) == list(CANONICAL)
    assert frame.iloc[0].tolist() == ROW


def test_mt4_separate_date_and_time_columns_make_one_timestamp(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<TICKVOL>\n"
        "2026.01.05,13:00,1.1,1.2,1.0,1.15,100\n"
        "2026.01.05,14:00,1.15,1.25,1.1,1.2,120\n",
    )
    frame = read_candles_csv(path)
    assert frame["timestamp"].tolist() == ["2026.01.05 13:00", "2026.01.05 14:00"]
    assert frame["open"].tolist() == ["1.1", "1.15"]
    assert frame["volume"].tolist() == ["100", "120"]


def test_unnamed_first_column_is_the_timestamp(tmp_path: Path) -> None:
    # What DataFrame.to_csv() writes for a frame indexed by a DatetimeIndex: ",Open,High,...".
    source = pd.DataFrame(
        {"Open": [1.1, 1.15], "High": [1.2, 1.25], "Low": [1.0, 1.1], "Close": [1.15, 1.2]},
        index=pd.DatetimeIndex(["2026-01-05 10:00", "2026-01-05 11:00"]),
    )
    path = tmp_path / "indexed.csv"
    source.to_csv(path)
    assert path.read_text().startswith(",Open")
    frame = read_candles_csv(path)
    assert frame["timestamp"].tolist() == ["2026-01-05 10:00:00", "2026-01-05 11:00:00"]
    assert frame["close"].tolist() == ["1.15", "1.2"]


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_semicolon_and_tab_delimiters(tmp_path: Path, delimiter: str) -> None:
    header = delimiter.join(["Date", "Open", "High", "Low", "Close", "Volume"])
    path = _write(tmp_path, f"{header}\n{delimiter.join(ROW)}\n")
    frame = read_candles_csv(path)
    assert frame.iloc[0].tolist() == ROW


def test_utf8_bom_is_ignored(tmp_path: Path) -> None:
    content = "\ufefftimestamp,open,high,low,close,volume\n" + ",".join(ROW) + "\n"
    path = _write(tmp_path, content.encode("utf-8"))
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    frame = read_candles_csv(path)
    assert frame.iloc[0].tolist() == ROW


def test_missing_volume_column_becomes_zero(tmp_path: Path) -> None:
    path = _write(tmp_path, "timestamp,open,high,low,close\n" + ",".join(ROW[:5]) + "\n")
    frame = read_candles_csv(path)
    assert list(frame.columns) == list(CANONICAL)
    assert frame["volume"].tolist() == ["0"]


def test_index_is_one_based_row_number(tmp_path: Path) -> None:
    rows = "\n".join(",".join([f"2026-01-05 1{i}:00", *ROW[1:]]) for i in range(3))
    path = _write(tmp_path, "timestamp,open,high,low,close,volume\n" + rows + "\n")
    frame = read_candles_csv(path)
    assert frame.index.tolist() == [1, 2, 3]
    assert frame.loc[1, "timestamp"] == "2026-01-05 10:00"
    assert frame.loc[3, "timestamp"] == "2026-01-05 12:00"


def test_blank_lines_are_not_counted_as_rows(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "timestamp,open,high,low,close\n"
        "2026-01-05 10:00,1.1,1.2,1.0,1.15\n"
        "\n"
        "2026-01-05 11:00,1.1,1.2,1.0,1.15\n",
    )
    frame = read_candles_csv(path)
    assert frame.index.tolist() == [1, 2]
    assert frame.loc[2, "timestamp"] == "2026-01-05 11:00"


def test_missing_file(tmp_path: Path) -> None:
    message = _malformed(tmp_path / "nope.csv")
    assert "no such file" in message


def test_empty_file(tmp_path: Path) -> None:
    message = _malformed(_write(tmp_path, b""))
    assert "empty" in message


def test_whitespace_only_file_is_empty(tmp_path: Path) -> None:
    message = _malformed(_write(tmp_path, "  \n\n"))
    assert "empty" in message


def test_binary_content(tmp_path: Path) -> None:
    message = _malformed(_write(tmp_path, b"timestamp,open\x00\x01\x02\xff\n"))
    assert "binary" in message


def test_not_utf8_header(tmp_path: Path) -> None:
    content = b"timestamp,open,high,low,close,volum\xe9\xff\n2026-01-05 10:00,1,2,0.5,1.5,1\n"
    message = _malformed(_write(tmp_path, content))
    assert "UTF-8" in message


def test_not_utf8_beyond_the_sniffed_head(tmp_path: Path) -> None:
    # The reader sniffs only the first 64 KiB; a bad byte later must still be a clear error.
    good = "timestamp,open,high,low,close\n" + "2026-01-05 10:00,1.1,1.2,1.0,1.15\n" * 3000
    assert len(good) > 64 * 1024
    _malformed(_write(tmp_path, good.encode() + b"2026-01-05 10:00,1.1,1.2,1.0,\xe9\xff\n"))


def test_missing_columns_are_listed(tmp_path: Path) -> None:
    message = _malformed(_write(tmp_path, "timestamp,open,close\n2026-01-05 10:00,1.1,1.15\n"))
    assert "high, low" in message
    assert "missing" in message


def test_ragged_row_with_too_many_fields(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "timestamp,open,high,low,close\n"
        "2026-01-05 10:00,1.1,1.2,1.0,1.15\n"
        "2026-01-05 11:00,1.1,1.2,1.0,1.15,9,9\n",
    )
    message = _malformed(path)
    assert "CSV" in message


def test_ragged_row_with_too_few_fields_is_kept_with_blanks(tmp_path: Path) -> None:
    # pandas accepts a short row and fills the missing fields; with keep_default_na=False they
    # are empty strings, which validation then rejects ("close is not a number").
    path = _write(tmp_path, "timestamp,open,high,low,close\n2026-01-05 10:00,1.1,1.2,1.0\n")
    frame = read_candles_csv(path)
    assert frame.loc[1, "low"] == "1.0"
    assert frame.loc[1, "close"] == ""


@pytest.mark.parametrize("bad_row", [1, 4, 5, 7])
def test_too_long_row_is_refused_wherever_it_falls(tmp_path: Path, bad_row: int) -> None:
    # pandas, reading in chunks, silently cut a too-long row short when it was the first of a
    # chunk (rows 1 and 4 here) and took its first fields as an index when it opened the file.
    rows = [",".join([f"2026-01-05 1{i}:00", *ROW[1:]]) for i in range(9)]
    rows[bad_row - 1] += ",7,8"
    path = _write(tmp_path, "timestamp,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    with pytest.raises(MalformedFileError, match=f"data row {bad_row} has"):
        list(iter_candles_csv(path, chunk_rows=3))
    with pytest.raises(MalformedFileError, match=f"data row {bad_row} has"):
        read_candles_csv(path)


def test_chunks_are_numbered_as_the_whole_file(tmp_path: Path) -> None:
    rows = [",".join([f"2026-01-05 {i:02d}:00", *ROW[1:5]]) for i in range(10)]
    path = _write(tmp_path, "Date,Open,High,Low,Close\n" + "\n\n".join(rows) + "\n")
    chunks = list(iter_candles_csv(path, chunk_rows=4))
    assert [c.index.tolist() for c in chunks] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    whole = read_candles_csv(path)
    pd.testing.assert_frame_equal(pd.concat(chunks), whole)
    assert whole.loc[10, "timestamp"] == "2026-01-05 09:00"


def test_header_only_file_is_one_empty_chunk(tmp_path: Path) -> None:
    path = _write(tmp_path, "timestamp,open,high,low,close")
    (chunk,) = list(iter_candles_csv(path))
    assert chunk.empty and list(chunk.columns) == list(CANONICAL)
    message = _malformed(_write(tmp_path, "timestamp,open\n", "short.csv"))
    assert "missing column(s) high, low, close" in message
