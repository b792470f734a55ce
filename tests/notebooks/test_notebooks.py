"""The analysis notebooks in notebooks/, executed in a kernel of this virtual environment
against a store: no cell may fail, and what each reports must be what the store holds. On an
empty store each must say so, and how to fill it, without creating anything."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import nbformat
import pytest
from mlflow import MlflowClient
from nbclient import NotebookClient
from nbformat import NotebookNode
from sqlalchemy import Engine, func, select

from aifx_ml.db.engine import make_engine, upgrade
from aifx_ml.db.models import (
    ModelABTest,
    ModelEvaluation,
    ModelVersion,
    ShadowSignal,
    TradingSignal,
)
from aifx_ml.features.engineering import FEATURE_NAMES
from aifx_ml.models.store import registered_name
from registry.mlflow_store import MLFLOW_STAGES

pytestmark = pytest.mark.integration
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ("compare_runs", "drift_report", "ab_test")  # each executed below, with data and without
CELL_TIMEOUT = 300  # seconds; the slowest cell takes a few
# Appended to each notebook: the summary its last cell shows, and which Python ran it.
REPORT = (
    "import json as _json, sys as _sys\n"
    "print(_json.dumps({'python': _sys.executable, 'summary': summary}, default=str))"
)


class ReplayStore(Protocol):
    """What the notebooks need of a store (the `replay_store` fixture): the variables that
    point a process at it."""

    @property
    def env(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class Executed:
    notebook: NotebookNode
    summary: dict[str, Any]

    def text(self) -> str:
        """Everything the notebook printed or displayed as text."""
        parts = []
        for cell in self.notebook.cells:
            for output in cell.get("outputs", []):
                parts.append(output.get("text", ""))
                parts.append(output.get("data", {}).get("text/plain", ""))
        return "\n".join(parts)


def execute(name: str, store_env: dict[str, str]) -> Executed:
    """Run notebooks/<name>.ipynb as Jupyter would (kernel `python3`, started in notebooks/)
    with the store's variables set, and read back its summary."""
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(REPORT))
    # Only the store's variables name a store: none leaks in from the shell running the tests.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIFX_", "MLFLOW_"))}
    env.update(store_env)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute(env=env)  # raises CellExecutionError on the first failing cell
    errors = [
        f"{output.ename}: {output.evalue}"
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]
    assert not errors, errors
    printed = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
    report = json.loads(printed.strip().splitlines()[-1])
    # The kernel ran this environment's Python (ipykernel maps `python` to the caller's).
    assert Path(report["python"]).resolve() == Path(sys.executable).resolve()
    return Executed(notebook, report["summary"])


def engine_of(store: ReplayStore) -> Engine:
    return make_engine(store.env["AIFX_DATABASE_URL"])


def mlflow_of(store: ReplayStore) -> MlflowClient:
    return MlflowClient(
        tracking_uri=store.env["MLFLOW_TRACKING_URI"],
        registry_uri=store.env["MLFLOW_REGISTRY_URI"],
    )


def test_compare_runs_reports_the_runs_and_stages_of_the_store(replay_store: ReplayStore) -> None:
    summary = execute("compare_runs", replay_store.env).summary

    engine = engine_of(replay_store)
    with engine.connect() as conn:
        rows = conn.execute(
            select(ModelVersion.version, ModelVersion.model_type, ModelVersion.status).order_by(
                ModelVersion.created_at
            )
        ).all()
    engine.dispose()
    assert rows, "the store holds no model version: nothing for the notebook to compare"
    assert summary["versions"] == {r.version: r.status for r in rows}
    assert summary["mlflow_stages"] == {r.version: MLFLOW_STAGES[r.status] for r in rows}
    assert summary["stages_agree"] is True
    assert summary["newest_version"] == rows[-1].version
    for row in rows:
        if row.status == "production":
            assert summary["aliases"][registered_name(row.model_type)]["champion"] == row.version

    client = mlflow_of(replay_store)
    training = {registered_name(r.model_type) for r in rows}
    assert training <= set(summary["experiments"])
    experiments = [client.get_experiment_by_name(name) for name in training]
    runs = client.search_runs([e.experiment_id for e in experiments if e], max_results=50_000)
    assert summary["training_runs"] == sum("aifx.training_type" in r.data.tags for r in runs) > 0


def test_drift_report_shows_the_latest_evaluation_and_its_features(
    replay_store: ReplayStore,
) -> None:
    executed = execute("drift_report", replay_store.env)
    summary = executed.summary

    rows = evaluations(replay_store)
    expected = latest(rows)
    assert summary["evaluations"] == len(rows)
    chosen = summary["chosen"]
    assert (chosen["version"], chosen["month"], chosen["status"]) == (
        expected.version,
        expected.month,
        expected.status,
    )
    assert chosen["drift_share"] == pytest.approx(expected.drift_share)
    assert chosen["recommendation"] == expected.recommendation
    # Every input feature's PSI was read from the Evidently report, and the features it flags
    # are those the evaluation recorded.
    assert chosen["features"] == len(FEATURE_NAMES)
    assert chosen["drifted_in_report"] == sorted(expected.details["drifted_features"])
    assert chosen["drifted_in_table"] == chosen["drifted_in_report"]
    assert chosen["drift_share"] == pytest.approx(
        len(chosen["drifted_in_report"]) / chosen["features"]
    )
    assert Path(chosen["report"]) == Path(expected.report_path)
    assert f"aifx evaluate monthly --month {expected.month}" in executed.text()


