"""Every default in one place: each flow's parameters object in aifx_ml (TrainingParams,
EvaluationParams, ReplayParams, the A/B TestPlan) is what the flow's signature, its deployment
in prefect.yaml, the `aifx` options and the API's request body default to. A place that
disagrees — or that has a default its parameters object does not define — fails here, named.
And one retry policy for every task that retries."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from prefect import Flow
from prefect.tasks import Task
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import ValidationError, validate

from aifx_ml.abtest.store import DEFAULT_MODE, DEFAULT_PLAN, DEFAULT_SPLIT
from aifx_ml.cli.main import app
from aifx_ml.evaluation.monthly import Thresholds
from aifx_ml.evaluation.params import EVALUATION
from aifx_ml.evaluation.refresh import RefreshPolicy
from aifx_ml.labeling.rules import DEFAULT_THRESHOLD
from aifx_ml.replay.loop import ReplaySettings
from aifx_ml.replay.plan import ReplayParams
from aifx_ml.serving.routers.ab_tests import PlanIn
from aifx_ml.training.config import TRAINING, TrainingConfig, training_config
from flows.ab_evaluation import ab_evaluation_flow
from flows.common import IO_RETRIES, retry_unless_refused
from flows.daily_incremental import daily_incremental_flow
from flows.label_signals import label_signals_flow
from flows.monthly_evaluation import monthly_evaluation_flow
from flows.weekly_full import weekly_full_flow
from registry.challenger import offer_challenger

ROOT = Path(__file__).resolve().parents[2]
# Defaults that are the moment of a run, not a parameter's: now, the month before it.
PER_RUN = {"as_of", "month"}
# What a deployment sets on purpose to something else than the flow's default.
DEPLOYMENT_OVERRIDES: dict[str, dict[str, Any]] = {
    # Run by hand (or by a replay, which retrains itself) the flow only recommends; the
    # scheduled deployment acts on a verdict of retrain.
    "monthly-evaluation": {"trigger_retrain": True},
}
# Tasks that deliberately do not retry (all others retry with IO_RETRIES).
NO_RETRIES = {
    "flows.common.relay_task": "a relay that fails leaves the events in the outbox",
    "flows.common.alerts_task": "never fails: a delivery problem is an alert row",
    "flows.common.raise_alerts_task": "never fails: a delivery problem is an alert row",
    "flows.training_tasks.train_task": "a failed run is recorded, not repeated blindly",
    "flows.training_tasks.fit_candidate_task": "pure compute: a lost worker is Dask's to recompute",
    "flows.ab_evaluation.evaluate_task": "acts on the registry: a look is not repeated blindly",
    "flows.monthly_evaluation.evaluate_task": "writes reports and rows: not repeated blindly",
    "flows.monthly_evaluation.plan_version_task": "a model load: a lost worker is Dask's to redo",
    "flows.monthly_evaluation.score_series_task": "pure compute: a lost worker is Dask's to redo",
    "flows.monthly_evaluation.evaluate_version_task": "a model and Evidently: reported, not redone",
    "flows.replay_study.replay_member_task": "a failed replay is reported; the study resumes it",
    "flows.market_data.import_task": "each file is its own transaction: the next run retries",
}
FLOW_MODULES = (
    "flows.common",
    "flows.training_tasks",
    "flows.weekly_full",
    "flows.daily_incremental",
    "flows.ab_evaluation",
    "flows.label_signals",
    "flows.monthly_evaluation",
    "flows.market_data",
    "flows.replay_study",
)


# --- what each place defaults to --------------------------------------------------------------


def signature_defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    """A function's (a flow's) parameters that have a default, with it."""
    parameters = inspect.signature(getattr(fn, "fn", fn)).parameters
    return {n: p.default for n, p in parameters.items() if p.default is not p.empty}


def option_defaults(*path: str) -> dict[str, Any]:
    """`aifx PATH...`'s options that are not required, with their defaults (typer's click
    command: typer vendors its own click, hence no isinstance)."""
    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return {
        str(p.name): p.default
        for p in command.params
        if p.param_type_name == "option" and not p.required
    }


def object_defaults(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Field → default of a parameters object: an instance's values, or a class's defaults
    (fields without one left out); a nested dataclass's fields as `field.name`."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if not isinstance(obj, type):
            value = getattr(obj, f.name)
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out |= object_defaults(value, f"{prefix}{f.name}.")
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def same(found: Any, expected: Any) -> bool:
    """Equal as a user would read them: a list is the tuple, "128,64" on a command line is
    (128, 64)."""
    if isinstance(expected, tuple) and isinstance(found, str) and expected:
        kind = type(expected[0])
        found = tuple(kind(part) for part in found.split(","))
    if isinstance(found, list | tuple) and isinstance(expected, list | tuple):
        return len(found) == len(expected) and all(map(same, found, expected))
    return (
        type(found) is type(expected)
        and found == expected
        or (
            isinstance(found, int | float)
            and isinstance(expected, int | float)
            and not isinstance(found, bool)
            and not isinstance(expected, bool)
            and found == expected
        )
    )


def disagreements(
    place: str,
    found: Mapping[str, Any],
    owner: str,
    expected: Mapping[str, Any],
    *,
    rename: Mapping[str, str] | None = None,
    own: frozenset[str] = frozenset(),
) -> list[str]:
    """What `place` defaults to that its parameters object `owner` does not say."""
    rename = rename or {}
    problems = []
    for name, value in found.items():
        if name in own or name in PER_RUN:
            continue
        attr = rename.get(name, name)
        if attr not in expected:
            problems.append(
                f"{place}: `{name}` defaults to {value!r}, which {owner} does not define"
            )
        elif not same(value, expected[attr]):
            problems.append(
                f"{place}: `{name}` defaults to {value!r}, {owner}.{attr} is {expected[attr]!r}"
            )
    return problems


TRAINING_DEFAULTS = object_defaults(TRAINING)
DAILY = {"epochs": "incremental_epochs", "full_epochs": "epochs"}  # the daily flow's names
REPLAY_DEFAULTS = object_defaults(ReplayParams)
PLAN_DEFAULTS = object_defaults(DEFAULT_PLAN)


@dataclass(frozen=True)
class Place:
    """A place with defaults, the parameters object it must agree with, and how its names map
    to the object's fields (`own`: its own parameters, which the object does not hold)."""

    name: str
    defaults: Callable[[], Mapping[str, Any]]
    owner: str
    expected: Mapping[str, Any]
    rename: Mapping[str, str] = field(default_factory=dict)
    own: frozenset[str] = frozenset()


