"""`aifx replay [OPTIONS] study` as a user meets it: its help needs no replay options, a bad
option or study file is one line before anything starts, and a study file reads the same in
TOML, YAML and JSON."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aifx_ml.cli.main import main
from aifx_ml.cli.study import default_study_name, read_study_file
from aifx_ml.errors import InvalidInputError
from aifx_ml.replay.plan import ReplayParams
from aifx_ml.replay.study import StudySpec, plan_study

Run = Callable[..., tuple[int, str, str]]
# What a study loads to run its replays: importing any of them is already seconds.
HEAVY = ("tensorflow", "keras", "mlflow", "prefect", "evidently", "flows")


@pytest.fixture
def aifx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Run:
    """Run `aifx ARGS` in an empty folder; the study's flow must never be reached."""
    monkeypatch.setenv("AIFX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AIFX_DATABASE_URL", f"sqlite:///{tmp_path / 'data' / 'aifx.db'}")
    monkeypatch.chdir(tmp_path)  # no mlflow.env here: only the environment counts
    # Should a case get past its error, importing the flows fails at once instead of running
    # replays (and the import check below names it).
    monkeypatch.setitem(sys.modules, "flows.replay_jobs", None)
    monkeypatch.setitem(sys.modules, "flows.replay_study", None)

    def run(*args: str) -> tuple[int, str, str]:
        before = set(sys.modules)
        code = main(list(args))
        loaded = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in HEAVY)
        assert loaded == [], f"imported for a bad option: {loaded}"
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_study_help_needs_no_replay_options(aifx: Run, tmp_path: Path) -> None:
    code, out, err = aifx("replay", "study", "--help")
    assert code == 0
    assert err == ""
    for option in ("--seeds", "--periods", "--name", "--folder", "PLAN"):
        assert option in out
    assert "Usage: aifx replay study [OPTIONS] [PLAN]" in out
    assert not (tmp_path / "data").exists()


def test_replay_help_points_to_study(aifx: Run) -> None:
    code, out, _ = aifx("replay", "--help")
    assert code == 0
    assert "study" in out


TOML_BAD = "seeds = [1,\n"
TOML_UNKNOWN = "seeds = [1, 2]\nseed = 3\n"
TOML_GRID = '[grid]\nlayers = [1, 2]\n"model.epochs" = [5]\n'
TOML_EMPTY = '[grid]\n"model.epochs" = []\n'
TOML_BAD_VALUE = "[grid]\nrefresh_days = [7, 'weekly']\n"
TOML_BAD_SEED = "seeds = [1, true]\n"
TOML_BAD_PERIOD = 'periods = ["2026-03-01/2026-02-01"]\n'
YAML_LIST = "- 1\n- 2\n"
YAML_BAD = "seeds: [1, 2\n"
JSON_BAD = '{"seeds": [1, 2}'