def test_drift_report_reads_the_copy_in_mlflow_when_the_file_is_elsewhere(
    replay_store: ReplayStore,
) -> None:
    # As on a PostgreSQL store whose reports a worker wrote on another machine.
    expected = latest(evaluations(replay_store))
    report = Path(expected.report_path)
    away = report.with_name(report.name + ".elsewhere")
    report.rename(away)
    try:
        chosen = execute("drift_report", replay_store.env).summary["chosen"]
    finally:
        away.rename(report)
    assert Path(chosen["report"]).name == report.name
    assert Path(chosen["report"]) != report  # downloaded from the evaluation's MLflow run
    assert chosen["features"] == len(FEATURE_NAMES)
    assert chosen["drifted_in_report"] == sorted(expected.details["drifted_features"])


def evaluations(store: ReplayStore) -> list[Any]:
    engine = engine_of(store)
    with engine.connect() as conn:
        rows = list(conn.execute(select(ModelEvaluation)).all())
    engine.dispose()
    assert rows, "the store holds no monthly evaluation: nothing for the notebook to explore"
    return rows


def latest(rows: list[Any]) -> Any:
    """The evaluation the notebook looks at by default: the newest month's, Production first."""
    newest = max(r.month for r in rows)
    return sorted(
        (r for r in rows if r.month == newest),
        key=lambda r: (r.status != "production", -r.evaluated_at.timestamp()),
    )[0]


def test_ab_test_recomputes_the_recorded_decision(replay_store: ReplayStore) -> None:
    summary = execute("ab_test", replay_store.env).summary

    engine = engine_of(replay_store)
    with engine.connect() as conn:
        tests = conn.execute(select(ModelABTest).order_by(ModelABTest.created_at.desc())).all()
        looked = [t for t in tests if t.metrics]
        assert looked, "the store holds no A/B test with a recorded look: nothing to analyse"
        test = looked[0]
        # A shadow test's B answers every request unseen: its answers are shadow signals.
        tables = [TradingSignal, ShadowSignal] if test.mode == "shadow" else [TradingSignal]
        counts = [
            row
            for table in tables
            for row in conn.execute(
                select(table.model_version, table.actual_outcome, func.count())
                .where(table.ab_test_id == test.id)
                .group_by(table.model_version, table.actual_outcome)
            )
        ]
    engine.dispose()
    assert summary["tests"] == len(tests)
    assert (summary["test_name"], summary["test_id"]) == (test.test_name, str(test.id))
    assert summary["mode"] == test.mode == "shadow"  # the replay's challengers are shadowed
    assert (summary["status"], summary["winner"]) == (test.status, test.winner)
    for arm, version in (("a", test.model_a_version), ("b", test.model_b_version)):
        mine = {outcome: n for v, outcome, n in counts if v == version}
        assert summary["arms"][arm]["version"] == version
        assert summary["arms"][arm]["signals"] == sum(mine.values())
        assert summary["arms"][arm]["decided"] == mine.get("win", 0) + mine.get("loss", 0)
        assert summary["arms"][arm]["wins"] == mine.get("win", 0)
    decision = test.metrics["decision"]
    assert summary["recorded"] == {k: decision[k] for k in ("status", "winner", "p_value")}
    assert summary["recomputed"]["status"] == decision["status"]
    assert summary["recomputed"]["winner"] == decision["winner"]
    assert summary["agrees"] is True


@pytest.mark.parametrize("name", NAMES)
def test_on_an_empty_store_a_notebook_says_how_to_fill_it(name: str, tmp_path: Path) -> None:
    # The tables exist and are empty; MLflow's store does not exist at all.
    data = tmp_path / "data"
    env = {
        "AIFX_DATA_DIR": str(data),
        "AIFX_DATABASE_URL": f"sqlite:///{data / 'aifx.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{data / 'mlflow.db'}",
        "MLFLOW_REGISTRY_URI": f"sqlite:///{data / 'mlflow.db'}",
        "AIFX_ARTIFACT_ROOT": str(data / "mlartifacts"),
    }
    engine = make_engine(env["AIFX_DATABASE_URL"])
    upgrade(engine)
    engine.dispose()
    before = files_in(data)

    executed = execute(name, env)

    assert "aifx replay --synthetic" in executed.text()
    expected = {
        "compare_runs": {"training_runs": 0, "versions": {}, "newest_version": None},
        "drift_report": {"evaluations": 0, "chosen": None},
        "ab_test": {"tests": 0, "test_name": None},
    }[name]
    assert {key: executed.summary.get(key) for key in expected} == expected
    assert files_in(data) == before  # it read; it created nothing (no MLflow store either)


def files_in(folder: Path) -> list[str]:
    """The files of a folder, less SQLite's write-ahead log, which any reader may open."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(("-wal", "-shm")))
