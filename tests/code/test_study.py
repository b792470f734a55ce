"""A replay study's pure parts: which replays a study plans, what each replay's report says,
how the replays are pooled and summed up, the study's files, and its report page."""

from __future__ import annotations

import html
import json
import math
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from aifx_ml.domain import TestMode
from aifx_ml.errors import ConflictError, InvalidInputError
from aifx_ml.jsonsafe import finite
from aifx_ml.replay.plan import ReplayParams, with_change_point
from aifx_ml.replay.report import verdict
from aifx_ml.replay.study import (
    OUTCOMES,
    ReplayEffect,
    ReplayOutcome,
    StudyMember,
    StudyReport,
    StudySpec,
    effect_of,
    plan_study,
    points,
    pool,
    summarize,
)
from aifx_ml.replay.study_files import (
    OUTCOME,
    PARAMS,
    PLAN,
    completed_outcome,
    prepare_study,
    read_member,
    read_outcome,
    write_outcome,
)
from aifx_ml.replay.study_render import (
    HTML_NAME,
    JSON_NAME,
    render_study_html,
    write_study_report,
)

START = datetime(2026, 1, 12, tzinfo=UTC)  # a Monday
END = datetime(2026, 2, 9, tzinfo=UTC)
P1 = (START, END)
P2 = (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 4, 6, tzinfo=UTC))


def base(**changes: Any) -> ReplayParams:
    """A small synthetic replay with no change point given (each member finds its own)."""
    values: dict[str, Any] = {
        "pairs": ("EUR/USD",),
        "timeframes": ("1h",),
        "start": START,
        "end": END,
        "history_days": 3,
    }
    values.update(changes)
    return ReplayParams(**values)


def iso(moment: datetime) -> str:
    return moment.isoformat()


# --- plan_study ---------------------------------------------------------------------------


def test_the_replays_are_every_combination_in_a_stable_order() -> None:
    spec = StudySpec(seeds=(1, 2), periods=(P1, P2), grid={"refresh_days": (0.0, 7.5)})
    members = plan_study("fx", base(), spec)
    assert [m.name for m in members] == [f"fx-r{i:02d}" for i in range(1, 9)]
    # Seeds vary slowest, then periods, then the grid, in the order given.
    expected = [
        (seed, period, refresh) for seed in (1, 2) for period in (P1, P2) for refresh in (0.0, 7.5)
    ]
    assert [
        (m.params.seed, (m.params.start, m.params.end), m.params.refresh_days) for m in members
    ] == expected
    for member, (seed, (start, end), refresh) in zip(members, expected, strict=True):
        assert member.axes == {
            "seed": seed,
            "start": iso(start),
            "end": iso(end),
            "refresh_days": refresh,
        }
        assert json.loads(json.dumps(member.axes)) == member.axes  # plain JSON values
        # Everything else is the base's.
        assert (
            replace(member.params, seed=7, start=START, end=END, refresh_days=7.0, change_at=None)
            == base()
        )
    assert plan_study("fx", base(), spec) == members  # the same plan every time


def test_each_member_of_a_synthetic_study_gets_the_change_point_of_its_own_period() -> None:
    members = plan_study("fx", base(), StudySpec(periods=(P1, P2)))
    found = []
    for member in members:
        change_at = member.params.change_at
        assert change_at is not None
        assert change_at == with_change_point(replace(member.params, change_at=None)).change_at
        assert member.params.start < change_at < member.params.end
        found.append(change_at)
    assert found[0] != found[1]


def test_a_given_change_point_is_every_members() -> None:
    given = datetime(2026, 1, 20, tzinfo=UTC)
    members = plan_study("fx", base(change_at=given), StudySpec(seeds=(1, 2, 3)))
    assert [m.params.change_at for m in members] == [given] * 3


def test_a_file_replay_gets_no_change_point() -> None:
    members = plan_study("fx", base(source="/data/candles"), StudySpec(seeds=(1, 2)))
    assert [m.params.change_at for m in members] == [None, None]
    assert [m.params.seed for m in members] == [1, 2]


def test_a_model_key_changes_only_the_models_parameter() -> None:
    members = plan_study("fx", base(), StudySpec(grid={"model.epochs": (5, 12)}))
    assert [m.axes for m in members] == [{"model.epochs": 5}, {"model.epochs": 12}]
    for member, epochs in zip(members, (5, 12), strict=True):
        assert member.params.model.epochs == epochs
        assert member.params == with_change_point(
            replace(base(), model=replace(base().model, epochs=epochs))
        )


def test_grid_values_take_the_type_of_the_parameter() -> None:
    spec = StudySpec(
        grid={
            "challenger_mode": ("split",),
            "pattern_lags": ([3, 4],),
            "model.lstm_units": ([8, 4],),
            "keep_waiting": (2,),
        }
    )
    [member] = plan_study("fx", base(), spec)
    assert member.params.challenger_mode is TestMode.SPLIT
    assert member.params.pattern_lags == (3, 4)
    assert member.params.model.lstm_units == (8, 4)
    assert member.params.keep_waiting == 2
    assert member.axes == {
        "challenger_mode": "split",
        "pattern_lags": [3, 4],
        "model.lstm_units": [8, 4],
        "keep_waiting": 2,
    }
    assert json.loads(json.dumps(member.axes)) == member.axes


@pytest.mark.parametrize("name", ["a", "fx.study_2-b", "x" * 64])
def test_valid_study_names_are_accepted(name: str) -> None:
    assert plan_study(name, base(), StudySpec(seeds=(1,)))[0].name == f"{name}-r01"