@pytest.mark.parametrize(
    ("args", "files", "message"),
    [
        (("study", "--seeds", "1,2"), {}, "give exactly one of --synthetic or --data PATH"),
        (
            ("--synthetic", "--data", "candles", "study", "--seeds", "1,2"),
            {},
            "give exactly one of --synthetic or --data PATH",
        ),
        (
            ("--synthetic", "--name", "x", "study", "--seeds", "1,2"),
            {},
            "a study's name goes after `study`: aifx replay ... study --name NAME",
        ),
        (
            ("--synthetic", "study", "--seeds", "a,b"),
            {},
            "invalid --seeds value 'a': expected whole numbers",
        ),
        (
            ("--synthetic", "study", "--seeds", "1,2.5"),
            {},
            "invalid --seeds value '2.5': expected whole numbers",
        ),
        (
            ("--synthetic", "study", "--periods", "2026-01-01"),
            {},
            "invalid --periods value '2026-01-01': expected START/END",
        ),
        (
            ("--synthetic", "study", "--periods", "2026-01-05/2026-02-01,2026-03-01/2026-02-01"),
            {},
            "invalid --periods value '2026-03-01/2026-02-01': it ends before it starts",
        ),
        (
            ("--synthetic", "study", "--periods", "2026-01-05/2026-01-05"),
            {},
            "invalid --periods value '2026-01-05/2026-01-05': it ends before it starts",
        ),
        (
            ("--synthetic", "study", "--periods", "soon/later"),
            {},
            "invalid --periods start 'soon'",
        ),
        (
            (
                "--synthetic",
                "--start",
                "2026-02-01",
                "--end",
                "2026-01-01",
                "study",
                "--seeds",
                "1",
            ),
            {},
            "--end 2026-01-01 must be after --start",
        ),
        (("--synthetic", "study", "nowhere.toml"), {}, "study file nowhere.toml: no such file"),
        (
            ("--synthetic", "study", "plan.txt"),
            {"plan.txt": "seeds = [1]\n"},
            "study file plan.txt: expected .toml, .yaml, .yml or .json",
        ),
        (
            ("--synthetic", "study", "plan"),
            {"plan": "seeds = [1]\n"},
            "study file plan: expected .toml, .yaml, .yml or .json",
        ),
        (
            ("--synthetic", "study", "plan.toml"),
            {"plan.toml": TOML_BAD},
            "study file plan.toml: not valid toml: ",
        ),
        (
            ("--synthetic", "study", "plan.yaml"),
            {"plan.yaml": YAML_BAD},
            "study file plan.yaml: not valid yaml: ",
        ),
        (
            ("--synthetic", "study", "plan.json"),
            {"plan.json": JSON_BAD},
            "study file plan.json: not valid json: ",
        ),
        (
            ("--synthetic", "study", "plan.yml"),
            {"plan.yml": YAML_LIST},
            "study file plan.yml: expected a mapping of seeds, periods, grid",
        ),
        (
            ("--synthetic", "study", "plan.toml"),
            {"plan.toml": TOML_UNKNOWN},
            "study file plan.toml: unknown key(s) seed (expected seeds, periods, grid)",
        ),
        (
            ("--synthetic", "study", "plan.toml"),
            {"plan.toml": TOML_BAD_SEED},
            "study file plan.toml: seeds: True is not a whole number",
        ),
        (
            ("--synthetic", "study", "plan.toml"),
            {"plan.toml": TOML_BAD_PERIOD},
            "study file plan.toml: period '2026-03-01/2026-02-01' ends before it starts",
        ),
        (
            ("--synthetic", "study", "plan.toml"),
            {"plan.toml": TOML_GRID},
            "study grid: unknown parameter 'layers'; known: ab_look_hours,",
        ),
        (
            ("--synthetic", "study", "plan.toml"),
            {"plan.toml": TOML_EMPTY},
            "study grid.model.epochs: give at least one value",
        ),
        (
            ("--synthetic", "study", "plan.toml"),
            {"plan.toml": TOML_BAD_VALUE},
            "study refresh_days: invalid value 'weekly'",
        ),
        (
            ("--synthetic", "study"),
            {},
            "a study needs --seeds, --periods or a grid file to vary",
        ),
        (
            ("--synthetic", "study", "plan.toml"),
            {"plan.toml": "[grid]\n"},
            "a study needs --seeds, --periods or a grid file to vary",
        ),
        (
            ("--synthetic", "study", "--seeds", "1,2", "--name", "my study"),
            {},
            "invalid study name 'my study'",
        ),
    ],
)
def test_bad_studies_are_one_line_errors(
    aifx: Run, tmp_path: Path, args: tuple[str, ...], files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    code, out, err = aifx("replay", *args)
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {message}")
    assert not (tmp_path / "data").exists()  # no database, no study folder: nothing started


@pytest.mark.parametrize(
    ("text", "named"),
    [
        # A TOML date pair: the message shows [datetime.date(2026, 3, 1), ...].
        ("periods = [[2026-03-01, 2026-02-01]]\n", "2026, 3, 1"),
        ('[grid]\n"model[epochs]" = [5]\n', "'model[epochs]'"),
    ],
)
def test_square_brackets_in_an_error_are_shown(
    aifx: Run, tmp_path: Path, text: str, named: str
) -> None:
    """BUG: `main()` prints the error's text as Rich markup (aifx_ml/cli/main.py, the
    `err_console.print(f"[red]error:[/] {exc}", ...)` line), so a part in square brackets that
    looks like a style tag is dropped: "period  ends before it starts", "unknown parameter
    'model'" instead of naming what was wrong."""
    (tmp_path / "plan.toml").write_text(text, encoding="utf-8")
    code, out, err = aifx("replay", "--synthetic", "study", "plan.toml")
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: study ")
    assert named in lines[0]


# --- study files --------------------------------------------------------------------------

STUDY_TOML = """\
seeds = [1, 2, 3]
periods = [[2026-01-05, 2026-02-02], "2026-03-02/2026-03-30"]

[grid]
refresh_days = [0, 7.5]
"model.epochs" = [5, 10]
challenger_mode = ["shadow", "split"]
pattern_lags = [[3, 4], [5, 8]]
"""
STUDY_YAML = """\
seeds: [1, 2, 3]
periods:
  - [2026-01-05, 2026-02-02]
  - 2026-03-02/2026-03-30
grid:
  refresh_days: [0, 7.5]
  model.epochs: [5, 10]
  challenger_mode: [shadow, split]
  pattern_lags:
    - [3, 4]
    - [5, 8]
"""
STUDY_JSON = """\
{
  "seeds": [1, 2, 3],
  "periods": [["2026-01-05", "2026-02-02T00:00:00Z"], "2026-03-02/2026-03-30"],
  "grid": {
    "refresh_days": [0, 7.5],
    "model.epochs": [5, 10],
    "challenger_mode": ["shadow", "split"],
    "pattern_lags": [[3, 4], [5, 8]]
  }
}
"""
EXPECTED = StudySpec(
    seeds=(1, 2, 3),
    periods=(
        (datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 2, 2, tzinfo=UTC)),
        (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 30, tzinfo=UTC)),
    ),
    grid={
        "refresh_days": (0, 7.5),
        "model.epochs": (5, 10),
        "challenger_mode": ("shadow", "split"),
        "pattern_lags": ([3, 4], [5, 8]),
    },
)


