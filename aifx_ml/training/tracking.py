"""What a training run leaves in MLflow: one experiment per model type, params, per-epoch and
holdout metrics, the Keras model with its signature and model card, and a training-curve plot.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import keras
import matplotlib
import mlflow
import mlflow.keras
import numpy as np
from mlflow import MlflowClient
from mlflow.models import infer_signature
from mlflow.tracking._model_registry import utils as _registry_utils
from mlflow.tracking._tracking_service import utils as _tracking_utils

from aifx_ml.config import Settings

_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")

matplotlib.use("Agg")  # files only; no display here or on a server
import matplotlib.pyplot as plt  # noqa: E402


@contextmanager
def mlflow_stores(tracking_uri: str, registry_uri: str) -> Iterator[MlflowClient]:
    """Point MLflow's fluent API at our stores for the duration of a run.

    MLflow keeps its URIs in module globals and, as a side effect of setting them, in the
    MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI environment variables (which our settings read
    too). Both are put back exactly as they were, so nothing leaks into the next run, test or
    settings object.
    """
    saved_env = {name: os.environ.get(name) for name in _MLFLOW_ENV}
    saved = (_tracking_utils._tracking_uri, _registry_utils._registry_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri)
    try:
        yield MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    finally:
        _tracking_utils._tracking_uri, _registry_utils._registry_uri = saved
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def settings_registry(settings: Settings) -> AbstractContextManager[MlflowClient]:
    """`mlflow_stores` for the stores the settings name."""
    return mlflow_stores(settings.tracking_uri, settings.registry_uri)


def experiment_for(client: MlflowClient, model_type: str, artifact_root: str) -> str:
    """The experiment of a model type, created on first use with our artifact location."""
    name = f"aifx-{model_type}"
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = artifact_root if "://" in artifact_root else Path(artifact_root).absolute().as_uri()
    return str(client.create_experiment(name, artifact_location=f"{location.rstrip('/')}/{name}"))


def flat_params(params: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params are strings of at most 6000 characters; lists and dicts become JSON."""
    out = {}
    for key, value in params.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        out[key] = text[:6000]
    return out


def log_epoch(epoch: int, logs: Mapping[str, float]) -> None:
    """Per-epoch metrics (loss, accuracy, AUC, their validation twins, learning rate)."""
    mlflow.log_metrics({k: float(v) for k, v in logs.items() if np.isfinite(v)}, step=epoch)


def log_model_with_card(
    model: keras.Model, card: Mapping[str, Any], example: np.ndarray[Any, Any]
) -> str:
    """Log the model in MLflow's Keras flavour with its signature; returns its model URI.

    The card (architecture config, feature list, scaler, window) rides in the MLmodel
    metadata and as a run artifact, so the model can be rebuilt and used from MLflow alone.
    Pip requirements are given rather than inferred: inference imports half the environment
    and costs ~13 s per model here.
    """
    signature = infer_signature(example, np.zeros((len(example), 1), dtype=np.float32))
    info = mlflow.keras.log_model(
        model,
        name="model",
        signature=signature,
        pip_requirements=[f"keras=={keras.__version__}", "tensorflow-cpu"],
        metadata={"aifx": json.dumps(card)},
    )
    mlflow.log_dict(dict(card), "aifx_model.json")
    return str(info.model_uri)


def log_training_curves(history: Mapping[str, list[float]]) -> None:
    """A PNG of loss and accuracy per epoch (training and validation) as a run artifact."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            if key in history:
                ax.plot(range(1, len(history[key]) + 1), history[key], style, label=key)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.tight_layout()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "training_curves.png"
        fig.savefig(path, dpi=100)
        mlflow.log_artifact(str(path))
    plt.close(fig)


def git_commit(cwd: Path | None = None) -> str:
    """The commit of the code that trains, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=5,
            check=True,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def log_evaluation(
    client: MlflowClient,
    artifact_root: str,
    summary: Mapping[str, Any],
    report: Path,
    registered_model: str,
    mlflow_version: str,
) -> str:
    """An evaluation run in the model type's experiment: the month's metrics and verdict, the
    Evidently report as an artifact; the model version is tagged with the run (its link)."""
    experiment = experiment_for(client, str(summary["model_type"]), artifact_root)
    run = client.create_run(
        experiment,
        run_name=f"monthly-{summary['month']}-{summary['version']}",
        tags={
            "aifx.run_type": "monthly_evaluation",
            "aifx.version": str(summary["version"]),
            "aifx.month": str(summary["month"]),
            "aifx.recommendation": str(summary.get("recommendation")),
        },
    )
    run_id = str(run.info.run_id)
    for key in ("accuracy", "auc", "log_loss", "brier", "drift_share", "samples"):
        value = summary.get(key)
        if isinstance(value, int | float) and np.isfinite(value):
            client.log_metric(run_id, key, float(value))
    client.log_param(run_id, "drifted_features", json.dumps(summary.get("drifted_features", [])))
    client.log_param(run_id, "reasons", json.dumps(summary.get("reasons", []))[:6000])
    client.log_artifact(run_id, str(report))
    client.log_dict(run_id, dict(summary), "evaluation.json")
    client.set_terminated(run_id, "FINISHED")
    client.set_model_version_tag(registered_model, mlflow_version, "aifx.last_evaluation", run_id)
    return run_id