@pytest.mark.parametrize(
    ("name", "spec", "message"),
    [
        ("fx", StudySpec(grid={"layers": (1,)}), "study grid: unknown parameter 'layers'; known: "),
        ("fx", StudySpec(grid={"model.layers": (1,)}), "unknown parameter 'model.layers'"),
        ("fx", StudySpec(grid={"model": (1,)}), r"unknown parameter 'model'; known"),
        (
            "fx",
            StudySpec(grid={"seed": (1, 2)}),
            r"unknown parameter 'seed' \(seeds and periods have their own keys\)",
        ),
        ("fx", StudySpec(grid={"start": ("2026-01-05",)}), r"'start' \(seeds and periods"),
        ("fx", StudySpec(grid={"end": ("2026-02-05",)}), r"'end' \(seeds and periods"),
        ("fx", StudySpec(grid={"refresh_days": ()}), "study grid.refresh_days: give at least one"),
        ("fx", StudySpec(), "a study needs --seeds, --periods or a grid file to vary"),
        ("", StudySpec(seeds=(1,)), "invalid study name ''"),
        ("-fx", StudySpec(seeds=(1,)), "invalid study name '-fx'"),
        ("f x", StudySpec(seeds=(1,)), "invalid study name 'f x'"),
        ("f/x", StudySpec(seeds=(1,)), "invalid study name 'f/x'"),
        ("x" * 65, StudySpec(seeds=(1,)), "invalid study name 'xxx"),
        (
            "fx",
            StudySpec(grid={"refresh_days": ("weekly",)}),
            "study refresh_days: invalid value 'weekly'",
        ),
        ("fx", StudySpec(grid={"keep_waiting": (2.5,)}), "study keep_waiting: invalid value 2.5"),
        ("fx", StudySpec(grid={"train": (1,)}), "study train: invalid value 1"),
        ("fx", StudySpec(grid={"challenger_mode": ("both",)}), "invalid value 'both'"),
        (
            "fx",
            StudySpec(grid={"model.epochs": ("many",)}),
            "study grid.model.epochs: invalid value 'many'",
        ),
        # A value of the right type the replay refuses, as it would on the command line.
        ("fx", StudySpec(grid={"keep_waiting": (-1,)}), "invalid --keep-waiting -1"),
    ],
)
def test_a_bad_plan_is_one_clear_error(name: str, spec: StudySpec, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as caught:
        plan_study(name, base(), spec)
    assert "\n" not in str(caught.value)


# Possible bugs: these tests say what should happen and fail on the code as it is.


def test_the_grid_can_set_a_change_point_the_base_has_not() -> None:
    """BUG: `change_at` is listed as a grid parameter, but with a base with no --change-at
    (the default) `_coerce` treats None as a float parameter: `float("2026-01-20")` fails."""
    spec = StudySpec(grid={"change_at": ("2026-01-20",)})
    [member] = plan_study("fx", base(), spec)
    assert member.params.change_at == datetime(2026, 1, 20, tzinfo=UTC)


@pytest.mark.parametrize("key", ["refresh_days", "label_threshold", "pattern_strength"])
def test_a_null_for_a_number_is_a_clear_error(key: str) -> None:
    """BUG: `_coerce` gives None for a JSON/YAML null whenever the base's value is a float, so a
    parameter that must be a number is None: a TypeError from ReplayParams (refresh_days,
    label_threshold) or silently accepted (pattern_strength)."""
    with pytest.raises(InvalidInputError, match=f"study {key}: invalid value None"):
        plan_study("fx", base(), StudySpec(grid={key: (None,)}))


@pytest.mark.parametrize("key", ["keep_waiting", "refresh_days"])
def test_true_is_not_a_number(key: str) -> None:
    """BUG: `_coerce` refuses 1 for a yes/no parameter and the study's seeds refuse `true`, but
    `true` for a number is taken as 1 (`keep_waiting = [true]` replays with 1)."""
    with pytest.raises(InvalidInputError, match=f"study {key}: invalid value True"):
        plan_study("fx", base(), StudySpec(grid={key: (True,)}))


# --- StudySpec ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"seed": [1]}, r"study: unknown key\(s\) seed \(expected seeds, periods, grid\)"),
        ({"seeds": [1], "Grid": {}, "axes": []}, r"unknown key\(s\) Grid, axes"),
        ({"seeds": ["1"]}, "study: seeds: '1' is not a whole number"),
        ({"seeds": [1.5]}, "study: seeds: 1.5 is not a whole number"),
        ({"seeds": [1, True]}, "study: seeds: True is not a whole number"),
        ({"seeds": "1,2"}, "study: expected a list, not '1,2'"),
        ({"seeds": 3}, "study: expected a list, not 3"),
        ({"periods": ["2026-01-05"]}, "a period is START/END or .start, end., not"),
        ({"periods": [["2026-01-05", "2026-02-01", "2026-03-01"]]}, "a period is START/END"),
        ({"periods": [5]}, "a period is START/END"),
        ({"periods": ["soon/later"]}, "study: periods: invalid time 'soon'"),
        ({"periods": ["2026-02-01/2026-01-05"]}, "period .* ends before it starts"),
        ({"periods": [["2026-02-01", "2026-02-01"]]}, "period .* ends before it starts"),
        ({"grid": [1, 2]}, "study: grid must map parameter names to lists of values"),
        ({"grid": {"refresh_days": 7}}, "study: grid.refresh_days: expected a list, not 7"),
        ({"grid": {"pairs": "EUR/USD"}}, "grid.pairs: expected a list, not 'EUR/USD'"),
    ],
)
def test_a_bad_study_mapping_is_one_clear_error(data: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as caught:
        StudySpec.from_mapping(data)
    assert "\n" not in str(caught.value)


def test_errors_name_where_the_mapping_came_from() -> None:
    with pytest.raises(InvalidInputError, match=r"^study file plan.toml: unknown key\(s\) x"):
        StudySpec.from_mapping({"x": 1}, where="study file plan.toml")


@pytest.mark.parametrize(
    "period",
    [
        "2026-01-12/2026-02-09",
        ["2026-01-12", "2026-02-09"],
        ("2026-01-12T00:00:00+00:00", "2026-02-09T00:00:00Z"),
        [date(2026, 1, 12), date(2026, 2, 9)],  # what TOML and YAML dates give
        ["2026-01-12T01:00:00+01:00", datetime(2026, 2, 9)],
    ],
)
def test_a_period_is_a_string_or_a_pair_in_utc(period: Any) -> None:
    spec = StudySpec.from_mapping({"periods": [period]})
    assert spec.periods == (P1,)
    assert all(t.tzinfo == UTC for t in spec.periods[0])


def test_an_empty_mapping_varies_nothing() -> None:
    assert StudySpec.from_mapping({}) == StudySpec()


def test_the_command_lines_seeds_and_periods_win_over_the_files() -> None:
    spec = StudySpec(seeds=(1, 2), periods=(P1,), grid={"refresh_days": (0, 7)})
    assert spec.with_axes() == spec
    assert spec.with_axes(seeds=[5, 6, 7]) == StudySpec((5, 6, 7), (P1,), spec.grid)
    assert spec.with_axes(periods=[P2]) == StudySpec((1, 2), (P2,), spec.grid)
    assert spec.with_axes(seeds=[3], periods=[P1, P2]) == StudySpec((3,), (P1, P2), spec.grid)
    assert StudySpec().with_axes(seeds=[4]) == StudySpec(seeds=(4,))


def test_a_spec_survives_its_dict() -> None:
    spec = StudySpec.from_mapping(
        {
            "seeds": [3, 1],
            "periods": ["2026-01-12/2026-02-09", [date(2026, 3, 2), date(2026, 4, 6)]],
            "grid": {
                "refresh_days": [0, 7.5],
                "challenger_mode": ["shadow", "split"],
                "pattern_lags": [[3, 4], [5, 8]],
                "model.epochs": [5],
            },
        }
    )
    stored = spec.as_dict()
    assert json.loads(json.dumps(stored)) == stored
    assert stored["periods"] == [[iso(a), iso(b)] for a, b in (P1, P2)]
    assert StudySpec.from_mapping(stored) == spec
    assert StudySpec.from_mapping(json.loads(json.dumps(stored))) == spec


# --- pool ---------------------------------------------------------------------------------

T975 = {1: 12.706204736174698, 2: 4.302652729749464}  # t quantiles, 1 and 2 d.o.f.


def by_hand(
    estimates: list[float], cis: list[tuple[float, float]]
) -> tuple[float, tuple[float, float], float, float]:
    """DerSimonian–Laird with a Hartung–Knapp interval, step by step (estimate, ci, tau2, i2)."""
    k = len(estimates)
    se = [(hi - lo) / (2 * 1.959964) for lo, hi in cis]
    w = [1 / s**2 for s in se]
    fixed = sum(wi * y for wi, y in zip(w, estimates, strict=True)) / sum(w)
    q = sum(wi * (y - fixed) ** 2 for wi, y in zip(w, estimates, strict=True))
    c = sum(w) - sum(wi**2 for wi in w) / sum(w)
    tau2 = max(0.0, (q - (k - 1)) / c)
    i2 = max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0
    w_star = [1 / (s**2 + tau2) for s in se]
    mu = sum(wi * y for wi, y in zip(w_star, estimates, strict=True)) / sum(w_star)
    q_hk = sum(wi * (y - mu) ** 2 for wi, y in zip(w_star, estimates, strict=True)) / (k - 1)
    half = T975[k - 1] * math.sqrt(max(q_hk, 1.0) / sum(w_star))
    return mu, (mu - half, mu + half), tau2, i2


@pytest.mark.parametrize(
    ("estimates", "cis", "between"),
    [
        # Two replays far apart for their intervals: a between-replay variance.
        ([0.05, -0.02], [(0.01, 0.09), (-0.05, 0.01)], True),
        # Three that disagree, of unequal precision (the Hartung–Knapp spread just under 1).
        ([0.02, 0.06, -0.03], [(-0.01, 0.05), (0.04, 0.08), (-0.06, 0.0)], True),
        # Three whose Hartung–Knapp spread is over 1 (about 1.7): it widens the interval.
        ([-0.04, -0.01, 0.0], [(-0.05, -0.03), (-0.015, -0.005), (-0.005, 0.005)], True),
        # Three that agree better than their intervals say: no between-replay variance, and
        # the Hartung–Knapp spread under 1 (the interval is never narrower than with 1).
        ([0.010, 0.011, 0.009], [(-0.03, 0.05), (-0.02, 0.04), (-0.05, 0.07)], False),
    ],
)
def test_pooling_is_dersimonian_laird_with_a_hartung_knapp_interval(
    estimates: list[float], cis: list[tuple[float, float]], between: bool
) -> None:
    mu, (lo, hi), tau2, i2 = by_hand(estimates, cis)
    assert (tau2 > 0) == between  # the case tests what it says it tests
    pooled = pool(estimates, cis)
    assert pooled is not None
    assert pooled.replays == len(estimates)
    assert pooled.estimate == pytest.approx(mu, rel=1e-6)
    assert pooled.ci == pytest.approx((lo, hi), rel=1e-6)
    assert pooled.tau2 == pytest.approx(tau2, rel=1e-6, abs=1e-12)
    assert pooled.i2 == pytest.approx(i2, rel=1e-6, abs=1e-12)
    assert 0 <= pooled.i2 < 1


@pytest.mark.parametrize(
    ("estimates", "cis"),
    [
        ([], []),
        ([math.nan], [(math.nan, math.nan)]),
        ([0.1], [(math.nan, math.nan)]),
        ([math.nan, math.nan], [(0.0, 0.1), (0.0, 0.2)]),
        ([0.1], [(0.0, math.inf)]),
    ],
)
def test_nothing_finite_pools_to_none(
    estimates: list[float], cis: list[tuple[float, float]]
) -> None:
    assert pool(estimates, cis) is None


def test_one_replay_is_its_own_estimate_and_interval() -> None:
    pooled = pool([0.03], [(-0.01, 0.07)], (-1.0, 1.0))
    assert pooled is not None
    assert (pooled.estimate, pooled.ci, pooled.replays) == (0.03, (-0.01, 0.07), 1)
    assert (pooled.tau2, pooled.i2) == (0.0, 0.0)
    assert pooled.conclusion == "no clear difference"


def test_identical_replays_with_no_noise_pool_to_a_point() -> None:
    pooled = pool([0.02] * 3, [(0.02, 0.02)] * 3)
    assert pooled is not None
    assert pooled.estimate == pytest.approx(0.02)
    assert pooled.ci == pytest.approx((0.02, 0.02), abs=1e-6)
    assert (pooled.tau2, pooled.i2, pooled.replays) == (0.0, 0.0, 3)
    assert pooled.conclusion == "ahead"


def test_the_interval_is_cut_to_the_limits() -> None:
    estimates, cis = [0.9, 0.95], [(0.7, 1.1), (0.8, 1.1)]
    free, cut = pool(estimates, cis), pool(estimates, cis, (-1.0, 1.0))
    assert free is not None and cut is not None
    assert free.ci[1] > 1.0  # the case needs cutting
    assert cut.ci == (free.ci[0], 1.0)
    assert cut.estimate == free.estimate
    low = pool([-e for e in estimates], [(-hi, -lo) for lo, hi in cis], (-1.0, 1.0))
    assert low is not None
    assert low.ci == pytest.approx((-1.0, -free.ci[0]))
    assert low.ci[0] == -1.0


def test_replays_without_a_finite_effect_are_left_out() -> None:
    both = pool([0.05, -0.02], [(0.01, 0.09), (-0.05, 0.01)])
    assert both is not None
    with_nan = pool(
        [0.05, math.nan, -0.02, 0.3],
        [(0.01, 0.09), (0.0, 0.1), (-0.05, 0.01), (math.nan, math.nan)],
    )
    assert with_nan == both
    assert with_nan.replays == 2


@pytest.mark.parametrize(
    ("ci", "conclusion"),
    [
        ((0.01, 0.05), "ahead"),
        ((-0.05, -0.01), "behind"),
        ((-0.01, 0.05), "no clear difference"),
        ((0.0, 0.05), "no clear difference"),
    ],
)
def test_a_pooled_interval_reads_as_a_conclusion(ci: tuple[float, float], conclusion: str) -> None:
    pooled = pool([sum(ci) / 2], [ci])
    assert pooled is not None
    assert pooled.conclusion == conclusion


# --- effect_of ----------------------------------------------------------------------------


def difference(estimate: float, lo: float, hi: float) -> dict[str, Any]:
    return {"estimate": estimate, "ci": [lo, hi]}


def verdict_block(
    ci: tuple[float, float] = (0.01, 0.05),
    requests: int = 120,
    estimate: float = 0.03,
) -> dict[str, Any]:
    """One period of `verdict()`, with made-up numbers."""
    versus = {
        "frozen": {
            "accuracy": difference(estimate, *ci),
            "mean_pnl": difference(0.002, -0.001, 0.005),
        },
        "persistence": {
            "accuracy": difference(0.04, 0.0, 0.08),
            "mean_pnl": difference(0.001, -0.002, 0.004),
        },
        "majority": {
            "accuracy": difference(-0.01, -0.05, 0.03),
            "mean_pnl": difference(0.0, -0.003, 0.003),
        },
    }
    return {
        "requests": requests,
        "clusters": 9,
        "continuous_minus_frozen_accuracy": estimate,
        "ci": list(ci),
        "continuous_minus_frozen_mean_pnl": 0.002,
        "pnl_ci": [-0.001, 0.005],
        "continuous_ahead": ci[0] > 0,
        "conclusion": "whatever the report said",
        "versus": versus,
    }


def replay_report(scope: str = "after_change", **block: Any) -> dict[str, Any]:
    """A replay report's JSON as far as a study reads it."""
    periods = {"overall": verdict_block(ci=(-0.5, -0.4), requests=999, estimate=-0.45)}
    if scope == "after_change":
        periods |= {"before_change": verdict_block(requests=500), "after_change": {}}
    periods[scope] = verdict_block(**block)
    return {
        "headline": "…",
        "verdict": {"scope": scope, **periods},
        "comparison": {"coverage": {"frozen_version": "lstm-v1", "requests": 1000}},
    }


@pytest.mark.parametrize(
    ("ci", "conclusion"),
    [
        ((0.01, 0.05), "ahead"),
        ((-0.05, -0.01), "behind"),
        ((-0.01, 0.05), "no clear difference"),
        ((0.0, 0.05), "no clear difference"),
    ],
)
def test_the_effect_is_read_from_the_verdicts_scope(
    ci: tuple[float, float], conclusion: str
) -> None:
    effect = effect_of(replay_report(ci=ci, estimate=sum(ci) / 2))
    assert effect == ReplayEffect(
        scope="after_change",
        requests=120,
        clusters=9,
        estimate=sum(ci) / 2,
        ci=ci,
        conclusion=conclusion,
        pnl_estimate=0.002,
        pnl_ci=(-0.001, 0.005),
        versus={"persistence": (0.04, 0.0, 0.08), "majority": (-0.01, -0.05, 0.03)},
        frozen_version="lstm-v1",
    )


def test_a_replay_with_no_change_point_is_read_overall() -> None:
    effect = effect_of(replay_report(scope="overall"))
    assert effect is not None
    assert (effect.scope, effect.requests, effect.estimate) == ("overall", 120, 0.03)


@pytest.mark.parametrize(
    "report",
    [
        replay_report(requests=0),
        {**replay_report(), "verdict": {"scope": "after_change", "overall": verdict_block()}},
        {**replay_report(), "verdict": {"scope": "after_change", "after_change": None}},
        {**replay_report(), "verdict": {}},
        {"headline": "no Production model", "verdict": None},
        {},
    ],
)
def test_no_request_to_compare_is_no_effect(report: dict[str, Any]) -> None:
    assert effect_of(report) is None


def test_missing_numbers_are_nan_not_an_error() -> None:
    report = replay_report(ci=(math.nan, math.nan), estimate=math.nan)
    block = report["verdict"]["after_change"]
    block["continuous_minus_frozen_mean_pnl"], block["pnl_ci"] = None, None
    del block["versus"]["majority"]
    report["comparison"] = None
    effect = effect_of(finite(report))  # as a report's JSON has them: null
    assert effect is not None
    assert math.isnan(effect.estimate) and all(math.isnan(v) for v in effect.ci)
    assert math.isnan(effect.pnl_estimate) and all(math.isnan(v) for v in effect.pnl_ci)
    assert effect.conclusion == "no clear difference"
    assert list(effect.versus) == ["persistence"]
    assert effect.frozen_version is None


def test_the_effect_of_a_real_verdict() -> None:
    """`effect_of` reads what `verdict()` writes: continuous always right, frozen right on
    every other request, after a change point."""
    change_at = datetime(2026, 1, 20, tzinfo=UTC)
    times = pd.date_range("2026-01-12", periods=48, freq="8h", tz="UTC")
    rows = []
    for i, time in enumerate(times):
        for series, correct in (
            ("continuous", 1.0),
            ("frozen", float(i % 2)),
            ("persistence", float(i % 3 == 0)),
            ("majority", 1.0),
        ):
            rows.append(
                {
                    "request": i,
                    "series": series,
                    "time": time,
                    "cluster": f"{time:%Y-%m-%d}",
                    "correct": correct,
                    "pnl": correct - 0.5,
                }
            )
    scored = pd.DataFrame(rows)
    after = times >= pd.Timestamp(change_at)
    report = {
        "verdict": finite(verdict(scored, change_at)),
        "comparison": {"coverage": {"frozen_version": "lstm-v1"}},
    }
    effect = effect_of(json.loads(json.dumps(report)))
    assert effect is not None
    assert effect.scope == "after_change"
    assert effect.requests == int(after.sum())
    assert effect.clusters == len({f"{t:%Y-%m-%d}" for t in times[after]})
    assert effect.estimate == pytest.approx(0.5)
    assert effect.conclusion == "ahead"
    assert effect.versus["majority"][0] == 0.0
    assert set(effect.versus) == {"persistence", "majority"}
    assert effect.frozen_version == "lstm-v1"


# --- summarize and the headline -----------------------------------------------------------


def effect(
    estimate: float,
    lo: float,
    hi: float,
    requests: int = 100,
    versus: dict[str, tuple[float, float, float]] | None = None,
) -> ReplayEffect:
    return ReplayEffect(
        scope="after_change",
        requests=requests,
        clusters=10,
        estimate=estimate,
        ci=(lo, hi),
        conclusion=("ahead" if lo > 0 else "behind" if hi < 0 else "no clear difference"),
        pnl_estimate=estimate / 10,
        pnl_ci=(lo / 10, hi / 10),
        versus=versus
        if versus is not None
        else {"persistence": (0.05, 0.02, 0.08), "majority": (-0.01, -0.04, 0.02)},
        frozen_version="lstm-v1",
    )


def outcome(name: str, fx: ReplayEffect | None = None, error: str | None = None) -> ReplayOutcome:
    return ReplayOutcome(
        name=name,
        axes={"seed": int(name[-1])},
        status="failed" if error else "completed",
        error=error,
        effect=fx,
        headline=None if error else f"replay {name}",
        report_html=None,
        report_json=None,
    )


def study(outcomes: list[ReplayOutcome], title: str = "fx") -> StudyReport:
    return summarize(title, base(), StudySpec(seeds=(1, 2, 3)), outcomes)


def test_counts_and_requests() -> None:
    report = study(
        [
            outcome("fx-r1", effect(0.03, 0.01, 0.05, requests=100)),
            outcome("fx-r2", effect(-0.03, -0.05, -0.01, requests=80)),
            outcome("fx-r3", effect(0.0, -0.02, 0.02, requests=50)),
            outcome("fx-r4", effect(0.01, -0.01, 0.03, requests=20)),
            outcome("fx-r5"),
            outcome("fx-r6", error="ValueError: boom"),
        ]
    )
    assert report.counts == {
        "ahead": 1,
        "behind": 1,
        "no clear difference": 2,
        "nothing to compare": 1,
        "failed": 1,
    }
    assert list(report.counts) == list(OUTCOMES)
    assert report.requests == 250
    assert [o.outcome for o in report.outcomes] == [
        "ahead",
        "behind",
        "no clear difference",
        "no clear difference",
        "nothing to compare",
        "failed",
    ]
    assert report.accuracy is not None and report.accuracy.replays == 4
    assert report.pnl is not None and report.pnl.replays == 4


def test_the_pools_are_the_replays_effects_pooled() -> None:
    effects = [effect(0.03, 0.0, 0.06), effect(0.01, -0.02, 0.04), effect(0.05, 0.01, 0.09)]
    report = study([outcome(f"fx-r{i}", e) for i, e in enumerate(effects, start=1)])
    assert report.accuracy == pool(
        [e.estimate for e in effects], [e.ci for e in effects], (-1.0, 1.0)
    )
    assert report.pnl == pool([e.pnl_estimate for e in effects], [e.pnl_ci for e in effects])
    assert report.versus["persistence"] == pool([0.05] * 3, [(0.02, 0.08)] * 3, (-1.0, 1.0))


def test_the_best_baseline_is_the_hardest_to_beat() -> None:
    hard = {"persistence": (0.05, 0.02, 0.08), "majority": (-0.01, -0.04, 0.02)}
    easy = {"persistence": (-0.02, -0.05, 0.01), "majority": (0.06, 0.03, 0.09)}
    assert study([outcome("fx-r1", effect(0.02, -0.01, 0.05, versus=hard))]).best_baseline == (
        "majority"
    )
    assert study([outcome("fx-r1", effect(0.02, -0.01, 0.05, versus=easy))]).best_baseline == (
        "persistence"
    )
    only = {"persistence": (0.05, 0.02, 0.08)}
    report = study([outcome("fx-r1", effect(0.02, -0.01, 0.05, versus=only))])
    assert report.best_baseline == "persistence"
    assert list(report.versus) == ["persistence"]
    assert study([outcome("fx-r1", effect(0.02, -0.01, 0.05, versus={}))]).best_baseline is None


def test_the_headline_with_no_edge() -> None:
    report = study(
        [
            outcome("fx-r1", effect(0.02, -0.01, 0.05, requests=100)),
            outcome("fx-r2", effect(-0.01, -0.04, 0.02, requests=120)),
            outcome("fx-r3", effect(0.04, 0.01, 0.07, requests=90)),
        ]
    )
    pooled = report.accuracy
    assert pooled is not None and pooled.conclusion == "no clear difference"
    lo, hi = pooled.ci
    text = report.headline
    assert text.startswith("Over 3 replays, continuous learning was ahead of the frozen")
    assert "ahead of the frozen first Production model in 1, behind in 0" in text
    assert "not clearly different in 2" in text
    assert "Pooled over the 3 replays that compared (310 requests)" in text
    assert (
        f"{points(pooled.estimate)} accuracy points "
        f"(95% CI {points(lo)} to {points(hi)}, random effects)"
    ) in text
    assert "no edge from continuous learning on this market" in text
    assert "the best baseline, majority" in text
    assert "failed" not in text
    assert "\n" not in text


def test_the_headline_when_continuous_learning_helped() -> None:
    report = study(
        [
            outcome("fx-r1", effect(0.04, 0.02, 0.06)),
            outcome("fx-r2", effect(0.05, 0.03, 0.07)),
            outcome("fx-r3", effect(0.045, 0.025, 0.065)),
            outcome("fx-r4", error="RuntimeError: out of memory"),
        ]
    )
    assert report.accuracy is not None and report.accuracy.conclusion == "ahead"
    text = report.headline
    assert text.startswith("Over 4 replays,")
    assert "ahead of the frozen first Production model in 3" in text
    assert " 1 failed" in text
    assert "continuous learning helped on this market" in text
    assert "no edge from continuous learning" not in text
    assert "Pooled over the 3 replays that compared (300 requests)" in text


def test_the_headline_when_no_replay_compared() -> None:
    report = study([outcome("fx-r1"), outcome("fx-r2", error="boom"), outcome("fx-r3")])
    assert report.accuracy is None and report.pnl is None and report.versus == {}
    assert report.best_baseline is None
    assert report.requests == 0
    text = report.headline
    assert "Over 3 replays" in text
    assert "1 failed" in text
    assert "2 had no Production model to compare" in text
    assert text.endswith("No replay got to a comparison: the study says nothing about the method.")
    assert "Pooled" not in text


def test_points_are_signed_with_one_decimal() -> None:
    assert [points(v) for v in (0.0234, -0.0234, 0.0, -0.0001, 0.5)] == [
        "+2.3",
        "-2.3",
        "+0.0",
        "+0.0",
        "+50.0",
    ]


def test_the_reports_dict_is_json() -> None:
    report = study(
        [
            outcome("fx-r1", effect(0.02, -0.01, 0.05)),
            outcome("fx-r2", replace(effect(0.01, -0.02, 0.04), pnl_ci=(math.nan, math.nan))),
            outcome("fx-r3", error="boom"),
        ]
    )
    out = report.as_dict()
    text = json.dumps(finite(out), allow_nan=False)  # no NaN left to refuse
    back = json.loads(text)
    assert back["headline"] == report.headline
    assert back["title"] == "fx"
    assert back["counts"] == report.counts
    assert back["requests"] == 200
    assert back["pooled"]["best_baseline"] == "majority"
    assert back["pooled"]["continuous_minus_frozen_accuracy"]["replays"] == 2
    assert back["pooled"]["continuous_minus_frozen_mean_pnl"]["replays"] == 1
    assert set(back["pooled"]["continuous_minus_baseline_accuracy"]) == {
        "persistence",
        "majority",
    }
    assert [r["name"] for r in back["replays"]] == ["fx-r1", "fx-r2", "fx-r3"]
    assert [r["outcome"] for r in back["replays"]] == [
        "no clear difference",
        "no clear difference",
        "failed",
    ]
    assert back["replays"][1]["effect"]["pnl_ci"] == [None, None]
    assert back["replays"][2]["effect"] is None
    assert back["spec"] == StudySpec(seeds=(1, 2, 3)).as_dict()
    assert back["base"] == base().as_dict()


def test_the_dict_of_a_study_with_nothing_compared() -> None:
    out = study([outcome("fx-r1")]).as_dict()
    assert out["pooled"]["continuous_minus_frozen_accuracy"] is None
    assert out["pooled"]["best_baseline"] is None
    assert json.loads(json.dumps(finite(out), allow_nan=False)) == finite(out)


# --- ReplayParams survive their dict ------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        base(),
        with_change_point(base()),
        base(
            source="/data/candles",
            pairs=("EUR/USD", "GBP/USD"),
            timeframes=("1h", "4h"),
            buy_threshold=0.6,
            sell_threshold=0.4,
            challenger_mode=TestMode.SPLIT,
            train=False,
            pattern_lags=(3, 4),
            change_at=datetime(2026, 1, 20, 5, tzinfo=UTC),
        ),
        plan_study("fx", base(), StudySpec(grid={"model.lstm_units": ([8, 4],)}))[0].params,
    ],
)
def test_replay_params_survive_their_dict(params: ReplayParams) -> None:
    stored = json.loads(json.dumps(params.as_dict()))
    back = ReplayParams.from_dict(stored)
    assert back == params
    assert back.as_dict() == stored
    assert back.default_name() == params.default_name()


