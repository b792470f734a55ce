"""The API's input limits on real databases: every input that used to end in a 500 is a 4xx
with the one error shape; bodies over the limit 413, batches over theirs 422, writes past the
rate limit 429 (in memory and shared through Redis); health hides hosts without the token."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from aifx_ml.abtest.store import TestPlan
from aifx_ml.cli.serve import build_app
from aifx_ml.config import load_settings
from aifx_ml.data.importer import import_frame
from aifx_ml.db.models import ModelABTest, TradingSignal
from aifx_ml.errors import InvalidInputError
from aifx_ml.serving.limits import KEY_PREFIX
from tests.conftest import REDIS_URL
from tests.serving_helpers import register_constant, trending_candles

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
HISTORY = 24 * 4
TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PREDICT = "/api/v1/predict"
AB = "/api/v1/ml/ab-tests"


@contextmanager
def serve(
    engine: Engine, db_url: str, mlflow_uri: str, tmp_path: Path, mp: pytest.MonkeyPatch, **env: str
) -> Iterator[TestClient]:
    """The app over `engine` with the token set and `env` on top."""
    for name, value in {
        "AIFX_DATABASE_URL": db_url,
        "AIFX_DATA_DIR": str(tmp_path / "data"),
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "AIFX_API_TOKEN": TOKEN,
        **env,
    }.items():
        mp.setenv(name, value)
    mp.chdir(tmp_path)
    app = build_app(load_settings(), engine=engine, now=lambda: T0, refresh_seconds=0)
    with TestClient(app) as api:
        yield api


@pytest.fixture
def api(
    engine: Engine, db_url: str, mlflow_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """Two constant models (v1 Production, v2 Staging) and four days of EUR/USD candles."""
    frame = trending_candles(str((T0 - timedelta(hours=HISTORY)).date()), HISTORY)
    import_frame(engine, frame, "EUR/USD", "1h", T0, source="test")
    art, trained = str(tmp_path / "art"), T0 - timedelta(days=1)
    register_constant(engine, mlflow_uri, art, 0.8, trained, "production")
    register_constant(engine, mlflow_uri, art, 0.3, trained)
    with serve(engine, db_url, mlflow_uri, tmp_path, monkeypatch) as client:
        yield client


def refused(response: Any, status: int = 422) -> dict[str, Any]:
    """The answer is `status` with the one error shape, and JSON a strict parser reads."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = orjson.loads(response.content)  # refuses NaN and bad surrogates
    assert isinstance(body["detail"], str) and "\n" not in body["detail"]
    if "errors" in body:
        assert all({"loc", "msg", "type"} <= set(e) and "input" not in e for e in body["errors"])
    return body


def candles(n: int = 70) -> list[dict[str, Any]]:
    frame = trending_candles("2026-02-20", n)
    return [{**r, "timestamp": r["timestamp"].isoformat()} for r in frame.to_dict("records")]


def raw(api: TestClient, path: str, text: str, **headers: str) -> Any:
    """POST a body as written (json= would refuse NaN or a lone surrogate before sending)."""
    return api.post(
        path, content=text.encode(), headers={"content-type": "application/json", **headers}
    )


# --- every 500 anyone could trigger is now a 4xx ---------------------------------------------


def test_a_bearer_token_with_non_ascii_bytes_is_401(api: TestClient) -> None:
    for token in (b"Bearer \xff\xfe", b"Bearer caf\xc3\xa9", b"Bearer a\x01b"):
        response = api.post(AB, json={}, headers={"Authorization": token})  # type: ignore[dict-item]
        assert "malformed bearer token" in refused(response, 401)["detail"]
    assert api.post(f"{AB}/{uuid.uuid4()}/cancel", json={}, headers=AUTH).status_code == 404


