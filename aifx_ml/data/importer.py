"""Importing candles into `market_data`: validated, upserted idempotently, indicators kept current.

One import is one transaction: candles, their indicators, the quarantined rows and the
`ml:new_market_data` event are written together or not at all. A file is read and validated in
chunks, and candles are written in batches, inside that transaction: memory follows the
series' length (a few dozen bytes per candle), not the file's text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
from sqlalchemy import Engine, Table, Text, bindparam, select, update
from sqlalchemy import cast as cast_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from aifx_ml.data.reader import CHUNK_ROWS, iter_candles_csv
from aifx_ml.data.validation import (
    VALUE_COLUMNS,
    Gap,
    SeenCandles,
    ValidatedCandles,
    find_gaps,
    validate_candles,
)
from aifx_ml.db.engine import transaction
from aifx_ml.db.models import DataQuarantine, MarketData
from aifx_ml.db.notices import MARKET_DATA_CHANNEL, announce, series_key
from aifx_ml.events.outbox import enqueue
from aifx_ml.events.schemas import NewMarketData
from aifx_ml.features.indicators import compute_indicators

# Candles per INSERT/UPDATE batch, and per read of the stored series.
WRITE_BATCH = 20_000
READ_BATCH = 100_000


@dataclass
class ImportReport:
    """What one import did. accepted + duplicates + quarantined == rows_read, always."""

    source: str
    pair: str
    timeframe: str
    rows_read: int
    inserted: int = 0
    updated: int = 0
    duplicates: int = 0
    quarantined: int = 0
    first_timestamp: pd.Timestamp | None = None
    last_timestamp: pd.Timestamp | None = None
    gaps: list[Gap] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        """Rows that are now in `market_data` as read: new ones and corrected ones."""
        return self.inserted + self.updated


@dataclass(frozen=True)
class CandleFile:
    """One CSV file to import and the series its rows belong to."""

    path: Path
    pair: str
    timeframe: str


def import_csv(
    engine: Engine,
    path: Path,
    pair: str,
    timeframe: str,
    as_of: datetime,
    source: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ImportReport:
    """Read, validate and import one candle CSV. A malformed file writes nothing."""
    (report,) = import_csv_files(
        engine, [CandleFile(path, pair, timeframe)], as_of, source, chunk_rows=chunk_rows
    )
    return report


def import_csv_files(
    engine: Engine,
    files: Sequence[CandleFile],
    as_of: datetime,
    source: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
    on_file: Callable[[ImportReport], None] | None = None,
) -> list[ImportReport]:
    """Import several files in one transaction, each read in chunks of `chunk_rows` rows.

    If any file turns out not to be a candle CSV (even in its last line), everything is rolled
    back and MalformedFileError says which file and why. `source` defaults to each file's path.
    """
    reports = []
    with transaction(engine) as session:
        for file in files:
            report = _import_file(session, file, as_of, source or str(file.path), chunk_rows)
            reports.append(report)
            if on_file is not None:
                on_file(report)
    return reports


def _import_file(
    session: Session, file: CandleFile, as_of: datetime, source: str, chunk_rows: int
) -> ImportReport:
    report = ImportReport(source, file.pair, file.timeframe, rows_read=0)
    seen = SeenCandles()
    for raw in iter_candles_csv(file.path, chunk_rows):
        checked = validate_candles(raw, file.pair, file.timeframe, as_of, seen)
        report.rows_read += len(raw)
        report.duplicates += checked.duplicates
        report.quarantined += len(checked.rejected)
        _quarantine(session, checked.rejected, file.pair, file.timeframe, source, as_of)
    incoming = _as_series(seen.rows())
    del seen  # the arrays are all that is kept of the rows: free the frames
    _store_candles(session, incoming, report, as_of)
    return report


def import_frame(
    engine: Engine, candles: pd.DataFrame, pair: str, timeframe: str, as_of: datetime, source: str
) -> ImportReport:
    """Import candles already in memory (timestamp, open, high, low, close[, volume])."""
    raw = candles.reindex(columns=["timestamp", *VALUE_COLUMNS]).astype(str)
    raw["timestamp"] = pd.DatetimeIndex(candles["timestamp"]).strftime("%Y-%m-%dT%H:%M:%S%z")
    if "volume" not in candles:
        raw["volume"] = "0"
    raw.index = pd.RangeIndex(1, len(raw) + 1, name="row")
    checked = validate_candles(raw, pair, timeframe, as_of)
    return import_validated(engine, checked, pair, timeframe, as_of, source, len(raw))


def import_rows(
    engine: Engine,
    rows: Sequence[Mapping[str, Any]],
    pair: str,
    timeframe: str,
    as_of: datetime,
    source: str,
) -> ImportReport:
    """Import candles as a feed sends them (`timestamp` ISO 8601 or epoch, `open`, `high`,
    `low`, `close`, optional `volume`; values as numbers or text), row by row like a CSV: a
    row that fails a rule is quarantined with its reason, the rest stored, in one transaction."""
    columns = ["timestamp", *VALUE_COLUMNS]
    raw = pd.DataFrame(
        [["" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows],
        columns=columns,
        dtype=str,
    )
    raw.loc[raw["volume"] == "", "volume"] = "0"
    raw.index = pd.RangeIndex(1, len(raw) + 1, name="row")
    checked = validate_candles(raw, pair, timeframe, as_of)
    return import_validated(engine, checked, pair, timeframe, as_of, source, len(raw))


def import_validated(
    engine: Engine,
    checked: ValidatedCandles,
    pair: str,
    timeframe: str,
    as_of: datetime,
    source: str,
    rows_read: int,
    raw: pd.DataFrame | None = None,
) -> ImportReport:
    """Write validated candles and quarantined rows in one transaction. (`raw` is no longer
    needed: the rejected rows carry their raw columns.)"""
    report = ImportReport(source, pair, timeframe, rows_read, duplicates=checked.duplicates)
    report.quarantined = len(checked.rejected)
    with transaction(engine) as session:
        _store_candles(session, _as_series(checked.valid), report, as_of)
        _quarantine(session, checked.rejected, pair, timeframe, source, as_of)
    return report


@dataclass(frozen=True)
class _Series:
    """A series as sorted arrays: open times (int64 ns, UTC) and VALUE_COLUMNS (float64)."""

    ns: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]  # shape (n, 5)


def _nanoseconds(timestamps: pd.Series) -> npt.NDArray[np.int64]:
    """UTC timestamps as int64 nanoseconds since the epoch."""
    ns: npt.NDArray[np.int64] = np.asarray(
        timestamps.astype("datetime64[ns, UTC]").astype("int64"), dtype=np.int64
    )
    return ns


def _as_series(valid: pd.DataFrame) -> _Series:
    """Valid rows (timestamps unique) as a sorted `_Series`."""
    ns = _nanoseconds(valid["timestamp"])
    order = np.argsort(ns, kind="stable")
    return _Series(ns[order], valid[list(VALUE_COLUMNS)].to_numpy(np.float64)[order])


def _store_candles(
    session: Session, incoming: _Series, report: ImportReport, as_of: datetime
) -> None:
    """Insert new candles, update corrected ones and the indicators that moved; fill in the
    report's counts, range, gaps and announce the change."""
    if not len(incoming.ns):
        return
    pair, timeframe = report.pair, report.timeframe
    stored = _load_series(session, pair, timeframe)
    pos = np.searchsorted(stored.ns, incoming.ns)
    found = pos < len(stored.ns)
    found[found] = stored.ns[pos[found]] == incoming.ns[found]
    differs = np.zeros(len(pos), dtype=bool)
    # Compare as stored: a double read back from either database is the same double.
    differs[found] = ~np.isclose(
        incoming.values[found], stored.values[pos[found]], rtol=1e-12, atol=0.0
    ).all(axis=1)
    new, changed = ~found, found & differs
    report.inserted, report.updated = int(new.sum()), int(changed.sum())
    report.duplicates += int((found & ~differs).sum())
    if new.any() or changed.any():
        touched = incoming.ns[new | changed]
        report.first_timestamp = pd.Timestamp(int(touched.min()), tz="UTC")
        report.last_timestamp = pd.Timestamp(int(touched.max()), tz="UTC")
        series = _write_candles(session, stored, incoming, new, changed, pos, report, as_of)
        enqueue(
            session,
            NewMarketData(
                pair=pair,
                timeframe=timeframe,
                inserted=report.inserted,
                updated=report.updated,
                first_timestamp=report.first_timestamp.to_pydatetime(),
                last_timestamp=report.last_timestamp.to_pydatetime(),
                source=report.source,
            ),
            as_of,
        )
        # Whoever keeps this series in memory (the prediction service) hears it at commit.
        announce(session, MARKET_DATA_CHANNEL, series_key(pair, timeframe))
    else:
        series = stored
    lo, hi = incoming.ns[0], incoming.ns[-1]
    within = series.ns[(series.ns >= lo) & (series.ns <= hi)]
    report.gaps = find_gaps(pd.DatetimeIndex(pd.to_datetime(within, utc=True)), timeframe)


