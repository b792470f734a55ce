"""Importing candles into `market_data`: validated, upserted idempotently, indicators kept current.

One import is one transaction: candles, their indicators, the quarantined rows and the
`ml:new_market_data` event are written together or not at all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from aifx_ml.data.reader import read_candles_csv
from aifx_ml.data.validation import Gap, ValidatedCandles, find_gaps, validate_candles
from aifx_ml.db.engine import transaction
from aifx_ml.db.models import DataQuarantine, MarketData
from aifx_ml.events.outbox import enqueue
from aifx_ml.events.schemas import NewMarketData
from aifx_ml.features.indicators import compute_indicators, indicators_to_json

VALUE_COLUMNS = ("open", "high", "low", "close", "volume")


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


def import_csv(
    engine: Engine,
    path: Path,
    pair: str,
    timeframe: str,
    as_of: datetime,
    source: str | None = None,
) -> ImportReport:
    """Read, validate and import one candle CSV. A malformed file raises before any write."""
    raw = read_candles_csv(path)
    checked = validate_candles(raw, pair, timeframe, as_of)
    return import_validated(
        engine, checked, pair, timeframe, as_of, source or str(path), len(raw), raw
    )


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
    return import_validated(engine, checked, pair, timeframe, as_of, source, len(raw), raw)


def import_validated(
    engine: Engine,
    checked: ValidatedCandles,
    pair: str,
    timeframe: str,
    as_of: datetime,
    source: str,
    rows_read: int,
    raw: pd.DataFrame,
) -> ImportReport:
    """Write validated candles and quarantined rows in one transaction."""
    report = ImportReport(source, pair, timeframe, rows_read, duplicates=checked.duplicates)
    report.quarantined = len(checked.rejected)
    with transaction(engine) as session:
        existing = _load_series(
            session, pair, timeframe, _appends(session, checked.valid, pair, timeframe)
        )
        new, changed, same = _diff(checked.valid, existing)
        report.inserted, report.updated = len(new), len(changed)
        report.duplicates += same
        if len(new) or len(changed):
            _write_candles(session, existing, new, changed, pair, timeframe, source, as_of)
            touched = pd.concat([new["timestamp"], changed["timestamp"]])
            report.first_timestamp, report.last_timestamp = touched.min(), touched.max()
            enqueue(
                session,
                NewMarketData(
                    pair=pair,
                    timeframe=timeframe,
                    inserted=report.inserted,
                    updated=report.updated,
                    first_timestamp=report.first_timestamp.to_pydatetime(),
                    last_timestamp=report.last_timestamp.to_pydatetime(),
                    source=source,
                ),
                as_of,
            )
        _quarantine(session, checked.rejected, raw, pair, timeframe, source, as_of)
    if len(checked.valid):
        series = pd.concat([existing["timestamp"], checked.valid["timestamp"]]).drop_duplicates()
        lo, hi = checked.valid["timestamp"].min(), checked.valid["timestamp"].max()
        report.gaps = find_gaps(series[(series >= lo) & (series <= hi)], timeframe)
    return report


def _appends(session: Session, valid: pd.DataFrame, pair: str, timeframe: str) -> bool:
    """Whether every candle comes after the newest stored one (a live feed, a replay)."""
    newest = session.execute(
        select(func.max(MarketData.timestamp)).where(
            MarketData.pair == pair, MarketData.timeframe == timeframe
        )
    ).scalar_one_or_none()
    return newest is None or bool(valid["timestamp"].min() > pd.Timestamp(newest))


def _load_series(session: Session, pair: str, timeframe: str, appends: bool) -> pd.DataFrame:
    """The stored series; row ids only when rows may be updated (appending updates none, and
    reading thousands of UUIDs is most of an append's cost)."""
    ids = [] if appends else [MarketData.id]
    rows = session.execute(
        select(*ids, MarketData.timestamp, *(getattr(MarketData, c) for c in VALUE_COLUMNS))
        .where(MarketData.pair == pair, MarketData.timeframe == timeframe)
        .order_by(MarketData.timestamp)
    ).all()
    frame = pd.DataFrame(rows, columns=[*(["id"] if ids else []), "timestamp", *VALUE_COLUMNS])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame.astype({c: np.float64 for c in VALUE_COLUMNS})


def _diff(valid: pd.DataFrame, existing: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Split valid rows into new, changed (a vendor correction) and already stored as is."""
    if existing.empty or valid["timestamp"].min() > existing["timestamp"].iloc[-1]:
        # Candles after the newest stored one (a live feed, a replay): all new, nothing to match.
        return valid.reset_index(), valid.iloc[:0].reset_index(), 0
    merged = valid.reset_index().merge(
        existing, on="timestamp", how="left", suffixes=("", "_db"), indicator=True
    )
    stored = merged["_merge"] == "both"
    differs = np.zeros(len(merged), dtype=bool)
    for c in VALUE_COLUMNS:
        # Compare as stored: a double read back from either database is the same double.
        differs |= ~np.isclose(merged[c], merged[f"{c}_db"], rtol=1e-12, atol=0.0)
    new = merged[~stored]
    changed = merged[stored & differs]
    return new, changed, int((stored & ~differs).sum())


def _write_candles(
    session: Session,
    existing: pd.DataFrame,
    new: pd.DataFrame,
    changed: pd.DataFrame,
    pair: str,
    timeframe: str,
    source: str,
    as_of: datetime,
) -> None:
    # The series as it will be after this import, so indicators see every candle in order.
    series = existing.set_index("timestamp")[list(VALUE_COLUMNS)].copy()
    series.loc[changed["timestamp"], list(VALUE_COLUMNS)] = changed[list(VALUE_COLUMNS)].to_numpy()
    series = pd.concat([series, new.set_index("timestamp")[list(VALUE_COLUMNS)]]).sort_index()
    indicators = compute_indicators(series)
    since = pd.concat([new["timestamp"], changed["timestamp"]]).min()
    records = dict(
        zip(
            indicators.index[indicators.index >= since],
            indicators_to_json(indicators[indicators.index >= since]),
            strict=True,
        )
    )

    if len(new):
        session.execute(
            _insert(session, MarketData.__table__),  # type: ignore[arg-type]
            [
                {
                    "pair": pair,
                    "timeframe": timeframe,
                    "timestamp": row.timestamp.to_pydatetime(),  # type: ignore[union-attr]
                    **{c: float(getattr(row, c)) for c in VALUE_COLUMNS},
                    "technical_indicators": records[row.timestamp],
                    "source": source,
                    "created_at": as_of,
                    "updated_at": as_of,
                }
                for row in new.itertuples(index=False)
            ],
        )
    changed_ts = set(changed["timestamp"])
    updates: list[dict[str, Any]] = [
        {
            "id": row.id,
            **{c: float(getattr(row, c)) for c in VALUE_COLUMNS},
            "technical_indicators": records[row.timestamp],
            "source": source,
            "updated_at": as_of,
        }
        for row in changed.itertuples(index=False)
    ]
    # Later candles whose indicators moved because an earlier candle arrived or changed.
    later = existing[(existing["timestamp"] >= since) & ~existing["timestamp"].isin(changed_ts)]
    updates += [
        {"id": row.id, "technical_indicators": records[row.timestamp]}
        for row in later.itertuples(index=False)
    ]
    if updates:
        session.execute(update(MarketData), updates)


def _insert(session: Session, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _quarantine(
    session: Session,
    rejected: pd.DataFrame,
    raw: pd.DataFrame,
    pair: str,
    timeframe: str,
    source: str,
    as_of: datetime,
) -> None:
    if rejected.empty:
        return
    rows = []
    # Rejected rows are few; a loop over them reads more plainly than a vectorized build.
    for row_number, reason in zip(rejected.index.tolist(), rejected["reason"], strict=True):
        raw_row = {str(k): str(v) for k, v in raw.loc[row_number].items()}
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
