"""The `aifx` command line as a user meets it: counts, one-line errors, exit codes, --help."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from aifx_ml.cli.main import app, main
from aifx_ml.cli.replay import NEXT_COMMANDS
from aifx_ml.data.reader import series_from_filename
from aifx_ml.db.engine import current_revision, head_revision, make_engine
from aifx_ml.db.models import MarketData, TradingSignal
from tests.conftest import hourly_candles, snapshot

pytestmark = pytest.mark.integration


@pytest.fixture
def aifx(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):  # type: ignore[no-untyped-def]
    """Run `aifx ARGS` against a fresh database; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("AIFX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AIFX_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)  # no mlflow.env here: only the environment counts

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    run.db_url = db_url  # type: ignore[attr-defined]
    return run


def write_candles(path: Path, periods: int = 48) -> Path:
    hourly_candles("2026-01-05", periods).to_csv(path, index=False)
    return path


def test_import_prints_counts_and_reimport_changes_nothing(aifx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_candles(tmp_path / "EURUSD_1h.csv")
    code, out, _ = aifx("data", "import", str(path))  # pair and timeframe from the file name
    assert code == 0
    assert "EUR/USD" in out and "48" in out
    engine = make_engine(aifx.db_url)
    before = snapshot(engine)
    code, out, _ = aifx("data", "import", str(path), "--pair", "EUR/USD", "--timeframe", "1h")
    assert code == 0
    assert snapshot(engine) == before
    engine.dispose()


def test_malformed_file_is_one_line_and_nonzero(aifx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    good = write_candles(tmp_path / "EURUSD_1h.csv")
    bad = tmp_path / "GBPUSD_1h.csv"
    bad.write_text("when,price\n2026-01-05,1.2\n")
    assert aifx("db", "upgrade")[0] == 0
    code, out, err = aifx("data", "import", str(good), str(bad))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert str(bad) in lines[0] and "missing column(s)" in lines[0]
    assert "Traceback" not in err
    # Files are all checked before anything is written: the good one was not imported either.
    engine = make_engine(aifx.db_url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(MarketData)).scalar() == 0
    engine.dispose()


def test_debug_shows_the_traceback(aifx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(Exception, match="missing column"):
        aifx("--debug", "data", "import", str(bad), "--pair", "EUR/USD", "--timeframe", "1h")


def test_unknown_pair_is_a_clear_error(aifx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_candles(tmp_path / "prices.csv")
    code, _, err = aifx("data", "import", str(path), "--pair", "EURUSD", "--timeframe", "1h")
    assert code == 1 and "invalid pair 'EURUSD'" in err
    code, _, err = aifx("data", "import", str(path))
    assert code == 1 and "--pair and --timeframe" in err


def test_db_commands(aifx) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = aifx("db", "upgrade")
    assert code == 0 and head_revision() in out
    engine = make_engine(aifx.db_url)
    assert current_revision(engine) == head_revision()
    code, out, _ = aifx("db", "downgrade", "base")
    assert code == 0 and current_revision(engine) is None
    code, out, _ = aifx("db", "current")
    assert code == 0 and "current: empty" in out
    engine.dispose()


def test_synth_baseline_label_export_stats(aifx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = aifx(
        "data",
        "synth",
        "--pairs",
        "EUR/USD,USD/JPY",
        "--start",
        "2026-01-05",
        "--end",
        "2026-01-16",
        "--import",
    )
    assert code == 0, out
    assert (tmp_path / "data" / "synthetic" / "USDJPY_1h.csv").exists()

    code, out, _ = aifx("signals", "baseline", "--timeframe", "1h")
    assert code == 0
    engine = make_engine(aifx.db_url)
    with engine.connect() as conn:
        n_signals = conn.execute(select(func.count()).select_from(TradingSignal)).scalar()
    assert n_signals and n_signals > 300
    code, _, _ = aifx("signals", "baseline", "--timeframe", "1h")  # again: nothing twice
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(TradingSignal)).scalar() == n_signals

    code, out, _ = aifx("label")
    assert code == 0 and "labeled" in out and "still pending" in out
    code, out, _ = aifx("label")
    assert code == 0 and out.startswith("labeled 0 of")  # the rest wait for candles

    out_dir = tmp_path / "export"
    code, out, _ = aifx(
        "data",
        "export",
        "--start",
        "2026-01-05",
        "--end",
        "2026-01-17",
        "--out",
        str(out_dir),
        "--format",
        "csv",
    )
    assert code == 0, out
    meta = json.loads((out_dir / "metadata.json").read_text())
    assert meta["row_counts"]["candles"] > 300 and meta["format"] == "csv"

    code, out, _ = aifx("data", "stats")
    assert code == 0 and "EUR/USD" in out and "baseline-persistence" in out
    engine.dispose()


def test_bad_dates_and_thresholds(aifx) -> None:  # type: ignore[no-untyped-def]
    code, _, err = aifx("data", "stats", "--start", "yesterday-ish")
    assert code == 1 and "invalid --start 'yesterday-ish'" in err
    code, _, err = aifx("label", "--threshold", "5")
    assert code == 1 and "--threshold" in err


def _command_paths() -> list[list[str]]:
    import typer.main

    root = typer.main.get_command(app)
    paths: list[list[str]] = [[]]

    def walk(group: object, prefix: list[str]) -> None:
        for name, cmd in getattr(group, "commands", {}).items():
            paths.append([*prefix, name])
            walk(cmd, [*prefix, name])

    walk(root, [])
    return paths


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "aifx")
def test_help_everywhere(path: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    usage = next(line for line in out.splitlines() if "Usage:" in line)
    # Click's placeholders, not Typer's type column: no `<bool>` beside a switch, no `{paths}`.
    assert not re.search(r"<(bool|str|int|float|Path|datetime)>|<list\[", out), out
    assert "{" not in usage, usage


def test_help_reads_like_click(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["data", "import", "--help"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"Usage: aifx data import \[OPTIONS\] PATHS\.\.\.", out), out
    assert re.search(r"--pair +TEXT +Currency pair", out), out
    assert re.search(r"--help +Show this message", out), out  # a switch: no placeholder
    # A docstring's paragraph is reflowed, not broken where its source lines break.
    assert "duplicate, or quarantined with its reason" in out, out
    assert main(["train", "weekly", "--help"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"--epochs +INTEGER", out) and re.search(r"--wait +FLOAT", out), out
    assert re.search(r"--include-signals +--no-include-signals +Add labeled", out), out


def test_series_from_filename() -> None:
    assert series_from_filename(Path("EURUSD_1h.csv")) == ("EUR/USD", "1h")
    assert series_from_filename(Path("data/gbp-usd_15min.csv")) == ("GBP/USD", "15min")
    assert series_from_filename(Path("prices.csv")) is None
    assert series_from_filename(Path("EURUSD_2h.csv")) is None


def test_a_file_that_is_not_there_is_named_as_such(aifx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, err = aifx("data", "import", "nope.csv")
    assert code != 0 and "nope.csv: no such file" in out + err
    code, out, err = aifx("data", "import", str(tmp_path))
    assert code != 0 and "not a file" in out + err


@pytest.mark.parametrize("command", NEXT_COMMANDS)
def test_every_command_the_demo_suggests_exists(command: str) -> None:
    program, *args = command.split()
    if program == "prefect":
        prefect = Path(sys.executable).parent / "prefect"
        done = subprocess.run(
            [prefect, *args, "--help"], check=False, capture_output=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return
    assert program == "aifx" and main([*args, "--help"]) == 0


def test_a_usage_error_says_what_is_wrong_without_a_class_name(aifx) -> None:  # type: ignore[no-untyped-def]
    code, out, err = aifx("models", "list", "--bogus")
    assert code == 2 and "No such option: --bogus" in out + err
    assert "NoSuchOption" not in out + err and "Try 'aifx models list --help'" in out + err
    code, out, err = aifx("models", "lst")
    assert code == 2 and "No such command 'lst'" in out + err and "UsageError" not in out + err


def test_files_dropped_in_the_watched_folder_are_imported_once_and_moved(  # type: ignore[no-untyped-def]
    aifx, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    good = hourly_candles("2026-03-02", 24)
    good.loc[5, "high"] = 0.5  # below the close: quarantined
    good.to_csv(drop / "EURUSD_1h.csv", index=False)
    (drop / "GBPUSD_1h.csv").write_bytes(b"\x00\xff not a csv")
    (drop / "notes.csv").write_text("timestamp,open,high,low,close\n")
    (drop / "USDJPY_1h.csv.part").write_text("still being written")

    code, out, err = aifx("data", "watch", str(drop), "--once")
    assert code == 0, err
    assert "EURUSD_1h.csv" in out and "GBPUSD_1h.csv" in err and "notes.csv" in err
    engine = make_engine(aifx.db_url)
    with engine.connect() as conn:
        stored = conn.scalar(select(func.count()).select_from(MarketData))
    assert stored == 23  # 24 read, 1 quarantined
    assert sorted(p.name for p in drop.iterdir() if p.is_file()) == ["USDJPY_1h.csv.part"]
    assert [p.name for p in (drop / "processed").iterdir()] == ["EURUSD_1h.csv"]
    rejected = sorted(p.name for p in (drop / "rejected").iterdir())
    assert rejected == [
        "GBPUSD_1h.csv", "GBPUSD_1h.csv.error.txt", "notes.csv", "notes.csv.error.txt"
    ]  # fmt: skip
    reason = (drop / "rejected" / "notes.csv.error.txt").read_text()
    assert "does not say the series" in reason

    # The same file dropped again: nothing stored twice, and the first copy is kept.
    good.to_csv(drop / "EURUSD_1h.csv", index=False)
    code, out, _ = aifx("data", "watch", str(drop), "--once")
    assert code == 0
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(MarketData)) == 23
    assert sorted(p.name for p in (drop / "processed").iterdir()) == [
        "EURUSD_1h.1.csv",
        "EURUSD_1h.csv",
    ]
    engine.dispose()
    code, _, err = aifx("data", "watch", str(tmp_path / "nowhere"), "--once")
    assert code == 1 and "no such folder" in err


def test_commands_that_load_models_import_tensorflow_without_its_start_up_lines() -> None:
    # TensorFlow 2.21 prints absl's and oneDNN's notices at import whatever
    # TF_CPP_MIN_LOG_LEVEL says; a fresh process shows what a user's terminal would.
    code = (
        "import sys; from aifx_ml.cli.common import quiet_tensorflow; quiet_tensorflow(); "
        "print('tensorflow' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "True"
    assert "absl::InitializeLog" not in done.stderr and "oneDNN" not in done.stderr, done.stderr
