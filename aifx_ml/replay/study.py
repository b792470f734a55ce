"""A replay study: one method replayed many times (seeds, periods, a grid of parameters), and
what the replays say together.

One replay is one sample of the verdict. A study plans its replays (`plan_study`), reads each
one's continuous-minus-frozen effect from its report (`effect_of`), and sums them up
(`summarize`): the effect per replay with its 95% interval, how many replays put continuous
learning ahead, behind or nowhere clear, and a pooled estimate over replays (random effects,
because replays of different seeds or periods differ by more than their own noise).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import numpy as np
from scipy import stats

from aifx_ml.domain import TestMode
from aifx_ml.errors import InvalidInputError
from aifx_ml.replay.plan import ModelParams, ReplayParams, with_change_point
from aifx_ml.replay.report import BASELINES, conclusion_of

# What a study's grid may vary: every replay parameter but what the seeds, the periods and the
# source already say; model parameters as `model.<name>`.
_NOT_IN_GRID = frozenset({"seed", "start", "end", "model"})
# Parameters that may be None (null in a file), with a value of the type they take otherwise.
_OPTIONAL: dict[str, Any] = {
    "change_at": datetime(2000, 1, 1, tzinfo=UTC),
    "buy_threshold": 0.5,
    "sell_threshold": 0.5,
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
Z95 = 1.959963984540054
ACCURACY_LIMITS = (-1.0, 1.0)  # a difference of two accuracies
OUTCOMES = ("ahead", "behind", "no clear difference", "nothing to compare", "failed")


@dataclass(frozen=True)
class StudySpec:
    """What varies between a study's replays; each axis left empty keeps the base's value.
    The replays are every combination of seeds × periods × grid values."""

    seeds: tuple[int, ...] = ()
    periods: tuple[tuple[datetime, datetime], ...] = ()
    grid: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "study") -> StudySpec:
        """From a study file's mapping (`seeds`, `periods`, `grid`), with one-line errors."""
        unknown = sorted(set(data) - {"seeds", "periods", "grid"})
        if unknown:
            raise InvalidInputError(
                f"{where}: unknown key(s) {', '.join(unknown)} (expected seeds, periods, grid)"
            )
        seeds = tuple(_int(v, f"{where}: seeds") for v in _list(data.get("seeds", []), where))
        periods = tuple(_period(v, where) for v in _list(data.get("periods", []), where))
        grid_in = data.get("grid", {})
        if not isinstance(grid_in, Mapping):
            raise InvalidInputError(f"{where}: grid must map parameter names to lists of values")
        grid = {str(k): tuple(_list(v, f"{where}: grid.{k}")) for k, v in grid_in.items()}
        return cls(seeds=seeds, periods=periods, grid=grid)

    def with_axes(
        self,
        seeds: Sequence[int] = (),
        periods: Sequence[tuple[datetime, datetime]] = (),
    ) -> StudySpec:
        """This spec with the command line's seeds and periods, which win over the file's."""
        return StudySpec(
            seeds=tuple(seeds) or self.seeds,
            periods=tuple(periods) or self.periods,
            grid=self.grid,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "seeds": list(self.seeds),
            "periods": [[a.isoformat(), b.isoformat()] for a, b in self.periods],
            "grid": {k: [_plain(v) for v in values] for k, values in self.grid.items()},
        }


@dataclass(frozen=True)
class StudyMember:
    """One replay of a study: its name, what sets it apart from the base, its parameters."""

    name: str
    axes: dict[str, Any]
    params: ReplayParams


@dataclass(frozen=True)
class ReplayEffect:
    """What one replay's report says of continuous learning, on its verdict's scope (after
    the change point when there is one, else the whole replay)."""

    scope: str
    requests: int
    clusters: int
    estimate: float  # continuous minus frozen accuracy, a fraction
    ci: tuple[float, float]
    conclusion: str  # ahead | behind | no clear difference
    pnl_estimate: float
    pnl_ci: tuple[float, float]
    # Continuous minus each naive baseline's accuracy: (estimate, ci low, ci high).
    versus: dict[str, tuple[float, float, float]]
    frozen_version: str | None


