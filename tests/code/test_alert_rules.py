"""The alert rules on tiny inputs: which conditions raise an alert, with which key and words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from aifx_ml.alerts.rules import (
    AlertDraft,
    QuarantineCounts,
    StaleSeries,
    TrainingRun,
    ab_decided_alert,
    ageing_alerts,
    data_quality_alerts,
    evaluation_alerts,
    find_stale_series,
    outbox_alert,
    training_alerts,
)
from aifx_ml.data.validation import Gap
from aifx_ml.domain import AGEING_NOTICE, Ageing, ProductionAge, SignalPolicy
from aifx_ml.markets import missing_candles

T0 = datetime(2026, 11, 16, 1, 0, tzinfo=UTC)  # a Monday


def run(n: int, status: str, training_type: str = "incremental", **kw: object) -> TrainingRun:
    values: dict[str, object] = {
        "id": f"run-{n}",
        "training_type": training_type,
        "model_type": "lstm",
        "status": status,
        "started_at": T0 + timedelta(days=n),
        "error_message": None,
    }
    values.update(kw)
    return TrainingRun(**values)  # type: ignore[arg-type]


def test_a_failed_run_is_critical_and_keyed_by_the_run() -> None:
    drafts = training_alerts([run(0, "completed"), run(1, "failed", error_message="OOM")])
    assert len(drafts) == 1
    (draft,) = drafts
    assert draft.key == "training-failed:run-1"
    assert draft.severity == "critical" and draft.kind == "training_failed"
    assert draft.title == "Daily incremental training of lstm failed"
    assert "OOM" in draft.body


def test_one_skip_is_quiet_two_in_a_row_warn_once_per_streak() -> None:
    assert training_alerts([run(0, "completed"), run(1, "skipped")]) == []
    two = training_alerts(
        [run(0, "completed"), run(1, "skipped"), run(2, "skipped", error_message="no data")]
    )
    (draft,) = two
    assert draft.key == "training-skipped:incremental:lstm:run-1"
    assert draft.severity == "warning" and "2 times in a row" in draft.title
    assert "no data" in draft.body
    # A third skip keeps the key (the streak's first run): one alert per streak.
    three = training_alerts([run(1, "skipped"), run(2, "skipped"), run(3, "skipped")])
    assert [d.key for d in three] == [draft.key]


def test_a_completed_run_ends_the_streak_and_running_rows_do_not_count() -> None:
    logs = [run(0, "skipped"), run(1, "skipped"), run(2, "completed"), run(3, "skipped")]
    assert training_alerts(logs) == []
    logs = [run(1, "skipped"), run(2, "skipped"), run(3, "running")]
    assert [d.kind for d in training_alerts(list(reversed(logs)))] == ["training_skipped"]


def test_daily_runs_skipped_after_the_weekend_are_the_calendar_not_a_streak() -> None:
    """Saturday's run (Friday's data) trains; Sunday's and Monday's at 01:00 find the market
    shut for most of the day before, and are skipped every week."""
    saturday = [run(5, "completed"), run(6, "skipped"), run(7, "skipped")]  # Sat, Sun, Mon
    assert training_alerts(saturday) == []
    # Tuesday's skip is a real one, and the weekend's neither counts nor breaks the streak.
    friday = [run(4, "skipped"), run(5, "skipped", id="sat")]
    assert [d.key for d in training_alerts(friday)] == ["training-skipped:incremental:lstm:run-4"]
    across = [run(4, "skipped"), run(6, "skipped"), run(7, "skipped"), run(8, "skipped")]
    (draft,) = training_alerts(across)  # Friday, (Sunday, Monday), Tuesday
    assert draft.key == "training-skipped:incremental:lstm:run-4" and "2 times" in draft.title
    # A weekly full training looks back 30 days: its Sunday skips always count.
    weekly = [run(6, "skipped", "full", id="w1"), run(13, "skipped", "full", id="w2")]
    assert [d.kind for d in training_alerts(weekly)] == ["training_skipped"]


def test_streaks_are_per_training_type() -> None:
    logs = [run(0, "skipped", "full"), run(1, "skipped"), run(2, "skipped", "full", id="w2")]
    (draft,) = training_alerts(logs)
    assert draft.key == "training-skipped:full:lstm:run-0"
    assert draft.title.startswith("Weekly full training")


def test_missing_candles_skip_the_weekend() -> None:
    friday_20 = datetime(2026, 11, 20, 20, 0, tzinfo=UTC)
    # Friday 20:00 is the last hourly candle of the week: nothing is missing on Sunday noon.
    assert missing_candles(friday_20, "1h", datetime(2026, 11, 22, 12, 0, tzinfo=UTC)) == 0
    # Monday 01:00: the candles of Sunday 22:00 and 23:00 and Monday 00:00 have closed.
    assert missing_candles(friday_20, "1h", datetime(2026, 11, 23, 1, 0, tzinfo=UTC)) == 3
    # A candle that opened at 10:00 has not closed at 10:30.
    ten = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)
    assert missing_candles(ten, "1h", ten + timedelta(minutes=30)) == 0
    assert missing_candles(ten, "1d", ten + timedelta(days=3)) == 2


def test_stale_means_more_than_two_closed_candles_missing() -> None:
    now = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
    newest = {
        ("EUR/USD", "1h"): now - timedelta(hours=3),  # 09:00 open; 10:00 closed → 2 missing
        ("GBP/USD", "1h"): now - timedelta(hours=4),  # 3 missing
        ("EUR/USD", "1M"): datetime(2026, 7, 1, tzinfo=UTC),  # Aug, Sep, Oct closed
    }
    stale = find_stale_series(newest, now)
    assert [(s.pair, s.timeframe, s.missing) for s in stale] == [
        ("EUR/USD", "1M", 3),
        ("GBP/USD", "1h", 3),
    ]


def test_quarantine_spike_needs_a_floor_and_a_jump() -> None:
    assert data_quality_alerts(QuarantineCounts(9, 0.0), [], {}) == []  # below the floor
    assert data_quality_alerts(QuarantineCounts(30, 12.0), [], {}) == []  # usual level
    (draft,) = data_quality_alerts(
        QuarantineCounts(40, 2.0, (("volume is not a number", 38),)), [], {}
    )
    assert draft.key == "data-quarantine-spike" and draft.severity == "warning"
    assert "40 candle rows quarantined" in draft.title
    assert "2.0 a day" in draft.body and "volume is not a number (38)" in draft.body


def test_stale_series_and_gaps_are_one_alert_each() -> None:
    newest = datetime(2026, 11, 18, 6, 0, tzinfo=UTC)
    stale = [StaleSeries("EUR/USD", "1h", newest, 5), StaleSeries("GBP/USD", "4h", newest, 3)]
    gap = Gap(
        pd.Timestamp("2026-11-18 02:00", tz="UTC"), pd.Timestamp("2026-11-18 03:00", tz="UTC"), 2
    )
    drafts = data_quality_alerts(None, stale, {("EUR/USD", "1h"): [gap], ("GBP/USD", "1h"): []})
    assert [d.key for d in drafts] == ["data-stale", "data-gaps"]
    stale_draft, gaps_draft = drafts
    assert stale_draft.title == "Stale market data: 2 series"
    assert "EUR/USD 1h: newest candle 2026-11-18 06:00 UTC, 5 missing since" in stale_draft.body
    assert gaps_draft.severity == "info" and "1 in 1 series" in gaps_draft.title
    assert gaps_draft.details["gaps"][0]["missing"] == 2


def test_outbox_backlog_only_past_the_threshold() -> None:
    threshold = timedelta(minutes=30)
    assert outbox_alert(0, None, threshold) is None
    assert outbox_alert(5, timedelta(minutes=10), threshold) is None
    draft = outbox_alert(5, timedelta(hours=3), threshold, last_error="ConnectionError: refused")
    assert draft is not None and draft.key == "outbox-backlog"
    assert draft.title == "5 event(s) waiting in the outbox for 3 h"
    assert "ConnectionError: refused" in draft.body


def test_ab_decided_names_the_winner_or_says_none() -> None:
    test = {
        "id": "t-1",
        "test_name": "nov",
        "model_a_version": "lstm-v1",
        "model_b_version": "lstm-v2",
        "status": "completed",
        "winner": "lstm-v2",
        "ended_reason": "B better, p=0.01",
    }
    draft = ab_decided_alert(test)
    assert draft.key == "ab-decided:t-1" and draft.severity == "info"
    assert draft.title == "A/B test 'nov' decided: lstm-v2 wins"
    assert "lstm-v2 is now Production" in draft.body and "p=0.01" in draft.body
    none = ab_decided_alert({**test, "winner": None, "status": "cancelled"})
    assert none.title == "A/B test 'nov' cancelled without a winner"
    with pytest.raises(ValueError, match="not decided"):
        ab_decided_alert({**test, "status": "active"})


def test_evaluation_alerts_for_production_only() -> None:
    summary = {
        "version": "lstm-v3",
        "model_type": "lstm",
        "status": "production",
        "month": "2026-10",
        "degraded": True,
        "drift": True,
        "drift_share": 0.6,
        "drifted_features": ["rsi_14", "atr_14", "macd"],
        "reasons": [
            "accuracy 0.480 vs 0.560 on its holdout (drop > 0.05)",
            "3 of 5 input features drifted",
        ],
        "recommendation": "rollback",
        "rollback_to": "lstm-v2",
    }
    degraded, drift = evaluation_alerts(summary)
    assert degraded.key == "evaluation-degraded:lstm-v3:2026-10" and degraded.severity == "critical"
    assert "accuracy 0.480 vs 0.560" in degraded.body and "drifted" not in degraded.body
    assert "roll back to lstm-v2" in degraded.body
    assert drift.key == "evaluation-drift:lstm-v3:2026-10" and drift.severity == "warning"
    assert "rsi_14, atr_14, macd" in drift.body and "share 0.60" in drift.body
    assert evaluation_alerts({**summary, "status": "archived"}) == []
    assert evaluation_alerts({**summary, "degraded": False, "drift": False}) == []


def test_a_draft_refuses_an_unknown_severity() -> None:
    with pytest.raises(ValueError, match="invalid severity 'urgent'"):
        AlertDraft("k", "test", "urgent", "t", "b")


def test_a_model_ages_two_days_before_the_limit_and_is_stale_past_it() -> None:
    policy, trained = SignalPolicy(), datetime(2026, 3, 1, tzinfo=UTC)

    def state(days: float) -> Ageing:
        return policy.ageing(trained, trained + timedelta(days=days), AGEING_NOTICE)

    assert [state(d) for d in (0, 11.99, 12, 14)] == ["ok", "ok", "ageing", "ageing"]
    assert state(14 + 1 / 86400) == "stale"  # a second past the 14 days serving allows


def test_ageing_warns_only_without_a_candidate_and_staleness_is_critical() -> None:
    policy, trained = SignalPolicy(), datetime(2026, 3, 1, tzinfo=UTC)
    alone = ProductionAge("lstm", "lstm-v3", trained)
    tried = ProductionAge("lstm", "lstm-v3", trained, candidate="lstm-v5")
    assert ageing_alerts([alone, tried], trained + timedelta(days=11), policy) == []

    at_12_5 = trained + timedelta(days=12.5)
    (warning,) = ageing_alerts([alone], at_12_5, policy)
    assert (warning.kind, warning.severity, warning.key) == (
        "production_ageing",
        "warning",
        "production-ageing:lstm-v3",
    )
    assert "turns stale in 36 h" in warning.title
    assert "no candidate that passed the gate is under test" in warning.body
    assert warning.details["age_days"] == 12.5 and warning.details["limit_days"] == 14
    assert ageing_alerts([tried], at_12_5, policy) == []  # a candidate is being tried

    at_15 = trained + timedelta(days=15)
    (stale,) = ageing_alerts([tried], at_15, policy)
    assert (stale.severity, stale.key) == ("critical", "production-stale:lstm-v3")
    assert "every answer is hold" in stale.title and "lstm-v5 is under test" in stale.body
