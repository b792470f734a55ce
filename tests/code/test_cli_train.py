"""`aifx train` as a user meets it: the result table, a skipped run, one-line errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from aifx_ml.cli.main import main
from aifx_ml.db.engine import make_engine, upgrade
from aifx_ml.db.models import ModelTrainingLog
from tests.conftest import import_synthetic

pytestmark = pytest.mark.integration

Run = Callable[..., tuple[int, str, str]]
TINY = ("--epochs", "2", "--window", "8", "--lstm-units", "4,2", "--batch-size", "64")


@pytest.fixture
def aifx(
    tmp_path: Path,
    mlflow_uri: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Run:
    db_url = f"sqlite:///{tmp_path / 'aifx.db'}"
    engine = make_engine(db_url)
    upgrade(engine)
    import_synthetic(engine)
    engine.dispose()
    monkeypatch.setenv("AIFX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AIFX_DATABASE_URL", db_url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    run.db_url = db_url  # type: ignore[attr-defined]
    return run


def test_weekly_prints_the_version_and_the_comparison_table(aifx: Run) -> None:
    code, out, err = aifx("train", "weekly", "--as-of", "2026-03-01T01:00", *TINY)
    assert code == 0, err
    assert "registered lstm-v1 in Staging" in out
    for row in ("lstm-v1 (new)", "baseline: majority", "baseline: persistence"):
        assert row in out
    assert "the best baseline" in out

    # Monday 01:00: only three candles since the weekly run; without a Production model the
    # daily run falls back to a full one, and says so. (One pair: the fallback trains the
    # default architecture, which costs a minute on both.)
    code, out, _ = aifx(
        "train", "daily", "--as-of", "2026-03-02T01:00", "--epochs", "1", "--pairs", "EUR/USD"
    )
    assert code == 0
    assert "no Production lstm model yet: ran a full training instead" in out
    engine = make_engine(aifx.db_url)  # type: ignore[attr-defined]
    with engine.connect() as conn:
        types = conn.execute(select(ModelTrainingLog.training_type)).scalars().all()
    engine.dispose()
    assert sorted(types) == ["full", "full"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--pairs", "EURUSD"), "invalid pair 'EURUSD'"),
        (("--timeframes", "2h"), "invalid timeframe '2h'"),
        (("--epochs", "0"), "invalid epochs 0"),
        (("--lstm-units", "128"), "invalid lstm_units [128]"),
        (("--lstm-units", "a,b"), "invalid --lstm-units 'a,b'"),
        (("--as-of", "yesterday-ish"), "invalid --as-of 'yesterday-ish'"),
    ],
)
def test_bad_options_are_one_line_errors(aifx: Run, args: tuple[str, ...], message: str) -> None:
    code, out, err = aifx("train", "weekly", *args)
    assert code == 1
    assert message in err
    assert len(err.strip().splitlines()) == 1
