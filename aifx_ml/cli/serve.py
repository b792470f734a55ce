"""`aifx serve`: the prediction and A/B test API, and how the app is built from the settings.

This is the edge that wires the serving library to the stores: the MLflow model store and the
registry's A/B actions are built here and passed into `create_app`. With `--workers N`
uvicorn starts N processes that each build their own app through `app_factory`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from aifx_ml.cli.common import app_context, console, quiet_tensorflow
from aifx_ml.config import Settings, load_settings
from aifx_ml.domain import SignalPolicy

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy import Engine

# uvicorn replaces a worker that does not answer its supervisor's ping within this many
# seconds. Its default (5 s) is shorter than a worker's start on a busy machine (the spawned
# process imports the CLI, FastAPI and TensorFlow before it can answer): the supervisor then
# kills and respawns workers forever and the server never answers.
WORKER_TIMEOUT = 60
SHARED_MEMORY = Path("/dev/shm")  # tmpfs on Linux: the workers' metric files live there
# How the serve command hands its thresholds to worker processes (they start from scratch).
BUY_ENV, SELL_ENV = "AIFX_SERVE_BUY_THRESHOLD", "AIFX_SERVE_SELL_THRESHOLD"


def build_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    now: Callable[[], datetime] | None = None,
    policy: SignalPolicy | None = None,
    refresh_seconds: float = 2.0,
    max_buffer: int = 50_000,
    relay: bool = True,
    preload: bool = False,
) -> FastAPI:
    """The app over the settings' stores: MLflow for models, the registry for promotions
    (`max_buffer`: answered signals kept in memory while the database is away; `relay`:
    deliver events to the settings' Redis as they are committed; `preload`: load and compile
    the serving versions as the app starts, `/api/v1/monitoring/ready` answering 200 after)."""
    # FastAPI, MLflow and the registry load only when serving, not for every command.
    from aifx_ml.serving.app import create_app, wall_clock  # noqa: PLC0415  (FastAPI, MLflow: only when serving)
    from aifx_ml.serving.deps import RegistryActions  # noqa: PLC0415  (FastAPI, MLflow: only when serving)
    from registry.abtest import complete_with_winner, mark_challenger  # noqa: PLC0415  (FastAPI, MLflow: only when serving)
    from registry.mlflow_store import MlflowModelStore  # noqa: PLC0415  (FastAPI, MLflow: only when serving)

    store = MlflowModelStore.from_settings(settings)

    def complete(
        engine: Engine,
        test: Any,
        winner: str,
        *,
        as_of: datetime,
        reason: str,
        actor: str,
        metrics: dict[str, Any] | None,
        clock: Callable[[], datetime] | None,
    ) -> Any:
        return complete_with_winner(
            engine,
            store,
            test,
            winner,
            as_of=as_of,
            reason=reason,
            actor=actor,
            metrics=metrics,
            clock=clock,
        )

    return create_app(
        settings,
        store=store,
        registry=RegistryActions(
            complete_with_winner=complete,
            mark_challenger=lambda engine, test: mark_challenger(engine, store, test),
        ),
        engine=engine,
        now=now or wall_clock,
        policy=policy,
        refresh_seconds=refresh_seconds,
        max_buffer=max_buffer,
        relay=relay,
        preload=preload,
        # Preloading is what a serving process of its own does (`aifx serve`, each worker).
        freeze_heap=preload,
    )


def policy_from_env(environ: Mapping[str, str]) -> SignalPolicy:
    """The thresholds `aifx serve` handed its worker processes (none: each version's own)."""
    buy, sell = environ.get(BUY_ENV), environ.get(SELL_ENV)
    return SignalPolicy.with_thresholds(
        None if buy is None else float(buy), None if sell is None else float(sell)
    )


def app_factory() -> FastAPI:
    """What each uvicorn worker process calls: settings from the environment."""
    quiet_tensorflow()
    return build_app(load_settings(), policy=policy_from_env(os.environ), preload=True)


def multiprocess_metrics_dir(data_dir: Path, shared_memory: Path = SHARED_MEMORY) -> Path:
    """Where the workers' Prometheus samples go (prometheus_client's multiprocess mode): the
    `PROMETHEUS_MULTIPROC_DIR` given; else a folder in shared memory named after the data dir
    (`/dev/shm/aifx-prometheus-<hash>`, where the system has one); else
    `<data dir>/prometheus`. Emptied of the samples a previous run left, then handed to the
    workers through the environment (they read it when they first import prometheus_client).

    Shared memory because every observation writes to a memory-mapped file there: on a
    disk-backed folder those writes took a quarter of the 2-worker throughput (587-692
    against 810-886 requests/s, alternated, on the 2-core CI machine)."""
    from aifx_ml.serving.metrics import MULTIPROC_ENV  # noqa: PLC0415  (prometheus_client: only when serving)

    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
    elif shared_memory.is_dir() and os.access(shared_memory, os.W_OK | os.X_OK):
        digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
        path = shared_memory / f"aifx-prometheus-{digest}"
    else:
        path = data_dir / "prometheus"
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.db"):
        old.unlink()
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def serve_cmd(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.", min=1)] = 1,
    worker_timeout: Annotated[
        int,
        typer.Option(
            help="Seconds a worker may take to start or to answer uvicorn's liveness ping "
            "before it is replaced (with --workers > 1).",
            min=1,
        ),
    ] = WORKER_TIMEOUT,
    buy_threshold: Annotated[
        float | None,
        typer.Option(
            help="Buy at P(up) at or above this, for every version (overrides each version's "
            f"own thresholds; the sell one then defaults to {SignalPolicy.sell_threshold}).",
            min=0.0,
            max=1.0,
        ),
    ] = None,
    sell_threshold: Annotated[
        float | None,
        typer.Option(
            help="Sell at P(up) at or below this, for every version (overrides each version's "
            f"own thresholds; the buy one then defaults to {SignalPolicy.buy_threshold}).",
            min=0.0,
            max=1.0,
        ),
    ] = None,
    access_log: Annotated[
        bool,
        typer.Option(
            help="Log every request (uvicorn's access log). Behind a proxy that logs them, "
            "--no-access-log saves the service that work on every request.",
        ),
    ] = True,
) -> None:
    """Serve predictions and the A/B test API (OpenAPI at /docs)."""
    import uvicorn  # noqa: PLC0415  (only the serving process pays for uvicorn)

    quiet_tensorflow()  # before anything imports it: its start-up lines stay off the terminal
    app_ctx = app_context(ctx)
    policy = SignalPolicy.with_thresholds(buy_threshold, sell_threshold)
    console.print(f"signals: {policy.describe()}")
    console.print(f"serving on http://{host}:{port} (OpenAPI: http://{host}:{port}/docs)")
    if workers == 1:
        api = build_app(app_ctx.settings, engine=app_ctx.engine(), policy=policy, preload=True)
        uvicorn.run(api, host=host, port=port, log_level="info", access_log=access_log)
        return
    # Several processes: uvicorn needs an import string; each worker builds its own app (its
    # own engine, model cache and signal writer; the tables are the truth they share).
    # The schema and a local MLflow store are checked (or created) once, before the workers
    # start: two workers creating one MLflow SQLite store at once collide in its migrations.
    app_ctx.engine()
    from registry.mlflow_store import MlflowModelStore  # noqa: PLC0415  (MLflow: only when serving)

    MlflowModelStore.from_settings(app_ctx.settings).ping()
    for name, value in ((BUY_ENV, buy_threshold), (SELL_ENV, sell_threshold)):
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = str(value)
    from aifx_ml.serving.metrics import MULTIPROC_ENV  # noqa: PLC0415  (prometheus_client: only when serving)

    ours = not os.environ.get(MULTIPROC_ENV)
    metrics_dir = multiprocess_metrics_dir(app_ctx.settings.data_dir)
    console.print(f"metrics: every worker's samples in {metrics_dir}, summed at /metrics")
    try:
        uvicorn.run(
            f"{__name__}:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            timeout_worker_healthcheck=worker_timeout,
            log_level="info",
            access_log=access_log,
        )
    finally:
        if ours:  # the samples of a server that stopped: nobody can scrape them
            shutil.rmtree(metrics_dir, ignore_errors=True)
