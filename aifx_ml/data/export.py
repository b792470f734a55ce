"""Exporting training datasets (candles + indicators + target, labeled signals, metadata) and
the statistics of what is stored.

An export is written to a temporary folder next to the destination and renamed into place,
so a reader never sees half a dataset. Its content hash covers the data, not the file format:
the CSV and Parquet exports of the same rows carry the same hash.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from sqlalchemy import Engine, func, select

from aifx_ml.data.candles import (
    load_candles,
    load_labeled_signals,
)
from aifx_ml.data.validation import find_gaps
from aifx_ml.db.engine import session_factory
from aifx_ml.db.models import DataQuarantine, MarketData, TradingSignal
from aifx_ml.domain import OUTCOMES
from aifx_ml.errors import InvalidInputError
from aifx_ml.features.indicators import INDICATOR_COLUMNS
from aifx_ml.markets import horizon

Format = Literal["csv", "parquet"]
FEATURES = ("open", "high", "low", "close", "volume", *INDICATOR_COLUMNS)


# Row ids and labeling times differ between two stores holding the same data; the content
# hash leaves them out so that it identifies the data, not the database it came from.
BOOKKEEPING = ("id", "labeled_at")


@dataclass(frozen=True)
class Export:
    """Where an export went and what its metadata says."""

    out_dir: Path
    metadata: dict[str, Any]


def content_hash(*frames: pd.DataFrame) -> str:
    """SHA-256 of the rows themselves (values and column names), independent of file format."""
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(json.dumps(list(map(str, frame.columns))).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def export_dataset(
    engine: Engine,
    start: datetime,
    end: datetime,
    out_dir: Path,
    *,
    pairs: list[str] | None = None,
    timeframes: list[str] | None = None,
    fmt: Format = "parquet",
    overwrite: bool = False,
    as_of: datetime,
) -> Export:
    """Write candles, labeled signals and metadata.json to `out_dir`, all or nothing."""
    if end <= start:
        raise InvalidInputError(
            f"empty range: end {end.isoformat()} is not after start {start.isoformat()}"
        )
    if fmt not in ("csv", "parquet"):
        raise InvalidInputError(f"unknown format {fmt!r}: expected csv or parquet")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise InvalidInputError(
            f"{out_dir} exists and is not empty (use --overwrite to replace it)"
        )
    candles = load_candles(engine, start, end, pairs, timeframes)
    if candles.empty:
        raise InvalidInputError(
            f"no candles between {start.isoformat()} and {end.isoformat()} for the selection"
        )
    signals = load_labeled_signals(engine, start, end, pairs, timeframes)
    metadata = _metadata(candles, signals, start, end, fmt, as_of)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for name, frame in (("candles", candles), ("signals", signals)):
            path = staging / f"{name}.{fmt}"
            if fmt == "csv":
                frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
            else:
                frame.to_parquet(path, index=False)
            metadata["files"][name]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        (staging / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        _swap_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Export(out_dir=out_dir, metadata=metadata)


def _swap_into_place(staging: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out_dir.rename(old)
    staging.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _metadata(
    candles: pd.DataFrame,
    signals: pd.DataFrame,
    start: datetime,
    end: datetime,
    fmt: str,
    as_of: datetime,
) -> dict[str, Any]:
    series = {}
    for (pair, timeframe), group in candles.groupby(["pair", "timeframe"]):
        target = group["target"]
        series[f"{pair} {timeframe}"] = {
            "pair": pair,
            "timeframe": timeframe,
            "rows": len(group),
            "first_timestamp": group["timestamp"].min().isoformat(),
            "last_timestamp": group["timestamp"].max().isoformat(),
            "target_horizon": str(horizon(str(timeframe))),
            "target_distribution": {
                "up": int((target == 1).sum()),
                "down": int((target == 0).sum()),
                "undecided": int(target.isna().sum()),
            },
        }
    outcomes = signals["actual_outcome"].value_counts()
    return {
        "created_at": as_of.isoformat(),
        "range": {"start": start.isoformat(), "end": end.isoformat()},
        "format": fmt,
        "content_hash": content_hash(candles, signals.drop(columns=list(BOOKKEEPING))),
        "content_hash_excludes": {"signals": list(BOOKKEEPING)},
        "row_counts": {"candles": len(candles), "signals": len(signals)},
        "series": series,
        "features": list(FEATURES),
        "target": {
            "column": "target",
            "definition": "1 if the close at the label horizon is above the candle's close, "
            "0 if below; empty where the horizon has not elapsed inside the range or the "
            "price did not move",
        },
        "label_distribution": {o: int(outcomes.get(o, 0)) for o in OUTCOMES if o != "pending"},
        "files": {
            "candles": {"path": f"candles.{fmt}", "rows": len(candles)},
            "signals": {"path": f"signals.{fmt}", "rows": len(signals)},
        },
    }


def dataset_stats(engine: Engine, start: datetime, end: datetime) -> dict[str, pd.DataFrame]:
    """What is stored in [start, end): candles per series (with gaps), signals per model and
    outcome, and quarantined rows per series."""
    with session_factory(engine)() as session:
        candle_rows = session.execute(
            select(MarketData.pair, MarketData.timeframe, MarketData.timestamp)
            .where(MarketData.timestamp >= start, MarketData.timestamp < end)
            .order_by(MarketData.pair, MarketData.timeframe, MarketData.timestamp)
        ).all()
        signal_rows = session.execute(
            select(
                TradingSignal.model_version,
                TradingSignal.actual_outcome,
                func.count(),
                func.avg(TradingSignal.actual_pnl_percent),
            )
            .where(TradingSignal.created_at >= start, TradingSignal.created_at < end)
            .group_by(TradingSignal.model_version, TradingSignal.actual_outcome)
        ).all()
        quarantine_rows = session.execute(
            select(DataQuarantine.pair, DataQuarantine.timeframe, func.count()).group_by(
                DataQuarantine.pair, DataQuarantine.timeframe
            )
        ).all()
    candles = pd.DataFrame(candle_rows, columns=["pair", "timeframe", "timestamp"])
    candles["timestamp"] = pd.to_datetime(candles["timestamp"], utc=True)
    per_series = [
        {
            "pair": pair,
            "timeframe": timeframe,
            "candles": len(group),
            "first": group["timestamp"].min(),
            "last": group["timestamp"].max(),
            "gaps": len(gaps := find_gaps(group["timestamp"], str(timeframe))),
            "missing_candles": sum(g.missing for g in gaps),
        }
        for (pair, timeframe), group in candles.groupby(["pair", "timeframe"])
    ]
    return {
        "candles": pd.DataFrame(
            per_series,
            columns=["pair", "timeframe", "candles", "first", "last", "gaps", "missing_candles"],
        ),
        "signals": pd.DataFrame(
            signal_rows, columns=["model_version", "outcome", "signals", "mean_pnl_percent"]
        ),
        "quarantine": pd.DataFrame(quarantine_rows, columns=["pair", "timeframe", "rows"]),
    }