@dataclass(frozen=True)
class ReplayOutcome:
    """How one replay of a study ended, and its effect when it got to a comparison."""

    name: str
    axes: dict[str, Any]
    status: str  # completed | failed
    error: str | None = None
    effect: ReplayEffect | None = None
    headline: str | None = None
    report_html: str | None = None
    report_json: str | None = None
    seconds: float | None = None  # how long its last run took (wall clock)

    @property
    def outcome(self) -> str:
        """ahead | behind | no clear difference | nothing to compare | failed"""
        if self.status != "completed":
            return "failed"
        return self.effect.conclusion if self.effect is not None else "nothing to compare"


@dataclass(frozen=True)
class Pooled:
    """An effect pooled over replays: random effects (DerSimonian–Laird), its 95% interval
    from the Hartung–Knapp rule (a t interval over replays, never narrower than the usual
    one's variance), and how much the replays disagree beyond their own noise."""

    estimate: float
    ci: tuple[float, float]
    replays: int
    tau2: float  # between-replay variance
    i2: float  # share of the spread that is between replays, 0..1

    @property
    def conclusion(self) -> str:
        return conclusion_of(*self.ci)


@dataclass(frozen=True)
class StudyReport:
    """Everything a study's report shows; `as_dict()` is its JSON."""

    title: str
    base: dict[str, Any]
    spec: dict[str, Any]
    outcomes: tuple[ReplayOutcome, ...]
    accuracy: Pooled | None  # continuous minus frozen
    pnl: Pooled | None
    versus: dict[str, Pooled]  # continuous minus each naive baseline (accuracy)

    @property
    def counts(self) -> dict[str, int]:
        found = [o.outcome for o in self.outcomes]
        return {name: found.count(name) for name in OUTCOMES}

    @property
    def requests(self) -> int:
        return sum(o.effect.requests for o in self.outcomes if o.effect is not None)

    @property
    def best_baseline(self) -> str | None:
        """The naive baseline hardest to beat: the smallest pooled lead over it."""
        return min(self.versus, key=lambda b: self.versus[b].estimate) if self.versus else None

    @property
    def headline(self) -> str:
        return headline_of(self)

    def as_dict(self) -> dict[str, Any]:
        return {
            "headline": self.headline,
            "title": self.title,
            "counts": self.counts,
            "requests": self.requests,
            "pooled": {
                "continuous_minus_frozen_accuracy": _pooled_dict(self.accuracy),
                "continuous_minus_frozen_mean_pnl": _pooled_dict(self.pnl),
                "continuous_minus_baseline_accuracy": {
                    b: _pooled_dict(p) for b, p in self.versus.items()
                },
                "best_baseline": self.best_baseline,
                "method": "random effects (DerSimonian-Laird), Hartung-Knapp 95% interval",
            },
            "replays": [_outcome_dict(o) for o in self.outcomes],
            "spec": self.spec,
            "base": self.base,
        }


def plan_study(study: str, base: ReplayParams, spec: StudySpec) -> list[StudyMember]:
    """Every replay of the study, named `<study>-r01`…, in a stable order.

    `base` is the replay every member starts from; its change point, when it has none given,
    is found per member (a synthetic market switches at the same share of each period).
    """
    if not _NAME.match(study):
        raise InvalidInputError(
            f"invalid study name {study!r}: letters, digits, '.', '_' and '-' (at most 64)"
        )
    axes: list[list[dict[str, Any]]] = []
    if spec.seeds:
        axes.append([{"seed": s} for s in spec.seeds])
    if spec.periods:
        axes.append([{"start": a, "end": b} for a, b in spec.periods])
    for key, values in spec.grid.items():
        _check_grid_key(key)
        if not values:
            raise InvalidInputError(f"study grid.{key}: give at least one value")
        axes.append([{key: v} for v in values])
    combos = [{k: v for part in c for k, v in part.items()} for c in itertools.product(*axes)]
    if not axes:
        raise InvalidInputError("a study needs --seeds, --periods or a grid file to vary")
    members = []
    for i, combo in enumerate(combos, start=1):
        params = with_change_point(_with(base, combo))
        plain = {k: _plain(_value(params, k)) for k in combo}
        members.append(StudyMember(f"{study}-r{i:02d}", plain, params))
    return members