# --- the study's files --------------------------------------------------------------------


def planned(
    seeds: tuple[int, ...] = (1, 2), **changes: Any
) -> tuple[ReplayParams, StudySpec, list[StudyMember]]:
    params = base(**changes)
    spec = StudySpec(seeds=seeds, grid={"refresh_days": (0, 7)})
    return params, spec, plan_study("fx", params, spec)


def test_prepare_writes_the_plan_and_each_replays_parameters(tmp_path: Path) -> None:
    params, spec, members = planned()
    folder = tmp_path / "fx"
    dirs = prepare_study(folder, params, spec.as_dict(), members)
    assert dirs == [folder / m.name for m in members]
    assert json.loads((folder / PLAN).read_text()) == {
        "base": params.as_dict(),
        "spec": spec.as_dict(),
        "replays": [{"name": m.name, "axes": m.axes} for m in members],
    }
    for member, member_dir in zip(members, dirs, strict=True):
        assert (member_dir / PARAMS).is_file()
        assert read_member(member_dir) == (member.axes, member.params)
    assert not list(folder.rglob("*.partial"))


def test_preparing_again_with_the_same_plan_resumes(tmp_path: Path) -> None:
    params, spec, members = planned()
    folder = tmp_path / "fx"
    first = prepare_study(folder, params, spec.as_dict(), members)
    write_outcome(first[0], outcome("fx-r1", effect(0.02, -0.01, 0.05)))
    plan = (folder / PLAN).read_bytes()
    again = prepare_study(folder, params, spec.as_dict(), plan_study("fx", params, spec))
    assert again == first
    assert (folder / PLAN).read_bytes() == plan
    assert read_outcome(first[0]) is not None  # what a replay finished is kept


