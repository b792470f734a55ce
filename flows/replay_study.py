"""Replay studies (`aifx replay study`): many replays of the loop as tasks of one flow, then one
report on what they say together.

Each replay is a task that runs `python -m flows.replay_study <replay folder>`: a process of
its own, on whichever worker the task runner picks (threads of this process by default, a
Dask cluster with `AIFX_TASK_RUNNER=dask` or `AIFX_DASK_ADDRESS`). A process of its own
because a replay runs the scheduled flows with its own store in the environment, and loads
dozens of models: replays side by side must share neither. One process runs one replay at a
time (its TensorFlow already uses the worker's threads). A replay's process stops after its
current moment when the task that started it is gone, so a retry never finds two writers.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait

from aifx_ml.config import load_settings
from aifx_ml.errors import AifxError
from aifx_ml.replay.plan import ReplayParams
from aifx_ml.replay.study import ReplayOutcome, StudySpec, plan_study, summarize
from aifx_ml.replay.study_files import (
    completed_outcome,
    prepare_study,
    read_member,
    read_outcome,
    write_outcome,
)
from aifx_ml.replay.study_render import write_study_report
from flows.runner import FROM_SETTINGS, worker_thread_variables
from registry.mlflow_store import MlflowModelStore, log_study_report

LOG = "replay.log"
# What a replay's process must not inherit: the stores, the cluster and the events of the
# study's own settings (a replay writes only to its own store, and announces nothing).
_NOT_INHERITED = (
    "AIFX_DATABASE_URL",
    "AIFX_REDIS_URL",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "AIFX_ARTIFACT_ROOT",
    "AIFX_DASK_ADDRESS",
)
_ONE_AT_A_TIME = threading.Lock()


class ReplayFailedError(AifxError):
    """A study's replay ended without a report; the message says why, in one line."""


@task(cache_policy=NO_CACHE)
def replay_member_task(member_dir: str) -> ReplayOutcome:
    """One replay of the study, run (or resumed) to its end in a process of its own; a replay
    that completed in an earlier run of the study is read, not run again."""
    return run_member(Path(member_dir))


@flow(name="replay-study", task_runner=FROM_SETTINGS)
def replay_study_flow(
    name: str, base: dict[str, Any], spec: dict[str, Any], folder: str
) -> dict[str, Any]:
    """Plan the study's replays in `folder`, run them as mapped tasks, write and log the report.

    `base` is a replay's parameters (`ReplayParams.as_dict()`), `spec` what varies
    (`StudySpec.as_dict()`). Failed replays are in the report, named with their reason.
    """
    base_params, study_spec = ReplayParams.from_dict(base), StudySpec.from_mapping(spec)
    members = plan_study(name, base_params, study_spec)
    root = Path(folder).resolve()
    dirs = prepare_study(root, base_params, study_spec.as_dict(), members)
    futures = replay_member_task.map([str(d) for d in dirs])
    wait(list(futures))
    outcomes = []
    for member, future in zip(members, futures, strict=True):
        state = future.state
        if state.is_completed():
            outcomes.append(future.result())
        else:
            error = state.message or state.name
            try:
                future.result()
            except Exception as exc:  # the task's own reason, not Prefect's wrapper text
                error = str(exc)
            outcomes.append(ReplayOutcome(member.name, member.axes, "failed", error=error))
    report = summarize(name, base_params, study_spec, outcomes)
    html, json_path = write_study_report(report, root)
    settings = load_settings()
    run_id = log_study_report(
        MlflowModelStore.from_settings(settings),
        report,
        html,
        json_path,
        run_name=name,
        artifact_root=settings.artifact_location,
    )
    failed = [o.name for o in outcomes if o.status != "completed"]
    if failed:
        raise ReplayFailedError(
            f"{len(failed)} of {len(outcomes)} replays failed ({', '.join(failed)}); the report "
            f"{html} says why: run the study again to resume them"
        )
    return {
        "html": str(html),
        "json": str(json_path),
        "mlflow_run_id": run_id,
        "headline": report.headline,
        "counts": report.counts,
    }


def run_member(member_dir: Path) -> ReplayOutcome:
    """Run the replay in `member_dir` in a child process; its output goes to `replay.log`."""
    done = read_outcome(member_dir)
    if done is not None and done.status == "completed":
        return done
    with _ONE_AT_A_TIME, open(member_dir / LOG, "ab") as log:
        code = subprocess.call(
            [sys.executable, "-m", "flows.replay_study", str(member_dir)],
            cwd=member_dir,
            env=member_environment(member_dir),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    outcome = read_outcome(member_dir)
    if code != 0 or outcome is None or outcome.status != "completed":
        reason = outcome.error if outcome is not None and outcome.error else _last_line(member_dir)
        raise ReplayFailedError(
            f"replay {member_dir.name} failed (exit {code}): {reason} — see {member_dir / LOG}"
        )
    return outcome


def member_environment(member_dir: Path) -> dict[str, str]:
    """The environment of a replay's process: its own embedded store in `member_dir`, its
    flows' tasks in process, TensorFlow on this worker's share of the cores."""
    env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    env |= {
        "AIFX_DATA_DIR": str(member_dir),
        "AIFX_TASK_RUNNER": "process",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL": "WARNING",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    if not env.get("PREFECT_API_URL"):
        # No Prefect server to report to: a temporary one of its own, apart from the others'.
        env |= {
            "PREFECT_HOME": str(member_dir / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
    for name, value in worker_thread_variables().items():
        env.setdefault(name, value)
    return env


def main(argv: list[str]) -> int:
    """`python -m flows.replay_study DIR`: run the replay of DIR to its end; its outcome is
    written to DIR/outcome.json either way."""
    (member_dir,) = (Path(a).resolve() for a in argv)
    axes, params = read_member(member_dir)
    settings = load_settings(None, data_dir=member_dir, task_runner="process")
    from flows.replay import run_to_end  # noqa: PLC0415  (TensorFlow, MLflow: in the child only)

    parent = os.getppid()
    started = time.monotonic()
    with _exclusive(member_dir / ".lock"):
        try:
            run = run_to_end(
                settings,
                params,
                member_dir.name,
                wall=lambda: datetime.now(UTC),
                stop=lambda: os.getppid() != parent,  # the task that started it is gone
            )
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            failed = ReplayOutcome(member_dir.name, axes, "failed", error=error)
            write_outcome(member_dir, replace(failed, seconds=time.monotonic() - started))
            raise
        if run.status != "completed":
            at = f" at {run.cursor:%Y-%m-%d %H:%M} UTC" if run.cursor else ""
            error = f"{run.status}{at}: run the study again to resume it"
            stopped = ReplayOutcome(member_dir.name, axes, "failed", error=error)
            write_outcome(member_dir, replace(stopped, seconds=time.monotonic() - started))
            return 1
        done = completed_outcome(member_dir.name, axes, run.report)
        write_outcome(member_dir, replace(done, seconds=time.monotonic() - started))
    return 0


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold the replay's lock: a second process for the same replay waits for the first to
    stop (an orphan finishing its moment) instead of writing beside it."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _last_line(member_dir: Path) -> str:
    try:
        lines = (member_dir / LOG).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "no log"
    return next((line.strip() for line in reversed(lines) if line.strip()), "no output")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
