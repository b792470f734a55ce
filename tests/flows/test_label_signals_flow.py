"""The labeling flow, run by Prefect's own engine against a real database."""

from __future__ import annotations

import importlib.util
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml
from prefect import Flow
from prefect.client.schemas.schedules import CronSchedule
from sqlalchemy import Engine, select

from aifx_ml.data.importer import import_frame
from aifx_ml.db.engine import transaction
from aifx_ml.db.models import TradingSignal
from aifx_ml.signals import record_signals
from flows.label_signals import label_signals_flow, label_task
from tests.conftest import hourly_candles

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def seed(engine: Engine, as_of: datetime) -> None:
    candles = hourly_candles("2026-01-05", 24)
    import_frame(engine, candles, "EUR/USD", "1h", as_of, source="test")
    signals = pd.DataFrame(
        {
            "pair": "EUR/USD",
            "timeframe": "1h",
            "signal": ["buy", "sell", "hold"],
            "confidence": 0.6,
            "entry_price": candles["close"].iloc[[0, 1, 22]].to_numpy(),
            "created_at": candles["timestamp"].iloc[[1, 2, 23]].to_numpy(),
        }
    )
    with transaction(engine) as session:
        record_signals(session, signals, as_of)


def test_flow_labels_through_prefect(
    prefect_api: None,
    engine: Engine,
    db_url: str,
    as_of: datetime,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    seed(engine, as_of)
    monkeypatch.setenv("AIFX_DATABASE_URL", db_url)
    monkeypatch.setenv("AIFX_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)

    result = label_signals_flow(as_of=as_of)
    assert (result.examined, result.labeled, result.still_pending) == (3, 2, 1)
    with engine.connect() as conn:
        pending = (
            conn.execute(
                select(TradingSignal.signal).where(TradingSignal.actual_outcome == "pending")
            )
            .scalars()
            .all()
        )
    assert pending == ["hold"]  # created at the last candle: its horizon has not elapsed
    assert label_signals_flow(as_of=as_of).labeled == 0  # a second run finds nothing new


def test_task_logic_without_prefect(engine: Engine, db_url: str, as_of: datetime) -> None:
    seed(engine, as_of)
    report = label_task.fn(db_url, False, as_of, 0.005)
    assert report.labeled == 2


def test_every_deployment_points_at_a_flow_with_a_valid_schedule() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert config["deployments"], "prefect.yaml declares no deployments"
    for deployment in config["deployments"]:
        path, name = deployment["entrypoint"].split(":")
        spec = importlib.util.spec_from_file_location("entry", ROOT / path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert isinstance(getattr(module, name), Flow)
        for schedule in deployment["schedules"]:
            CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])


def test_one_moment_for_labeling_and_alerts(
    prefect_api: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without `as_of` the flow reads the clock once: labeling and the alert rules see the
    same moment even when the clock moves between the two steps."""
    import flows.label_signals as module
    from aifx_ml.labeling.store import LabelReport

    ticks = iter(datetime(2026, 3, 2, 12, minute) for minute in range(10))

    class Clock(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return next(ticks)

    seen: dict[str, datetime] = {}

    def label(_url: str, _embedded: bool, as_of: datetime, _threshold: float) -> LabelReport:
        seen["label"] = as_of
        return LabelReport(examined=0, labeled=0, still_pending=0, outcomes={})

    def alerts(_settings: object, as_of: datetime) -> list[str]:
        seen["alerts"] = as_of
        return []

    monkeypatch.setattr(module, "datetime", Clock)
    monkeypatch.setattr(module, "label_task", label)
    monkeypatch.setattr(module, "alerts_task", alerts)
    monkeypatch.setattr(module, "reconcile_task", lambda *_: [])
    monkeypatch.setattr(module, "relay_task", lambda *_: {})
    monkeypatch.setenv("AIFX_DATA_DIR", str(tmp_path))
    module.label_signals_flow()
    assert seen["label"] == seen["alerts"]