@pytest.mark.parametrize(
    ("other", "differ"),
    [
        ({"seeds": (1, 2, 3)}, "replays, spec"),
        ({"seeds": (2, 1)}, "replays, spec"),
        ({"label_threshold": 0.002}, "base"),
    ],
)
def test_preparing_with_another_plan_is_refused(
    tmp_path: Path, other: dict[str, Any], differ: str
) -> None:
    params, spec, members = planned()
    folder = tmp_path / "fx"
    prepare_study(folder, params, spec.as_dict(), members)
    plan = (folder / PLAN).read_bytes()
    params2, spec2, members2 = planned(**other)
    with pytest.raises(ConflictError, match="study 'fx' was started with another plan") as caught:
        prepare_study(folder, params2, spec2.as_dict(), members2)
    assert f"({differ} differ)" in str(caught.value)
    assert "--name" in str(caught.value)
    assert (folder / PLAN).read_bytes() == plan  # left as it was
    assert sorted(p.name for p in folder.iterdir()) == sorted([PLAN] + [m.name for m in members])


@pytest.mark.parametrize(
    "result",
    [
        outcome("fx-r1", effect(0.02, -0.01, 0.05)),
        replace(
            outcome("fx-r2", effect(0.03, 0.01, 0.05)),
            report_html="/s/fx-r2/report.html",
            report_json="/s/fx-r2/report.json",
        ),
        outcome("fx-r3"),
        outcome("fx-r4", error="ValueError: boom"),
        outcome("fx-r5", effect(0.02, -0.01, 0.05, versus={})),
    ],
)
def test_an_outcome_survives_its_file(tmp_path: Path, result: ReplayOutcome) -> None:
    assert read_outcome(tmp_path) is None  # not ended yet
    write_outcome(tmp_path, result)
    assert (tmp_path / OUTCOME).is_file()
    back = read_outcome(tmp_path)
    assert back == result
    assert back is not None and back.outcome == result.outcome


