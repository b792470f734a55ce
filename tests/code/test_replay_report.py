"""The replay report's pure numbers on tiny hand-built frames: intervals, signals and labels,
the verdict, the weekly series and the JSON."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aifx_ml.domain import SignalPolicy, decide
from aifx_ml.labeling.rules import direction_target
from aifx_ml.replay.render import render_html
from aifx_ml.replay.report import (
    ReplayReport,
    Timeline,
    cluster_bootstrap_ci,
    compare,
    majority_call,
    model_signals,
    operations,
    production_spans,
    score_requests,
    serving_versions,
    weekly_series,
    wilson_interval,
)
from tests.conftest import hourly_candles

POLICY = SignalPolicy()
# Both model series at the global thresholds (a version with none of its own).
GLOBAL_CUTOFFS = {
    f"{side}_{series}": value
    for series in ("continuous", "frozen")
    for side, value in (("buy", POLICY.buy_threshold), ("sell", POLICY.sell_threshold))
}
MONDAY = pd.Timestamp("2026-03-02 00:00", tz="UTC")


def test_wilson_interval_matches_the_textbook_values() -> None:
    lo, hi = wilson_interval([8, 0, 3], [10, 5, 0])
    assert lo[0] == pytest.approx(0.4902, abs=1e-4) and hi[0] == pytest.approx(0.9433, abs=1e-4)
    assert lo[1] == pytest.approx(0.0, abs=1e-12) and hi[1] == pytest.approx(0.4345, abs=1e-4)
    assert np.isnan(lo[2]) and np.isnan(hi[2])  # no data, no interval


def test_cluster_bootstrap_is_deterministic_and_resamples_whole_clusters() -> None:
    # Two clusters of ten identical values: only whole clusters vary, so the mean is 0, 0.5
    # or 1 in every resample; a row-level bootstrap would give a narrow interval around 0.5.
    values = np.array([0.0] * 10 + [1.0] * 10)
    clusters = np.array(["EUR/USD|2026-03-02"] * 10 + ["EUR/USD|2026-03-03"] * 10)
    assert cluster_bootstrap_ci(values, clusters) == (0.0, 1.0)
    rng = np.random.default_rng(1)
    y, c = rng.normal(size=12), np.repeat(["a", "b", "c", "d"], 3)
    first = cluster_bootstrap_ci(y, c, seed=3)
    order = rng.permutation(12)
    assert cluster_bootstrap_ci(y[order], c[order], seed=3) == first  # any row order
    assert first[0] < y.mean() < first[1]
    assert np.isnan(cluster_bootstrap_ci([np.nan], ["a"])).all()  # nothing to resample


def test_signals_are_serving_decisions() -> None:
    p = np.array([0.0, 0.45, 0.4500001, 0.5, 0.5499999, 0.55, 1.0])
    cut = POLICY.cutoffs(None)
    buy, sell = np.full(p.size, cut.buy), np.full(p.size, cut.sell)
    assert model_signals(p, buy, sell).tolist() == [decide(float(x), cut)[0] for x in p]
    assert model_signals(p, buy, sell).tolist() == [
        "sell",
        "sell",
        "hold",
        "hold",
        "hold",
        "buy",
        "buy",
    ]
    # Each request at its version's own thresholds; NaN: that direction never called.
    own_buy = np.array([0.52, 0.52, np.nan, np.nan, 0.52, 0.52, np.nan])
    own_sell = np.array([np.nan, np.nan, 0.48, 0.48, 0.48, np.nan, np.nan])
    assert model_signals(p, own_buy, own_sell).tolist() == [
        "hold",
        "hold",
        "sell",
        "hold",
        "buy",
        "buy",
        "hold",
    ]
    assert model_signals([], [], []).tolist() == []


def _candles(closes: list[float]) -> pd.DataFrame:
    """Hourly EUR/USD candles without wicks: open = previous close."""
    close = np.array(closes)
    open_ = np.concatenate([[close[0]], close[:-1]])
    return pd.DataFrame(
        {
            "pair": "EUR/USD",
            "timeframe": "1h",
            "timestamp": pd.date_range(MONDAY, periods=len(close), freq="1h"),
            "open": open_,
            "high": np.maximum(open_, close),
            "low": np.minimum(open_, close),
            "close": close,
        }
    )


def test_signals_and_labels_follow_the_labeling_rules_by_hand() -> None:
    candles = _candles([1.0] * 5 + [1.01] * 5 + [1.003] * 6)
    # Requests at the closes of candles 0 (01:00, entry 1.0) and 5 (06:00, entry 1.01); the
    # horizon (4 h) candles are 5 (close 1.01: +1%) and 10 (close 1.003: -0.693%).
    requests = pd.DataFrame(
        {
            "pair": "EUR/USD",
            "timeframe": "1h",
            "time": [MONDAY + pd.Timedelta(hours=1), MONDAY + pd.Timedelta(hours=6)],
            "entry_price": [1.0, 1.01],
            "prev_close": [np.nan, 1.0],
            "target": [1.0, 0.0],
            "p_continuous": [0.9, 0.1],
            "p_frozen": [0.5, 0.5],
            "version_continuous": ["lstm-v2", "lstm-v2"],
            "version_frozen": "lstm-v1",
            **GLOBAL_CUTOFFS,
        }
    )
    scored = score_requests(requests, candles, threshold=0.005, majority="sell")
    got = scored.set_index(["series", "request"])
    down = 100 * (1.01 - 1.003) / 1.01
    expected = {
        ("continuous", 0): ("buy", "win", 1.0, True),
        ("continuous", 1): ("sell", "win", down, True),
        ("frozen", 0): ("hold", "loss", 0.0, True),  # 0.5 counts as a call of up
        ("frozen", 1): ("hold", "loss", 0.0, False),
        ("persistence", 0): ("hold", "loss", 0.0, True),  # no previous close: no move
        ("persistence", 1): ("buy", "loss", -down, False),
        ("majority", 0): ("sell", "loss", -1.0, False),
        ("majority", 1): ("sell", "win", down, True),
    }
    for key, (signal, outcome, pnl, correct) in expected.items():
        row = got.loc[key]
        assert (row["signal"], row["outcome"], bool(row["correct"])) == (signal, outcome, correct)
        assert row["pnl"] == pytest.approx(pnl), key
    assert got.loc[("continuous", 0), "version"] == "lstm-v2"
    assert got.loc[("frozen", 1), "version"] == "lstm-v1"
    assert got.loc[("majority", 1), "version"] is None
    assert set(scored["cluster"]) == {"EUR/USD|2026-03-02"}


def _replay(hours: int = 120) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """Requests at every hourly close of a random walk; continuous right from the change on and
    wrong before it, frozen always wrong."""
    candles = hourly_candles(str(MONDAY), hours, seed=4).assign(pair="EUR/USD", timeframe="1h")
    target = direction_target(candles["timestamp"], candles["close"], "1h")
    known = np.isfinite(target)
    time = candles["timestamp"] + pd.Timedelta(hours=1)
    change = MONDAY + pd.Timedelta(hours=hours // 2)
    wrong = 1.0 - target
    requests = pd.DataFrame(
        {
            "pair": "EUR/USD",
            "timeframe": "1h",
            "time": time,
            "entry_price": candles["close"],
            "prev_close": candles["close"].shift(1),
            "target": target,
            "p_continuous": np.where(time >= change, target, wrong),
            "p_frozen": wrong,
            "version_continuous": np.where(time >= change, "lstm-v2", "lstm-v1"),
            "version_frozen": "lstm-v1",
            **GLOBAL_CUTOFFS,
        }
    )[known].reset_index(drop=True)
    return requests, candles, change


def test_a_model_right_after_the_change_is_ahead_after_it_and_only_then() -> None:
    requests, candles, change = _replay()
    comparison, verdict = compare(
        requests,
        candles,
        threshold=0.005,
        majority="buy",
        change_at=change.to_pydatetime(),
        coverage={"frozen_version": "lstm-v1"},
    )
    after, before = verdict["after_change"], verdict["before_change"]
    assert verdict["scope"] == "after_change"
    assert after["continuous_minus_frozen_accuracy"] == 1.0 and after["ci"] == [1.0, 1.0]
    assert after["continuous_ahead"] and after["conclusion"] == "ahead"
    assert before["continuous_minus_frozen_accuracy"] == 0.0 and not before["continuous_ahead"]
    assert after["requests"] + before["requests"] == verdict["overall"]["requests"]
    periods = comparison.periods
    assert periods["after_change"]["continuous"].accuracy == 1.0
    assert periods["before_change"]["continuous"].accuracy == 0.0
    lo, hi = periods["after_change"]["continuous"].accuracy_ci
    assert 0.9 < lo < hi == pytest.approx(1.0)
    assert periods["overall"]["frozen"].n == len(requests)
    # Right calls past the thresholds pay: buys that rose and sells that fell.
    assert after["continuous_minus_frozen_mean_pnl"] > 0 and after["pnl_ci"][0] > 0


def test_the_weekly_series_per_series_and_monday() -> None:
    requests, candles, change = _replay(hours=24 * 9)
    comparison, _ = compare(
        requests,
        candles,
        threshold=0.005,
        majority="buy",
        change_at=change.to_pydatetime(),
        coverage={},
    )
    weekly = comparison.weekly
    assert weekly.equals(weekly_series(comparison.scored))
    assert list(dict.fromkeys(weekly["series"])) == [
        "continuous",
        "frozen",
        "persistence",
        "majority",
    ]
    assert (weekly["week"].dt.dayofweek == 0).all() and (weekly["week"].dt.hour == 0).all()
    assert weekly.groupby("series")["n"].sum().eq(len(requests)).all()
    for _, w in weekly.groupby("series"):
        assert np.allclose(w["cum_pnl"], w["pnl"].cumsum())
        assert ((w["accuracy_lo"] <= w["accuracy"]) & (w["accuracy"] <= w["accuracy_hi"])).all()


def test_production_spans_and_who_served_when() -> None:
    at = pd.Timestamp("2026-02-23 00:00", tz="UTC")
    history = pd.DataFrame(
        {
            "changed_at": [at - pd.Timedelta(days=1), at, at + pd.Timedelta(days=2)] * 1,
            "version": ["lstm-v1", "lstm-v1", "lstm-v2"],
            "from_status": [None, "staging", "staging"],
            "to_status": ["staging", "production", "production"],
        }
    )
    spans = production_spans(history, until=datetime(2026, 3, 2, tzinfo=UTC))
    assert spans["version"].tolist() == ["lstm-v1", "lstm-v2"]
    assert spans["end"].iloc[0] == spans["start"].iloc[1] == at + pd.Timedelta(days=2)
    times = pd.DatetimeIndex(
        [at - pd.Timedelta(hours=1), at, at + pd.Timedelta(days=2), at + pd.Timedelta(days=9)]
    )
    assert serving_versions(spans, times).tolist() == [None, "lstm-v1", "lstm-v2", None]
    assert serving_versions(spans.iloc[:0], times).tolist() == [None] * 4


def test_majority_call_uses_directions_known_before_start() -> None:
    rising, falling = [1.0 + i / 100 for i in range(8)], [0.9 - i / 10 for i in range(8)]
    history = _candles(rising + falling)[["pair", "timeframe", "timestamp", "close"]]
    # A direction is known when its horizon candle has closed: by 08:00 the first three (all
    # rises); by the end seven falls against four rises.
    assert majority_call(history, MONDAY + pd.Timedelta(hours=8)) == "buy"
    assert majority_call(history, MONDAY + pd.Timedelta(hours=20)) == "sell"
    assert majority_call(history.iloc[:0], MONDAY) == "buy"


def _report(
    comparison: object, verdict: dict[str, object], change: pd.Timestamp | None
) -> ReplayReport:
    empty = pd.DataFrame()
    return ReplayReport(
        title="tiny",
        start=MONDAY.to_pydatetime(),
        end=(MONDAY + pd.Timedelta(days=7)).to_pydatetime(),
        pairs=("EUR/USD",),
        timeframes=("1h",),
        model_type="lstm",
        change_at=None if change is None else change.to_pydatetime(),
        label_threshold=0.005,
        policy={"buy_threshold": 0.55, "sell_threshold": 0.45},
        timeline=Timeline(empty, empty, pd.DataFrame({"version": [], "start": [], "end": []})),
        ab_tests=empty,
        evaluations=empty,
        comparison=comparison,
        verdict=verdict,  # type: ignore[arg-type]
    )


def test_json_has_no_nan_even_without_requests() -> None:
    requests, candles, change = _replay()
    nothing = requests.iloc[:0]
    comparison, verdict = compare(
        nothing,
        candles,
        threshold=0.005,
        majority="buy",
        change_at=change.to_pydatetime(),
        coverage={"frozen_version": None},
    )
    report = _report(comparison, verdict, change)
    text = json.dumps(report.as_dict(), allow_nan=False)  # raises on NaN
    assert json.loads(text)["comparison"]["periods"]["overall"]["continuous"]["accuracy"] is None
    assert "nothing to compare" in report.headline
    # Versions were trained and none reached Production: the headline says they had no edge.
    versions = pd.DataFrame({"version": ["lstm-v1", "lstm-v2", "lstm-v3"]})
    unpromoted = replace(report, timeline=replace(report.timeline, versions=versions))
    assert unpromoted.headline.startswith("None of the 3 lstm versions trained from")
    assert "The models showed no edge" in unpromoted.headline
    assert "<svg" in render_html(report)


def test_headline_and_json_carry_the_same_numbers() -> None:
    requests, candles, change = _replay()
    comparison, verdict = compare(
        requests,
        candles,
        threshold=0.005,
        majority="buy",
        change_at=change.to_pydatetime(),
        coverage={"frozen_version": "lstm-v1"},
    )
    report = _report(comparison, verdict, change)
    data = json.loads(json.dumps(report.as_dict(), allow_nan=False))
    assert data["verdict"]["after_change"]["continuous_minus_frozen_accuracy"] == 1.0
    text = report.headline
    assert "+100.0 points" in text and "lstm-v1" in text and "paid off" in text
    page = render_html(report)
    assert page == render_html(report)  # the same report renders to the same bytes
    assert page.count("<svg") == 3 and "<script" not in page


def test_how_the_loop_ran_per_period_by_hand() -> None:
    """Six days of hourly requests; lstm-v1 (trained 20 days before) serves three days, stale,
    then lstm-v2 refreshes it at the change; a test ends without a winner, another starts; two
    newer candidates wait in Staging."""
    day = pd.Timedelta(days=1)
    times = MONDAY + pd.to_timedelta(np.arange(144), unit="h")
    change = MONDAY + 3 * day
    scored = pd.DataFrame(
        {
            "series": "continuous",
            "time": times,
            "version": np.where(times < change, "lstm-v1", "lstm-v2"),
            "no_edge": times >= change,  # lstm-v2 found no threshold with an edge
        }
    )
    versions = pd.DataFrame(
        {
            "version": ["lstm-v1", "lstm-v2", "lstm-v3", "lstm-v4"],
            "trained_as_of": [MONDAY - 20 * day, MONDAY + 2 * day, None, None],
            "created_at": [MONDAY - 20 * day, MONDAY + 2 * day, MONDAY + 4 * day, MONDAY + 5 * day],
        }
    )
    history = pd.DataFrame(
        [
            (MONDAY - 20 * day, "lstm-v1", "production", "first model"),
            (MONDAY + 2 * day, "lstm-v2", "staging", "registered"),
            (change, "lstm-v2", "production", "refresh: lstm-v1 is older than the refresh age"),
            (change, "lstm-v1", "archived", "replaced"),
            (MONDAY + 4 * day, "lstm-v3", "staging", "registered"),
            (MONDAY + 5 * day, "lstm-v4", "staging", "registered"),
        ],
        columns=["changed_at", "version", "to_status", "reason"],
    )
    tests = pd.DataFrame(
        {
            "created_at": [MONDAY + day, MONDAY + 4 * day],
            "completed_at": [MONDAY + 2 * day, pd.NaT],
            "status": ["completed", "active"],
            "winner": [None, None],
            "model_a_version": ["lstm-v1", "lstm-v2"],
            "model_b_version": ["lstm-v0", "lstm-v3"],
        }
    )
    ran = operations(
        scored,
        versions,
        history,
        tests,
        start=MONDAY.to_pydatetime(),
        end=(MONDAY + 6 * day).to_pydatetime(),
        change_at=change.to_pydatetime(),
        max_model_age=timedelta(days=14),
    )
    overall, before, after = ran["overall"], ran["before_change"], ran["after_change"]
    assert (overall["requests"], overall["stale_requests"], overall["stale_share"]) == (
        144,
        72,
        0.5,
    )
    assert (before["stale_share"], after["stale_share"]) == (1.0, 0.0)
    assert (before["no_edge_requests"], after["no_edge_requests"]) == (0, 72)
    assert (before["no_edge_share"], after["no_edge_share"]) == (0.0, 1.0)
    assert before["max_days_since_promotion"] == pytest.approx(23 - 1 / 24)  # 20 d + 71 h
    assert before["days_since_promotion_at_end"] == 0.0  # refreshed at that very moment
    assert after["days_since_promotion_at_end"] == 3.0
    assert (overall["promotions"], overall["refreshes"]) == (1, 1)  # v1's was before the start
    assert (before["tests_started"], before["tests_without_winner"]) == (1, 1)
    assert (after["tests_started"], after["tests_without_winner"]) == (1, 0)
    assert (before["staging_at_end"], after["staging_at_end"]) == (1, 2)  # v2; then v3, v4


def _overall(requests: pd.DataFrame, candles: pd.DataFrame) -> tuple[Any, dict[str, Any]]:
    """The comparison with no change point, the majority baseline calling buy."""
    return compare(
        requests,
        candles,
        threshold=0.005,
        majority="buy",
        change_at=None,
        coverage={"frozen_version": "lstm-v1"},
    )


def test_the_headline_names_the_best_series_and_says_when_a_model_has_no_edge() -> None:
    """Models that call a coin flip against a market the persistence baseline reads: the
    headline says the models had no edge and that a baseline did better."""
    requests, candles, change = _replay(hours=24 * 6)
    rng = np.random.default_rng(3)
    coin = np.where(rng.random(len(requests)) < 0.5, 0.9, 0.1)
    requests = requests.assign(p_continuous=coin, p_frozen=coin)
    comparison, verdict = _overall(requests, candles)
    report = _report(comparison, verdict, None)
    metrics = comparison.periods["overall"]
    majority = metrics["majority"]
    assert majority.win_rate == max(m.win_rate for m in metrics.values())  # 4 of 6
    assert majority.cum_pnl == max(m.cum_pnl for m in metrics.values())
    text = report.headline
    assert "Best win rate: the majority baseline, 66.7% of 6 decided signals" in text
    assert f"Best pnl: the majority baseline, {majority.cum_pnl:+.1f}% cumulative" in text
    lo, hi = verdict["overall"]["versus"]["majority"]["accuracy"]["ci"]
    assert lo < 0 < hi
    assert "The models showed no edge over the best baseline, majority" in text
    assert "A naive baseline did better than the models on win rate and pnl." in text


def test_a_version_with_no_edge_holds_and_the_headline_says_why() -> None:
    """The continuous series' version has no threshold of its own (NaN both ways): every one of
    its answers is a hold, the rows say why, and the headline says it had no edge."""
    requests, candles, _ = _replay(hours=24 * 6)
    requests = requests.assign(buy_continuous=np.nan, sell_continuous=np.nan)
    comparison, verdict = _overall(requests, candles)
    scored = comparison.scored
    mine = scored[scored["series"] == "continuous"]
    assert set(mine["signal"]) == {"hold"} and mine["no_edge"].all()
    assert not scored[scored["series"] == "frozen"]["no_edge"].any()
    assert comparison.periods["overall"]["continuous"].signals["hold"] == len(requests)
    ran = operations(
        scored,
        pd.DataFrame(
            {"version": ["lstm-v1", "lstm-v2"], "trained_as_of": MONDAY, "created_at": MONDAY}
        ),  # fmt: skip
        pd.DataFrame(columns=["changed_at", "version", "to_status", "reason"]),
        pd.DataFrame(
            columns=[
                "created_at",
                "completed_at",
                "status",
                "winner",
                "model_a_version",
                "model_b_version",
            ]
        ),  # fmt: skip
        start=MONDAY.to_pydatetime(),
        end=(MONDAY + pd.Timedelta(days=7)).to_pydatetime(),
        change_at=None,
        max_model_age=timedelta(days=14),
    )
    report = replace(_report(comparison, verdict, None), operations=ran)
    n = len(requests)
    assert (
        f"The model of the moment said hold to {n} of {n} requests (100.0%) because it had no "
        "edge: on the data it did not learn from, no threshold beat the best baseline."
    ) in report.headline
