"""`aifx data`: import, synthesize, export and summarize market data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.progress import Progress
from sqlalchemy import select

from aifx_ml.cli.common import (
    app_context,
    console,
    err_console,
    frame_table,
    parse_list,
    parse_time,
    relay_after_command,
)
from aifx_ml.cli.help import MARKUP
from aifx_ml.data.export import dataset_stats, export_dataset
from aifx_ml.data.importer import CandleFile, ImportReport, import_csv_files, import_frame
from aifx_ml.data.reader import series_from_filename
from aifx_ml.data.synth import synthesize_candles, write_synthetic_csv
from aifx_ml.db.engine import session_factory
from aifx_ml.db.models import DataQuarantine
from aifx_ml.errors import InvalidInputError
from aifx_ml.markets import TIMEFRAMES, validate_pair, validate_timeframe

app = typer.Typer(
    rich_markup_mode=MARKUP,
    help="Market data: import, synthesize, export, statistics.",
    no_args_is_help=True,
)


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="CSV files of OHLCV candles.")],
    pair: Annotated[
        str | None,
        typer.Option(
            help="Currency pair, e.g. EUR/USD (default: from the file name, e.g. EURUSD_1h.csv)."
        ),
    ] = None,
    timeframe: Annotated[
        str | None,
        typer.Option(help=f"One of {' '.join(TIMEFRAMES)} (default: from the file name)."),
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="Recorded as the rows' source (default: the file path).")
    ] = None,
) -> None:
    """Validate and import candle CSV files. Re-importing a file changes nothing.

    Every row read is counted once: accepted (new or corrected), duplicate, or quarantined
    with its reason (see `aifx data quarantine`). The files are imported in one transaction,
    each read in chunks: if one is not a candle CSV, nothing of any of them is written.
    """
    app_ctx = app_context(ctx)
    as_of = app_ctx.now()
    files = []
    for path in paths:
        if not path.is_file():
            raise InvalidInputError(
                f"{path}: no such file" if not path.exists() else f"{path}: not a file"
            )
        inferred = series_from_filename(path) or (None, None)
        if not (pair or inferred[0]) or not (timeframe or inferred[1]):
            raise InvalidInputError(
                f"{path}: give --pair and --timeframe (the file name does not say them)"
            )
        series_pair = validate_pair(pair or str(inferred[0]))
        series_tf = validate_timeframe(timeframe or str(inferred[1]))
        files.append(CandleFile(path, series_pair, series_tf))
    engine = app_ctx.engine()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("importing", total=len(files))
        reports = import_csv_files(
            engine, files, as_of, source, on_file=lambda _: progress.advance(task)
        )
    print_import_reports(reports)


@app.command("watch")
def watch_cmd(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="The drop folder (PAIR_TIMEFRAME.csv files).")],
    once: Annotated[
        bool, typer.Option("--once", help="Import what waits, then stop (for cron or a flow).")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between looks at the folder.")
    ] = 5.0,
) -> None:
    """Import candle files dropped in a folder, each in its own transaction, then move them to
    processed/ (or, not candles, to rejected/ with the reason beside them).

    Files named .*, *.part or *.tmp are being written and are left alone: write to such a
    name, then rename. Each file is imported once; events go out as each import commits.
    """
    from aifx_ml.data.watch import import_dropped  # noqa: PLC0415  (only this command needs it)

    if not folder.is_dir():
        raise InvalidInputError(f"{folder}: no such folder")
    app_ctx = app_context(ctx)
    engine = app_ctx.engine()
    if not once:
        console.print(f"watching {folder} every {interval:g} s; Ctrl-C stops")
    try:
        while True:
            handled = import_dropped(engine, folder, app_ctx.now())
            for done in handled:
                if done.report is None:
                    err_console.print(
                        f"[red]rejected[/] {done.name}: {done.error} (moved to {done.moved_to})",
                        soft_wrap=True,
                        highlight=False,
                    )
                else:
                    print_import_reports([done.report])
            if once:
                return  # the command's end delivers the events
            if handled:
                relay_after_command(app_ctx)
            time.sleep(interval)
    except KeyboardInterrupt:
        console.print("stopped")


def print_import_reports(reports: list[ImportReport]) -> None:
    """The counts table, then any gaps, one line each."""
    table = pd.DataFrame(
        [
            {
                "source": Path(r.source).name,
                "pair": r.pair,
                "timeframe": r.timeframe,
                "read": r.rows_read,
                "accepted": r.accepted,
                "(updated)": r.updated,
                "duplicate": r.duplicates,
                "quarantined": r.quarantined,
                "gaps": len(r.gaps),
            }
            for r in reports
        ]
    )
    console.print(frame_table(table, title="import"))
    for r in reports:
        for gap in r.gaps[:10]:
            where = (
                f"at {gap.start:%Y-%m-%d %H:%M}"
                if gap.missing == 1
                else f"from {gap.start:%Y-%m-%d %H:%M} to {gap.end:%Y-%m-%d %H:%M}"
            )
            console.print(
                f"[yellow]gap[/] {r.pair} {r.timeframe}: "
                f"{gap.missing} candle(s) missing {where} UTC"
            )
        if len(r.gaps) > 10:
            console.print(f"[yellow]gap[/] {r.pair} {r.timeframe}: … and {len(r.gaps) - 10} more")
        if r.quarantined:
            console.print(
                f"[yellow]{r.quarantined} row(s) quarantined[/]: see `aifx data quarantine`"
            )


@app.command("synth")
def synth_cmd(
    ctx: typer.Context,
    pairs: Annotated[str, typer.Option(help="Comma-separated pairs.")] = "EUR/USD,GBP/USD,USD/JPY",
    timeframe: Annotated[str, typer.Option(help=f"One of {' '.join(TIMEFRAMES)}.")] = "1h",
    start: Annotated[
        str, typer.Option(help="First candle (date or ISO timestamp, UTC).")
    ] = "2026-01-01",
    end: Annotated[
        str, typer.Option(help="Last candle (date or ISO timestamp, UTC).")
    ] = "2026-06-30",
    seed: Annotated[int, typer.Option(help="Same seed and arguments, same candles.")] = 42,
    pattern_switch: Annotated[
        float,
        typer.Option(
            help="Where in the range (0-1) the pattern flips from momentum to mean reversion."
        ),
    ] = 0.5,
    switch_volatility: Annotated[
        float, typer.Option(help="Volatility multiplier from the pattern switch on (1: none).")
    ] = 1.0,
    out: Annotated[
        Path | None, typer.Option(help="Folder for the CSV files (default: DATA_DIR/synthetic).")
    ] = None,
    import_: Annotated[
        bool, typer.Option("--import", help="Also import the candles into market_data.")
    ] = False,
) -> None:
    """Write realistic synthetic FX candles (one CSV per pair), seeded and reproducible."""
    app_ctx = app_context(ctx)
    pair_list = parse_list(pairs) or []
    first, last = parse_time(start, "--start"), parse_time(end, "--end")
    frames = synthesize_candles(
        pair_list,
        timeframe,
        pd.Timestamp(first),
        pd.Timestamp(last),
        seed=seed,
        pattern_switch=pattern_switch,
        switch_volatility=switch_volatility,
    )
    folder = out or app_ctx.settings.data_dir / "synthetic"
    written = write_synthetic_csv(frames, folder, timeframe)
    for path, (pair, frame) in zip(written, frames.items(), strict=True):
        console.print(f"wrote {len(frame):,} {timeframe} candles of {pair} to {path}")
    if import_:
        engine = app_ctx.engine()
        as_of = app_ctx.now()
        reports = []
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("importing", total=len(frames))
            for path, (pair, frame) in zip(written, frames.items(), strict=True):
                reports.append(
                    import_frame(engine, frame, pair, timeframe, as_of, source=str(path))
                )
                progress.advance(task)
        print_import_reports(reports)


@app.command("export")
def export_cmd(
    ctx: typer.Context,
    start: Annotated[
        str, typer.Option(help="Range start (inclusive), date or ISO timestamp, UTC.")
    ],
    end: Annotated[str, typer.Option(help="Range end (exclusive).")],
    out: Annotated[
        Path, typer.Option(help="Folder to write (created; replaced only with --overwrite).")
    ],
    pairs: Annotated[str | None, typer.Option(help="Comma-separated pairs (default: all).")] = None,
    timeframes: Annotated[
        str | None, typer.Option(help="Comma-separated timeframes (default: all).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "parquet",
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
) -> None:
    """Export candles with indicators and target, labeled signals, and metadata.json."""
    app_ctx = app_context(ctx)
    with console.status("exporting…"):
        result = export_dataset(
            app_ctx.engine(),
            parse_time(start, "--start"),
            parse_time(end, "--end"),
            out,
            pairs=parse_list(pairs),
            timeframes=parse_list(timeframes),
            fmt=fmt,  # type: ignore[arg-type]
            overwrite=overwrite,
            as_of=app_ctx.now(),
        )
    meta = result.metadata
    console.print(
        f"exported {meta['row_counts']['candles']:,} candles and {meta['row_counts']['signals']:,} "
        f"labeled signals to {result.out_dir}"
    )
    console.print(f"content hash {meta['content_hash']}")


@app.command("stats")
def stats_cmd(
    ctx: typer.Context,
    start: Annotated[str, typer.Option(help="Range start (inclusive).")] = "1970-01-01",
    end: Annotated[str, typer.Option(help="Range end (exclusive).")] = "2100-01-01",
) -> None:
    """Candles per series (with gaps), signals per model and outcome, quarantined rows."""
    app_ctx = app_context(ctx)
    with console.status("counting…"):
        stats = dataset_stats(
            app_ctx.engine(), parse_time(start, "--start"), parse_time(end, "--end")
        )
    console.print(frame_table(stats["candles"], title="candles"))
    console.print(frame_table(stats["signals"], title="signals"))
    console.print(frame_table(stats["quarantine"], title="quarantined rows (all time)"))


@app.command("quarantine")
def quarantine_cmd(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="How many of the newest rows to show.")] = 20,
) -> None:
    """The newest quarantined input rows and why they were refused."""
    engine = app_context(ctx).engine()
    with session_factory(engine)() as session:
        rows = session.execute(
            select(
                DataQuarantine.created_at,
                DataQuarantine.source,
                DataQuarantine.row_number,
                DataQuarantine.pair,
                DataQuarantine.timeframe,
                DataQuarantine.reason,
            )
            .order_by(DataQuarantine.created_at.desc(), DataQuarantine.row_number)
            .limit(limit)
        ).all()
    frame = pd.DataFrame(
        rows, columns=["created_at", "source", "row", "pair", "timeframe", "reason"]
    )
    frame["source"] = frame["source"].map(lambda s: Path(s).name)
    console.print(frame_table(frame, title="quarantine"))