def test_an_outcomes_missing_numbers_survive_as_nan(tmp_path: Path) -> None:
    result = outcome("fx-r1", replace(effect(0.02, -0.01, 0.05), pnl_ci=(math.nan, math.nan)))
    write_outcome(tmp_path, result)
    back = read_outcome(tmp_path)
    assert back is not None and back.effect is not None
    assert all(math.isnan(v) for v in back.effect.pnl_ci)
    assert replace(back.effect, pnl_ci=(0.0, 0.0)) == replace(result.effect, pnl_ci=(0.0, 0.0))


def test_a_completed_outcome_reads_the_effect_from_the_reports_json(tmp_path: Path) -> None:
    data = replay_report(ci=(-0.05, -0.01), estimate=-0.03)
    path = tmp_path / "report.json"
    path.write_text(json.dumps(data))
    entry = {"json": str(path), "html": str(tmp_path / "report.html"), "headline": "it lost"}
    result = completed_outcome("fx-r01", {"seed": 1}, entry)
    assert result == ReplayOutcome(
        name="fx-r01",
        axes={"seed": 1},
        status="completed",
        effect=effect_of(data),
        headline="it lost",
        report_html=str(tmp_path / "report.html"),
        report_json=str(path),
    )
    assert result.effect is not None and result.outcome == "behind"