def test_a_study_file_reads_the_same_in_toml_yaml_and_json(tmp_path: Path) -> None:
    specs = []
    for name, text in (
        ("study.toml", STUDY_TOML),
        ("study.yaml", STUDY_YAML),
        ("study.yml", STUDY_YAML),
        ("study.json", STUDY_JSON),
    ):
        (tmp_path / name).write_text(text, encoding="utf-8")
        specs.append(read_study_file(tmp_path / name))
    assert specs == [EXPECTED] * 4
    # And it plans: 3 seeds × 2 periods × 2 × 2 × 2 × 2 grid values.
    base = ReplayParams(
        pairs=("EUR/USD",),
        timeframes=("1h",),
        start=EXPECTED.periods[0][0],
        end=datetime(2026, 2, 2, tzinfo=UTC),
    )
    assert len(plan_study("fx", base, specs[0])) == 3 * 2 * 16


def test_a_folder_is_not_a_study_file(tmp_path: Path) -> None:
    (tmp_path / "plan.toml").mkdir()
    with pytest.raises(InvalidInputError, match="plan.toml: no such file"):
        read_study_file(tmp_path / "plan.toml")


def test_a_malformed_file_is_named_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("grid:\n  refresh_days: [1\n  keep_waiting: [2]\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=f"study file {path}: not valid yaml: ") as caught:
        read_study_file(path)
    assert "\n" not in str(caught.value)


def test_the_default_study_name_is_stable_and_follows_what_varies() -> None:
    base = ReplayParams(
        pairs=("EUR/USD",),
        timeframes=("1h",),
        start=datetime(2026, 1, 5, tzinfo=UTC),
        end=datetime(2026, 2, 2, tzinfo=UTC),
    )
    name = default_study_name(base, StudySpec(seeds=(1, 2)))
    assert name == default_study_name(base, StudySpec(seeds=(1, 2)))
    assert name.startswith("study-") and len(name) == len("study-") + 8
    assert name != default_study_name(base, StudySpec(seeds=(1, 3)))
    assert name != default_study_name(replace(base, seed=8), StudySpec(seeds=(1, 2)))
    assert plan_study(name, base, StudySpec(seeds=(1, 2)))[0].name == f"{name}-r01"
