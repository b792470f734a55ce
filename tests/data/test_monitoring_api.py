"""The monitoring API over HTTP on real databases: training-history filters, win rates and
drift per model version computed by hand, the Prometheus series, and a health endpoint that
turns 503 when PostgreSQL or Redis goes away and back to 200 when it returns."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, update
from sqlalchemy.engine import make_url

from aifx_ml.abtest.store import create_test
from aifx_ml.alerts.notify import check_and_alert
from aifx_ml.cli.serve import build_app
from aifx_ml.config import load_settings
from aifx_ml.db.engine import make_engine, transaction, upgrade
from aifx_ml.db.models import (
    EventOutbox,
    MarketData,
    ModelABTest,
    ModelTrainingLog,
    ModelVersion,
    TradingSignal,
)
from aifx_ml.events.outbox import enqueue
from aifx_ml.monitoring.health import health_report
from tests.conftest import AS_OF, REDIS_URL, _postgres_database
from tests.event_payloads import model_deployed, new_prediction
from tests.tcp_proxy import CuttableProxy

pytestmark = pytest.mark.integration
NOW = AS_OF  # Tuesday 2026-11-24 12:00 UTC: the FX market is open
API = "/api/v1/monitoring"
HEALTH = f"{API}/health"


def start_app(
    engine: Engine,
    db_url: str,
    mlflow_uri: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str | None = None,
) -> TestClient:
    for name, value in {
        "AIFX_DATABASE_URL": db_url,
        "AIFX_DATA_DIR": str(tmp_path / "data"),
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "AIFX_REDIS_URL": redis_url,
    }.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return TestClient(build_app(load_settings(), engine=engine, now=lambda: NOW))


@pytest.fixture
def api(
    engine: Engine, db_url: str, mlflow_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """The app on each database, no Redis configured (the embedded default)."""
    with start_app(engine, db_url, mlflow_uri, tmp_path, monkeypatch) as client:
        yield client


def await_status(api: TestClient, code: int, seconds: float = 15.0) -> dict[str, Any]:
    """Poll the health endpoint until it answers `code` (no sleeping: each check is bounded)."""
    deadline = time.monotonic() + seconds
    while True:
        response = api.get(HEALTH)
        if response.status_code == code or time.monotonic() > deadline:
            assert response.status_code == code, response.json()
            body: dict[str, Any] = response.json()
            return body


# --- a small, known world --------------------------------------------------------------------

RUN_IDS = [uuid.uuid4() for _ in range(5)]


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return NOW.replace(day=day, hour=hour, minute=minute)


def seed_runs(engine: Engine) -> None:
    """r0 incremental completed (registered lstm-v1), r1 incremental failed, r2 full completed,
    r3 incremental skipped, r4 incremental running; one a day from Nov 20, 01:00 UTC."""
    kinds = [
        ("incremental", "completed"),
        ("incremental", "failed"),
        ("full", "completed"),
        ("incremental", "skipped"),
        ("incremental", "running"),
    ]
    rows = [
        {
            "id": RUN_IDS[i],
            "training_type": kind,
            "model_type": "lstm",
            "status": status,
            "started_at": at(20 + i, 1),
            "completed_at": None if status == "running" else at(20 + i, 1, 10),
            "error_message": "boom" if status == "failed" else None,
            "metrics": {"holdout_accuracy": 0.56} if status == "completed" else None,
        }
        for i, (kind, status) in enumerate(kinds)
    ]
    with engine.begin() as conn:
        conn.execute(insert(ModelTrainingLog), rows)


def seed_versions(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(ModelVersion),
            [
                {
                    "version": "lstm-v1",
                    "model_type": "lstm",
                    "status": "production",
                    "training_log_id": RUN_IDS[0],
                    "created_at": at(20, 1, 10),
                    "metrics": {
                        "holdout_accuracy": 0.56,
                        "holdout_auc": 0.6,
                        "holdout_samples": 400,
                        "lift_over_baseline": 0.02,
                    },
                    "production_metrics": {
                        "evaluations": [
                            {"month": "2026-10", "drift_share": 0.1},
                            {"month": "2026-09", "drift_share": 0.05},
                        ],
                        "latest": {"month": "2026-10", "drift_share": 0.1},
                    },
                },
                {
                    "version": "lstm-v2",
                    "model_type": "lstm",
                    "status": "staging",
                    "training_log_id": None,
                    "created_at": at(22, 1, 10),
                    "metrics": {"holdout_accuracy": "n/a", "holdout_auc": None},
                    "production_metrics": None,
                },
            ],
        )


# (version, created_at, outcome, pnl %): two UTC days, split a few minutes around midnight.
SIGNALS = [
    ("lstm-v1", at(22, 23, 30), "win", 0.8),
    ("lstm-v1", at(22, 23, 40), "win", 0.6),
    ("lstm-v1", at(22, 23, 50), "loss", -0.7),
    ("lstm-v1", at(22, 23, 55), "breakeven", 0.1),
    ("lstm-v1", at(22, 23, 59), "pending", None),
    ("lstm-v1", at(23, 0, 5), "loss", -0.5),
    ("lstm-v1", at(23, 0, 10), "win", 1.1),
    ("lstm-v2", at(23, 0, 15), "win", 1.0),
    ("lstm-v2", at(23, 0, 20), "loss", -0.6),
    ("lstm-v2", at(23, 0, 25), "loss", -0.4),
    ("naive-majority", at(23, 9), "win", 0.2),  # a version with no model_versions row
]


def seed_signals(engine: Engine) -> None:
    rows = [
        {
            "pair": "EUR/USD",
            "timeframe": "1h",
            "signal": "buy",
            "confidence": 0.6,
            "entry_price": 1.1,
            "created_at": created,
            "actual_outcome": outcome,
            "actual_pnl_percent": pnl,
            "model_version": version,
        }
        for version, created, outcome, pnl in SIGNALS
    ]
    with engine.begin() as conn:
        conn.execute(insert(TradingSignal), rows)


def seed_candles(engine: Engine, pair: str, newest: datetime, hours: int = 3) -> None:
    rows = [
        {
            "pair": pair,
            "timeframe": "1h",
            "timestamp": newest - timedelta(hours=h),
            "open": 1.1,
            "high": 1.2,
            "low": 1.0,
            "close": 1.1,
            "volume": 1.0,
            "source": "test",
        }
        for h in range(hours)
    ]
    with engine.begin() as conn:
        conn.execute(insert(MarketData), rows)


# --- training history ------------------------------------------------------------------------


def history(api: TestClient, **params: Any) -> list[int]:
    response = api.get(f"{API}/training-history", params=params)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["count"] == len(body["runs"])
    return [RUN_IDS.index(uuid.UUID(run["id"])) for run in body["runs"]]


def test_training_history_filters(api: TestClient, engine: Engine) -> None:
    seed_runs(engine)
    seed_versions(engine)
    assert history(api) == [4, 3, 2, 1, 0]  # newest first
    assert history(api, training_type="incremental") == [4, 3, 1, 0]
    assert history(api, status="completed") == [2, 0]
    assert history(api, training_type="incremental", status="completed") == [0]
    assert history(api, since="2026-11-21", until="2026-11-23") == [2, 1]  # naive dates: UTC
    assert history(api, since="2026-11-22T02:00:00+01:00") == [4, 3, 2]  # 01:00 UTC, inclusive
    assert history(api, limit=2) == [4, 3]

    runs = api.get(f"{API}/training-history").json()["runs"]
    first, failed = runs[4], runs[3]
    assert (first["model_version"], first["metrics"]) == ("lstm-v1", {"holdout_accuracy": 0.56})
    assert first["started_at"] == "2026-11-20T01:00:00Z"
    assert (failed["status"], failed["error_message"], failed["model_version"]) == (
        "failed",
        "boom",
        None,
    )
    for params in (
        {"status": "done"},
        {"training_type": "weekly"},
        {"since": "last tuesday"},
        {"until": "2026-13-01"},
        {"limit": 0},
        {"since": "2026-11-23", "until": "2026-11-21"},
    ):
        response = api.get(f"{API}/training-history", params=params)
        assert response.status_code == 422, params


# --- model performance -----------------------------------------------------------------------


def live(body: dict[str, Any]) -> tuple[Any, ...]:
    keys = ("signals", "pending", "wins", "losses", "breakevens", "win_rate", "mean_pnl_percent")
    return tuple(body[k] for k in keys)


def test_model_performance_win_rates_by_hand(api: TestClient, engine: Engine) -> None:
    seed_runs(engine)
    seed_versions(engine)
    seed_signals(engine)
    body = api.get(f"{API}/model-performance").json()
    assert body["period"] == "day"
    by_version = {v["version"]: v for v in body["versions"]}
    assert list(by_version) == ["lstm-v2", "lstm-v1", "naive-majority"]  # newest version first

    v1 = by_version["lstm-v1"]
    assert v1["status"] == "production"
    assert v1["offline"]["holdout_accuracy"] == 0.56 and v1["offline"]["holdout_samples"] == 400
    assert v1["offline"]["holdout_log_loss"] is None
    # Win rate over decided signals: 3 wins / (3 + 2); mean pnl over the 6 labeled.
    assert live(v1["live"]) == (7, 1, 3, 2, 1, pytest.approx(0.6), pytest.approx(1.4 / 6))
    day22, day23 = v1["series"]
    assert day22["period"] == "2026-11-22" and day23["period"] == "2026-11-23"  # UTC days
    assert live(day22["live"]) == (5, 1, 2, 1, 1, pytest.approx(2 / 3), pytest.approx(0.2))
    assert live(day23["live"]) == (2, 0, 1, 1, 0, pytest.approx(0.5), pytest.approx(0.3))
    assert v1["drift"] == [
        {"month": "2026-09", "drift_share": 0.05},
        {"month": "2026-10", "drift_share": 0.1},
    ]
    assert v1["latest_drift_share"] == 0.1

    v2 = by_version["lstm-v2"]
    assert live(v2["live"]) == (3, 0, 1, 2, 0, pytest.approx(1 / 3), pytest.approx(0.0))
    assert v2["offline"]["holdout_accuracy"] is None  # "n/a" is not a number
    assert (v2["drift"], v2["latest_drift_share"]) == ([], None)
    baseline = by_version["naive-majority"]
    assert baseline["status"] is None and live(baseline["live"])[:3] == (1, 0, 1)

    monthly = api.get(f"{API}/model-performance", params={"period": "month"}).json()
    (month,) = next(v for v in monthly["versions"] if v["version"] == "lstm-v1")["series"]
    assert month["period"] == "2026-11" and month["live"]["win_rate"] == pytest.approx(0.6)

    only = api.get(
        f"{API}/model-performance", params={"version": "lstm-v1", "since": "2026-11-23"}
    ).json()["versions"]
    assert [v["version"] for v in only] == ["lstm-v1"]
    assert live(only[0]["live"])[:5] == (2, 0, 1, 1, 0)
    assert api.get(f"{API}/model-performance", params={"period": "week"}).status_code == 422


# --- Prometheus ------------------------------------------------------------------------------


def test_metrics_series_and_values(api: TestClient, engine: Engine) -> None:
    seed_runs(engine)
    seed_versions(engine)
    seed_signals(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(ModelABTest),
            [
                {
                    "test_name": name,
                    "model_type": "lstm",
                    "model_a_version": "lstm-v1",
                    "model_b_version": "lstm-v2",
                    "traffic_split": 0.2,
                    "status": status,
                }
                for name, status in (("now", "active"), ("before", "completed"))
            ],
        )
    with transaction(engine) as session:
        for seconds in (90, 60, 30):
            enqueue(session, new_prediction(seconds), NOW - timedelta(seconds=seconds))
    with engine.begin() as conn:  # the newest one went out; two wait, the oldest for 90 s
        conn.execute(
            update(EventOutbox)
            .where(EventOutbox.created_at == NOW - timedelta(seconds=30))
            .values(published_at=NOW)
        )

    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = set(response.text.splitlines())
    expected = [
        'aifx_training_runs_total{training_type="incremental",status="completed"} 1',
        'aifx_training_runs_total{training_type="incremental",status="failed"} 1',
        'aifx_training_runs_total{training_type="incremental",status="skipped"} 1',
        'aifx_training_runs_total{training_type="incremental",status="running"} 1',
        'aifx_training_runs_total{training_type="full",status="completed"} 1',
        'aifx_training_runs_total{training_type="full",status="failed"} 0',
        'aifx_training_last_success_timestamp_seconds{training_type="incremental"} '
        f"{at(20, 1, 10).timestamp():.0f}",
        f'aifx_training_last_success_timestamp_seconds{{training_type="full"}} '
        f"{at(22, 1, 10).timestamp():.0f}",
        'aifx_predictions_total{model_version="lstm-v1"} 7',
        'aifx_predictions_total{model_version="lstm-v2"} 3',
        'aifx_predictions_total{model_version="naive-majority"} 1',
        'aifx_signals_labeled_total{model_version="lstm-v1",outcome="win"} 3',
        'aifx_signals_labeled_total{model_version="lstm-v1",outcome="loss"} 2',
        'aifx_signals_labeled_total{model_version="lstm-v1",outcome="breakeven"} 1',
        'aifx_signals_labeled_total{model_version="lstm-v2",outcome="breakeven"} 0',
        "aifx_outbox_pending 2",
        "aifx_outbox_oldest_age_seconds 90",
        "aifx_ab_tests_active 1",
        'aifx_model_versions{status="production"} 1',
        'aifx_model_versions{status="staging"} 1',
        'aifx_model_versions{status="archived"} 0',
        "# TYPE aifx_predictions_total counter",
        "# TYPE aifx_outbox_pending gauge",
    ]
    assert [line for line in expected if line not in lines] == []


# --- health: schedules, backlog, market data -------------------------------------------------


def test_health_judges_schedules_backlog_and_market_data(api: TestClient, engine: Engine) -> None:
    fresh = await_status(api, 200)
    assert fresh["status"] == "healthy"  # a new install: nothing is late, no Redis by design
    checks = fresh["checks"]
    assert (checks["database"]["status"], checks["mlflow"]["status"]) == ("up", "up")
    assert checks["redis"]["status"] == "not_configured"
    assert {t["training_type"]: t["status"] for t in checks["training"]} == {
        "full": "unknown",
        "incremental": "unknown",
    }
    assert checks["market_data"]["status"] == "unknown"

    def run(kind: str, status: str, ended: datetime) -> dict[str, Any]:
        return {
            "training_type": kind,
            "model_type": "lstm",
            "status": status,
            "started_at": ended - timedelta(minutes=10),
            "completed_at": ended,
        }

    with engine.begin() as conn:
        conn.execute(
            insert(ModelTrainingLog),
            [
                run("incremental", "completed", NOW - timedelta(hours=27)),  # one day missed
                run("incremental", "failed", NOW - timedelta(hours=3)),
                run("full", "completed", NOW - timedelta(days=3)),
            ],
        )
    seed_candles(engine, "EUR/USD", NOW - timedelta(hours=1))  # closed at 12:00: current
    seed_candles(engine, "GBP/USD", NOW - timedelta(hours=5))  # 08:00: 09, 10, 11 missing
    with transaction(engine) as session:
        enqueue(session, model_deployed(), NOW - timedelta(minutes=20))

    late = await_status(api, 200)  # late is degraded, not down
    assert late["status"] == "degraded"
    training = {t["training_type"]: t for t in late["checks"]["training"]}
    incremental = training["incremental"]
    assert (incremental["status"], incremental["last_run_status"]) == ("stale", "failed")
    assert incremental["age_seconds"] == 27 * 3600 and incremental["max_age_seconds"] == 26 * 3600
    assert "failed" in incremental["detail"]
    assert training["full"]["status"] == "ok"
    market = late["checks"]["market_data"]
    assert (market["status"], market["series"]) == ("stale", 2)
    assert [(s["pair"], s["timeframe"]) for s in market["stale"]] == [("GBP/USD", "1h")]
    outbox = late["checks"]["outbox"]  # 20 minutes old, but no Redis is configured to take it
    assert (outbox["status"], outbox["pending"]) == ("ok", 1)
    assert "AIFX_REDIS_URL is unset" in outbox["detail"]

    # The daily run found nothing to train (as over a weekend): the schedule is alive.
    seed_candles(engine, "GBP/USD", NOW - timedelta(hours=1), hours=1)
    with engine.begin() as conn:
        conn.execute(
            insert(ModelTrainingLog), [run("incremental", "skipped", NOW - timedelta(hours=1))]
        )
    well = await_status(api, 200)
    assert well["status"] == "healthy", well["checks"]
    incremental = next(t for t in well["checks"]["training"] if t["training_type"] == "incremental")
    assert incremental["last_completed_at"] == (NOW - timedelta(hours=27)).isoformat().replace(
        "+00:00", "Z"
    )


def test_a_hung_dependency_is_down_by_the_deadline(engine: Engine) -> None:
    released = threading.Event()

    def hang(**_kwargs: Any) -> None:
        released.wait(30)

    started = time.monotonic()
    try:
        report = health_report(
            engine,
            None,
            SimpleNamespace(uri="sqlite:///x", ping=hang),
            NOW,
            deadline=0.5,
        )
    finally:
        released.set()
    assert time.monotonic() - started < 2.5
    assert (report.mlflow.status, report.status, report.http_status) == ("down", "unhealthy", 503)
    assert "deadline" in report.mlflow.detail
    assert report.database.status == "up"


# --- health: stores going away and coming back -----------------------------------------------


def test_health_follows_redis(
    engine: Engine,
    db_url: str,
    mlflow_uri: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    client: Any,
    proxy: CuttableProxy,
) -> None:
    db = make_url(REDIS_URL).database or "0"
    through = f"redis://127.0.0.1:{proxy.port}/{db}"
    with start_app(engine, db_url, mlflow_uri, tmp_path, monkeypatch, through) as api:
        up = await_status(api, 200)
        assert (up["status"], up["checks"]["redis"]["status"]) == ("healthy", "up")
        proxy.cut()
        down = await_status(api, 503)
        assert (down["status"], down["checks"]["redis"]["status"]) == ("unhealthy", "down")
        assert down["checks"]["database"]["status"] == "up"
        proxy.restore()
        assert await_status(api, 200)["checks"]["redis"]["status"] == "up"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database (this test is about PostgreSQL going away)."""
    yield from _postgres_database()


