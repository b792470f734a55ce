"""/docs (Swagger UI) and /redoc render in a real headless browser that can reach nothing but
the service: their scripts come from the installed package, not from a CDN."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aifx_ml.db.engine import make_engine, upgrade
from aifx_ml.serving.app import DOCS_ASSETS
from tests.flows.test_dashboard_browser import CHROMIUM_FLAGS, chromium
from tests.memory_registry import World, serving_app
from tests.serving_helpers import running

pytestmark = pytest.mark.integration
# Every host name but the service's address fails to resolve: a page that needs a CDN breaks.
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The app on a real port, over an empty database (the pages need only the schema)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'aifx.db'}")
    upgrade(engine)
    with running(serving_app(World(engine), tmp_path, monkeypatch)) as url:
        yield url


def rendered(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran, in a browser that can reach only 127.0.0.1."""
    dom = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, OFFLINE, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout


def test_swagger_ui_and_redoc_render_offline(served: str, tmp_path: Path) -> None:
    swagger = rendered(f"{served}/docs", tmp_path / "profile")
    assert f'src="{DOCS_ASSETS}/swagger-ui-bundle.js"' in swagger
    assert "cdn." not in swagger
    # Swagger UI drew the operations it read from /openapi.json: the script ran.
    assert 'class="opblock-summary-path"' in swagger
    assert "/api/v1/predict" in swagger and "/api/v1/market-data" in swagger

    redoc = rendered(f"{served}/redoc", tmp_path / "profile")
    assert f'src="{DOCS_ASSETS}/redoc.standalone.js"' in redoc
    assert "fonts.googleapis" not in redoc
    # ReDoc drew the API's title and its operations.
    assert "AIFX" in redoc and "/api/v1/predict" in redoc
    assert "redoc-wrap" in redoc