UNREPRESENTABLE = [
    '{"pair": "EUR/USD", "timeframe": "1h", "candles": [{"timestamp": "2026-02-20T00:00:00Z", '
    '"open": NaN, "high": 1, "low": 1, "close": 1}]}',
    '{"pair": "EUR/USD", "timeframe": "1h", "candles": [{"timestamp": "2026-02-20T00:00:00Z", '
    '"open": 1, "high": 1e309, "low": 1, "close": 1}]}',
    '{"pair": "EUR/USD", "timeframe": "1h", "candles": [{"timestamp": "2026-02-20T00:00:00Z", '
    '"open": 1, "high": 1, "low": 1, "close": -Infinity}]}',
    '{"pair": "EUR/USD", "timeframe": "1h", "routing_key": "\\ud800"}',
    '{"pair": "EUR/USD", "timeframe": "\\udfff"}',
    '{"pair": NaN, "timeframe": "1h"}',
    '{"pair": "EUR/USD", "timeframe": "1h", "candles": [{"timestamp": "2300-01-01T00:00:00Z", '
    '"open": 1, "high": 1, "low": 1, "close": 1}]}',
    '{"pair": "EUR/USD", "timeframe": "1h", "candles": [{"timestamp": "0001-01-01T00:00:00+05:00", '
    '"open": 1, "high": 1, "low": 1, "close": 1}]}',
]


def test_unrepresentable_numbers_strings_and_dates_are_422(api: TestClient) -> None:
    for body in UNREPRESENTABLE:
        refused(raw(api, PREDICT, body))
        refused(raw(api, f"{PREDICT}/batch", f'{{"requests": [{body}]}}'))


def test_a_candle_dated_2300_names_the_bound(api: TestClient) -> None:
    sent = candles()
    sent[-1]["timestamp"] = "2300-01-01T00:00:00+00:00"
    body = refused(api.post(PREDICT, json={"pair": "EUR/USD", "timeframe": "1h", "candles": sent}))
    assert "before 2200-01-01" in body["detail"]
    assert body["errors"][0]["loc"] == ["body", "candles", 69, "timestamp"]


def test_control_characters_in_identifiers_and_text_are_422(
    api: TestClient, engine: Engine
) -> None:
    good = {"test_name": "t", "model_a_version": "lstm-v1", "model_b_version": "lstm-v2"}
    for bad in ("lstm\x00", "ls\ntm", "lstm v1", "", "x" * 65, "lstm\x7f"):
        body = {"pair": "EUR/USD", "timeframe": "1h", "model_type": bad}
        refused(api.post(PREDICT, json=body))
        for field in ("model_a_version", "model_b_version"):
            body = {**good, "traffic_split": 0.2, field: bad}
            assert field in refused(api.post(AB, json=body, headers=AUTH))["detail"]
        complete = api.post(f"{AB}/{uuid.uuid4()}/complete", json={"winner": bad}, headers=AUTH)
        refused(complete)
        refused(api.get("/api/v1/monitoring/model-performance", params={"version": bad}))
    for bad in ("a\x00b", "tab\there", "\x1b[31mred"):
        body = {"pair": "EUR/USD", "timeframe": "1h", "routing_key": bad}
        refused(api.post(PREDICT, json=body))
        refused(api.post(AB, json={**good, "traffic_split": 0.2, "test_name": bad}, headers=AUTH))
        refused(api.post(f"{AB}/{uuid.uuid4()}/cancel", json={"reason": bad}, headers=AUTH))
    fine = api.post(PREDICT, json={"pair": "EUR/USD", "timeframe": "1h", "routing_key": "é-1"})
    assert fine.status_code == 200
    api.app.state.services.predictions.flush()  # type: ignore[attr-defined]
    with engine.connect() as conn:
        assert conn.execute(select(TradingSignal.routing_key)).scalars().all() == ["é-1"]
        assert conn.execute(select(ModelABTest)).first() is None


def test_an_ab_plan_is_bounded(api: TestClient, engine: Engine) -> None:
    for plan, field in [
        ('{"max_days": 1e10}', "max_days"),
        ('{"max_days": Infinity}', "max_days"),
        ('{"max_days": NaN}', "max_days"),
        ('{"max_days": 366}', "max_days"),
        ('{"alpha": NaN}', "alpha"),
        ('{"guardrail_pnl_margin": 1e308}', "guardrail_pnl_margin"),
        ('{"guardrail_pnl_margin": Infinity}', "guardrail_pnl_margin"),
        ('{"max_decided_per_arm": 1e30}', "max_decided_per_arm"),
        ('{"min_decided_per_arm": 10000000}', "min_decided_per_arm"),
    ]:
        body = (
            '{"test_name": "t", "model_a_version": "lstm-v1", "model_b_version": "lstm-v2", '
            f'"traffic_split": 0.2, "plan": {plan}}}'
        )
        assert field in refused(raw(api, AB, body, **AUTH))["detail"], plan
    with engine.connect() as conn:
        assert conn.execute(select(ModelABTest)).first() is None