PLACES = [
    Place(
        "flow weekly-full",
        lambda: signature_defaults(weekly_full_flow),
        "TRAINING",
        TRAINING_DEFAULTS,
    ),
    Place(
        "flow daily-incremental",
        lambda: signature_defaults(daily_incremental_flow),
        "TRAINING",
        TRAINING_DEFAULTS,
        rename=DAILY,
    ),
    Place(
        "aifx train weekly",
        lambda: option_defaults("train", "weekly"),
        "TRAINING",
        TRAINING_DEFAULTS,
        rename={"wait": "lock_timeout"},
    ),
    Place(
        "aifx train daily",
        lambda: option_defaults("train", "daily"),
        "TRAINING",
        TRAINING_DEFAULTS,
        rename={"epochs": "incremental_epochs", "wait": "lock_timeout"},
    ),
    Place(
        "flow monthly-evaluation",
        lambda: signature_defaults(monthly_evaluation_flow),
        "EVALUATION",
        object_defaults(EVALUATION),
    ),
    Place(
        "aifx evaluate monthly",
        lambda: option_defaults("evaluate", "monthly"),
        "EVALUATION",
        object_defaults(EVALUATION),
    ),
    Place(
        "Thresholds (the monthly evaluation's)",
        lambda: object_defaults(Thresholds),
        "EVALUATION",
        object_defaults(EVALUATION),
        own=frozenset({"min_samples"}),
    ),
    Place(
        "aifx replay",
        lambda: option_defaults("replay"),
        "ReplayParams",
        REPLAY_DEFAULTS,
        rename={"epochs": "model.epochs", "window": "model.window", "training": "train"},
        # What is replayed: the command's own defaults (ReplayParams must be given them).
        own=frozenset({"synthetic", "data", "pairs", "timeframes", "start", "end", "name"}),
    ),
    Place(
        "ReplaySettings (the replay loop's)",
        lambda: object_defaults(ReplaySettings),
        "ReplayParams",
        REPLAY_DEFAULTS,
        own=frozenset({"model_type"}),
    ),
    Place(
        "aifx ab create",
        lambda: option_defaults("ab", "create"),
        "DEFAULT_PLAN",
        PLAN_DEFAULTS | {"split": DEFAULT_SPLIT, "mode": DEFAULT_MODE},
        rename={"min_decided": "min_decided_per_arm", "max_decided": "max_decided_per_arm"},
    ),
    Place(
        "API POST /api/v1/ml/ab-tests body `plan`",
        lambda: {name: f.default for name, f in PlanIn.model_fields.items()},
        "DEFAULT_PLAN",
        PLAN_DEFAULTS,
    ),
    Place(
        "registry offer_challenger",
        lambda: signature_defaults(offer_challenger),
        "DEFAULT_SPLIT and TRAINING",
        {
            "split": DEFAULT_SPLIT,
            "mode": TRAINING.challenger_mode,
            "keep_waiting": TRAINING.keep_waiting,
            "refresh": RefreshPolicy.after_days(TRAINING.refresh_days),
        },
        own=frozenset({"margin", "min_samples", "plan"}),
    ),
    Place(
        "flow ab-evaluation",
        lambda: signature_defaults(ab_evaluation_flow),
        "TRAINING",
        TRAINING_DEFAULTS,
    ),
    Place(
        "flow label-signals",
        lambda: signature_defaults(label_signals_flow),
        "DEFAULT_THRESHOLD",
        {"threshold": DEFAULT_THRESHOLD},
    ),
    Place(
        "aifx label",
        lambda: option_defaults("label"),
        "DEFAULT_THRESHOLD",
        {"threshold": DEFAULT_THRESHOLD},
    ),
]


