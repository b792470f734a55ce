"""A replay study on disk: one folder per study, one per replay, each replay's store its own.

    <root>/<study>/study.json            the plan: base, spec, and the replays' names
    <root>/<study>/<replay>/params.json  what the replay replays (ReplayParams.as_dict())
    <root>/<study>/<replay>/outcome.json how it ended, written when it ends
    <root>/<study>/<replay>/aifx.db …    its own embedded store (database, MLflow, reports)

A study run again with the same plan resumes: replays with an outcome of `completed` are
read, not run; the others run (and resume where they stopped).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aifx_ml.errors import ConflictError
from aifx_ml.replay.plan import ReplayParams
from aifx_ml.replay.study import ReplayEffect, ReplayOutcome, StudyMember, effect_of

PLAN = "study.json"
PARAMS = "params.json"
OUTCOME = "outcome.json"


def prepare_study(
    folder: Path, base: ReplayParams, spec: dict[str, Any], members: Sequence[StudyMember]
) -> list[Path]:
    """Write the study's plan and each replay's parameters; returns the replays' folders.

    A folder that already holds a plan must hold this one: a study is resumed with the plan it
    was started with, never silently mixed with another.
    """
    plan = {
        "base": base.as_dict(),
        "spec": spec,
        "replays": [{"name": m.name, "axes": m.axes} for m in members],
    }
    path = folder / PLAN
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored != plan:
            changed = sorted(k for k in plan if stored.get(k) != plan[k])
            raise ConflictError(
                f"study {folder.name!r} was started with another plan ({', '.join(changed)} "
                "differ): run it with the same options, or give a new --name"
            )
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(path, plan)
    dirs = []
    for member in members:
        member_dir = folder / member.name
        member_dir.mkdir(exist_ok=True)
        _write_json(member_dir / PARAMS, {"axes": member.axes, "params": member.params.as_dict()})
        dirs.append(member_dir)
    return dirs


def read_member(member_dir: Path) -> tuple[dict[str, Any], ReplayParams]:
    """A replay's axes and parameters, as `prepare_study` wrote them."""
    stored = json.loads((member_dir / PARAMS).read_text(encoding="utf-8"))
    return dict(stored["axes"]), ReplayParams.from_dict(stored["params"])


def write_outcome(member_dir: Path, outcome: ReplayOutcome) -> None:
    _write_json(member_dir / OUTCOME, asdict(outcome))


def read_outcome(member_dir: Path) -> ReplayOutcome | None:
    """The outcome a replay's run wrote, or None before it ended."""
    path = member_dir / OUTCOME
    if not path.exists():
        return None
    stored = json.loads(path.read_text(encoding="utf-8"))
    effect = stored.pop("effect")
    if effect is not None:
        effect["ci"], effect["pnl_ci"] = tuple(effect["ci"]), tuple(effect["pnl_ci"])
        effect["versus"] = {k: tuple(v) for k, v in effect["versus"].items()}
        effect = ReplayEffect(**effect)
    return ReplayOutcome(**stored, effect=effect)


def completed_outcome(
    name: str, axes: dict[str, Any], report: dict[str, Any] | None
) -> ReplayOutcome:
    """A completed replay's outcome from its run's `report` entry (paths and headline)."""
    report = report or {}
    json_path = report.get("json")
    effect = None
    if json_path and Path(json_path).exists():
        effect = effect_of(json.loads(Path(json_path).read_text(encoding="utf-8")))
    return ReplayOutcome(
        name=name,
        axes=axes,
        status="completed",
        effect=effect,
        headline=report.get("headline"),
        report_html=report.get("html"),
        report_json=json_path,
    )


def _write_json(path: Path, value: Any) -> None:
    """Whole or not at all: a reader never sees half a file."""
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(json.dumps(value, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    os.replace(partial, path)