@pytest.mark.parametrize("entry", [None, {}, {"json": "/nowhere/report.json"}])
def test_a_completed_replay_without_a_report_has_nothing_to_compare(
    entry: dict[str, Any] | None,
) -> None:
    result = completed_outcome("fx-r01", {"seed": 1}, entry)
    assert result.status == "completed"
    assert result.effect is None
    assert result.outcome == "nothing to compare"


# --- the study's report -------------------------------------------------------------------


def rendered_study(folder: Path, title: str = "fx <EUR/USD> & co") -> StudyReport:
    outcomes = [
        outcome("fx-r1", effect(0.02, -0.01, 0.05)),
        outcome("fx-r2", effect(0.05, 0.02, 0.08)),
        outcome("fx-r3", error="ValueError: <boom> & more"),
        outcome("fx-r4"),
    ]
    outcomes = [
        replace(o, report_html=str(folder / o.name / "report" / "replay.html"))
        if o.status == "completed"
        else o
        for o in outcomes
    ]
    return summarize(title, base(), StudySpec(seeds=(1, 2, 3, 4)), outcomes)


def test_the_study_report_is_a_page_and_its_json(tmp_path: Path) -> None:
    folder = tmp_path / "studies" / "fx"
    report = rendered_study(folder)
    html_path, json_path = write_study_report(report, folder)
    assert (html_path, json_path) == (folder / HTML_NAME, folder / JSON_NAME)
    page = html_path.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert html.escape(report.headline) in page
    assert "<svg" in page
    assert "fx &lt;EUR/USD&gt; &amp; co" in page
    assert "<EUR/USD>" not in page
    assert "ValueError: &lt;boom&gt; &amp; more" in page
    for name in ("fx-r1", "fx-r2", "fx-r3", "fx-r4"):
        assert f"<td>{name}</td>" in page
    for name in ("fx-r1", "fx-r2", "fx-r4"):
        assert f'href="{name}/report/replay.html"' in page  # relative: the folder can move
    assert str(tmp_path) not in page
    assert json.loads(json_path.read_text(encoding="utf-8")) == finite(report.as_dict())


