"""A replay put together: the stores from the settings, the flows as its scheduled jobs, a
prediction service on the simulated clock, the loop, and the report at the end."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine, func, select

from aifx_ml.config import Settings
from aifx_ml.db.engine import engine_for, ensure_schema, session_factory
from aifx_ml.db.models import ModelVersion, ReplayRun
from aifx_ml.errors import ConflictError
from aifx_ml.events.relay import relay_outbox
from aifx_ml.replay import state
from aifx_ml.replay.assemble import build_report, write_report
from aifx_ml.replay.loop import Progress, ReplaySettings, SimulatedClock, run_replay
from aifx_ml.replay.plan import ReplayParams, replay_candles
from aifx_ml.serving.inference import ModelServer
from aifx_ml.serving.predict import PredictionService
from flows.replay_jobs import replay_jobs, replay_runtime
from registry.mlflow_store import MlflowModelStore, log_replay_report


def run_to_end(
    settings: Settings,
    params: ReplayParams,
    name: str,
    *,
    wall: Callable[[], datetime],
    stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[Progress], None] = lambda _: None,
) -> ReplayRun:
    """Run or resume the replay `name`; a completed one only gets its report (re)written."""
    with engine_for(settings.db_url) as engine:
        ensure_schema(engine, auto_upgrade=settings.is_embedded)
        # A training replay writes its own history of versions: it needs a store of its own.
        # A serving-only one evaluates what is there.
        held = _versions(engine) if state.get_replay(engine, name) is None else 0
        if params.train and held:
            raise ConflictError(
                f"this store already holds {held} model version(s): a replay needs "
                "a store of its own — point AIFX_DATA_DIR (or AIFX_DATABASE_URL and "
                "MLFLOW_TRACKING_URI) at a new place"
            )
        run, _ = state.open_replay(engine, name, params.as_dict(), wall())
        store = MlflowModelStore.from_settings(settings)
        if run.status != "completed":
            status = _loop(engine, settings, store, params, run, wall, stop, on_progress)
            if status != "completed":
                return _reloaded(engine, name)
        if not (run.report or {}).get("html"):
            report = write_replay_report(engine, settings, store, params, name)
            state.finish_replay(engine, run.id, "completed", wall(), report=report)
        return _reloaded(engine, name)


def _loop(
    engine: Engine,
    settings: Settings,
    store: MlflowModelStore,
    params: ReplayParams,
    run: ReplayRun,
    wall: Callable[[], datetime],
    stop: Callable[[], bool],
    on_progress: Callable[[Progress], None],
) -> str:
    clock = SimulatedClock(run.cursor or params.start)
    policy = params.policy
    # Who serves changes only through the replay's own jobs, which invalidate the server.
    # Compiled on first use, never in the background: answers must not depend on timing.
    server = ModelServer(engine, store, refresh_seconds=math.inf, background_compile=False)
    service = PredictionService(engine, server, clock, policy)
    redis_url = settings.redis_url

    def relay() -> None:
        if redis_url:
            relay_outbox(engine, redis_url, now=wall)

    try:
        with replay_runtime(settings):
            outcome = run_replay(
                engine,
                run,
                replay_candles(params, wall()),
                replay_jobs(params),
                service,
                clock,
                start=params.start,
                end=params.end,
                settings=ReplaySettings(
                    label_threshold=params.label_threshold, ab_look_hours=params.ab_look_hours
                ),
                wall=wall,
                stop=stop,
                on_progress=on_progress,
                relay=relay,
            )
    except KeyboardInterrupt:
        state.finish_replay(engine, run.id, "interrupted", wall(), error="interrupted (Ctrl-C)")
        raise
    except Exception as exc:
        state.finish_replay(engine, run.id, "failed", wall(), error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        service.close()
    relay()
    if outcome.status != "completed":
        state.finish_replay(engine, run.id, "interrupted", wall())
    return outcome.status


def write_replay_report(
    engine: Engine, settings: Settings, store: MlflowModelStore, params: ReplayParams, name: str
) -> dict[str, str]:
    """The report's HTML and JSON under <data dir>/replays/<name>/, logged to MLflow."""
    report = build_report(
        engine,
        store,
        start=params.start,
        end=params.end,
        pairs=params.pairs,
        timeframes=params.timeframes,
        change_at=params.change_at,
        label_threshold=params.label_threshold,
        policy=params.policy,
        title=name,
    )
    html, json_path = write_report(report, settings.data_dir / "replays" / name)
    run_id = log_replay_report(
        store, report, html, json_path, run_name=name, artifact_root=settings.artifact_location
    )
    return {
        "html": str(html),
        "json": str(json_path),
        "mlflow_run_id": run_id,
        "headline": report.headline,
    }


def _versions(engine: Engine) -> int:
    with session_factory(engine)() as session:
        return int(session.execute(select(func.count()).select_from(ModelVersion)).scalar_one())


def _reloaded(engine: Engine, name: str) -> ReplayRun:
    run = state.get_replay(engine, name)
    assert run is not None
    return run
