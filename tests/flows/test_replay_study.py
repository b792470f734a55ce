"""A replay study through its real flow, in process (the default task runner): each replay in a
process and store of its own, a failed replay recorded and named, the study resumed without
running again what completed, and one report (HTML, JSON, an MLflow run per replay)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient
from sqlalchemy import create_engine, func, select

from aifx_ml.db.models import ModelVersion
from aifx_ml.replay.study import StudySpec
from flows.replay_study import ReplayFailedError, replay_study_flow
from tests.replay_world import TINY_REPLAY, store_env, store_settings

pytestmark = pytest.mark.integration


@pytest.mark.long
def test_a_study_records_a_failed_replay_and_resumes_it(
    prefect_api: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = store_settings(tmp_path / "main")
    for name, value in store_env(settings).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    base, spec = TINY_REPLAY, StudySpec(seeds=(3, 4))
    folder = tmp_path / "study"
    args = {"name": "tiny", "base": base.as_dict(), "spec": spec.as_dict(), "folder": str(folder)}
    # The second replay's store is not a database: that replay fails, the first does not.
    broken = folder / "tiny-r02" / "aifx.db"
    broken.parent.mkdir(parents=True)
    broken.write_text("not a database")

    with pytest.raises(ReplayFailedError, match=r"1 of 2 replays failed \(tiny-r02\)"):
        replay_study_flow(**args)

    first = json.loads((folder / "study-report.json").read_text())
    assert [r["status"] for r in first["replays"]] == ["completed", "failed"]
    assert (
        "tiny-r02" in first["replays"][1]["error"] and "replay.log" in first["replays"][1]["error"]
    )
    assert first["counts"]["failed"] == 1
    assert json.loads((folder / "tiny-r02" / "outcome.json").read_text())["status"] == "failed"
    log_before = (folder / "tiny-r01" / "replay.log").stat().st_size

    broken.unlink()
    result = replay_study_flow(**args)

    # The completed replay was read, not run again; the failed one ran to its end.
    assert (folder / "tiny-r01" / "replay.log").stat().st_size == log_before
    report = json.loads(Path(result["json"]).read_text())
    assert [r["name"] for r in report["replays"]] == ["tiny-r01", "tiny-r02"]
    assert [r["axes"] for r in report["replays"]] == [{"seed": 3}, {"seed": 4}]
    assert [r["status"] for r in report["replays"]] == ["completed", "completed"]
    assert sum(report["counts"].values()) == 2 and report["counts"]["failed"] == 0
    assert report["headline"] == result["headline"] and "Over 2 replays" in report["headline"]
    html = Path(result["html"]).read_text()
    for replay in report["replays"]:
        assert Path(replay["report_html"]).is_file()
        assert replay["report_html"].startswith(str(folder / replay["name"]))
        assert replay["name"] in html
        # Each replay trained into its own store; the study's settings' store got none.
        own = create_engine(f"sqlite:///{folder / replay['name'] / 'aifx.db'}")
        with own.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(ModelVersion)) >= 1
        own.dispose()
    assert not Path(settings.db_url.removeprefix("sqlite:///")).exists()

    # The study's run in the settings' MLflow, a nested run per replay.
    client = MlflowClient(settings.tracking_uri)
    parent = client.get_run(result["mlflow_run_id"])
    assert parent.data.tags["aifx.run_type"] == "replay_study"
    assert parent.data.metrics["replays"] == 2
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(c.info.run_name for c in children) == ["tiny-r01", "tiny-r02"]
    assert {c.data.params["seed"] for c in children} == {"3", "4"}
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert artifacts == {"study-report.html", "study-report.json"}