def test_the_study_report_renders_the_same_every_time(tmp_path: Path) -> None:
    folder = tmp_path / "fx"
    report = rendered_study(folder)
    html_path, json_path = write_study_report(report, folder)
    first = html_path.read_bytes(), json_path.read_bytes()
    write_study_report(rendered_study(folder), folder)
    assert (html_path.read_bytes(), json_path.read_bytes()) == first
    assert render_study_html(report, folder).encode() == first[0]


def test_a_study_with_nothing_compared_still_has_a_page(tmp_path: Path) -> None:
    report = summarize("fx", base(), StudySpec(seeds=(1,)), [outcome("fx-r1", error="boom")])
    html_path, json_path = write_study_report(report, tmp_path)
    page = html_path.read_text(encoding="utf-8")
    assert "no replay got to a comparison" in page
    assert "nothing to pool" in page
    assert "<svg" not in page
    assert "No replay got to a comparison" in page  # the headline
    assert json.loads(json_path.read_text())["pooled"]["continuous_minus_frozen_accuracy"] is None


def test_the_forest_plot_has_a_row_per_compared_replay(tmp_path: Path) -> None:
    page = render_study_html(rendered_study(tmp_path), tmp_path)
    svg = page[page.index("<svg") : page.index("</svg>")]
    # svg.fonttype none: the labels are text, the replays that compared and the pooled row.
    for label in ("fx-r1", "fx-r2", "pooled"):
        assert f">{label}<" in svg
    for label in ("fx-r3", "fx-r4"):
        assert label not in svg
