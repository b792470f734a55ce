"""The monitoring page in a real headless browser (Debian's chromium): it loads, draws its
charts, and shows the versions and A/B tests the database holds. A screenshot is saved."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from aifx_ml.abtest.store import create_test
from aifx_ml.cli.serve import build_app
from aifx_ml.config import load_settings
from aifx_ml.db.models import ModelABTest, ModelVersion
from tests.conftest import IN_CI, TRAIN_AS_OF
from tests.registry_world import World, copy_world, promote_now
from tests.serving_helpers import running

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1400,1300",
    "--virtual-time-budget=15000",  # let the page's fetches and drawing finish
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if IN_CI:
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed here; .ci/run installs it")
    return found


@pytest.fixture
def served(
    world: World, engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The app over a registry with two versions in an A/B test, on a real port."""
    uri = copy_world(world, engine, tmp_path)
    for name, value in {
        "AIFX_DATABASE_URL": db_url,
        "AIFX_DATA_DIR": str(tmp_path / "data"),
        "MLFLOW_TRACKING_URI": uri,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    promote_now(engine, uri, "lstm-v1", TRAIN_AS_OF)
    create_test(
        engine,
        name="v2 challenges v1",
        model_a_version="lstm-v1",
        model_b_version="lstm-v2",
        traffic_split=0.2,
        as_of=TRAIN_AS_OF + timedelta(hours=1),
    )
    now = TRAIN_AS_OF + timedelta(hours=2)
    with running(build_app(load_settings(), engine=engine, now=lambda: now)) as url:
        yield url


class Rows(HTMLParser):
    """Text of each table row of the rendered page, by table id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[str]] = {}
        self.charts: dict[str, int] = {}
        self.body: dict[str, str] = {}
        self._table: str | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.body = {k: v or "" for k, v in a.items()}
        if tag == "table":
            self._table = a.get("id")
        if tag == "tr" and self._table:
            self._row = []
        if tag == "svg" and a.get("id"):
            self.charts[str(a["id"])] = int(a.get("data-points") or -1)

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._table and self._row is not None:
            self.tables.setdefault(self._table, []).append(" ".join(self._row))
            self._row = None
        if tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and data.strip():
            self._row.append(data.strip())


def test_the_dashboard_renders_what_the_database_holds(
    served: str, engine: Engine, tmp_path: Path
) -> None:
    browser = chromium()
    profile = tmp_path / "chromium-profile"
    dom = subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--dump-dom",
            f"{served}/dashboard",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = Rows()
    page.feed(dom.stdout)
    assert page.body.get("data-rendered") == "true", dom.stdout[-2000:]
    assert page.charts["training-chart"] == 3  # three weekly runs, one dot each
    assert page.charts["winrate-chart"] == 0  # no labeled signals yet: said, not drawn

    with engine.connect() as conn:
        versions = dict(conn.execute(select(ModelVersion.version, ModelVersion.status)).all())
        tests = conn.execute(select(ModelABTest.test_name, ModelABTest.status)).all()
    shown = {row.split()[0]: row for row in page.tables["versions"][1:]}
    assert set(shown) == set(versions)
    for version, status in versions.items():
        assert status in shown[version]
    ab_rows = page.tables["ab-tests"][1:]
    assert len(ab_rows) == len(tests) == 1
    assert "v2 challenges v1" in ab_rows[0] and "active" in ab_rows[0]
    assert "waiting for 200 decided signals" in ab_rows[0]  # the live decision, from the API
    health = " ".join(page.tables["health"])
    assert "database up" in health

    SCREENSHOTS.mkdir(exist_ok=True)
    shot = SCREENSHOTS / f"dashboard-{engine.dialect.name}.png"
    shot.unlink(missing_ok=True)
    taken = subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={shot}",
            f"{served}/dashboard",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # a real picture of a filled page, not a blank one