def effect_of(report: Mapping[str, Any]) -> ReplayEffect | None:
    """The verdict of a replay report's JSON (`ReplayReport.as_dict()`); None when the replay
    had no labeled request served by a Production version (nothing to compare)."""
    verdict = report.get("verdict") or {}
    scope = verdict.get("scope", "overall")
    block = verdict.get(scope) or {}
    if not block.get("requests"):
        return None
    lo, hi = _pair(block["ci"])
    versus = {
        name: (
            _num(block["versus"][name]["accuracy"]["estimate"]),
            *_pair(block["versus"][name]["accuracy"]["ci"]),
        )
        for name in BASELINES
        if name in block.get("versus", {})
    }
    coverage = (report.get("comparison") or {}).get("coverage") or {}
    return ReplayEffect(
        scope=scope,
        requests=int(block["requests"]),
        clusters=int(block.get("clusters", 0)),
        estimate=_num(block["continuous_minus_frozen_accuracy"]),
        ci=(lo, hi),
        conclusion=conclusion_of(lo, hi),
        pnl_estimate=_num(block.get("continuous_minus_frozen_mean_pnl")),
        pnl_ci=_pair(block.get("pnl_ci")),
        versus=versus,
        frozen_version=coverage.get("frozen_version"),
    )


def pool(
    estimates: Sequence[float],
    cis: Sequence[tuple[float, float]],
    limits: tuple[float, float] = (-math.inf, math.inf),
) -> Pooled | None:
    """Random-effects pooled estimate of per-replay effects given with 95% intervals (their
    standard error read off the interval's width). None without one finite effect.

    With one replay, its own estimate and interval. With more, DerSimonian–Laird's between-
    replay variance and a Hartung–Knapp interval on k − 1 degrees of freedom: with a handful
    of replays, an honest interval is wide. It is cut to `limits`, the values the effect can
    take (a difference of two accuracies lies in [-1, 1]).
    """
    y = np.asarray(estimates, dtype=np.float64)
    bounds = np.asarray(cis, dtype=np.float64).reshape(-1, 2)
    se = (bounds[:, 1] - bounds[:, 0]) / (2 * Z95)
    ok = np.isfinite(y) & np.isfinite(se)
    y, se = y[ok], np.maximum(se[ok], 1e-9)
    k = len(y)
    if k == 0:
        return None
    if k == 1:
        lo, hi = bounds[ok][0]
        return Pooled(float(y[0]), (float(lo), float(hi)), 1, 0.0, 0.0)
    w = 1.0 / se**2
    fixed = float(np.sum(w * y) / np.sum(w))
    q = float(np.sum(w * (y - fixed) ** 2))
    c = float(np.sum(w) - np.sum(w**2) / np.sum(w))
    tau2 = max(0.0, (q - (k - 1)) / c) if c > 0 else 0.0
    i2 = max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0
    w_star = 1.0 / (se**2 + tau2)
    mu = float(np.sum(w_star * y) / np.sum(w_star))
    spread = float(np.sum(w_star * (y - mu) ** 2)) / (k - 1)
    half = float(stats.t.ppf(0.975, k - 1)) * math.sqrt(max(spread, 1.0) / float(np.sum(w_star)))
    lo, hi = max(mu - half, limits[0]), min(mu + half, limits[1])
    return Pooled(mu, (lo, hi), k, tau2, i2)