def test_health_follows_postgresql(
    pg_url: str, mlflow_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: Any
) -> None:
    direct = make_url(pg_url)
    with CuttableProxy((direct.host or "127.0.0.1", direct.port or 5432)) as pg:
        url = direct.set(host="127.0.0.1", port=pg.port).render_as_string(hide_password=False)
        engine = make_engine(url)  # pool_pre_ping: connections a cut broke are replaced
        upgrade(engine)
        try:
            with start_app(engine, url, mlflow_uri, tmp_path, monkeypatch, REDIS_URL) as api:
                assert await_status(api, 200)["status"] == "healthy"
                pg.cut()
                down = await_status(api, 503)
                checks = down["checks"]
                assert (down["status"], checks["database"]["status"]) == ("unhealthy", "down")
                assert (checks["redis"]["status"], checks["mlflow"]["status"]) == ("up", "up")
                assert checks["outbox"]["status"] == "unknown"
                assert {t["status"] for t in checks["training"]} == {"unknown"}
                for path in ("/metrics", f"{API}/training-history", f"{API}/model-performance"):
                    gone = api.get(path)
                    assert gone.status_code == 503, path
                    assert gone.json()["detail"].startswith("database unreachable: ")
                    assert str(pg.port) not in gone.text and "127.0.0.1" not in gone.text
                pg.restore()
                assert await_status(api, 200)["checks"]["database"]["status"] == "up"
                assert api.get("/metrics").status_code == 200
        finally:
            engine.dispose()


