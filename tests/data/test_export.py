"""Dataset export and statistics over a real database."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine

from aifx_ml.data.export import FEATURES, dataset_stats, export_dataset
from aifx_ml.data.importer import import_frame
from aifx_ml.db.engine import transaction
from aifx_ml.errors import InvalidInputError
from aifx_ml.labeling.store import label_pending
from aifx_ml.signals import record_signals
from tests.conftest import hourly_candles

pytestmark = pytest.mark.integration

START = datetime.fromisoformat("2026-01-05T00:00:00+00:00")
END = datetime.fromisoformat("2026-01-10T00:00:00+00:00")


@pytest.fixture
def filled(engine: Engine, as_of: datetime) -> Engine:
    for pair, seed in (("EUR/USD", 1), ("GBP/USD", 2)):
        candles = hourly_candles("2026-01-05", 120, seed=seed)
        import_frame(engine, candles, pair, "1h", as_of, source="test")
        sigs = pd.DataFrame(
            {
                "pair": pair,
                "timeframe": "1h",
                "signal": ["buy", "sell", "hold"] * 10,
                "confidence": 0.6,
                "entry_price": candles["close"].iloc[:30].to_numpy(),
                "created_at": candles["timestamp"].iloc[:30] + pd.Timedelta(hours=1),
            }
        )
        with transaction(engine) as session:
            record_signals(session, sigs, as_of)
    label_pending(engine, as_of)
    return engine


def test_csv_and_parquet_exports_agree(filled: Engine, tmp_path: Path, as_of: datetime) -> None:
    csv = export_dataset(filled, START, END, tmp_path / "csv", fmt="csv", as_of=as_of)
    parquet = export_dataset(filled, START, END, tmp_path / "pq", fmt="parquet", as_of=as_of)
    meta = json.loads((tmp_path / "csv" / "metadata.json").read_text())
    assert meta == csv.metadata
    assert meta["content_hash"] == parquet.metadata["content_hash"]
    assert meta["row_counts"] == {"candles": 240, "signals": 60}
    assert meta["features"] == list(FEATURES)
    assert sum(meta["label_distribution"].values()) == 60
    assert set(meta["series"]) == {"EUR/USD 1h", "GBP/USD 1h"}
    series = meta["series"]["EUR/USD 1h"]
    assert series["rows"] == 120 and series["first_timestamp"] == "2026-01-05T00:00:00+00:00"
    dist = series["target_distribution"]
    assert dist["up"] + dist["down"] + dist["undecided"] == 120 and dist["undecided"] >= 5

    candles = pd.read_parquet(tmp_path / "pq" / "candles.parquet")
    assert {"rsi_14", "macd", "atr_14", "bb_upper", "adx_14", "stoch_k", "target"} <= set(
        candles.columns
    )
    from_csv = pd.read_csv(tmp_path / "csv" / "candles.csv")
    assert len(from_csv) == len(candles) == 240


def test_content_hash_changes_with_the_data(
    filled: Engine, tmp_path: Path, as_of: datetime
) -> None:
    a = export_dataset(filled, START, END, tmp_path / "a", as_of=as_of)
    b = export_dataset(filled, START, END, tmp_path / "b", pairs=["EUR/USD"], as_of=as_of)
    again = export_dataset(filled, START, END, tmp_path / "c", as_of=as_of)
    assert a.metadata["content_hash"] != b.metadata["content_hash"]
    assert a.metadata["content_hash"] == again.metadata["content_hash"]


def test_export_refuses_to_clobber(filled: Engine, tmp_path: Path, as_of: datetime) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="--overwrite"):
        export_dataset(filled, START, END, out, as_of=as_of)
    assert (out / "keep.txt").read_text() == "mine"
    export_dataset(filled, START, END, out, overwrite=True, as_of=as_of)
    assert sorted(p.name for p in out.iterdir()) == [
        "candles.parquet",
        "metadata.json",
        "signals.parquet",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left behind


def test_empty_selection_is_an_error(filled: Engine, tmp_path: Path, as_of: datetime) -> None:
    with pytest.raises(InvalidInputError, match="no candles"):
        export_dataset(filled, START, END, tmp_path / "x", pairs=["USD/JPY"], as_of=as_of)
    assert not (tmp_path / "x").exists()


def test_stats(filled: Engine) -> None:
    stats = dataset_stats(filled, START, END)
    candles = stats["candles"].set_index("pair")
    assert candles.loc["EUR/USD", "candles"] == 120
    assert candles.loc["EUR/USD", "gaps"] == 0
    assert stats["signals"]["signals"].sum() == 60
