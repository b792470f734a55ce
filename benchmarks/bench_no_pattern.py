"""A market with nothing to learn: the loop must stay honest (no promotion on noise, a report
that says the models had no edge) and useful (Production kept fresh, Staging tidy).

`aifx replay --synthetic --pattern-strength 0` with every other default, four months of one
pair (EUR/USD, 1h candles), once per seed, each on a store of its own. Per seed and in total:
promotions by winning a test (on this market every such win is a false one), refreshes,
tests started and how they ended, the share of requests a stale Production version answered,
versions left in Staging, how the Production model of the moment signalled at its versions'
own thresholds (and how many requests it held for want of an edge), and the report's
headline. Prints one JSON object.

    python benchmarks/bench_no_pattern.py [SEED ...]      # default seeds 11 12 13
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

START = datetime(2026, 1, 5, tzinfo=UTC)
END = datetime(2026, 5, 4, tzinfo=UTC)  # 17 weeks: four months
SEEDS = (11, 12, 13)
MAX_STALE_SHARE = 0.10
MAX_STAGING = 3  # keep_waiting's default


def replay_once(seed: int) -> dict[str, Any]:
    from sqlalchemy import select  # noqa: PLC0415

    from aifx_ml.config import load_settings  # noqa: PLC0415
    from aifx_ml.db.engine import engine_for  # noqa: PLC0415
    from aifx_ml.db.models import ModelABTest  # noqa: PLC0415
    from aifx_ml.replay.plan import ReplayParams, with_change_point  # noqa: PLC0415
    from flows.replay import run_to_end  # noqa: PLC0415

    work = Path(tempfile.mkdtemp(prefix=f"aifx-bench-no-pattern-{seed}-"))
    try:
        settings = load_settings(None, data_dir=work)
        params = with_change_point(
            ReplayParams(
                pairs=("EUR/USD",),
                timeframes=("1h",),
                start=START,
                end=END,
                seed=seed,
                pattern_strength=0.0,
            )
        )
        began = time.perf_counter()
        run = run_to_end(settings, params, f"no-pattern-{seed}", wall=lambda: datetime.now(UTC))
        seconds = time.perf_counter() - began
        assert run.report is not None, f"seed {seed}: the replay ended {run.status}"
        report = json.loads(Path(run.report["json"]).read_text())
        with engine_for(settings.db_url) as engine, engine.connect() as conn:
            tests = conn.execute(
                select(
                    ModelABTest.status,
                    ModelABTest.winner,
                    ModelABTest.model_a_version,
                    ModelABTest.model_b_version,
                )
            ).all()
        ran = report["operations"]["overall"]
        verdict = report["verdict"]["overall"]
        continuous = report["comparison"]["periods"]["overall"]["continuous"]
        ended = [t for t in tests if t.status != "active"]
        return {
            "seed": seed,
            "seconds": round(seconds, 1),
            "requests": ran["requests"],
            "promotions": ran["promotions"],
            "refreshes": ran["refreshes"],
            "tests_started": len(tests),
            "tests_ended": len(ended),
            "challenger_won": sum(t.winner == t.model_b_version for t in ended),
            "production_kept": sum(t.winner == t.model_a_version for t in ended),
            "no_winner": sum(t.winner is None for t in ended),
            "stale_share": ran["stale_share"],
            "max_days_since_promotion": ran["max_days_since_promotion"],
            "staging_at_end": ran["staging_at_end"],
            # How the Production model of the moment answered, at its versions' own thresholds.
            "signals": continuous["signals"],
            "no_edge_share": ran.get("no_edge_share"),
            "win_rate": continuous["win_rate"],
            "decided": continuous["wins"] + continuous["losses"],
            "continuous_minus_frozen": verdict.get("continuous_minus_frozen_accuracy"),
            "ci": verdict.get("ci"),
            "headline": report["headline"],
            "says_no_edge": "no edge" in report["headline"]
            or "nothing to compare" in report["headline"],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    seeds = tuple(int(s) for s in sys.argv[1:]) or SEEDS
    runs = [replay_once(seed) for seed in seeds]
    ended = sum(r["tests_ended"] for r in runs)
    false_wins = sum(r["challenger_won"] for r in runs)
    stale = [r["stale_share"] for r in runs if r["stale_share"] is not None]
    print(
        json.dumps(
            {
                "benchmark": "no_pattern_market",
                "market": "synthetic, pattern_strength 0, EUR/USD 1h",
                "start": START.isoformat(),
                "end": END.isoformat(),
                "runs": runs,
                "total": {
                    "tests_ended": ended,
                    "false_winners": false_wins,
                    "false_winner_rate": false_wins / ended if ended else None,
                    "max_stale_share": max(stale, default=None),
                    "max_staging_at_end": max(r["staging_at_end"] for r in runs),
                },
                "targets": {
                    "stale_share_at_most": MAX_STALE_SHARE,
                    "staging_at_most": MAX_STAGING,
                    "every_report_says_no_edge": all(r["says_no_edge"] for r in runs),
                    "met": all(s <= MAX_STALE_SHARE for s in stale)
                    and all(r["staging_at_end"] <= MAX_STAGING for r in runs)
                    and all(r["says_no_edge"] for r in runs),
                },
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
