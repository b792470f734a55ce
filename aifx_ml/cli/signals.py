"""`aifx label` and `aifx signals`: labeling outcomes and recording baseline signals."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import pandas as pd
import typer
from sqlalchemy import Engine, select

from aifx_ml.cli.common import app_context, console, frame_table, parse_list, parse_time
from aifx_ml.cli.help import MARKUP
from aifx_ml.db.engine import session_factory, transaction
from aifx_ml.db.models import MarketData, TradingSignal
from aifx_ml.errors import InvalidInputError
from aifx_ml.evaluation.baselines import persistence_signals
from aifx_ml.labeling.rules import DEFAULT_THRESHOLD
from aifx_ml.labeling.store import label_pending
from aifx_ml.markets import TIMEFRAMES, candle_close_times, validate_pair, validate_timeframe
from aifx_ml.signals import record_signals

app = typer.Typer(
    rich_markup_mode=MARKUP, help="Trading signals: record baseline signals.", no_args_is_help=True
)


def label_cmd(
    ctx: typer.Context,
    threshold: Annotated[
        float, typer.Option(help="Relative move that makes a win or a loss (0.005 = 0.5%).")
    ] = DEFAULT_THRESHOLD,
) -> None:
    """Label every pending signal whose horizon has elapsed (win / loss / breakeven, pnl %)."""
    if not 0 < threshold < 1:
        raise InvalidInputError(f"invalid --threshold {threshold}: expected a fraction in (0, 1)")
    app_ctx = app_context(ctx)
    with console.status("labeling…"):
        report = label_pending(app_ctx.engine(), app_ctx.now(), threshold)
    outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(report.outcomes.items())) or "none"
    console.print(
        f"labeled {report.labeled:,} of {report.examined:,} pending signal(s) ({outcomes}); "
        f"{report.still_pending:,} still pending"
    )
    if report.shadow_labeled or report.shadow_pending:
        console.print(
            f"shadow tests: labeled {report.shadow_labeled:,} unseen answer(s); "
            f"{report.shadow_pending:,} still pending"
        )


@app.command("baseline")
def baseline_cmd(
    ctx: typer.Context,
    pairs: Annotated[
        str | None, typer.Option(help="Comma-separated pairs (default: every stored pair).")
    ] = None,
    timeframe: Annotated[str, typer.Option(help=f"One of {' '.join(TIMEFRAMES)}.")] = "1h",
    start: Annotated[str, typer.Option(help="First candle (inclusive).")] = "1970-01-01",
    end: Annotated[str, typer.Option(help="Last candle (exclusive).")] = "2100-01-01",
    strategy: Annotated[
        str, typer.Option(help="Baseline rule: persistence (repeat the last move).")
    ] = "persistence",
) -> None:
    """Record the signals a naive baseline would have given at every candle close.

    Stored with model_version `baseline-<strategy>`; running it again adds nothing twice.
    """
    if strategy != "persistence":
        raise InvalidInputError(f"unknown --strategy {strategy!r}: expected persistence")
    app_ctx = app_context(ctx)
    engine = app_ctx.engine()
    added = record_baseline_signals(
        engine,
        parse_list(pairs),
        validate_timeframe(timeframe),
        parse_time(start, "--start"),
        parse_time(end, "--end"),
        app_ctx.now(),
    )
    console.print(frame_table(added, title=f"baseline-{strategy} signals recorded"))


def record_baseline_signals(
    engine: Engine,
    pairs: list[str] | None,
    timeframe: str,
    start: datetime,
    end: datetime,
    as_of: datetime,
) -> pd.DataFrame:
    """Persistence signals for each candle in range whose close is known by `as_of`."""
    model_version = "baseline-persistence"
    with session_factory(engine)() as session:
        query = select(MarketData.pair, MarketData.timestamp, MarketData.close).where(
            MarketData.timeframe == timeframe,
            MarketData.timestamp >= start,
            MarketData.timestamp < end,
        )
        if pairs:
            query = query.where(MarketData.pair.in_([validate_pair(p) for p in pairs]))
        candles = pd.DataFrame(
            session.execute(query.order_by(MarketData.pair, MarketData.timestamp)).all(),
            columns=["pair", "timestamp", "close"],
        )
        done = pd.DataFrame(
            session.execute(
                select(TradingSignal.pair, TradingSignal.created_at).where(
                    TradingSignal.model_version == model_version,
                    TradingSignal.timeframe == timeframe,
                )
            ).all(),
            columns=["pair", "created_at"],
        )
    summary = []
    with transaction(engine) as session:
        for pair, series in candles.groupby("pair"):
            stamps = pd.DatetimeIndex(pd.to_datetime(series["timestamp"], utc=True))
            signals = pd.DataFrame(
                {
                    "pair": pair,
                    "timeframe": timeframe,
                    "signal": persistence_signals(series["close"].to_numpy()),
                    "confidence": 0.5,
                    "entry_price": series["close"].to_numpy(),
                    # A signal exists once its candle has closed.
                    "created_at": candle_close_times(stamps, timeframe),
                    "model_version": model_version,
                }
            )
            seen = set(pd.to_datetime(done.loc[done["pair"] == pair, "created_at"], utc=True))
            signals = signals[~signals["created_at"].isin(seen) & (signals["created_at"] <= as_of)]
            record_signals(session, signals, as_of)
            summary.append({"pair": pair, "timeframe": timeframe, "recorded": len(signals)})
    return pd.DataFrame(summary, columns=["pair", "timeframe", "recorded"])