def _load_series(session: Session, pair: str, timeframe: str) -> _Series:
    """The stored series, read in batches into arrays (no row objects kept: a long series
    would cost hundreds of bytes per candle as Python objects)."""
    result = session.execute(
        select(MarketData.timestamp, *(getattr(MarketData, c) for c in VALUE_COLUMNS))
        .where(MarketData.pair == pair, MarketData.timeframe == timeframe)
        .order_by(MarketData.timestamp)
        .execution_options(yield_per=READ_BATCH)
    )
    stamps: list[npt.NDArray[np.int64]] = []
    values: list[npt.NDArray[np.float64]] = []
    for rows in result.partitions():
        stamps.append(_nanoseconds(pd.Series(pd.to_datetime([r[0] for r in rows], utc=True))))
        values.append(np.array([r[1:] for r in rows], dtype=np.float64).reshape(-1, 5))
    if not stamps:
        return _Series(np.empty(0, np.int64), np.empty((0, 5), np.float64))
    return _Series(np.concatenate(stamps), np.concatenate(values))


def _write_candles(
    session: Session,
    stored: _Series,
    incoming: _Series,
    new: npt.NDArray[np.bool_],
    changed: npt.NDArray[np.bool_],
    pos: npt.NDArray[np.intp],
    report: ImportReport,
    as_of: datetime,
) -> _Series:
    """Write the import and every indicator it moves; return the series as it now is."""
    # The series as it will be after this import, so indicators see every candle in order.
    values = stored.values.copy()
    values[pos[changed]] = incoming.values[changed]
    ns = np.concatenate([stored.ns, incoming.ns[new]])
    values = np.concatenate([values, incoming.values[new]])
    # What each candle of the series is to this import: 0 stored as is, 1 corrected, 2 new.
    kind = np.zeros(len(ns), dtype=np.int8)
    kind[pos[changed]] = 1
    kind[len(stored.ns) :] = 2
    if len(stored.ns) and new.any() and incoming.ns[new][0] < stored.ns[-1]:
        order = np.argsort(ns, kind="stable")
        ns, values, kind = ns[order], values[order], kind[order]
    del stored
    series = pd.DataFrame(values, columns=list(VALUE_COLUMNS))
    indicators = compute_indicators(series)
    del series
    # Indicators are causal: only candles from the first new or corrected one on can move.
    since = int(np.flatnonzero(kind)[0])
    common = {"pair": report.pair, "timeframe": report.timeframe}
    table = cast(Table, MarketData.__table__)
    # Indicators go in as JSON text serialized here by orjson (NaN → null), cast to the
    # column's type by the database: the generic JSON bind costs more than everything else.
    as_json = _json_text(session)
    insert = _insert(session, table).values(technical_indicators=as_json)
    by_key = (
        (table.c.pair == report.pair)
        & (table.c.timeframe == report.timeframe)
        & (table.c.timestamp == bindparam("key_ts"))
    )
    correct = update(table).where(by_key).values(technical_indicators=as_json)
    columns = list(indicators.columns)
    for start in range(since, len(ns), WRITE_BATCH):
        stop = min(start + WRITE_BATCH, len(ns))
        stamps = pd.to_datetime(ns[start:stop], utc=True).to_pydatetime()
        records = [
            orjson.dumps(dict(zip(columns, row, strict=True))).decode()
            for row in indicators.iloc[start:stop].to_numpy().tolist()
        ]
        batch_kind = kind[start:stop]
        batch_values = values[start:stop].tolist()
        inserts, updates, moved = [], [], []
        for i, (stamp, record, what) in enumerate(zip(stamps, records, batch_kind, strict=True)):
            if what == 2:
                inserts.append(
                    common
                    | {"timestamp": stamp, "indicators_json": record, "source": report.source}
                    | dict(zip(VALUE_COLUMNS, batch_values[i], strict=True))
                    | {"created_at": as_of, "updated_at": as_of}
                )
            elif what == 1:
                updates.append(
                    {"key_ts": stamp, "indicators_json": record, "source": report.source}
                    | dict(zip(VALUE_COLUMNS, batch_values[i], strict=True))
                    | {"updated_at": as_of}
                )
            else:  # a later candle whose indicators moved because an earlier one arrived
                moved.append({"key_ts": stamp, "indicators_json": record})
        if inserts:
            session.execute(insert, inserts)
        if updates:
            session.execute(correct, updates)
        if moved:
            session.execute(correct, moved)
    return _Series(ns, values)


