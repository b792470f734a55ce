"""The replay report over the stores: the timeline, A/B tests and evaluations read from the
tables, and every Production version loaded once from the model store to answer the replayed
requests (the finished report is logged by the edge: `registry.mlflow_store.log_replay_report`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import reduce
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import Engine, func, select

from aifx_ml.data.candles import load_candles
from aifx_ml.db.engine import session_factory
from aifx_ml.db.models import (
    MarketData,
    ModelABTest,
    ModelEvaluation,
    ModelTrainingLog,
    ModelVersion,
    TradingSignal,
)
from aifx_ml.domain import SignalPolicy
from aifx_ml.errors import InvalidInputError
from aifx_ml.features.dataset import Dataset, build_dataset
from aifx_ml.labeling.rules import DEFAULT_THRESHOLD
from aifx_ml.markets import approx_step, candle_close_times, horizon
from aifx_ml.models.history import stage_history
from aifx_ml.models.predict import predict_proba
from aifx_ml.models.store import LoadedModel, ModelStore
from aifx_ml.models.versions import get_version
from aifx_ml.replay.render import write_report
from aifx_ml.replay.report import (
    MODEL_SERIES,
    ReplayReport,
    Timeline,
    compare,
    majority_call,
    operations,
    production_spans,
    serving_versions,
)

__all__ = ["build_report", "write_report"]

STAGE_COLUMNS = ["changed_at", "version", "from_status", "to_status", "reason", "actor"]


def build_report(
    engine: Engine,
    store: ModelStore,
    *,
    start: datetime,
    end: datetime,
    pairs: Sequence[str],
    timeframes: Sequence[str],
    model_type: str = "lstm",
    change_at: datetime | None = None,
    label_threshold: float = DEFAULT_THRESHOLD,
    policy: SignalPolicy | None = None,
    title: str = "replay",
) -> ReplayReport:
    """Everything a replay over [start, end) shows, and whether continuous learning paid off.

    Every candle close t in [start, end) of every series is a request; those before the first
    promotion (no Production version yet) or without a full window and a known outcome are
    left out for every series alike (`comparison.coverage` counts them).
    """
    start, end = _utc(start), _utc(end)
    change_at = None if change_at is None else _utc(change_at)
    if not start < end:
        raise InvalidInputError(f"start {start.isoformat()} is not before end {end.isoformat()}")
    policy = policy or SignalPolicy()
    history = stage_history(engine, model_type=model_type)
    spans = production_spans(history, until=end)
    requests, candles, coverage = _requests(
        engine, store, spans, policy, start=start, end=end, pairs=pairs, timeframes=timeframes
    )
    majority = majority_call(_closes_before(engine, start, pairs, timeframes), start)
    comparison, verdict = compare(
        requests,
        candles,
        threshold=label_threshold,
        majority=majority,
        change_at=change_at,
        coverage={**coverage, "majority_call": majority},
    )
    versions, tests = _versions(engine, model_type), _ab_tests(engine, model_type)
    ran = operations(
        comparison.scored,
        versions,
        history,
        tests,
        start=start,
        end=end,
        change_at=change_at,
        max_model_age=policy.max_model_age,
    )
    return ReplayReport(
        title=title,
        start=start,
        end=end,
        pairs=tuple(pairs),
        timeframes=tuple(timeframes),
        model_type=model_type,
        change_at=change_at,
        label_threshold=label_threshold,
        policy={
            "buy_threshold": policy.buy_threshold,
            "sell_threshold": policy.sell_threshold,
            "override": policy.override,
            "rule": policy.describe(),
        },
        timeline=Timeline(
            versions,
            history[STAGE_COLUMNS].assign(
                changed_at=lambda h: pd.to_datetime(h["changed_at"], utc=True)
            ),
            spans,
        ),
        ab_tests=tests,
        evaluations=_evaluations(engine, model_type),
        comparison=comparison,
        verdict=verdict,
        operations=ran,
    )


def _requests(
    engine: Engine,
    store: ModelStore,
    spans: pd.DataFrame,
    policy: SignalPolicy,
    *,
    start: datetime,
    end: datetime,
    pairs: Sequence[str],
    timeframes: Sequence[str],
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The requests every series answers, with both model series' calibrated P(up) and the
    thresholds each answered at (NaN: that direction never called); the candles that label
    them; and how many candle closes in [start, end) were left out, and why."""
    lo, hi = pd.Timestamp(start), pd.Timestamp(end)
    frozen = str(spans["version"].iloc[0]) if len(spans) else None
    serving = spans[(spans["end"] > lo) & (spans["start"] < hi)]["version"]
    # Each version loaded once: the frozen one and every one that served in the range.
    needed = list(dict.fromkeys([v for v in [frozen, *serving] if v is not None]))
    models = {v: store.load(get_version(engine, v)) for v in needed}
    windows = {m.card.window for m in models.values()}
    candles = _candles(engine, start, end, pairs, timeframes, max(windows, default=1))
    closes_at = _close_times(candles)
    in_range = np.asarray((closes_at >= lo) & (closes_at < hi))
    version_at = serving_versions(spans, closes_at)
    datasets = {w: build_dataset(candles, w) for w in windows}
    # Candle rows that end a sample (full window, known outcome) for every version's window.
    ends = [d.samples.rows + d.window - 1 for d in datasets.values()]
    rows = reduce(np.intersect1d, ends) if ends else np.empty(0, dtype=np.int64)
    rows = rows[in_range[rows] & pd.notna(version_at[rows])]
    version = version_at[rows]
    previous = candles.groupby(["pair", "timeframe"], sort=False)["close"].shift(1)
    requests = pd.DataFrame(
        {
            "pair": candles["pair"].to_numpy()[rows],
            "timeframe": candles["timeframe"].to_numpy()[rows],
            "time": closes_at[rows],
            "entry_price": candles["close"].to_numpy()[rows],
            "prev_close": previous.to_numpy()[rows],
            "target": candles["target"].to_numpy()[rows],
            "version_continuous": version,
            "version_frozen": frozen,
            **{f"{c}_{s}": np.nan for c in ("p", "buy", "sell") for s in MODEL_SERIES},
        }
    )
    for name, loaded in models.items():
        mine = version == name
        wanted = np.ones(len(rows), dtype=bool) if name == frozen else mine
        p = _p_up(loaded, datasets[loaded.card.window], rows[wanted])
        cut = policy.cutoffs(loaded.card.cutoffs)
        buy, sell = _or_nan(cut.buy), _or_nan(cut.sell)
        requests.loc[mine, ["p_continuous", "buy_continuous", "sell_continuous"]] = np.column_stack(
            [p[mine[wanted]], np.full(int(mine.sum()), buy), np.full(int(mine.sum()), sell)]
        )
        if name == frozen:
            requests["p_frozen"], requests["buy_frozen"], requests["sell_frozen"] = p, buy, sell
    before = int((in_range & pd.isna(version_at)).sum())
    coverage = {
        "frozen_version": frozen,
        "first_production_at": spans["start"].iloc[0].isoformat() if frozen else None,
        "candle_closes": int(in_range.sum()),
        "before_first_production": before,
        "no_window_or_outcome": int(in_range.sum()) - before - len(requests),
        "requests": len(requests),
    }
    return requests, candles, coverage


