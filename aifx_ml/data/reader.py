"""Reading OHLCV CSV files whatever their header spelling, into canonical string columns.

Nothing is parsed to numbers here: a row that will not parse is a validation finding for
`validation.py` (quarantined with a reason), whereas a file that is not a candle CSV at all is
a `MalformedFileError` that stops the import before anything is written.
"""

from __future__ import annotations

import csv
import re
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


def _key(header: str) -> str:
    # "<DATE>", "Gmt time", "Tick_Volume" all reduce to the same comparable key.
    return re.sub(r"[^a-z0-9]", "", str(header).lower())


def read_candles_csv(path: Path) -> pd.DataFrame:
    """Read a candle CSV into columns timestamp, open, high, low, close, volume (all strings).

    The index is the 1-based number of each data row (blank lines are not counted), so a
    quarantined row can be found again. Raises MalformedFileError naming the file and problem.
    """
    if not path.exists():
        raise MalformedFileError(f"{path}: no such file")
    if not path.is_file():
        raise MalformedFileError(f"{path}: not a file")
    head = path.open("rb").read(_SNIFF_BYTES)
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
    delimiter = _sniff_delimiter(sample)
    try:
        frame = pd.read_csv(
            path,
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
            encoding="utf-8-sig",
            on_bad_lines="error",
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MalformedFileError(f"{path}: not a valid CSV file ({first_line})") from None
    return _canonical_columns(frame, path)


def _sniff_delimiter(sample: str) -> str:
    try:
        return csv.Sniffer().sniff(sample.split("\n", 50)[0] + "\n", delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _canonical_columns(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
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
    out.index = pd.RangeIndex(1, len(out) + 1, name="row")
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
