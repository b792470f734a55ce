"""Reading OHLCV CSV files whatever their header spelling, into canonical string columns.

Nothing is parsed to numbers here: a row that will not parse is a validation finding for
`validation.py` (quarantined with a reason), whereas a file that is not a candle CSV at all is
a `MalformedFileError` that stops the import before anything is written.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import pandas as pd

from aifx_ml.errors import MalformedFileError
from aifx_ml.markets import TIMEFRAMES

REQUIRED = ("timestamp", "open", "high", "low", "close")
CANONICAL = (*REQUIRED, "volume")

# Header spellings seen in broker and vendor exports (MT4/MT5, Dukascopy, yfinance, pandas).
ALIASES: dict[str, tuple[str, ...]] = {
    "timestamp": (
        "timestamp",
        "datetime",
        "date",
        "time",
        "gmttime",
        "localtime",
        "ts",
        "opentime",
        "candletime",
        "dateutc",
        "timeutc",
    ),
    "open": ("open", "o", "openprice", "bidopen", "priceopen"),
    "high": ("high", "h", "highprice", "bidhigh", "pricehigh"),
    "low": ("low", "l", "lowprice", "bidlow", "pricelow"),
    "close": ("close", "c", "closeprice", "bidclose", "priceclose", "last"),
    "volume": ("volume", "vol", "v", "tickvolume", "tickvol", "volumes", "realvolume"),
}
_SNIFF_BYTES = 64 * 1024
# Rows per chunk when reading a large file: about 70 MB of strings, whatever the file's size.
CHUNK_ROWS = 200_000


def _key(header: str) -> str:
    # "<DATE>", "Gmt time", "Tick_Volume" all reduce to the same comparable key.
    return re.sub(r"[^a-z0-9]", "", str(header).lower())


def read_candles_csv(path: Path) -> pd.DataFrame:
    """Read a candle CSV into columns timestamp, open, high, low, close, volume (all strings).

    The index is the 1-based number of each data row (blank lines are not counted), so a
    quarantined row can be found again. Raises MalformedFileError naming the file and problem.
    The whole file is held in memory: `iter_candles_csv` reads a large one in chunks.
    """
    chunks = list(iter_candles_csv(path))
    return pd.concat(chunks) if len(chunks) > 1 else chunks[0]


def iter_candles_csv(path: Path, chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """`read_candles_csv` in chunks of at most `chunk_rows` rows, numbered as in the whole file.

    The head of the file is checked before the first chunk is yielded; a row that breaks the
    CSV later raises MalformedFileError when its chunk is reached (an importer writing as it
    reads must do so inside a transaction it can roll back). A file with a header and no rows
    yields one empty chunk.
    """
    delimiter = _check_head(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            lines = (line for line in handle if line.strip())  # blank lines are not rows
            header = next(lines, "")
            header += "" if header.endswith(("\n", "\r")) else "\n"
            first_row, chunks = 1, 0
            while True:
                block = list(islice(lines, chunk_rows))
                if chunks and not block:
                    break
                chunk = _canonical_columns(
                    _parse_block(header, block, delimiter, path, first_row), path, first_row
                )
                first_row, chunks = first_row + len(chunk), chunks + 1
                yield chunk
                if not block:  # a header and no rows: one empty chunk
                    break
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MalformedFileError(f"{path}: not a valid CSV file ({first_line})") from None


def _parse_block(
    header: str, block: list[str], delimiter: str, path: Path, first_row: int
) -> pd.DataFrame:
    """One block of lines parsed under the file's header. Each block is parsed as a file of
    its own because pandas, reading in chunks, cuts a too-long first row of a chunk short
    without a word; on a block's first row it warns, and that warning is made an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            return pd.read_csv(
                io.StringIO(header + "".join(block)),
                sep=delimiter,
                dtype=str,
                keep_default_na=False,
                skipinitialspace=True,
                index_col=False,
                on_bad_lines="error",
            )
        except pd.errors.ParserWarning:
            raise MalformedFileError(
                f"{path}: not a valid CSV file (data row {first_row} has more fields than "
                "the header)"
            ) from None
        except pd.errors.ParserError as exc:
            # The parser counts lines of the block (its header is line 1): say the file's row.
            found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
            if found is None:
                raise
            expected, line, saw = map(int, found.groups())
            raise MalformedFileError(
                f"{path}: not a valid CSV file (data row {first_row + line - 2} has {saw} "
                f"fields, the header {expected})"
            ) from None


def _check_head(path: Path) -> str:
    """Refuse what is plainly not a candle CSV from its first bytes; return its delimiter."""
    if not path.exists():
        raise MalformedFileError(f"{path}: no such file")
    if not path.is_file():
        raise MalformedFileError(f"{path}: not a file")
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if not head.strip():
        raise MalformedFileError(f"{path}: empty file")
    if b"\x00" in head:
        raise MalformedFileError(f"{path}: not a CSV file (binary content)")
    try:
        sample = head.decode("utf-8-sig")
    except UnicodeDecodeError:
        # A multi-byte character may be cut at the sample's end; only a real error counts.
        try:
            sample = head[:-4].decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise MalformedFileError(f"{path}: not UTF-8 text ({exc.reason})") from None
    return _sniff_delimiter(sample)


def _sniff_delimiter(sample: str) -> str:
    try:
        return csv.Sniffer().sniff(sample.split("\n", 50)[0] + "\n", delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _canonical_columns(frame: pd.DataFrame, path: Path, first_row: int) -> pd.DataFrame:
    keys = {_key(c): c for c in frame.columns}
    chosen: dict[str, str] = {}
    for canonical, aliases in ALIASES.items():
        for alias in aliases:
            if alias in keys:
                chosen[canonical] = keys[alias]
                break
    # Separate date and time columns (MT4's <DATE>,<TIME>) make one timestamp.
    if "date" in keys and "time" in keys:
        frame["__timestamp"] = (
            frame[keys["date"]].str.strip() + " " + frame[keys["time"]].str.strip()
        )
        chosen["timestamp"] = "__timestamp"
    # A timestamp written as the index: an unnamed first column (pandas writes "Unnamed: 0").
    first = str(frame.columns[0]) if len(frame.columns) else ""
    if "timestamp" not in chosen and (first == "" or first.startswith("Unnamed")):
        chosen["timestamp"] = frame.columns[0]
    missing = [c for c in REQUIRED if c not in chosen]
    if missing:
        found = ", ".join(str(c) for c in frame.columns) or "none"
        raise MalformedFileError(f"{path}: missing column(s) {', '.join(missing)} (found: {found})")
    out = pd.DataFrame(
        {c: frame[chosen[c]].astype(str).str.strip() for c in chosen if c in CANONICAL}
    )
    if "volume" not in out:
        out["volume"] = "0"
    out.index = pd.RangeIndex(first_row, first_row + len(out), name="row")
    return out[list(CANONICAL)]


_NAME_RE = re.compile(
    r"(?P<base>[A-Za-z]{3})[/_-]?(?P<quote>[A-Za-z]{3})[_-](?P<tf>\w+?)(?:\.\w+)?$"
)


def series_from_filename(path: Path) -> tuple[str, str] | None:
    """`EURUSD_1h.csv` or `EUR-USD_1h.csv` → ('EUR/USD', '1h'); None if the name says neither."""
    match = _NAME_RE.search(path.name)
    if not match or match["tf"] not in TIMEFRAMES:
        return None
    return f"{match['base'].upper()}/{match['quote'].upper()}", match["tf"]
