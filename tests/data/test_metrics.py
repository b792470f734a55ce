"""/metrics carries prometheus_client's histograms beside the database's
gauges: requests by route template, method and status; prediction time by the version that
answered; model calls and their batch sizes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from aifx_ml.db.engine import make_engine, upgrade
from tests.memory_registry import T0, World, serving_app, serving_world

pytestmark = pytest.mark.integration
METRICS = "/metrics"
PREDICT = {"pair": "EUR/USD", "timeframe": "1h"}


@pytest.fixture
def world(tmp_path: Path) -> World:
    """Two weeks of candles up to T0 and a Production version."""
    engine = make_engine(f"sqlite:///{tmp_path / 'aifx.db'}")
    upgrade(engine)
    return serving_world(engine)


@pytest.fixture
def api(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    app = serving_app(world, tmp_path, monkeypatch, now=lambda: T0 + timedelta(minutes=30))
    with TestClient(app) as client:
        yield client


def samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, by name and labels."""
    reply = client.get(METRICS)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(reply.text)
        for s in family.samples
    }


def value(
    scrape: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return scrape.get((name, frozenset(labels.items())), 0.0)


def test_requests_predictions_and_batches_are_counted(world: World, api: TestClient) -> None:
    before = samples(api)
    version = "lstm-v1"
    for _ in range(3):
        assert api.post("/api/v1/predict", json=PREDICT).status_code == 200
    assert api.post("/api/v1/predict", json={"pair": "nope"}).status_code == 422
    batch = api.post("/api/v1/predict/batch", json={"requests": [PREDICT, PREDICT]})
    assert batch.status_code == 200, batch.text
    assert api.get("/api/v1/no-such-thing").status_code == 404
    after = samples(api)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "aifx_http_request_duration_seconds_count"
    assert grew(requests, method="POST", route="/api/v1/predict", status="200") == 3
    assert grew(requests, method="POST", route="/api/v1/predict", status="422") == 1
    assert grew(requests, method="POST", route="/api/v1/predict/batch", status="200") == 1
    assert grew(requests, method="GET", route="unmatched", status="404") == 1
    assert grew(requests, method="GET", route=METRICS, status="200") == 1  # the first scrape
    # Every answered request is timed once, by the version that answered it (3 + 2).
    assert grew("aifx_prediction_duration_seconds_count", model_version=version) == 5
    assert grew("aifx_prediction_duration_seconds_sum", model_version=version) > 0
    # Model calls: at least one per request round, carrying the five windows in all.
    calls = grew("aifx_model_call_duration_seconds_count", model_version=version)
    assert 2 <= calls <= 5
    assert grew("aifx_model_batch_size_sum", model_version=version) == 5
    assert grew("aifx_model_batch_size_count", model_version=version) == calls
    # The database's gauges are still there, beside them.
    assert value(after, "aifx_model_versions", status="production") == 1