def _p_up(loaded: LoadedModel, dataset: Dataset, rows: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    """A version's P(up), calibrated as serving calibrates it, for the samples ending at
    candle `rows`, batch by batch."""
    windows = loaded.card.windows(dataset, f"model {loaded.version}")
    return loaded.card.calibrated(predict_proba(loaded.model, windows, rows - (dataset.window - 1)))


def _or_nan(value: float | None) -> float:
    return np.nan if value is None else value


def _candles(
    engine: Engine,
    start: datetime,
    end: datetime,
    pairs: Sequence[str],
    timeframes: Sequence[str],
    window: int,
) -> pd.DataFrame:
    """Candles from a full window (and a weekend) before `start` to past the horizon of the
    last request, sorted as `build_dataset` sorts them so that row numbers agree."""
    frames = []
    for tf in timeframes:
        back = approx_step(tf) * (2 * window) + pd.Timedelta(days=3)
        ahead = horizon(tf) + approx_step(tf) + pd.Timedelta(days=3)
        lo, hi = (pd.Timestamp(start) - back).to_pydatetime(), (pd.Timestamp(end) + ahead)
        frames.append(load_candles(engine, lo, hi.to_pydatetime(), list(pairs) or None, [tf]))
    candles = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if candles.empty:
        raise InvalidInputError(
            f"no stored candles of {', '.join(pairs) or 'any pair'} ({', '.join(timeframes)}) "
            f"around {start.isoformat()} to {end.isoformat()}"
        )
    return candles.sort_values(["pair", "timeframe", "timestamp"], kind="stable").reset_index(
        drop=True
    )


def _close_times(candles: pd.DataFrame) -> pd.DatetimeIndex:
    """When each candle closed: the moment of the request it answers."""
    parts = [
        pd.Series(candle_close_times(pd.DatetimeIndex(group["timestamp"]), str(tf)), group.index)
        for tf, group in candles.groupby("timeframe")
    ]
    return pd.DatetimeIndex(pd.concat(parts).sort_index())


def _closes_before(
    engine: Engine, start: datetime, pairs: Sequence[str], timeframes: Sequence[str]
) -> pd.DataFrame:
    """Every close stored before `start` (the history the majority baseline learns from)."""
    query = select(MarketData.pair, MarketData.timeframe, MarketData.timestamp, MarketData.close)
    query = query.where(MarketData.timestamp < start, MarketData.timeframe.in_(list(timeframes)))
    if pairs:
        query = query.where(MarketData.pair.in_(list(pairs)))
    with session_factory(engine)() as session:
        rows = session.execute(query.order_by(MarketData.timestamp)).all()
    frame = pd.DataFrame(rows, columns=["pair", "timeframe", "timestamp", "close"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def _versions(engine: Engine, model_type: str) -> pd.DataFrame:
    """Every version of the model type with how it was trained, oldest first."""
    query = (
        select(
            ModelVersion.version,
            ModelTrainingLog.training_type,
            ModelVersion.parent_version,
            ModelTrainingLog.started_at.label("trained_as_of"),
            ModelVersion.created_at,
            ModelVersion.promoted_at,
            ModelVersion.status,
            ModelVersion.metrics,
        )
        .outerjoin(ModelTrainingLog, ModelTrainingLog.id == ModelVersion.training_log_id)
        .where(ModelVersion.model_type == model_type)
        .order_by(ModelVersion.created_at, ModelVersion.version)
    )
    with session_factory(engine)() as session:
        rows = session.execute(query).all()
    frame = pd.DataFrame(rows, columns=[c.name for c in query.selected_columns])
    metrics = frame.pop("metrics").map(lambda m: m or {})
    frame["holdout_accuracy"] = metrics.map(lambda m: m.get("holdout_accuracy")).astype(float)
    for column in ("trained_as_of", "created_at", "promoted_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def _ab_tests(engine: Engine, model_type: str) -> pd.DataFrame:
    """Every A/B test of the model type: its arms, its end and why, signals per arm."""
    columns = ["id", "test_name", "model_a_version", "model_b_version", "traffic_split",
               "created_at", "completed_at", "status", "winner", "ended_reason",
               "metrics"]  # fmt: skip
    outcome = TradingSignal.actual_outcome
    with session_factory(engine)() as session:
        tests = session.execute(
            select(*(getattr(ModelABTest, c) for c in columns))
            .where(ModelABTest.model_type == model_type)
            .order_by(ModelABTest.created_at)
        ).all()
        counts = session.execute(
            select(TradingSignal.ab_test_id, TradingSignal.model_version, outcome, func.count())
            .where(TradingSignal.ab_test_id.is_not(None))
            .group_by(TradingSignal.ab_test_id, TradingSignal.model_version, outcome)
        ).all()
    frame = pd.DataFrame(tests, columns=columns).rename(columns={"id": "test_id"})
    frame["test_id"] = frame["test_id"].astype(str)
    decision = frame.pop("metrics").map(lambda m: ((m or {}).get("decision") or {}).get("reason"))
    ended = frame.pop("ended_reason")
    # The sequential decision's own words; a test cancelled by hand has only its reason.
    frame["reason"] = decision.where((frame["status"] != "cancelled") & decision.notna(), ended)
    for column in ("created_at", "completed_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame.join(_arm_counts(frame, counts))


def _arm_counts(tests: pd.DataFrame, counts: Sequence[Any]) -> pd.DataFrame:
    """signals, wins and losses of arm a and of arm b, per test row."""
    rows = pd.DataFrame(counts, columns=["test_id", "version", "outcome", "n"])
    arms = tests[["test_id", "model_a_version", "model_b_version"]].merge(
        rows.astype({"test_id": str}), on="test_id"
    )
    arms["arm"] = np.select(
        [arms["version"] == arms["model_a_version"], arms["version"] == arms["model_b_version"]],
        ["a", "b"],
        "",  # a signal of neither arm says nothing about either
    )
    arms = arms[arms["arm"] != ""].assign(
        signals=arms["n"],
        wins=arms["n"].where(arms["outcome"] == "win", 0),
        losses=arms["n"].where(arms["outcome"] == "loss", 0),
    )
    table = pd.pivot_table(
        arms, index="test_id", columns="arm", values=["signals", "wins", "losses"], aggfunc="sum"
    )
    table = table.set_axis(["_".join(map(str, c)) for c in list(table.columns)], axis=1)
    names = [f"{m}_{a}" for a in ("a", "b") for m in ("signals", "wins", "losses")]
    joined = tests[["test_id"]].join(table.reindex(columns=names), on="test_id")
    return joined[names].fillna(0).astype(int)


def _evaluations(engine: Engine, model_type: str) -> pd.DataFrame:
    """The monthly evaluations of the model type's versions, by month."""
    columns = ["month", "version", "status", "samples", "accuracy", "auc", "drift_share",
               "degraded", "drift", "recommendation", "report_path", "evaluated_at"]  # fmt: skip
    with session_factory(engine)() as session:
        rows = session.execute(
            select(*(getattr(ModelEvaluation, c) for c in columns))
            .where(ModelEvaluation.model_type == model_type)
            .order_by(ModelEvaluation.month, ModelEvaluation.version)
        ).all()
    frame = pd.DataFrame(rows, columns=columns)
    frame["evaluated_at"] = pd.to_datetime(frame["evaluated_at"], utc=True)
    return frame


def _utc(moment: datetime) -> datetime:
    """A moment in UTC; a naive one is taken to be UTC already (the tables' convention)."""
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    utc: datetime = stamp.to_pydatetime()
    return utc