def _json_text(session: Session) -> Any:
    """A bind `indicators_json` holding JSON text, as the JSON column's value."""
    text = bindparam("indicators_json", type_=Text)
    if session.get_bind().dialect.name == "postgresql":
        return cast_(text, JSONB)
    return text  # SQLite keeps JSON as text


def _insert(session: Session, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _quarantine(
    session: Session,
    rejected: pd.DataFrame,
    pair: str,
    timeframe: str,
    source: str,
    as_of: datetime,
) -> None:
    """Keep refused rows with their reason, once: the key is the row and its reason, neither
    of which depends on when the import ran, so importing the file again adds nothing."""
    if rejected.empty:
        return
    rows = []
    raw_columns = [c for c in rejected.columns if c != "reason"]
    # Rejected rows are few; a loop over them reads more plainly than a vectorized build.
    for row_number, raw_values, reason in zip(
        rejected.index.tolist(),
        rejected[raw_columns].astype(str).to_numpy().tolist(),
        rejected["reason"],
        strict=True,
    ):
        raw_row = dict(zip(raw_columns, raw_values, strict=True))
        key = json.dumps([source, pair, timeframe, int(row_number), raw_row, str(reason)])
        rows.append(
            {
                "source": source,
                "pair": pair,
                "timeframe": timeframe,
                "row_number": int(row_number),
                "raw": raw_row,
                "reason": str(reason),
                "row_hash": hashlib.sha256(key.encode()).hexdigest(),
                "created_at": as_of,
            }
        )
    stmt = _insert(session, DataQuarantine.__table__)  # type: ignore[arg-type]
    session.execute(stmt.on_conflict_do_nothing(index_elements=["row_hash"]), rows)
