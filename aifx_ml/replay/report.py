"""Did continuous learning pay off? The replay report's numbers, computed from frames.

The Production model of each moment, the first Production model frozen and two naive baselines
answer the same requests; their signals are labeled by the labeling rules, and every interval
resamples whole (pair, UTC day) clusters, because signals of one pair on one day move together.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from aifx_ml.domain import Cutoffs, decide
from aifx_ml.evaluation.baselines import persistence_signals
from aifx_ml.intervals import wilson_interval
from aifx_ml.jsonsafe import finite
from aifx_ml.labeling.rules import direction_target, label_signals
from aifx_ml.markets import horizon, iter_series, step_offset

F64 = npt.NDArray[np.float64]
SERIES: tuple[str, ...] = ("continuous", "frozen", "persistence", "majority")
MODEL_SERIES: tuple[str, ...] = ("continuous", "frozen")
BASELINES: tuple[str, ...] = ("persistence", "majority")
SERIES_NAMES = {
    "continuous": "the Production model of the moment",
    "frozen": "the frozen first version",
    "persistence": "the persistence baseline",
    "majority": "the majority baseline",
}
DRAWS = 2000
SEED = 7
CONCLUSIONS = {
    "ahead": "continuous learning paid off",
    "behind": "continuous learning did worse",
    "no clear difference": "no clear difference",
}
_BLOCK = 250  # bootstrap draws per block: memory stays at 250 x clusters whatever the draws


@dataclass(frozen=True)
class SeriesMetrics:
    """How one series did on a set of requests; intervals are 95%."""

    n: int
    accuracy: float
    accuracy_ci: tuple[float, float]  # Wilson
    wins: int
    losses: int
    breakevens: int
    win_rate: float  # wins / (wins + losses)
    win_rate_ci: tuple[float, float]  # Wilson
    mean_pnl: float  # % per signal, holds count as 0
    mean_pnl_ci: tuple[float, float]  # cluster bootstrap
    cum_pnl: float
    signals: dict[str, int]


@dataclass(frozen=True)
class Timeline:
    """Every version, every stage change, and which version was Production when."""

    versions: pd.DataFrame  # version, training_type, parent_version, trained_as_of, created_at, …
    stage_changes: pd.DataFrame  # changed_at, version, from_status, to_status, reason, actor
    production: pd.DataFrame  # version, start, end


@dataclass(frozen=True)
class Comparison:
    """Every series on the same requests: per request, per period, per week."""

    scored: pd.DataFrame  # one row per request and series (see `score_requests`)
    periods: dict[str, dict[str, SeriesMetrics]]
    weekly: pd.DataFrame
    coverage: dict[str, Any]


@dataclass(frozen=True)
class ReplayReport:
    """What a replay shows: its timeline, A/B tests, evaluations and the key comparison."""

    title: str
    start: datetime
    end: datetime
    pairs: tuple[str, ...]
    timeframes: tuple[str, ...]
    model_type: str
    change_at: datetime | None
    label_threshold: float
    policy: dict[str, Any]  # the global thresholds, override, and the rule in words
    timeline: Timeline
    ab_tests: pd.DataFrame
    evaluations: pd.DataFrame
    comparison: Comparison
    verdict: dict[str, Any]
    # How the loop ran, per period (see `operations`).
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def headline(self) -> str:
        """The key question answered in one sentence, with the numbers and their intervals."""
        return headline_of(self)

    def as_dict(self) -> dict[str, Any]:
        """The headline and every number but the per-request rows, JSON-safe (NaN is null)."""
        out: dict[str, Any] = finite({"headline": self.headline, **_jsonable(self)})
        return out


def cluster_bootstrap_ci(
    values: npt.ArrayLike,
    clusters: npt.ArrayLike,
    *,
    draws: int = DRAWS,
    seed: int = SEED,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of the mean of `values`, resampling whole clusters with replacement.

    Deterministic: the same values, clusters and seed give the same interval in any row order
    (clusters are numbered in sorted order). NaN values are left out; no data gives NaN.
    """
    y = np.asarray(values, dtype=np.float64)
    labels = np.asarray(clusters, dtype=object)
    ok = np.isfinite(y)
    if not ok.any():
        return float("nan"), float("nan")
    codes, uniques = pd.factorize(pd.Series(labels[ok]).astype(str), sort=True)
    g = len(uniques)
    sums = np.bincount(codes, y[ok], minlength=g)
    counts = np.bincount(codes, minlength=g).astype(np.float64)
    rng = np.random.default_rng(seed)
    means = []
    for first in range(0, draws, _BLOCK):
        b = min(_BLOCK, draws - first)
        picks = rng.integers(0, g, size=(b, g))
        # How often each cluster was drawn in each resample, without a loop over resamples.
        weights = np.bincount((picks + g * np.arange(b)[:, None]).ravel(), minlength=b * g)
        weights = weights.reshape(b, g).astype(np.float64)
        means.append((weights @ sums) / (weights @ counts))
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(np.concatenate(means), [tail, 1.0 - tail])
    return float(lo), float(hi)


