"""The model store on MLflow: runs in one experiment per model type, models in the registry
(one registered model per type) with their card and the SHA-256 of their files, stages and the
`champion`/`challenger` aliases kept as the table says.

Everything goes through one `MlflowClient` bound to the settings' URIs: nothing here sets
MLflow's process-wide tracking URI or environment, so two stores in one process (a test, a
replay study) never see each other's runs.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import numpy.typing as npt
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import Model, infer_signature

from aifx_ml.config import Settings
from aifx_ml.db.models import ModelVersion
from aifx_ml.domain import ModelStatus
from aifx_ml.models.card import ModelCard
from aifx_ml.models.store import (
    ArtifactIntegrityError,
    LoadedModel,
    ModelStoreError,
    Registered,
    number_of,
    registered_name,
)
from aifx_ml.replay.render import mlflow_metrics, mlflow_params
from aifx_ml.replay.report import ReplayReport
from aifx_ml.replay.study import StudyReport
from registry.integrity import directory_sha256, download_version, verify

CHAMPION = "champion"  # alias of the Production version
CHALLENGER = "challenger"  # alias of the Staging version under test
SHA_TAG = "aifx.sha256"

# model_versions.status -> MLflow stage
MLFLOW_STAGES: dict[str, str] = {
    ModelStatus.TRAINING: "None",
    ModelStatus.STAGING: "Staging",
    ModelStatus.PRODUCTION: "Production",
    ModelStatus.ARCHIVED: "Archived",
}


class MlflowModelStore:
    """`ModelStore` on an MLflow tracking server or local store."""

    def __init__(self, tracking_uri: str, registry_uri: str, artifact_root: str) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)

    @classmethod
    def from_settings(cls, settings: Settings) -> MlflowModelStore:
        return cls(settings.tracking_uri, settings.registry_uri, settings.artifact_location)

    @property
    def uri(self) -> str:
        return self.tracking_uri

    def ping(self) -> None:
        """Reach the tracking store and the registry (a local store is created on first use)."""
        self.client.search_experiments(max_results=1)
        self.client.search_registered_models(max_results=1)

    # --- runs ------------------------------------------------------------------------------

    def start_run(self, model_type: str, run_name: str, tags: Mapping[str, str]) -> str:
        experiment = experiment_for(self.client, model_type, self.artifact_root)
        run = self.client.create_run(experiment, run_name=run_name, tags=dict(tags))
        return str(run.info.run_id)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        flat = [Param(k, v) for k, v in flat_params(params).items()]
        for i in range(0, len(flat), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(run_id, params=flat[i : i + 100])

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int | None = None
    ) -> None:
        stamp = _now_ms()
        finite = [
            Metric(k, float(v), stamp, step or 0)
            for k, v in metrics.items()
            if isinstance(v, int | float) and np.isfinite(v)
        ]
        if finite:
            self.client.log_batch(run_id, metrics=finite)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)

    def log_curves(self, run_id: str, history: Mapping[str, Sequence[float]]) -> None:
        self.client.log_figure(run_id, training_curves(history), "training_curves.png")

    def end_run(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status)

    # --- versions --------------------------------------------------------------------------

    def register(
        self,
        run_id: str,
        model: Any,
        card: ModelCard,
        example: npt.NDArray[np.float32],
        tags: Mapping[str, str],
    ) -> Registered:
        """Save the model in MLflow's Keras flavour (signature, card in its metadata) as the
        run's `model` artifact, register it in Staging and record its checksum."""
        import keras  # noqa: PLC0415  (TensorFlow loads only where a model is handled)
        import mlflow.keras  # noqa: PLC0415  (likewise)

        signature = infer_signature(example, np.zeros((len(example), 1), dtype=np.float32))
        with tempfile.TemporaryDirectory(prefix="aifx-model-") as tmp:
            local = Path(tmp) / "model"
            # Pip requirements are given rather than inferred: inference imports half the
            # environment and costs ~13 s per model here.
            mlflow.keras.save_model(
                model,
                str(local),
                signature=signature,
                pip_requirements=[f"keras=={keras.__version__}", "tensorflow-cpu"],
                metadata={"aifx": json.dumps(card.to_dict())},
            )
            self.client.log_artifacts(run_id, str(local), "model")
        self.client.log_dict(run_id, card.to_dict(), "aifx_model.json")
        name = registered_name(card.model_type)
        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(
                name, description=f"AIFX {card.model_type} direction model"
            )
        created = self.client.create_model_version(
            name, model_source(self.client, run_id), run_id=run_id, tags=dict(tags)
        )
        number = str(created.version)
        with tempfile.TemporaryDirectory(prefix="aifx-sha-") as tmp:
            sha = directory_sha256(download_version(self.client, name, number, Path(tmp)))
        self.client.set_model_version_tag(name, number, SHA_TAG, sha)
        transition_stage(self.client, name, number, "Staging")
        return Registered(number, f"models:/{name}/{number}", sha)

    def unregister(self, model_type: str, number: str) -> None:
        self.client.delete_model_version(registered_name(model_type), number)

    def load(self, row: ModelVersion) -> LoadedModel:
        """The files are downloaded once, checked against the SHA-256 recorded at registration,
        and the model is loaded from exactly those files."""
        import mlflow.keras  # noqa: PLC0415  (TensorFlow loads only where a model is handled)

        name = registered_name(row.model_type)
        with tempfile.TemporaryDirectory(prefix="aifx-load-") as tmp:
            local = download_version(self.client, name, number_of(row), Path(tmp))
            verify(local, row.artifact_sha256, row.version)
            model = mlflow.keras.load_model(str(local))
            card = (Model.load(str(local / "MLmodel")).metadata or {}).get("aifx")
        if not card:
            raise ModelStoreError(f"model version {row.version} carries no model card")
        return LoadedModel(row.version, model, ModelCard.from_dict(json.loads(card)))

    def verify(self, row: ModelVersion) -> None:
        """Download the version's files and check them against the registered SHA-256."""
        name = registered_name(row.model_type)
        with tempfile.TemporaryDirectory(prefix="aifx-verify-") as tmp:
            try:
                local = download_version(self.client, name, number_of(row), Path(tmp))
            except (MlflowException, OSError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ArtifactIntegrityError(
                    f"model version {row.version} failed its integrity check: its files cannot "
                    f"be read ({first})"
                ) from exc
            verify(local, row.artifact_sha256, row.version)

    def log_evaluation(
        self, row: ModelVersion, summary: Mapping[str, Any], report: Path | None
    ) -> str:
        """An evaluation run in the model type's experiment: the month's metrics and verdict,
        the Evidently report as an artifact; the model version is tagged with the run."""
        experiment = experiment_for(self.client, row.model_type, self.artifact_root)
        run = self.client.create_run(
            experiment,
            run_name=f"monthly-{summary['month']}-{row.version}",
            tags={
                "aifx.run_type": "monthly_evaluation",
                "aifx.version": row.version,
                "aifx.month": str(summary["month"]),
                "aifx.recommendation": str(summary.get("recommendation")),
            },
        )
        run_id = str(run.info.run_id)
        self.log_metrics(
            run_id,
            {
                k: summary[k]
                for k in ("accuracy", "auc", "log_loss", "brier", "drift_share", "samples")
                if isinstance(summary.get(k), int | float)
            },
        )
        self.client.log_param(
            run_id, "drifted_features", json.dumps(summary.get("drifted_features", []))
        )
        self.client.log_param(run_id, "reasons", json.dumps(summary.get("reasons", []))[:6000])
        if report is not None:
            self.client.log_artifact(run_id, str(report))
        self.client.log_dict(run_id, dict(summary), "evaluation.json")
        self.client.set_terminated(run_id, "FINISHED")
        self.client.set_model_version_tag(
            registered_name(row.model_type), number_of(row), "aifx.last_evaluation", run_id
        )
        return run_id


def log_replay_report(
    store: MlflowModelStore,
    report: ReplayReport,
    html: Path,
    json_path: Path,
    *,
    experiment: str = "aifx-replay",
    run_name: str,
    artifact_root: str | None = None,
) -> str:
    """One run in `experiment` with the report's headline numbers as metrics, its scope as
    params, HTML and JSON as artifacts; returns the run id.

    A new experiment goes under `artifact_root`, or else next to the model type's own experiment
    (where training put it, from the settings). Only the client is used: MLflow's global
    tracking state is never touched.
    """
    found = store.client.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = str(found.experiment_id)
    else:
        location = _artifact_location(store, experiment, report.model_type, artifact_root)
        experiment_id = str(store.client.create_experiment(experiment, artifact_location=location))
    text = report.headline
    run = store.client.create_run(
        experiment_id,
        run_name=run_name,
        tags={"aifx.run_type": "replay_report", "mlflow.note.content": text},
    )
    run_id = str(run.info.run_id)
    at = int(report.end.timestamp() * 1000)  # the replay's clock, not the wall clock
    store.client.log_batch(
        run_id,
        metrics=[Metric(k, v, at, 0) for k, v in mlflow_metrics(report).items()],
        params=[Param(k, v) for k, v in mlflow_params(report).items()],
        tags=[RunTag("aifx.headline", text[:5000])],
    )
    store.client.log_artifact(run_id, str(html))
    store.client.log_artifact(run_id, str(json_path))
    store.client.set_terminated(run_id, "FINISHED")
    return run_id


def _artifact_location(
    store: MlflowModelStore, experiment: str, model_type: str, artifact_root: str | None
) -> str | None:
    if artifact_root is not None:
        root: str | None = artifact_uri(artifact_root)
    else:
        # The experiment `experiment_for` made for the model type.
        sibling = store.client.get_experiment_by_name(f"aifx-{model_type}")
        root = sibling.artifact_location.rstrip("/").rsplit("/", 1)[0] if sibling else None
    return None if root is None else f"{root.rstrip('/')}/{experiment}"


def model_source(client: MlflowClient, run_id: str) -> str:
    """Where `MlflowModelStore.register` saves a run's model: its `model` artifact folder."""
    return f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/model"


def artifact_uri(root: str) -> str:
    """An artifact root as MLflow takes it: a URI as given (`s3://…`, `file://…`, or
    `mlflow-artifacts:/`, a tracking server's served artifacts), a local path as a file URI
    (a one-letter scheme is a Windows drive, not a URI)."""
    return root if len(urlparse(root).scheme) > 1 else Path(root).absolute().as_uri()


def experiment_named(client: MlflowClient, name: str, artifact_root: str) -> str:
    """The experiment `name`, created on first use with its artifacts under `artifact_root`
    (another process creating it meanwhile is fine: its experiment is the one)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = f"{artifact_uri(artifact_root).rstrip('/')}/{name}"
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def experiment_for(client: MlflowClient, model_type: str, artifact_root: str) -> str:
    """The experiment of a model type, created on first use with our artifact location."""
    return experiment_named(client, f"aifx-{model_type}", artifact_root)


def flat_params(params: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params are strings of at most 6000 characters; lists and dicts become JSON."""
    out = {}
    for key, value in params.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        out[key] = text[:6000]
    return out


def training_curves(history: Mapping[str, Sequence[float]]) -> Any:
    """A figure of loss and accuracy per epoch (training and validation)."""
    from matplotlib.figure import Figure  # noqa: PLC0415  (matplotlib only when plotting)

    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            if key in history:
                ax.plot(range(1, len(history[key]) + 1), history[key], style, label=key)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.tight_layout()
    return fig


def transition_stage(
    client: MlflowClient, name: str, version: str, stage: str, archive_existing: bool = False
) -> None:
    """Set an MLflow stage. Stages are deprecated in MLflow 3 but still what its UI and many
    tools show; we keep them in step with the aliases and silence the deprecation notice."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(
            name, version, stage, archive_existing_versions=archive_existing
        )


def _now_ms() -> int:
    return int(time.time() * 1000)


def log_study_report(
    store: MlflowModelStore,
    report: StudyReport,
    html: Path,
    json_path: Path,
    *,
    run_name: str,
    artifact_root: str,
    experiment: str = "aifx-replay-study",
) -> str:
    """One run for the study (its counts and pooled estimates as metrics, what varies as
    params, the HTML and JSON as artifacts) with a nested run per replay (its effect, its
    axes, its own report's files); returns the study run's id."""
    client = store.client
    experiment_id = experiment_named(client, experiment, artifact_root)
    text = report.headline
    parent = client.create_run(
        experiment_id,
        run_name=run_name,
        tags={"aifx.run_type": "replay_study", "mlflow.note.content": text},
    )
    parent_id = str(parent.info.run_id)
    metrics = {f"replays_{k.replace(' ', '_')}": float(v) for k, v in report.counts.items()}
    metrics["replays"], metrics["requests"] = float(len(report.outcomes)), float(report.requests)
    pooled = {"continuous_minus_frozen_accuracy": report.accuracy}
    pooled["continuous_minus_frozen_mean_pnl"] = report.pnl
    pooled |= {f"continuous_minus_{b}_accuracy": p for b, p in report.versus.items()}
    for name, p in pooled.items():
        if p is not None:
            metrics |= {f"pooled_{name}": p.estimate, f"pooled_{name}_lo": p.ci[0]}
            metrics |= {f"pooled_{name}_hi": p.ci[1], f"pooled_{name}_i2": p.i2}
    params = {
        "spec": json.dumps(report.spec)[:6000],
        "best_baseline": str(report.best_baseline),
    }
    params |= {
        k: json.dumps(report.base[k]) for k in ("pairs", "timeframes", "source", "start", "end")
    }
    client.log_batch(
        parent_id,
        metrics=_finite_metrics(metrics),
        params=[Param(k, v) for k, v in params.items()],
        tags=[RunTag("aifx.headline", text[:5000])],
    )
    client.log_artifact(parent_id, str(html))
    client.log_artifact(parent_id, str(json_path))
    for outcome in report.outcomes:
        child = client.create_run(
            experiment_id,
            run_name=outcome.name,
            tags={
                "mlflow.parentRunId": parent_id,
                "aifx.run_type": "replay_study_replay",
                "aifx.outcome": outcome.outcome,
                "mlflow.note.content": outcome.headline or outcome.error or outcome.outcome,
            },
        )
        child_id = str(child.info.run_id)
        effect = outcome.effect
        values: dict[str, float] = {}
        if effect is not None:
            values = {
                "continuous_minus_frozen_accuracy": effect.estimate,
                "continuous_minus_frozen_accuracy_lo": effect.ci[0],
                "continuous_minus_frozen_accuracy_hi": effect.ci[1],
                "continuous_minus_frozen_mean_pnl": effect.pnl_estimate,
                "requests": float(effect.requests),
            }
        client.log_batch(
            child_id,
            metrics=_finite_metrics(values),
            params=[Param(k, json.dumps(v)) for k, v in outcome.axes.items()],
        )
        for path in (outcome.report_html, outcome.report_json):
            if path and Path(path).exists():
                client.log_artifact(child_id, path)
        client.set_terminated(child_id, "FINISHED" if outcome.status == "completed" else "FAILED")
    client.set_terminated(parent_id, "FINISHED")
    return parent_id


def _finite_metrics(values: Mapping[str, float]) -> list[Metric]:
    at = int(time.time() * 1000)
    return [Metric(k, float(v), at, 0) for k, v in values.items() if np.isfinite(v)]
