"""Which alerts the platform's state calls for: pure functions from data to `AlertDraft`s.

Nothing here reads the database, the clock or the network; `notify.py` gathers the data,
stores each alert and sends it. A draft's `key` names the condition: repeats of one key
within a cooldown are recorded but not sent again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from aifx_ml.data.validation import Gap
from aifx_ml.domain import AGEING_NOTICE, Ageing, ProductionAge, SignalPolicy
from aifx_ml.markets import expected_grid, missing_candles

SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
KINDS: tuple[str, ...] = (
    "training_failed",
    "training_skipped",
    "evaluation_degraded",
    "evaluation_drift",
    "quarantine_spike",
    "stale_data",
    "data_gaps",
    "outbox_backlog",
    "ab_decided",
    "signal_rejected",
    "model_refused",
    "production_ageing",
    "test",
)
TRAINING_NAMES = {"full": "Weekly full", "incremental": "Daily incremental"}
MAX_LISTED = 10  # series or gaps named in one message; the rest are counted


@dataclass(frozen=True)
class AlertDraft:
    """An alert before it is stored and sent."""

    key: str  # the condition; a repeat of the key within the cooldown is not re-sent
    kind: str
    severity: str
    title: str
    body: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"invalid severity {self.severity!r}: expected one of {SEVERITIES}")
        if not self.key or len(self.key) > 255:
            raise ValueError(f"an alert key must have 1 to 255 characters, got {self.key!r}")
        if len(self.kind) > 32:
            raise ValueError(f"an alert kind must have at most 32 characters, got {self.kind!r}")


@dataclass(frozen=True)
class TrainingRun:
    """The part of a `model_training_log` row the training rules look at."""

    id: str
    training_type: str
    model_type: str
    status: str
    started_at: datetime
    error_message: str | None = None


@dataclass(frozen=True)
class QuarantineCounts:
    """Rows quarantined in the last 24 hours against the daily average of the 7 days before."""

    last_day: int
    daily_average: float
    top_reasons: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class StaleSeries:
    """A series whose newest candle is behind the candles that have closed since."""

    pair: str
    timeframe: str
    newest: datetime  # open time of its newest candle
    missing: int  # candles closed since, while the market was open


def training_alerts(
    recent_logs: Sequence[TrainingRun], skipped_in_a_row: int = 2
) -> list[AlertDraft]:
    """A critical alert per failed run; a warning when the latest runs of a training type and
    model type were skipped `skipped_in_a_row` times or more in a row (runs in progress aside).

    A daily run skipped after a day the FX market was mostly shut (Sunday's and Monday's at
    01:00, after the weekend) is what the calendar explains, not a problem: it neither counts
    nor breaks a streak."""
    drafts = [_failed_run(run) for run in recent_logs if run.status == "failed"]
    by_series: dict[tuple[str, str], list[TrainingRun]] = defaultdict(list)
    for run in recent_logs:
        if run.status != "running" and not (run.status == "skipped" and _after_closed_day(run)):
            by_series[(run.training_type, run.model_type)].append(run)
    for (training_type, model_type), runs in sorted(by_series.items()):
        streak = _trailing_skips(sorted(runs, key=lambda r: r.started_at))
        if len(streak) >= skipped_in_a_row:
            drafts.append(_skipped_runs(training_type, model_type, streak))
    return drafts


def _after_closed_day(run: TrainingRun) -> bool:
    """An incremental run whose previous 24 hours held fewer than 12 hours of open market."""
    if run.training_type != "incremental":
        return False
    end = pd.Timestamp(run.started_at).floor("h")
    open_hours = len(expected_grid(end - pd.Timedelta(hours=23), end, "1h"))
    return open_hours < 12


def _trailing_skips(runs: Sequence[TrainingRun]) -> list[TrainingRun]:
    streak: list[TrainingRun] = []
    for run in reversed(runs):
        if run.status != "skipped":
            break
        streak.insert(0, run)
    return streak


def _failed_run(run: TrainingRun) -> AlertDraft:
    name = TRAINING_NAMES.get(run.training_type, run.training_type)
    return AlertDraft(
        key=f"training-failed:{run.id}",
        kind="training_failed",
        severity="critical",
        title=f"{name} training of {run.model_type} failed",
        body=(
            f"The {run.training_type} training run started {_when(run.started_at)} failed: "
            f"{run.error_message or 'no error recorded'}. Production is unchanged."
        ),
        details={"training_log_id": run.id, "error": run.error_message},
    )


def _skipped_runs(training_type: str, model_type: str, streak: Sequence[TrainingRun]) -> AlertDraft:
    name = TRAINING_NAMES.get(training_type, training_type)
    last = streak[-1]
    return AlertDraft(
        # Keyed by the first skip of the streak: one alert per streak, however long it grows.
        key=f"training-skipped:{training_type}:{model_type}:{streak[0].id}",
        kind="training_skipped",
        severity="warning",
        title=f"{name} training of {model_type} skipped {len(streak)} times in a row",
        body=(
            f"Every {training_type} run of {model_type} since {_when(streak[0].started_at)} "
            f"was skipped; the last one said: {last.error_message or 'no reason recorded'}."
        ),
        details={"training_log_ids": [r.id for r in streak], "reason": last.error_message},
    )


def find_stale_series(
    newest: Mapping[tuple[str, str], datetime], as_of: datetime, max_missing: int = 2
) -> list[StaleSeries]:
    """Series (pair, timeframe → newest candle open time) missing more than `max_missing`
    closed candles; weekend hours do not count, the market being shut."""
    stale = []
    for (pair, timeframe), ts in sorted(newest.items()):
        missing = missing_candles(pd.Timestamp(ts), timeframe, pd.Timestamp(as_of), max_missing + 1)
        if missing > max_missing:
            stale.append(StaleSeries(pair, timeframe, ts, missing))
    return stale


def data_quality_alerts(
    quarantine_counts: QuarantineCounts | None,
    stale_series: Sequence[StaleSeries],
    gaps: Mapping[tuple[str, str], Sequence[Gap]],
    *,
    spike_factor: float = 3.0,
    spike_minimum: int = 10,
) -> list[AlertDraft]:
    """A quarantine spike (at least `spike_minimum` rows in 24 h and over `spike_factor` times
    the previous daily average), stale series, and gaps in recent candles."""
    drafts = []
    counts = quarantine_counts
    if (
        counts is not None
        and counts.last_day >= spike_minimum
        and counts.last_day > spike_factor * counts.daily_average
    ):
        drafts.append(_quarantine_spike(counts))
    if stale_series:
        drafts.append(_stale(stale_series))
    found = {series: list(g) for series, g in sorted(gaps.items()) if g}
    if found:
        drafts.append(_gaps(found))
    return drafts


def _quarantine_spike(counts: QuarantineCounts) -> AlertDraft:
    reasons = "; ".join(f"{reason} ({n})" for reason, n in counts.top_reasons)
    return AlertDraft(
        key="data-quarantine-spike",
        kind="quarantine_spike",
        severity="warning",
        title=f"{counts.last_day:,} candle rows quarantined in 24 h",
        body=(
            f"{counts.last_day:,} rows were refused and quarantined in the last 24 hours, "
            f"against {counts.daily_average:.1f} a day over the 7 days before."
            + (f" Most common: {reasons}." if reasons else "")
            + " See the data_quarantine table."
        ),
        details={
            "last_day": counts.last_day,
            "daily_average": counts.daily_average,
            "top_reasons": [list(r) for r in counts.top_reasons],
        },
    )


def _stale(stale: Sequence[StaleSeries]) -> AlertDraft:
    lines = [
        f"{s.pair} {s.timeframe}: newest candle {_when(s.newest)}, {s.missing:,} missing since"
        for s in stale[:MAX_LISTED]
    ]
    if len(stale) > MAX_LISTED:
        lines.append(f"and {len(stale) - MAX_LISTED} more")
    return AlertDraft(
        key="data-stale",
        kind="stale_data",
        severity="warning",
        title=f"Stale market data: {len(stale)} series",
        body="No new candles while the market was open:\n" + "\n".join(lines),
        details={
            "series": [
                {
                    "pair": s.pair,
                    "timeframe": s.timeframe,
                    "newest": s.newest.isoformat(),
                    "missing": s.missing,
                }
                for s in stale
            ]
        },
    )


def _gaps(gaps: Mapping[tuple[str, str], Sequence[Gap]]) -> AlertDraft:
    flat = [(pair, tf, g) for (pair, tf), series_gaps in gaps.items() for g in series_gaps]
    lines = [
        f"{pair} {tf}: {g.missing:,} candle(s) missing from {_when(g.start)} to {_when(g.end)}"
        for pair, tf, g in flat[:MAX_LISTED]
    ]
    if len(flat) > MAX_LISTED:
        lines.append(f"and {len(flat) - MAX_LISTED} more gap(s)")
    return AlertDraft(
        key="data-gaps",
        kind="data_gaps",
        severity="info",
        title=f"Gaps in recent market data: {len(flat)} in {len(gaps)} series",
        body="Candles missing while the market was open:\n" + "\n".join(lines),
        details={
            "gaps": [
                {
                    "pair": pair,
                    "timeframe": tf,
                    "start": g.start.isoformat(),
                    "end": g.end.isoformat(),
                    "missing": g.missing,
                }
                for pair, tf, g in flat
            ]
        },
    )


def outbox_alert(
    pending: int,
    oldest_age: timedelta | None,
    threshold: timedelta,
    last_error: str | None = None,
) -> AlertDraft | None:
    """A warning when events have waited in the outbox longer than `threshold`."""
    if pending == 0 or oldest_age is None or oldest_age <= threshold:
        return None
    return AlertDraft(
        key="outbox-backlog",
        kind="outbox_backlog",
        severity="warning",
        title=f"{pending:,} event(s) waiting in the outbox for {_duration(oldest_age)}",
        body=(
            f"{pending:,} event(s) have not reached Redis; the oldest has waited "
            f"{_duration(oldest_age)}. Last delivery error: {last_error or 'none recorded'}. "
            "`aifx events pending` shows more; nothing is lost meanwhile."
        ),
        details={
            "pending": pending,
            "oldest_age_seconds": oldest_age.total_seconds(),
            "last_error": last_error,
        },
    )


def signal_rejected_alert(signal_ids: Sequence[str], error: str) -> AlertDraft:
    """Critical: answered signals the database refused one by one, so they are not recorded."""
    shown = ", ".join(signal_ids[:MAX_LISTED])
    more = f" and {len(signal_ids) - MAX_LISTED} more" if len(signal_ids) > MAX_LISTED else ""
    return AlertDraft(
        key="signal-rejected",
        kind="signal_rejected",
        severity="critical",
        title=f"{len(signal_ids)} answered signal(s) could not be recorded",
        body=(
            f"The database refused signal(s) {shown}{more} on their own: {error}. They were "
            "answered but are not in trading_signals; each is logged with its row, and kept "
            "in rejected.jsonl under the data folder's signal-spill/."
        ),
        details={"signal_ids": list(signal_ids), "error": error},
    )


def ab_decided_alert(test: Mapping[str, Any]) -> AlertDraft:
    """An A/B test that ended (as `abtest.store.describe` gives it): its winner or why none."""
    status = test.get("status")
    if status not in ("completed", "cancelled"):
        raise ValueError(f"A/B test {test.get('id')} is {status}, not decided")
    name, winner = test.get("test_name"), test.get("winner")
    a, b = test.get("model_a_version"), test.get("model_b_version")
    if winner:
        title = f"A/B test {name!r} decided: {winner} wins"
    else:
        ended = "cancelled" if status == "cancelled" else "ended"
        title = f"A/B test {name!r} {ended} without a winner"
    return AlertDraft(
        key=f"ab-decided:{test.get('id')}",
        kind="ab_decided",
        severity="info",
        title=title,
        body=(
            f"A/B test {name!r} ({a} vs {b}) is {status}"
            + (f"; {winner} is now Production" if winner else "; Production is unchanged")
            + f". Reason: {test.get('ended_reason') or 'none given'}."
        ),
        details={k: test.get(k) for k in ("id", "test_name", "status", "winner", "ended_reason")},
    )


def model_refused_alert(
    version: str, model_type: str, reason: str, serving_instead: str | None
) -> AlertDraft:
    """Critical: the server refused to swap in a version whose files failed their check."""
    still = (
        f"it keeps serving {serving_instead} from memory"
        if serving_instead
        else f"no {model_type} model is serving"
    )
    return AlertDraft(
        key=f"model-refused:{version}",
        kind="model_refused",
        severity="critical",
        title=f"model version {version} refused by the server: {still}",
        body=(
            f"The prediction server would not load {model_type} version {version}: {reason}. "
            f"{still[0].upper()}{still[1:]}; health answers 503 (degraded) until it is fixed. "
            "Roll back to a sound version (`aifx models rollback --to VERSION`) or restore the "
            "version's files."
        ),
        details={
            "version": version,
            "model_type": model_type,
            "reason": reason,
            "serving_instead": serving_instead,
        },
    )


def ageing_alerts(
    serving: Sequence[ProductionAge],
    now: datetime,
    policy: SignalPolicy,
    notice: timedelta = AGEING_NOTICE,
) -> list[AlertDraft]:
    """No silent ageing: a warning when a Production version comes within `notice` of the
    staleness limit with no candidate under test to replace it; critical once it is past the
    limit (every answer a forced hold), candidate or not."""
    drafts = []
    for model in serving:
        state = policy.ageing(model.trained_at, now, notice)
        if not model.late(state):
            continue
        age = now - model.trained_at
        limit = policy.max_model_age
        if model.candidate is not None:
            hope = f"{model.candidate} is under test against it"
        else:
            hope = "no candidate that passed the gate is under test"
        if state == Ageing.STALE:
            title = f"Production model {model.version} is stale: every answer is hold"
            lead = f"was trained {_duration(age)} ago, past the {_duration(limit)} limit"
        else:
            title = f"Production model {model.version} turns stale in {_duration(limit - age)}"
            lead = f"was trained {_duration(age)} ago; at {_duration(limit)} it answers hold"
        drafts.append(
            AlertDraft(
                key=f"production-{state}:{model.version}",
                kind="production_ageing",
                severity="critical" if state == Ageing.STALE else "warning",
                title=title,
                body=(
                    f"{model.model_type} {model.version} (Production) {lead}, and {hope}. "
                    "Check that the training flows complete (the dashboard, or "
                    "/api/v1/monitoring/training-history), or train one now: `aifx train weekly`."
                ),
                details={
                    "version": model.version,
                    "model_type": model.model_type,
                    "trained_at": model.trained_at.isoformat(),
                    "age_days": round(age / timedelta(days=1), 2),
                    "limit_days": limit / timedelta(days=1),
                    "candidate": model.candidate,
                    "state": str(state),
                },
            )
        )
    return drafts


def evaluation_alerts(summary: Mapping[str, Any]) -> list[AlertDraft]:
    """Degradation (critical) and drift (warning) of a Production version found by the monthly
    evaluation; `summary` is `VersionEvaluation.summary()` (version, model_type, status,
    month, degraded, drift, drift_share, drifted_features, reasons, recommendation, ...)."""
    if summary.get("status", "production") != "production":
        return []  # a version not serving: its numbers inform a rollback, nobody needs paging
    version, month = summary.get("version"), summary.get("month")
    where = f"{summary.get('model_type')} {version} in {month}"
    advice = _advice(summary)
    details = {
        k: summary.get(k)
        for k in ("version", "model_type", "month", "recommendation", "rollback_to", "report_path")
    }
    drafts = []
    if summary.get("degraded"):
        reasons = [r for r in summary.get("reasons", []) if "drift" not in str(r)]
        drafts.append(
            AlertDraft(
                key=f"evaluation-degraded:{version}:{month}",
                kind="evaluation_degraded",
                severity="critical",
                title=f"Production model {version} degraded in {month}",
                body=f"The monthly evaluation of {where} found: {'; '.join(reasons)}.{advice}",
                details={**details, "accuracy": summary.get("accuracy"), "auc": summary.get("auc")},
            )
        )
    if summary.get("drift"):
        features = list(summary.get("drifted_features") or [])
        shown = ", ".join(features[:MAX_LISTED]) + (" …" if len(features) > MAX_LISTED else "")
        drafts.append(
            AlertDraft(
                key=f"evaluation-drift:{version}:{month}",
                kind="evaluation_drift",
                severity="warning",
                title=f"Input drift for production model {version} in {month}",
                body=(
                    f"The monthly evaluation of {where} found {len(features)} drifted input "
                    f"feature(s) (share {float(summary.get('drift_share') or 0):.2f}): "
                    f"{shown}.{advice}"
                ),
                details={**details, "drifted_features": features},
            )
        )
    return drafts


def _advice(summary: Mapping[str, Any]) -> str:
    recommendation, rollback_to = summary.get("recommendation"), summary.get("rollback_to")
    text = ""
    if recommendation == "rollback" and rollback_to:
        text += f" Recommended: roll back to {rollback_to}."
    elif recommendation:
        text += f" Recommended: {recommendation}."
    if summary.get("report_path"):
        text += f" Report: {summary['report_path']}"
    return text


def _when(moment: datetime | pd.Timestamp) -> str:
    return pd.Timestamp(moment).strftime("%Y-%m-%d %H:%M UTC")


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes / 60
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.1f} days"