@pytest.mark.parametrize("place", PLACES, ids=[p.name for p in PLACES])
def test_every_place_defaults_to_its_parameters_object(place: Place) -> None:
    defaults = place.defaults()
    assert defaults, f"{place.name}: no defaults found (renamed or moved?)"
    problems = disagreements(
        place.name, defaults, place.owner, place.expected, rename=place.rename, own=place.own
    )
    assert not problems, "\n".join(problems)


def test_the_comparison_catches_a_disagreeing_place() -> None:
    """The check above would see a place that drifted (and one with a default of its own)."""
    drifted = {**signature_defaults(weekly_full_flow), "days": 31, "shiny": 1}
    problems = disagreements("flow weekly-full", drifted, "TRAINING", TRAINING_DEFAULTS)
    assert problems == [
        "flow weekly-full: `days` defaults to 31, TRAINING.days is 30",
        "flow weekly-full: `shiny` defaults to 1, which TRAINING does not define",
    ]
    assert not disagreements("x", {"lstm_units": "128,64"}, "T", {"lstm_units": (128, 64)})
    assert disagreements("x", {"lstm_units": "128,32"}, "T", {"lstm_units": (128, 64)})
    assert disagreements("x", {"flag": 1}, "T", {"flag": True})


def test_the_training_defaults_build_the_designs_config() -> None:
    """What the flows and `aifx train` hand training_config by default is DESIGN.md's config:
    weekly 30 days, 50 epochs, batch 32, 60-candle windows, LSTM(128) → LSTM(64) → Dense(32),
    Adam 1e-3; daily 5 epochs at 1e-4 on the last 24 h."""
    t = TRAINING
    built = training_config(
        t.pairs,
        t.timeframes,
        days=t.days,
        epochs=t.epochs,
        incremental_epochs=t.incremental_epochs,
        batch_size=t.batch_size,
        window=t.window,
        lstm_units=t.lstm_units,
        dense_units=t.dense_units,
        learning_rate=t.learning_rate,
        seed=t.seed,
        include_signals=t.include_signals,
        lock_timeout=t.lock_timeout,
    )
    assert built == training_config() == TrainingConfig()
    design = (built.days, built.epochs, built.batch_size, built.holdout_fraction)
    assert design == (30, 50, 32, 0.2)
    lstm = built.lstm
    assert (lstm.window, lstm.lstm_units, lstm.dense_units, lstm.learning_rate) == (
        60,
        (128, 64),
        32,
        1e-3,
    )
    incremental = (built.incremental_hours, built.incremental_epochs)
    assert incremental + (built.incremental_learning_rate,) == (24, 5, 1e-4)