@pytest.mark.parametrize(
    "change",
    [
        {"max_days": float("inf")},
        {"max_days": float("nan")},
        {"max_days": 1e10},
        {"alpha": float("nan")},
        {"tau": float("inf")},
        {"guardrail_pnl_margin": float("nan")},
        {"max_decided_per_arm": 10**9},
        {"srm_threshold": float("nan")},
    ],
)
def test_the_library_refuses_an_unbounded_plan_too(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError, match=next(iter(change)).split("_per")[0]):
        TestPlan(**change)


def test_a_plan_stored_with_a_null_reads_as_the_default() -> None:
    stored = {**TestPlan().as_dict(), "max_days": None, "guardrail_pnl_margin": None}
    assert TestPlan.from_dict(stored) == TestPlan()


def test_a_bounded_plan_is_stored_and_its_test_can_be_evaluated(api: TestClient) -> None:
    body = {
        "test_name": "t",
        "model_a_version": "lstm-v1",
        "model_b_version": "lstm-v2",
        "traffic_split": 0.2,
        "plan": {"max_days": 365, "guardrail_pnl_margin": 100, "max_decided_per_arm": 1_000_000},
    }
    created = api.post(AB, json=body, headers=AUTH)
    assert created.status_code == 201, created.text
    test_id = created.json()["id"]
    assert created.json()["config"]["max_days"] == 365
    assert api.get(f"{AB}/{test_id}/metrics").status_code == 200
    assert api.post(f"{AB}/{test_id}/evaluate", headers=AUTH).status_code == 200


