"""`aifx demo`: the main job on the embedded default, from nothing to an exported dataset.

Synthesize a few months of candles for three pairs, import them, record what the persistence
baseline would have signalled, label those signals, export the dataset and print where to look.
Later stages of the loop (training, registry, A/B tests) join this job as they are built.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import pandas as pd
import typer
from rich.progress import Progress

from aifx_ml.cli.common import (
    app_context,
    console,
    frame_table,
    parse_list,
    parse_time,
    quiet_tensorflow,
)
from aifx_ml.cli.data import print_import_reports
from aifx_ml.cli.signals import record_baseline_signals
from aifx_ml.data.export import dataset_stats, export_dataset
from aifx_ml.data.importer import import_frame
from aifx_ml.data.synth import synthesize_candles, write_synthetic_csv
from aifx_ml.labeling.store import label_pending


def demo_cmd(
    ctx: typer.Context,
    pairs: Annotated[str, typer.Option(help="Comma-separated pairs.")] = "EUR/USD,GBP/USD,USD/JPY",
    timeframe: Annotated[str, typer.Option(help="Candle timeframe.")] = "1h",
    start: Annotated[str, typer.Option(help="First synthetic candle.")] = "2026-01-01",
    end: Annotated[str, typer.Option(help="Last synthetic candle.")] = "2026-06-30",
    seed: Annotated[int, typer.Option(help="Seed of the synthetic market.")] = 42,
) -> None:
    """Run the main job end to end on whatever store the settings name (default: ./.aifx)."""
    quiet_tensorflow()  # before anything imports it: its start-up lines stay off the terminal
    app_ctx = app_context(ctx)
    settings = app_ctx.settings
    first, last = parse_time(start, "--start"), parse_time(end, "--end")
    as_of = app_ctx.now()
    engine = app_ctx.engine()
    pair_list = parse_list(pairs) or []

    console.rule("1. synthesize and import candles")
    frames = synthesize_candles(
        pair_list, timeframe, pd.Timestamp(first), pd.Timestamp(last), seed=seed
    )
    paths = write_synthetic_csv(frames, settings.data_dir / "synthetic", timeframe)
    reports = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("importing", total=len(frames))
        for path, (pair, frame) in zip(paths, frames.items(), strict=True):
            reports.append(import_frame(engine, frame, pair, timeframe, as_of, source=str(path)))
            progress.advance(task)
    print_import_reports(reports)

    console.rule("2. record the persistence baseline's signals")
    after_last = last + timedelta(seconds=1)
    recorded = record_baseline_signals(engine, pair_list, timeframe, first, after_last, as_of)
    console.print(frame_table(recorded))

    console.rule("3. label signals whose horizon has elapsed")
    report = label_pending(engine, as_of)
    console.print(f"labeled {report.labeled:,} signal(s); {report.still_pending:,} still pending")

    console.rule("4. export the dataset")
    out = settings.data_dir / "exports" / "demo"
    export = export_dataset(
        engine,
        first,
        after_last,
        out,
        pairs=pair_list,
        timeframes=[timeframe],
        fmt="parquet",
        overwrite=True,
        as_of=as_of,
    )
    console.print(
        f"{out}: {export.metadata['row_counts']} "
        f"content hash {export.metadata['content_hash'][:16]}…"
    )

    stats = dataset_stats(engine, first, after_last)
    console.print(frame_table(stats["signals"], title="signals by model and outcome"))
    console.rule("where to look")
    console.print(f"tables:    {settings.db_url}")
    console.print(f"dataset:   {out}/metadata.json")
    console.print("commands:  aifx data stats · aifx data quarantine · aifx label · aifx --help")