def model_signals(
    p_up: npt.ArrayLike, buy: npt.ArrayLike, sell: npt.ArrayLike
) -> npt.NDArray[np.str_]:
    """The signal serving would give for each P(up) at its version's thresholds (NaN: that
    direction never called): `decide` itself, so the rule cannot drift.

    One Python call per request; it costs far less than the model call that made the P(up).
    """
    call = np.frompyfunc(lambda p, b, s: decide(float(p), Cutoffs(_none(b), _none(s)))[0], 3, 1)
    p, b, s = (np.asarray(v, dtype=np.float64) for v in (p_up, buy, sell))
    return np.asarray(call(p, b, s), dtype=str) if p.size else np.empty(0, dtype=str)


def _none(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def production_spans(history: pd.DataFrame, until: datetime) -> pd.DataFrame:
    """Who was Production when: (version, start, end) from stage-history rows, oldest first.

    Production is only ever left by being replaced (`registry.stages`), so a span ends when the
    next version enters Production, or at `until`.
    """
    into = history[history["to_status"] == "production"]
    start = pd.to_datetime(into["changed_at"], utc=True).reset_index(drop=True)
    end = start.shift(-1).fillna(pd.Timestamp(until).tz_convert("UTC"))
    return pd.DataFrame({"version": into["version"].to_numpy(object), "start": start, "end": end})


def serving_versions(spans: pd.DataFrame, times: pd.Series | pd.DatetimeIndex) -> npt.NDArray[Any]:
    """The Production version at each time (None where none was), from `production_spans`."""
    t, starts, ends = _ns(times), _ns(spans["start"]), _ns(spans["end"])
    i = np.searchsorted(starts, t, side="right") - 1
    inside = (i >= 0) & (t < np.append(ends, 0)[i])  # i = -1 picks the 0 appended: not inside
    versions = np.asarray([*spans["version"], None], dtype=object)
    found: npt.NDArray[Any] = versions[np.where(inside, i, -1)]
    return found


def majority_call(history: pd.DataFrame, before: datetime) -> str:
    """'buy' if the market went up more often than down in the history before `before`.

    `history`: pair, timeframe, timestamp (open, UTC), close. Only directions known by then
    count (the horizon candle had closed). A tie or no history says 'buy'.
    """
    ups, total = 0.0, 0
    cut = pd.Timestamp(before)
    for _, timeframe, rows in iter_series(history):
        series = history.iloc[rows].sort_values("timestamp")
        target = direction_target(series["timestamp"], series["close"], timeframe)
        # Known once the horizon candle has closed: open + one step (decision) + horizon + step.
        known = pd.DatetimeIndex(series["timestamp"]) + 2 * step_offset(timeframe)
        keep = np.isfinite(target) & np.asarray(known + horizon(timeframe) <= cut)
        ups, total = ups + float(target[keep].sum()), total + int(keep.sum())
    return "buy" if total == 0 or ups / total >= 0.5 else "sell"


def score_requests(
    requests: pd.DataFrame,
    candles: pd.DataFrame,
    *,
    threshold: float,
    majority: str,
) -> pd.DataFrame:
    """One row per request and series: P(up), signal, outcome, pnl %, right or wrong.

    `requests`: pair, timeframe, time (candle close, UTC), entry_price, prev_close, target (1 up,
    0 down), and of continuous and frozen: p_ (calibrated P(up)), version_, and buy_ / sell_
    (the thresholds it answered at, NaN: never). Baselines get P(up) 1 for a buy, 0 for a
    sell and 0.5 for a hold, so their accuracy counts a hold as a call of "up".
    """
    n = len(requests)
    base = requests[["pair", "timeframe", "time", "entry_price", "target"]].reset_index(drop=True)
    base = base.assign(request=np.arange(n), time=pd.to_datetime(base["time"], utc=True))
    closes = np.column_stack([requests["prev_close"], requests["entry_price"]]).ravel()
    # Interleaved (previous close, close): every odd position's move is the request's last move.
    persistence = persistence_signals(closes)[1::2] if n else np.empty(0, dtype=str)
    frames = []
    for name in SERIES:
        if name in MODEL_SERIES:
            p = requests[f"p_{name}"].to_numpy(np.float64)
            buy, sell = requests[f"buy_{name}"], requests[f"sell_{name}"]
            signal = model_signals(p, buy, sell)
            version = requests[f"version_{name}"].to_numpy(object)
            # Its version found no threshold with an edge on held-out data: it always holds.
            no_edge = (buy.isna() & sell.isna()).to_numpy(bool)
        else:
            signal = persistence if name == "persistence" else np.full(n, majority)
            p, version = np.select([signal == "buy", signal == "sell"], [1.0, 0.0], 0.5), None
            no_edge = np.zeros(n, dtype=bool)
        frames.append(
            base.assign(
                series=name, p_up=p, signal=signal.astype(object), version=version, no_edge=no_edge
            )
        )
    scored = pd.concat(frames, ignore_index=True)
    labels = label_signals(scored.rename(columns={"time": "created_at"}), candles, threshold)
    scored["outcome"] = labels["actual_outcome"].astype(str).to_numpy()
    scored["pnl"] = labels["actual_pnl_percent"].to_numpy()
    scored["correct"] = np.where(
        np.isfinite(scored["target"]), (scored["p_up"] >= 0.5) == (scored["target"] == 1.0), np.nan
    )
    scored["cluster"] = scored["pair"] + "|" + scored["time"].dt.strftime("%Y-%m-%d")
    day = scored["time"].dt.floor("D")
    scored["week"] = day - pd.to_timedelta(day.dt.dayofweek, unit="D")  # its Monday, UTC
    return scored


def series_metrics(frame: pd.DataFrame, seed: int = SEED) -> SeriesMetrics:
    """The numbers of one series over the rows given (of `score_requests`)."""
    correct = frame["correct"].dropna()
    outcome = frame["outcome"]
    wins, losses = int((outcome == "win").sum()), int((outcome == "loss").sum())
    acc_lo, acc_hi = wilson_interval(correct.sum(), len(correct))
    win_lo, win_hi = wilson_interval(wins, wins + losses)
    pnl = frame["pnl"].to_numpy(np.float64)
    finite_pnl = pnl[np.isfinite(pnl)]
    counts = frame["signal"].value_counts()
    return SeriesMetrics(
        n=int(len(frame)),
        accuracy=float(correct.mean()) if len(correct) else float("nan"),
        accuracy_ci=(float(acc_lo), float(acc_hi)),
        wins=wins,
        losses=losses,
        breakevens=int((outcome == "breakeven").sum()),
        win_rate=wins / (wins + losses) if wins + losses else float("nan"),
        win_rate_ci=(float(win_lo), float(win_hi)),
        mean_pnl=float(finite_pnl.mean()) if len(finite_pnl) else float("nan"),
        mean_pnl_ci=cluster_bootstrap_ci(pnl, frame["cluster"], seed=seed),
        cum_pnl=float(finite_pnl.sum()),
        signals={s: int(counts.get(s, 0)) for s in ("buy", "sell", "hold")},
    )


def period_masks(scored: pd.DataFrame, change_at: datetime | None) -> dict[str, pd.Series]:
    """Rows of each period: overall, and before / after `change_at` when it is given."""
    masks = {"overall": pd.Series(True, index=scored.index)}
    if change_at is not None:
        after = scored["time"] >= pd.Timestamp(change_at)
        masks.update(before_change=~after, after_change=after)
    return masks


def weekly_series(scored: pd.DataFrame) -> pd.DataFrame:
    """Per series and week (Monday, UTC): n, accuracy with its Wilson CI, pnl, cumulative pnl."""
    series = pd.Categorical(scored["series"], categories=SERIES)
    grouped = scored.assign(series=series).groupby(["series", "week"], observed=True, sort=True)
    weekly = grouped.agg(
        n=("correct", "count"), correct=("correct", "sum"), pnl=("pnl", "sum")
    ).reset_index()
    weekly["accuracy"] = weekly["correct"] / weekly["n"].where(weekly["n"] > 0)
    weekly["accuracy_lo"], weekly["accuracy_hi"] = wilson_interval(weekly["correct"], weekly["n"])
    weekly["cum_pnl"] = weekly.groupby("series", observed=True)["pnl"].cumsum()
    weekly["series"] = weekly["series"].astype(str)
    return weekly


def paired_difference(
    scored: pd.DataFrame, column: str, a: str, b: str, seed: int = SEED
) -> dict[str, Any]:
    """mean(a − b) of `column` over the requests both answered, with a cluster bootstrap CI."""
    wide = scored.pivot(index="request", columns="series", values=column)
    clusters = scored.drop_duplicates("request").set_index("request")["cluster"]
    diff = (wide[a] - wide[b]).astype(np.float64) if len(wide) else pd.Series(dtype=np.float64)
    lo, hi = cluster_bootstrap_ci(diff, clusters.reindex(diff.index), seed=seed)
    return {"estimate": float(diff.mean()) if len(diff) else float("nan"), "ci": [lo, hi]}


def verdict(scored: pd.DataFrame, change_at: datetime | None, seed: int = SEED) -> dict[str, Any]:
    """Continuous minus each other series, paired on the same requests, per period.

    `continuous_ahead` only when the accuracy difference's whole 95% interval is above 0.
    """
    out: dict[str, Any] = {"scope": "after_change" if change_at is not None else "overall"}
    for period, mask in period_masks(scored, change_at).items():
        rows = scored[mask]
        versus = {
            other: {
                "accuracy": paired_difference(rows, "correct", "continuous", other, seed),
                "mean_pnl": paired_difference(rows, "pnl", "continuous", other, seed),
            }
            for other in SERIES[1:]
        }
        acc = versus["frozen"]["accuracy"]
        lo, hi = acc["ci"]
        out[period] = {
            "requests": int(rows["request"].nunique()),
            "clusters": int(rows["cluster"].nunique()),
            "continuous_minus_frozen_accuracy": acc["estimate"],
            "ci": acc["ci"],
            "continuous_minus_frozen_mean_pnl": versus["frozen"]["mean_pnl"]["estimate"],
            "pnl_ci": versus["frozen"]["mean_pnl"]["ci"],
            "continuous_ahead": bool(lo > 0),
            "conclusion": conclusion_of(lo, hi),
            "versus": versus,
        }
    return out


def conclusion_of(lo: float, hi: float) -> str:
    """A difference's 95% interval read as a verdict (a key of CONCLUSIONS)."""
    return "ahead" if lo > 0 else "behind" if hi < 0 else "no clear difference"


def compare(
    requests: pd.DataFrame,
    candles: pd.DataFrame,
    *,
    threshold: float,
    majority: str,
    change_at: datetime | None,
    coverage: Mapping[str, Any],
    seed: int = SEED,
) -> tuple[Comparison, dict[str, Any]]:
    """Score, summarize per period and week, and judge: the comparison and its verdict."""
    scored = score_requests(requests, candles, threshold=threshold, majority=majority)
    periods = {
        period: {s: series_metrics(scored[mask & (scored["series"] == s)], seed) for s in SERIES}
        for period, mask in period_masks(scored, change_at).items()
    }
    comparison = Comparison(scored, periods, weekly_series(scored), dict(coverage))
    return comparison, verdict(scored, change_at, seed)


def period_bounds(
    start: datetime, end: datetime, change_at: datetime | None
) -> dict[str, tuple[pd.Timestamp, pd.Timestamp]]:
    """[from, to) of each period of `period_masks`."""
    lo, hi = pd.Timestamp(start), pd.Timestamp(end)
    bounds = {"overall": (lo, hi)}
    if change_at is not None:
        cut = pd.Timestamp(change_at)
        bounds.update(before_change=(lo, cut), after_change=(cut, hi))
    return bounds


def operations(
    scored: pd.DataFrame,
    versions: pd.DataFrame,
    history: pd.DataFrame,
    ab_tests: pd.DataFrame,
    *,
    start: datetime,
    end: datetime,
    change_at: datetime | None,
    max_model_age: timedelta,
) -> dict[str, dict[str, Any]]:
    """How the loop ran, per period: the share of requests the Production model of the moment
    answered while stale (trained longer than `max_model_age` before: serving forced a hold),
    days since the last promotion of any kind (the most, and at the period's end), promotions
    and refreshes, tests started and ended (the challenger won, Production kept, or no winner)
    and the versions left in Staging at the period's end.

    `versions`: version, trained_as_of, created_at; `history`: the stage changes (changed_at,
    version, to_status, reason); `ab_tests`: created_at, completed_at, status, winner,
    model_a_version, model_b_version.
    """
    trained = pd.to_datetime(
        versions["trained_as_of"].fillna(versions["created_at"]), utc=True
    ).set_axis(versions["version"].to_numpy(object))
    changes = history.assign(changed_at=pd.to_datetime(history["changed_at"], utc=True))
    into = changes[changes["to_status"] == "production"]
    promoted_at = np.sort(_ns(into["changed_at"]))
    served = scored[scored["series"] == "continuous"]
    out: dict[str, dict[str, Any]] = {}
    for period, (lo, hi) in period_bounds(start, end, change_at).items():
        rows = served[(served["time"] >= lo) & (served["time"] < hi)]
        age = rows["time"] - pd.to_datetime(rows["version"].map(trained), utc=True)
        stale = (age > pd.Timedelta(max_model_age)).to_numpy(bool)
        since = _days_since(promoted_at, _ns(rows["time"]))
        at_end = _days_since(promoted_at, _ns(pd.DatetimeIndex([hi])))
        inside = into[(into["changed_at"] >= lo) & (into["changed_at"] < hi)]
        ended = ab_tests[(ab_tests["completed_at"] >= lo) & (ab_tests["completed_at"] < hi)]
        out[period] = {
            "requests": int(len(rows)),
            "stale_requests": int(stale.sum()),
            "stale_share": float(stale.mean()) if len(rows) else float("nan"),
            # Answered by a version with no threshold of its own (no edge on held-out data).
            "no_edge_requests": int(rows["no_edge"].sum()),
            "no_edge_share": float(rows["no_edge"].mean()) if len(rows) else float("nan"),
            "max_days_since_promotion": (
                float(np.nanmax(since)) if np.isfinite(since).any() else float("nan")
            ),
            "days_since_promotion_at_end": float(at_end[0]),
            "promotions": int(len(inside)),
            "refreshes": int(inside["reason"].astype(str).str.startswith("refresh").sum()),
            "tests_started": int(
                ((ab_tests["created_at"] >= lo) & (ab_tests["created_at"] < hi)).sum()
            ),
            "tests_challenger_won": int((ended["winner"] == ended["model_b_version"]).sum()),
            "tests_production_kept": int((ended["winner"] == ended["model_a_version"]).sum()),
            "tests_without_winner": int(ended["winner"].isna().sum()),
            "staging_at_end": _staging_at(changes, hi),
        }
    return out


def _days_since(events_ns: npt.NDArray[np.int64], at_ns: npt.NDArray[np.int64]) -> F64:
    """Days from the last event at or before each moment (NaN before the first)."""
    if not len(events_ns):
        return np.full(len(at_ns), np.nan)
    i = np.searchsorted(events_ns, at_ns, side="right") - 1
    days = (at_ns - events_ns[np.clip(i, 0, None)]) / 86_400e9
    return np.where(i >= 0, days, np.nan).astype(np.float64)


def _staging_at(changes: pd.DataFrame, moment: pd.Timestamp) -> int:
    """Versions whose last stage change before `moment` left them in Staging."""
    before = changes[changes["changed_at"] < moment]
    last = before.groupby("version", sort=False)["to_status"].last()
    return int((last == "staging").sum())


def headline_of(report: ReplayReport) -> str:
    """The key question answered in one sentence, with the numbers and their intervals."""
    scope = report.verdict.get("scope", "overall")
    block = report.verdict.get(scope) or {}
    if not block.get("requests"):
        trained = len(report.timeline.versions)
        if trained and report.timeline.production.empty:
            return (
                f"None of the {trained} {report.model_type} versions trained from "
                f"{utc_text(report.start)} to {utc_text(report.end)} reached Production: none "
                "passed the promotion gate, which needs a first model to beat the naive "
                "baselines on data it did not train on. The models showed no edge, and there "
                "was nothing to compare."
            )
        return (
            f"No {report.model_type} version was in Production on a labeled request from "
            f"{utc_text(report.start)} to {utc_text(report.end)}: nothing to compare."
        )
    c, f = (report.comparison.periods[scope][s] for s in MODEL_SERIES)
    when = f"From {utc_text(report.change_at)} on" if scope == "after_change" else "Over the replay"
    (lo, hi), (plo, phi) = block["ci"], block["pnl_ci"]
    return (
        f"{when}, the Production model of the moment was right {percent(c.accuracy)} of the time "
        f"({_ci(c.accuracy_ci)}) against {percent(f.accuracy)} ({_ci(f.accuracy_ci)}) for the "
        f"first Production version, {report.comparison.coverage.get('frozen_version')}, frozen: "
        f"{100 * block['continuous_minus_frozen_accuracy']:+.1f} points (95% CI {100 * lo:+.1f} "
        f"to {100 * hi:+.1f}) on the same {block['requests']} requests, and "
        f"{block['continuous_minus_frozen_mean_pnl']:+.3f} pnl % per signal (95% CI {plo:+.3f} "
        f"to {phi:+.3f}): {CONCLUSIONS[block['conclusion']]}. "
        + " ".join(_best_and_edge(report.comparison.periods[scope], block))
        + _staleness_text(report.operations.get(scope))
        + _no_edge_text(report.operations.get(scope))
    )


def _best_and_edge(metrics: Mapping[str, SeriesMetrics], block: Mapping[str, Any]) -> list[str]:
    """Which series did best on win rate and on pnl (a baseline named plainly when it beat
    the models), and whether the Production model of the moment had an edge over the best
    baseline (its paired accuracy difference and 95% CI)."""
    lines = []
    rated = [s for s in metrics if np.isfinite(metrics[s].win_rate)]
    best_rate = max(rated, key=lambda s: metrics[s].win_rate) if rated else None
    if best_rate is not None:
        m = metrics[best_rate]
        lines.append(
            f"Best win rate: {SERIES_NAMES[best_rate]}, {percent(m.win_rate)} of "
            f"{m.wins + m.losses} decided signals ({_ci(m.win_rate_ci)})."
        )
    best_pnl = max(metrics, key=lambda s: metrics[s].cum_pnl)
    own = (
        ""
        if best_pnl == "continuous"
        else "; the model of the moment's: " + (f"{metrics['continuous'].cum_pnl:+.1f}%")
    )
    lines.append(
        f"Best pnl: {SERIES_NAMES[best_pnl]}, {metrics[best_pnl].cum_pnl:+.1f}% cumulative{own}."
    )
    baseline = max(BASELINES, key=lambda s: _finite(metrics[s].accuracy))
    versus = block["versus"][baseline]["accuracy"]
    lo, hi = versus["ci"]
    gap = (
        f"{100 * versus['estimate']:+.1f} accuracy points (95% CI {100 * lo:+.1f} to "
        f"{100 * hi:+.1f})"
    )
    lines.append(
        {
            "ahead": f"The model of the moment beat the best baseline, {baseline}: {gap}.",
            "behind": f"The best baseline, {baseline}, beat the model of the moment: {gap}.",
            "no clear difference": (
                f"The models showed no edge over the best baseline, {baseline}: {gap}."
            ),
        }[conclusion_of(lo, hi)]
    )
    beaten = [
        what for what, best in (("win rate", best_rate), ("pnl", best_pnl)) if best in BASELINES
    ]
    if beaten:
        lines.append(f"A naive baseline did better than the models on {' and '.join(beaten)}.")
    return lines


def _staleness_text(ops: Mapping[str, Any] | None) -> str:
    if not ops or not ops.get("stale_requests"):
        return ""
    return (
        f" Production was stale (answers forced to hold) on {ops['stale_requests']} of "
        f"{ops['requests']} requests ({percent(ops['stale_share'])})."
    )


def _no_edge_text(ops: Mapping[str, Any] | None) -> str:
    if not ops or not ops.get("no_edge_requests"):
        return ""
    return (
        f" The model of the moment said hold to {ops['no_edge_requests']} of {ops['requests']} "
        f"requests ({percent(ops['no_edge_share'])}) because it had no edge: on the data it did "
        "not learn from, no threshold beat the best baseline."
    )


def _finite(value: float) -> float:
    return value if np.isfinite(value) else float("-inf")


def _jsonable(value: Any) -> Any:
    """Frames as records, moments in ISO 8601, dataclasses as dicts (per-request rows left out)."""
    if isinstance(value, pd.DataFrame):
        return records(value)
    if isinstance(value, datetime):
        return pd.Timestamp(value).isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _jsonable(getattr(value, f.name)) for f in fields(value) if f.name != "scored"
        }
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: timestamps in ISO 8601 (UTC), NaN as None."""
    if frame.empty:
        return []
    rows: list[dict[str, Any]] = json.loads(
        frame.to_json(orient="records", date_format="iso", date_unit="s")
    )
    return rows


def _ns(values: pd.Series | pd.DatetimeIndex) -> npt.NDArray[np.int64]:
    index = pd.DatetimeIndex(values)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    nanos: npt.NDArray[np.int64] = index.tz_localize(None).as_unit("ns").to_numpy().view(np.int64)
    return nanos


def utc_text(moment: datetime | None) -> str:
    """A moment as people read it: 2026-03-02 14:00 UTC."""
    return "" if moment is None else pd.Timestamp(moment).strftime("%Y-%m-%d %H:%M UTC")


def percent(value: float) -> str:
    """A share as a percentage with one decimal ('n/a' for NaN)."""
    return "n/a" if not np.isfinite(value) else f"{100 * value:.1f}%"


def _ci(ci: tuple[float, float]) -> str:
    return f"95% CI {percent(ci[0])}–{percent(ci[1])}"