# --- limits -------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413(
    engine: Engine, db_url: str, mlflow_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve(
        engine, db_url, mlflow_uri, tmp_path, monkeypatch, AIFX_MAX_BODY_BYTES="2048"
    ) as api:
        big = {"pair": "EUR/USD", "timeframe": "1h", "candles": candles(70)}
        declared = api.post(PREDICT, json=big)
        assert "limit of 2048 bytes" in refused(declared, 413)["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the body is counted as it comes
            yield orjson.dumps(big)[:1500]
            yield orjson.dumps(big)[1500:]

        chunked = api.post(PREDICT, content=chunks(), headers={"content-type": "application/json"})
        refused(chunked, 413)
        small = api.post(PREDICT, json={"pair": "EUR/USD", "timeframe": "1h"})
        assert small.status_code == 404  # read and answered: no Production model here


def test_a_batch_over_500_names_the_limit(api: TestClient) -> None:
    one = {"pair": "EUR/USD", "timeframe": "1h"}
    body = refused(api.post(f"{PREDICT}/batch", json={"requests": [one] * 501}))
    assert "at most 500 items" in body["detail"]
    assert api.post(f"{PREDICT}/batch", json={"requests": [one] * 3}).status_code == 200


def test_writes_past_the_rate_limit_are_429_with_retry_after(
    engine: Engine, db_url: str, mlflow_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve(
        engine, db_url, mlflow_uri, tmp_path, monkeypatch, AIFX_RATE_LIMIT_WRITES="3/minute"
    ) as api:
        path = f"{AB}/{uuid.uuid4()}/cancel"
        # Counted before the token: a caller guessing tokens is limited too.
        assert [api.post(path, json={}).status_code for _ in range(3)] == [401] * 3
        limited = api.post(path, json={}, headers=AUTH)
        body = refused(limited, 429)
        assert "rate limit of 3/minute writes" in body["detail"]
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert api.get(f"{AB}").status_code == 200  # reads are not limited
        assert api.post(PREDICT, json={"pair": "EUR/USD", "timeframe": "1h"}).status_code == 404


def test_the_rate_limit_is_shared_through_redis(
    engine: Engine,
    db_url: str,
    mlflow_uri: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    client: redis.Redis,
) -> None:
    for key in client.scan_iter(f"{KEY_PREFIX}*"):
        client.delete(key)
    env = {"AIFX_RATE_LIMIT_PREDICT": "4/minute", "AIFX_REDIS_URL": REDIS_URL}
    one = {"pair": "EUR/USD", "timeframe": "1h"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:
        with serve(engine, db_url, mlflow_uri, tmp_path / "a", monkeypatch, **env) as first:
            assert [first.post(PREDICT, json=one).status_code for _ in range(3)] == [404] * 3
        # Another process (a worker or a replica) sees the same count.
        with serve(engine, db_url, mlflow_uri, tmp_path / "b", monkeypatch, **env) as second:
            assert second.post(PREDICT, json=one).status_code == 404
            limited = second.post(f"{PREDICT}/batch", json={"requests": [one]})
            assert refused(limited, 429) and int(limited.headers["retry-after"]) >= 1
        assert list(client.scan_iter(f"{KEY_PREFIX}*"))
    finally:
        for key in client.scan_iter(f"{KEY_PREFIX}*"):
            client.delete(key)


def test_an_unreachable_rate_limit_store_lets_requests_through(
    engine: Engine, db_url: str, mlflow_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"AIFX_RATE_LIMIT_WRITES": "1/minute", "AIFX_REDIS_URL": "redis://127.0.0.1:1/0"}
    with serve(engine, db_url, mlflow_uri, tmp_path, monkeypatch, **env) as api:
        path = f"{AB}/{uuid.uuid4()}/cancel"
        assert [api.post(path, json={}, headers=AUTH).status_code for _ in range(3)] == [404] * 3


def test_settings_refuse_a_malformed_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIFX_RATE_LIMIT_WRITES", "sixty a minute")
    with pytest.raises(ValueError, match="invalid rate limit 'sixty a minute'"):
        load_settings(env_file=None)


# --- health, error shape, OpenAPI -----------------------------------------------------------


def test_health_names_hosts_only_to_a_caller_with_the_token(
    engine: Engine, db_url: str, mlflow_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"AIFX_REDIS_URL": "redis://127.0.0.1:1/0"}
    with serve(engine, db_url, mlflow_uri, tmp_path, monkeypatch, **env) as api:
        anyone = api.get("/api/v1/monitoring/health")
        assert anyone.status_code == 503
        assert "127.0.0.1" not in anyone.text
        assert "shown with the API token" in anyone.json()["checks"]["redis"]["detail"]
        wrong = api.get("/api/v1/monitoring/health", headers={"Authorization": "Bearer no"})
        assert "127.0.0.1" not in wrong.text
        insider = api.get("/api/v1/monitoring/health", headers=AUTH)
        assert insider.status_code == 503
        assert "127.0.0.1:1" in insider.json()["checks"]["redis"]["detail"]
        assert anyone.json()["checks"]["database"] == {
            **insider.json()["checks"]["database"],
            "latency_ms": anyone.json()["checks"]["database"]["latency_ms"],
        }


def test_library_and_validation_errors_share_one_shape(api: TestClient) -> None:
    library = api.post(PREDICT, json={"pair": "EUR/USD", "timeframe": "1h", "candles": candles(9)})
    body = refused(library)
    assert "need at least" in body["detail"] and "errors" not in body
    validation = refused(api.post(PREDICT, json={"pair": "EURUSD", "timeframe": "2h"}))
    assert validation["detail"].startswith("body.pair: String should match pattern")
    assert validation["detail"].endswith("(and 1 more)")
    assert [e["loc"] for e in validation["errors"]] == [["body", "pair"], ["body", "timeframe"]]
    broken = refused(raw(api, PREDICT, '{"pair": '))
    assert broken["errors"][0]["type"] == "json_invalid"


def test_the_schema_declares_every_status_with_the_error_shape(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()
    error = {"$ref": "#/components/schemas/ErrorOut"}
    expected = {
        ("post", PREDICT): {"200", "400", "401", "403", "404", "413", "422", "429", "503"},
        ("post", f"{AB}"): {"201", "400", "401", "403", "409", "413", "422", "429"},
        ("post", f"{AB}/{{test_id}}/complete"): {
            "200",
            "400",
            "401",
            "403",
            "404",
            "409",
            "413",
            "422",
            "429",
        },
        ("get", f"{AB}/{{test_id}}"): {"200", "404", "422"},
        ("get", "/api/v1/monitoring/training-history"): {"200", "422", "503"},
    }
    for (method, path), codes in expected.items():
        responses = schema["paths"][path][method]["responses"]
        assert set(responses) == codes, (method, path)
        for code in codes - {"200", "201"}:
            assert responses[code]["content"]["application/json"]["schema"] == error
    assert "HTTPValidationError" not in schema["components"]["schemas"]