def test_an_ageing_production_model_degrades_health_and_alerts(
    api: TestClient, engine: Engine
) -> None:
    """Production two days from the staleness limit with nothing under test: health says so
    (degraded) and an alert is raised; a candidate under test calms it; stale is critical."""
    trained = NOW - timedelta(days=12, hours=12)
    with engine.begin() as conn:
        conn.execute(
            insert(ModelVersion),
            [
                {"version": "lstm-v1", "model_type": "lstm", "status": "production",
                 "created_at": trained},
                {"version": "lstm-v2", "model_type": "lstm", "status": "staging",
                 "created_at": NOW - timedelta(days=1)},
            ],
        )  # fmt: skip
    settings = load_settings()

    body = await_status(api, 200)
    (production,) = body["checks"]["production"]
    assert (production["version"], production["status"], production["candidate"]) == (
        "lstm-v1",
        "ageing",
        None,
    )
    assert production["age_seconds"] == 12.5 * 86400
    assert "no candidate under test" in production["detail"]
    assert body["status"] == "degraded"
    raised = check_and_alert(engine, settings, NOW)
    assert [(a.kind, a.severity, a.alert_key) for a in raised] == [
        ("production_ageing", "warning", "production-ageing:lstm-v1")
    ]

    test = create_test(
        engine,
        name="v2 vs v1",
        model_a_version="lstm-v1",
        model_b_version="lstm-v2",
        traffic_split=None,
        as_of=NOW,
        mode="shadow",
    )
    body = await_status(api, 200)
    (production,) = body["checks"]["production"]
    assert (production["status"], production["candidate"]) == ("ageing", "lstm-v2")
    assert body["status"] == "healthy"  # a candidate may replace it in time
    assert check_and_alert(engine, settings, NOW) == []

    later = NOW + timedelta(days=2)
    stale = check_and_alert(engine, settings, later)
    assert [(a.kind, a.severity, a.alert_key) for a in stale] == [
        ("production_ageing", "critical", "production-stale:lstm-v1")
    ]
    assert f"{test.model_b_version} is under test" in stale[0].body
