"""Monitoring without a database: the overall-status rules, staleness across the FX weekend,
the Prometheus text format, defensive reading of stored metrics, and dependency checks that
fail fast."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from aifx_ml.markets import missing_candles
from aifx_ml.monitoring.health import (
    Check,
    DependencyCheck,
    MarketDataFreshness,
    OutboxBacklog,
    TrainingFreshness,
    check_mlflow,
    check_redis,
    overall,
)
from aifx_ml.monitoring.queries import (
    DriftPoint,
    Family,
    MetricsSnapshot,
    drift_history,
    families,
    offline_metrics,
    render_prometheus,
)

UP = DependencyCheck("database", "up", "")
REDIS_UNSET = DependencyCheck("redis", "not_configured", "")
MLFLOW_UP = DependencyCheck("mlflow", "up", "")


def fresh(status: Any = "ok") -> TrainingFreshness:
    return TrainingFreshness("incremental", status, "", 93600.0)


def backlog(status: Any = "ok") -> OutboxBacklog:
    return OutboxBacklog(status, "", 10_000, 900.0)


def market(status: Any = "ok") -> MarketDataFreshness:
    return MarketDataFreshness(status, "")


@pytest.mark.parametrize(
    ("checks", "expected"),
    [
        ([UP, REDIS_UNSET, MLFLOW_UP, fresh(), backlog(), market()], "healthy"),
        # A new install: nothing to judge yet, and no Redis on the embedded default.
        ([UP, REDIS_UNSET, MLFLOW_UP, fresh("unknown"), backlog(), market("unknown")], "healthy"),
        ([DependencyCheck("database", "down", "x"), MLFLOW_UP, fresh("unknown")], "unhealthy"),
        ([UP, DependencyCheck("redis", "down", "x"), MLFLOW_UP], "unhealthy"),
        ([UP, REDIS_UNSET, DependencyCheck("mlflow", "down", "x")], "unhealthy"),
        ([UP, REDIS_UNSET, MLFLOW_UP, fresh("stale")], "degraded"),
        ([UP, REDIS_UNSET, MLFLOW_UP, backlog("backlog")], "degraded"),
        ([UP, REDIS_UNSET, MLFLOW_UP, market("stale")], "degraded"),
        # Down beats late.
        ([UP, DependencyCheck("redis", "down", "x"), fresh("stale"), market("stale")], "unhealthy"),
    ],
)
def test_overall_status_rules(checks: list[Check], expected: str) -> None:
    assert overall(checks) == expected


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.mark.parametrize(
    ("newest", "timeframe", "now", "missing"),
    [
        # Tuesday: the newest hourly candle closed at 12:00, now is 12:30: nothing missing.
        ("2026-11-24 11:00", "1h", "2026-11-24 12:30", 0),
        ("2026-11-24 08:00", "1h", "2026-11-24 12:30", 3),  # 09, 10, 11 have closed
        # Friday 20:00 was the last bar before the weekend close: Sunday evening is not late...
        ("2026-11-27 20:00", "1h", "2026-11-29 23:30", 1),  # only Sunday 22:00 has closed
        # ...but Monday 01:30 is (22:00, 23:00, 00:00 have closed), not 53 bars late.
        ("2026-11-27 20:00", "1h", "2026-11-30 01:30", 3),
        ("2026-11-27 00:00", "1d", "2026-11-30 12:00", 0),  # Friday's daily bar, Monday noon
        ("2026-09-01 00:00", "1M", "2026-11-24 12:00", 1),  # October closed on Nov 1
        # A one-minute series dead for a year: counted only as far as anyone needs.
        ("2025-11-24 11:00", "1min", "2026-11-24 12:00", 3),
    ],
)
def test_missing_bars_ignore_the_weekend(
    newest: str, timeframe: str, now: str, missing: int
) -> None:
    assert missing_candles(ts(newest), timeframe, ts(now), enough=3) == missing


SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_]\w*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_]\w*="(?:[^"\\\n]|\\.)*")*\})?'
    r" (?:[+-]?\d+(?:\.\d+)?(?:e[+-]?\d+)?|NaN|[+-]Inf)$"
)


def snapshot() -> MetricsSnapshot:
    return MetricsSnapshot(
        training_runs={("incremental", "completed"): 3, ("full", "failed"): 1},
        last_success={"incremental": datetime(2026, 11, 24, 1, 10, tzinfo=UTC)},
        predictions={"lstm-v1": 7, 'odd"name\\x': 1},
        labeled={("lstm-v1", "win"): 3, ("lstm-v1", "loss"): 2, ("lstm-v1", "breakeven"): 0},
        outbox_pending=2,
        outbox_oldest_age_seconds=90.5,
        ab_tests_active=1,
        model_versions={"production": 1, "staging": 2},
    )


def test_prometheus_text_parses_line_by_line() -> None:
    text = render_prometheus(families(snapshot()))
    assert text.endswith("\n")
    declared: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge") and name not in declared
            declared[name] = kind
            continue
        assert SAMPLE.match(line), line
        assert line.split("{")[0].split(" ")[0] in declared  # TYPE comes before samples
    assert set(declared) == {
        "aifx_training_runs_total",
        "aifx_training_last_success_timestamp_seconds",
        "aifx_predictions_total",
        "aifx_signals_labeled_total",
        "aifx_outbox_pending",
        "aifx_outbox_oldest_age_seconds",
        "aifx_ab_tests_active",
        "aifx_model_versions",
    }
    lines = set(text.splitlines())
    assert 'aifx_training_runs_total{training_type="incremental",status="completed"} 3' in lines
    assert (
        'aifx_training_runs_total{training_type="full",status="skipped"} 0' in lines
    )  # zero-filled
    stamp = datetime(2026, 11, 24, 1, 10, tzinfo=UTC).timestamp()
    assert (
        f'aifx_training_last_success_timestamp_seconds{{training_type="incremental"}} {stamp:.0f}'
        in lines
    )
    assert 'aifx_predictions_total{model_version="odd\\"name\\\\x"} 1' in lines  # escaped
    assert 'aifx_signals_labeled_total{model_version="lstm-v1",outcome="win"} 3' in lines
    assert "aifx_outbox_oldest_age_seconds 90.5" in lines
    assert 'aifx_model_versions{status="archived"} 0' in lines


def test_special_values_and_help_escaping() -> None:
    text = render_prometheus(
        [Family("x_ratio", "gauge", "line one\nline two", [({}, float("nan")), ({"a": "b"}, 1e21)])]
    )
    assert text.splitlines() == [
        "# HELP x_ratio line one\\nline two",
        "# TYPE x_ratio gauge",
        "x_ratio NaN",
        'x_ratio{a="b"} 1e+21',
    ]


def test_offline_metrics_are_read_defensively() -> None:
    found = offline_metrics(
        {"holdout_accuracy": 0.56, "holdout_auc": float("nan"), "holdout_brier": "0.2"}
    )
    assert (found.holdout_accuracy, found.holdout_auc, found.holdout_brier) == (0.56, None, None)
    assert found.lift_over_production is None
    assert offline_metrics(None) == offline_metrics(["not", "a", "dict"])  # type: ignore[arg-type]
    assert offline_metrics({"holdout_samples": True}).holdout_samples is None  # not a number


@pytest.mark.parametrize(
    ("stored", "points"),
    [
        (None, ()),
        ("garbage", ()),
        ({"evaluations": "not a list", "latest": 3}, ()),
        (
            {
                "evaluations": [
                    {"month": "2026-10", "drift_share": 0.1},
                    {"month": "2026-09", "drift_share": 0.05},
                    "junk",
                ],
                "latest": {"month": "2026-10", "drift_share": 0.1},  # repeats October
            },
            (DriftPoint("2026-09", 0.05), DriftPoint("2026-10", 0.1)),
        ),
        ({"latest": {"month": "2026-11", "drift_share": 0.3}}, (DriftPoint("2026-11", 0.3),)),
        ({"drift_share": "high"}, (DriftPoint(None, None),)),
    ],
)
def test_drift_history_is_read_defensively(stored: Any, points: tuple[DriftPoint, ...]) -> None:
    assert drift_history(stored) == points


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there now: connections are refused at once


def test_redis_checks() -> None:
    assert check_redis(None).status == "not_configured"
    down = check_redis(f"redis://127.0.0.1:{closed_port()}/0", timeout=1.0)
    assert down.status == "down" and "ConnectionError" in down.detail


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def mlflow_server() -> Iterator[str]:
    """Something that answers like an MLflow tracking server's `/health`."""
    server = HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_mlflow_checks(mlflow_server: str) -> None:
    assert check_mlflow(SimpleNamespace(uri=mlflow_server)).status == "up"
    gone = check_mlflow(SimpleNamespace(uri=f"http://127.0.0.1:{closed_port()}"))
    assert gone.status == "down" and "refused" in gone.detail.lower()

    def broken() -> None:
        raise OSError("unable to open database file")

    local = SimpleNamespace(uri="sqlite:///gone/mlflow.db", ping=broken)
    assert check_mlflow(local) == DependencyCheck(
        "mlflow", "down", "OSError: unable to open database file"
    )
