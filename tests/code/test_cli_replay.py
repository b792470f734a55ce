"""`aifx replay` as a user meets it: bad options are one line before anything heavy starts, and
each job the replay runs scrolls by as one readable line."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from rich.console import Console

from aifx_ml.cli import replay as cli_replay
from aifx_ml.cli.main import main
from aifx_ml.cli.replay import _summary

Run = Callable[..., tuple[int, str, str]]
# What a replay loads to train and track: importing any of them is already seconds.
HEAVY = ("tensorflow", "keras", "mlflow", "prefect", "evidently", "flows")


@pytest.fixture
def aifx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Run:
    """Run `aifx ARGS` in an empty folder; the replay itself must never be reached."""
    monkeypatch.setenv("AIFX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AIFX_DATABASE_URL", f"sqlite:///{tmp_path / 'data' / 'aifx.db'}")
    monkeypatch.chdir(tmp_path)  # no mlflow.env here: only the environment counts

    started: list[tuple[Any, ...]] = []

    def reached(*args: Any, **_kwargs: Any) -> Any:
        started.append(args)  # main() turns any exception into a line: remember it too
        raise AssertionError("the replay started")

    monkeypatch.setattr(cli_replay, "replay", reached)

    def run(*args: str) -> tuple[int, str, str]:
        before = set(sys.modules)
        code = main(list(args))
        loaded = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in HEAVY)
        assert loaded == [], f"imported for a bad option: {loaded}"
        assert started == [], "the replay started"
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give exactly one of --synthetic or --data PATH"),
        (("--synthetic", "--data", "candles"), "give exactly one of --synthetic or --data PATH"),
        (
            ("--synthetic", "--start", "2026-02-01", "--end", "2026-01-01"),
            "--end 2026-01-01 must be after --start",
        ),
        (
            ("--synthetic", "--label-threshold", "5"),
            "invalid label threshold 5.0: expected a fraction in (0, 1)",
        ),
        (("--synthetic", "--ab-look-hours", "5"), "--ab-look-hours must divide 24"),
        (("--synthetic", "--pairs", "EURUSD"), "invalid pair 'EURUSD'"),
        (("--synthetic", "--start", "soon"), "invalid --start 'soon'"),
    ],
)
def test_bad_options_are_one_line_errors(
    aifx: Run, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    code, out, err = aifx("replay", *args)
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {message}")
    assert not (tmp_path / "data").exists()  # no database, no store: nothing was started


def test_help_lists_the_options(aifx: Run) -> None:
    code, out, _ = aifx("replay", "--help")
    assert code == 0
    for option in (
        "--synthetic",
        "--data",
        "--start",
        "--end",
        "--label-threshold",
        "--name",
        "--challenger-mode",
        "--refresh-days",
        "--keep-waiting",
        "--pattern-strength",
    ):
        assert option in out


# --- one line per job ---------------------------------------------------------------------

TRAINED = {
    "status": "completed",
    "training_type": "full",
    "version": "lstm-v3",
    "parent_version": None,
    "metrics": {"accuracy": 0.55},
    "reason": None,
    "challenger": {
        "version": "lstm-v3",
        "action": "ab_test_started",
        "ab_test_id": "0b6c0b9e-5d7b-4a57-9c55-2f0f8c3c1e11",
        "detail": "against lstm-v2",
    },
}
SKIPPED = {
    "status": "skipped",
    "training_type": "incremental",
    "version": None,
    "reason": "no new candles since lstm-v2",
}
LOOKS = {
    "looks": {
        "0b6c0b9e": {"status": "continue", "reason": "41 of 60 decided signals per arm"},
        "7f3a1c2d": {"status": "b_wins", "reason": "B better (p=0.003)"},
    }
}
MONTHLY = {
    "month": "2026-02",
    "evaluations": [
        {"version": "lstm-v2", "status": "production", "recommendation": "retrain"},
    ],
    "retrains": {},
}


@pytest.mark.parametrize(
    ("outcome", "line"),
    [
        (TRAINED, "completed lstm-v3 → ab_test_started"),
        ({**TRAINED, "challenger": None}, "completed lstm-v3"),
        (SKIPPED, "skipped no new candles since lstm-v2"),
        (LOOKS, "continue: 41 of 60 decided signals per arm; b_wins: B better (p=0.003)"),
        ({"looks": {}}, "-"),
        (MONTHLY, "2026-02: lstm-v2 retrain"),
        ({**MONTHLY, "retrain": TRAINED}, "2026-02: lstm-v2 retrain → retrained"),
        ({"month": "2026-02", "evaluations": [], "retrains": {}}, "2026-02: nothing in Production"),
        ("ValueError: boom", "[red]failed: ValueError: boom[/red]"),
    ],
)
def test_each_job_is_one_line(outcome: Any, line: str) -> None:
    assert _summary(outcome) == line


def _shown(markup: str) -> str:
    """What the progress display prints for a line of markup."""
    buffer = io.StringIO()
    Console(file=buffer, width=400, color_system=None).print(markup)
    return buffer.getvalue().strip()


def test_a_failure_is_shown_as_it_was_raised() -> None:
    try:
        pd.DataFrame({"close": [1.0]})[["open"]]
    except KeyError as exc:
        error = f"{type(exc).__name__}: {exc}"  # as the replay loop records a failed job
    assert "[columns]" in error
    assert _shown(_summary(error)) == f"failed: {error}"