# --- prefect.yaml -----------------------------------------------------------------------------


def deployments() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    return found


def entry_flow(deployment: dict[str, Any]) -> Flow[Any, Any]:
    path, name = deployment["entrypoint"].split(":")
    flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)
    assert isinstance(flow, Flow)
    return flow


@pytest.mark.parametrize("deployment", deployments(), ids=lambda d: str(d["name"]))
def test_a_deployments_parameters_are_the_flows_defaults_or_meant(
    deployment: dict[str, Any],
) -> None:
    place = f"prefect.yaml deployment {deployment['name']}"
    flow = entry_flow(deployment)
    given = deployment.get("parameters") or {}
    # What the Prefect API checks when it creates a run of the deployment.
    try:
        validate(given, parameter_schema(flow).model_dump_for_openapi(), raise_on_error=True)
    except ValidationError as exc:
        pytest.fail(f"{place}: {exc}")
    defaults = signature_defaults(flow)
    unknown = sorted(set(given) - set(inspect.signature(flow.fn).parameters))
    assert not unknown, f"{place}: {flow.name} has no parameter {', '.join(unknown)}"
    meant = DEPLOYMENT_OVERRIDES.get(deployment["name"], {})
    problems = [
        f"{place}: `{name}` is {value!r}, the flow's default (from its parameters object) "
        f"is {defaults.get(name)!r}"
        for name, value in given.items()
        if name not in meant and not same(value, defaults.get(name))
    ] + [
        f"{place}: `{name}` should be set to {value!r} on purpose, it is {given.get(name)!r}"
        for name, value in meant.items()
        if not same(given.get(name), value)
    ]
    assert not problems, "\n".join(problems)


def test_every_flows_defaults_fit_its_own_schema() -> None:
    """The defaults the UI shows are JSON a run may be created with."""
    for deployment in deployments():
        flow = entry_flow(deployment)
        schema = parameter_schema(flow).model_dump_for_openapi()
        shown = {n: p["default"] for n, p in schema["properties"].items() if "default" in p}
        assert set(shown) == set(signature_defaults(flow)), flow.name
        validate(shown, schema, raise_on_error=True)


# --- retries ----------------------------------------------------------------------------------


def test_every_task_that_retries_uses_the_one_policy() -> None:
    policy = (IO_RETRIES["retries"], IO_RETRIES["retry_delay_seconds"])
    problems = []
    seen = set()
    for module_name in FLOW_MODULES:
        module = importlib.import_module(module_name)
        for name, task in vars(module).items():
            if not isinstance(task, Task) or task.fn.__module__ != module_name:
                continue
            key = f"{module_name}.{name}"
            seen.add(key)
            retries = (task.retries, task.retry_delay_seconds)
            if key in NO_RETRIES:
                if task.retries:
                    problems.append(f"{key} retries {retries}, yet is listed as not retrying")
            elif retries != policy or task.retry_condition_fn is not retry_unless_refused:
                problems.append(f"{key} retries {retries}, not IO_RETRIES {policy}")
    assert not problems, "\n".join(problems)
    assert set(NO_RETRIES) <= seen, set(NO_RETRIES) - seen
    # Nor written out anywhere else.
    written = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("flows", "aifx_ml", "registry")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if (re.search(r"\bretries=\d", line) or "retry_delay_seconds" in line)
        and not line.lstrip().startswith("#")
        and not (path.name == "common.py" and line.startswith("IO_RETRIES"))
    ]
    assert not written, f"a retry policy besides flows/common.py's IO_RETRIES: {written}"


def test_a_refusal_is_not_retried_a_failure_of_io_is() -> None:
    from prefect.states import Failed

    from registry.reconcile import ReconcileRefusedError

    refused = Failed(data=ReconcileRefusedError("reconcile refused, nothing changed: …"))
    assert retry_unless_refused(None, None, refused) is False
    assert retry_unless_refused(None, None, Failed(data=ConnectionError("refused"))) is True