def summarize(
    title: str, base: ReplayParams, spec: StudySpec, outcomes: Sequence[ReplayOutcome]
) -> StudyReport:
    """The study's report from its replays' outcomes (in the study's order)."""
    effects = [o.effect for o in outcomes if o.effect is not None]
    versus: dict[str, Pooled] = {}
    for name in BASELINES:
        rows = [e.versus[name] for e in effects if name in e.versus]
        pooled = pool([r[0] for r in rows], [(r[1], r[2]) for r in rows], ACCURACY_LIMITS)
        if pooled is not None:
            versus[name] = pooled
    return StudyReport(
        title=title,
        base=base.as_dict(),
        spec=spec.as_dict(),
        outcomes=tuple(outcomes),
        accuracy=pool([e.estimate for e in effects], [e.ci for e in effects], ACCURACY_LIMITS),
        pnl=pool([e.pnl_estimate for e in effects], [e.pnl_ci for e in effects]),
        versus=versus,
    )


def headline_of(report: StudyReport) -> str:
    """The study's answer in a few sentences: the counts, the pooled effect with its interval
    and sample size, the best baseline, and plainly when there is no edge."""
    counts = report.counts
    n = len(report.outcomes)
    failed = f" {counts['failed']} failed;" if counts["failed"] else ""
    empty = (
        f" {counts['nothing to compare']} had no Production model to compare;"
        if counts["nothing to compare"]
        else ""
    )
    tally = (
        f"Over {n} replays, continuous learning was ahead of the frozen first Production model "
        f"in {counts['ahead']}, behind in {counts['behind']}, and not clearly different in "
        f"{counts['no clear difference']};{failed}{empty}"
    ).rstrip(";")
    pooled = report.accuracy
    if pooled is None:
        return f"{tally}. No replay got to a comparison: the study says nothing about the method."
    lo, hi = pooled.ci
    verdict = {
        "ahead": "continuous learning helped on this market",
        "behind": "continuous learning hurt on this market",
        "no clear difference": "no edge from continuous learning on this market",
    }[pooled.conclusion]
    text = (
        f"{tally}. Pooled over the {pooled.replays} replays that compared ({report.requests} "
        f"requests): {points(pooled.estimate)} accuracy points (95% CI {points(lo)} to "
        f"{points(hi)}, random effects): {verdict}."
    )
    best = report.best_baseline
    if best is not None:
        b = report.versus[best]
        blo, bhi = b.ci
        gap = f"{points(b.estimate)} points (95% CI {points(blo)} to {points(bhi)})"
        text += {
            "ahead": f" The model of the moment beat the best baseline, {best}: {gap}.",
            "behind": f" The best baseline, {best}, beat the model of the moment: {gap}.",
            "no clear difference": (
                f" The models showed no edge over the best baseline, {best}: {gap}."
            ),
        }[b.conclusion]
    return text


def points(fraction: float) -> str:
    """A difference of fractions in signed percentage points, one decimal (never "-0.0")."""
    return f"{round(100 * fraction, 1) + 0.0:+.1f}"


def _with(base: ReplayParams, combo: Mapping[str, Any]) -> ReplayParams:
    values = {f.name: getattr(base, f.name) for f in fields(base)}
    model = {f.name: getattr(base.model, f.name) for f in fields(base.model)}
    for key, raw in combo.items():
        if key.startswith("model."):
            name = key.removeprefix("model.")
            model[name] = _coerce(raw, model[name], f"study grid.{key}")
        elif key in _OPTIONAL:
            values[key] = None if raw is None else _coerce(raw, _OPTIONAL[key], f"study {key}")
        else:
            values[key] = _coerce(raw, values[key], f"study {key}")
    return ReplayParams(**{**values, "model": ModelParams(**model)})


