"""`aifx replay [OPTIONS] study`: the same replay many times — over seeds, periods, or a grid of
parameters from a file — as tasks of one flow, then one report on whether continuous learning
helps on this kind of market, not just on one path.

The options before `study` are every replay's; `study`'s own say what varies.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from aifx_ml.cli.common import app_context, console, parse_list, parse_time
from aifx_ml.errors import InvalidInputError
from aifx_ml.replay.plan import ReplayParams
from aifx_ml.replay.study import StudySpec, plan_study

BASE = "aifx.replay_base"  # ctx.meta key: the replay options given before `study`


def study_cmd(
    ctx: typer.Context,
    plan: Annotated[
        Path | None,
        typer.Argument(
            help="A study file (.toml, .yaml or .json) with `seeds`, `periods` and a `grid` "
            "of replay parameters, each a list; the replays are every combination."
        ),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated seeds (of the market and of every model): a replay each."
        ),
    ] = None,
    periods: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated START/END periods (e.g. 2026-01-05/2026-03-30): a replay each."
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Name of the study (default: from what it replays).")
    ] = None,
    folder: Annotated[
        Path | None,
        typer.Option(
            help="Where the replays' own stores and the study report go (default: "
            "DATA_DIR/studies/NAME); on several machines, a folder every worker shares."
        ),
    ] = None,
) -> None:
    """Run many replays as tasks (in turn in this process; side by side on Dask with
    AIFX_TASK_RUNNER=dask or AIFX_DASK_ADDRESS), each with a store of its own, and write one
    report: each replay's continuous-minus-frozen effect with its 95% CI, how many are ahead,
    behind or unclear, and the pooled estimate. Run it again to resume what did not finish.

    Example: aifx replay --synthetic --pattern-strength 0 study --seeds 1,2,3,4
    """
    base: ReplayParams = ctx.meta[BASE]()
    spec = read_study_file(plan) if plan is not None else StudySpec()
    spec = spec.with_axes(
        seeds=[_seed(s) for s in parse_list(seeds) or []],
        periods=[_period(p) for p in parse_list(periods) or []],
    )
    study = name or default_study_name(base, spec)
    members = plan_study(study, base, spec)  # every replay checked before anything starts
    app_ctx = app_context(ctx)
    where = (folder or app_ctx.settings.data_dir / "studies" / study).resolve()
    console.print(f"study {study}: {len(members)} replays, in {where}")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect, MLflow and the flows load only when a study runs, not for --help.
    from flows.replay_jobs import replay_runtime  # noqa: PLC0415
    from flows.replay_study import replay_study_flow  # noqa: PLC0415

    with replay_runtime(app_ctx.settings):
        result = replay_study_flow(
            name=study, base=base.as_dict(), spec=spec.as_dict(), folder=str(where)
        )
    console.rule("where to look")
    console.print(f"[bold]{result['headline']}[/bold]")
    console.print(f"report:    {result['html']}")
    console.print(f"           {result['json']}")
    console.print(f"MLflow:    experiment aifx-replay-study, run {result['mlflow_run_id']}")
    console.print(f"replays:   {where}/<replay>/ (each its own store; replay.log, outcome.json)")


def read_study_file(path: Path) -> StudySpec:
    """A study file's seeds, periods and grid; a file that cannot be read is one clear line."""
    if not path.is_file():
        raise InvalidInputError(f"study file {path}: no such file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise InvalidInputError(f"study file {path}: expected .toml, .yaml, .yml or .json")
    except (tomllib.TOMLDecodeError, yaml.YAMLError, json.JSONDecodeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise InvalidInputError(
            f"study file {path}: not valid {path.suffix[1:]}: {first}"
        ) from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"study file {path}: expected a mapping of seeds, periods, grid")
    return StudySpec.from_mapping(data, where=f"study file {path}")


def default_study_name(base: ReplayParams, spec: StudySpec) -> str:
    text = json.dumps({"base": base.as_dict(), "spec": spec.as_dict()}, sort_keys=True)
    return f"study-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidInputError(f"invalid --seeds value {text!r}: expected whole numbers") from None


def _period(text: str) -> tuple[datetime, datetime]:
    start, sep, end = text.partition("/")
    if not sep:
        raise InvalidInputError(f"invalid --periods value {text!r}: expected START/END")
    first, last = parse_time(start, "--periods start"), parse_time(end, "--periods end")
    if last <= first:
        raise InvalidInputError(f"invalid --periods value {text!r}: it ends before it starts")
    return first, last