def _value(params: ReplayParams, key: str) -> Any:
    """A member's parameter `key` (`model.<name>` for the model's), as the replay uses it."""
    if key.startswith("model."):
        return getattr(params.model, key.removeprefix("model."))
    return getattr(params, key)


def _check_grid_key(key: str) -> None:
    known = sorted(
        [f.name for f in fields(ReplayParams) if f.name not in _NOT_IN_GRID]
        + [f"model.{f.name}" for f in fields(ModelParams)]
    )
    if key not in known:
        hint = " (seeds and periods have their own keys)" if key in ("seed", "start", "end") else ""
        raise InvalidInputError(
            f"study grid: unknown parameter {key!r}{hint}; known: {', '.join(known)}"
        )


def _coerce(raw: Any, current: Any, where: str) -> Any:
    """A file's or command line's value as the type the parameter has in the base (a
    stand-in of the type for a parameter that may be None)."""
    try:
        if raw is None or (isinstance(raw, bool) and not isinstance(current, bool)):
            raise ValueError
        if isinstance(current, bool):
            if not isinstance(raw, bool):
                raise ValueError
            return raw
        if isinstance(current, TestMode):
            return TestMode(raw)
        if isinstance(current, datetime):
            return _time(raw, where)
        if isinstance(current, tuple):
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            kind = type(current[0]) if current else str
            return tuple(kind(x.strip() if isinstance(x, str) else x) for x in items)
        if isinstance(current, int):
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            return int(raw)
        return type(current)(raw)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{where}: invalid value {raw!r}") from None


def _time(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            raise InvalidInputError(
                f"{where}: invalid time {value!r}: expected a date like 2026-01-31"
            ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _period(value: Any, where: str) -> tuple[datetime, datetime]:
    parts = value.split("/") if isinstance(value, str) else value
    items = list(parts) if isinstance(parts, list | tuple) else None
    if items is None or len(items) != 2:
        raise InvalidInputError(f"{where}: a period is START/END or [start, end], not {value!r}")
    start, end = _time(items[0], f"{where}: periods"), _time(items[1], f"{where}: periods")
    if end <= start:
        raise InvalidInputError(f"{where}: period {value!r} ends before it starts")
    return start, end


def _list(value: Any, where: str) -> list[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidInputError(f"{where}: expected a list, not {value!r}")
    return list(value)


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{where}: {value!r} is not a whole number")
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, TestMode):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _pair(value: Any) -> tuple[float, float]:
    if not value:
        return float("nan"), float("nan")
    return _num(value[0]), _num(value[1])


def _pooled_dict(pooled: Pooled | None) -> dict[str, Any] | None:
    if pooled is None:
        return None
    return {
        "estimate": pooled.estimate,
        "ci": list(pooled.ci),
        "replays": pooled.replays,
        "tau2": pooled.tau2,
        "i2": pooled.i2,
        "conclusion": pooled.conclusion,
    }


def _outcome_dict(outcome: ReplayOutcome) -> dict[str, Any]:
    effect = outcome.effect
    return {
        "name": outcome.name,
        "axes": outcome.axes,
        "status": outcome.status,
        "outcome": outcome.outcome,
        "error": outcome.error,
        "headline": outcome.headline,
        "report_html": outcome.report_html,
        "report_json": outcome.report_json,
        "seconds": outcome.seconds,
        "effect": None
        if effect is None
        else {
            "scope": effect.scope,
            "requests": effect.requests,
            "clusters": effect.clusters,
            "continuous_minus_frozen_accuracy": effect.estimate,
            "ci": list(effect.ci),
            "continuous_minus_frozen_mean_pnl": effect.pnl_estimate,
            "pnl_ci": list(effect.pnl_ci),
            "versus": {k: {"estimate": v[0], "ci": [v[1], v[2]]} for k, v in effect.versus.items()},
            "frozen_version": effect.frozen_version,
        },
    }
