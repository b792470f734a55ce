"""The one settings object, read from the environment and `mlflow.env`.

Built once at an edge (CLI, flow, app start) with `load_settings()` and passed down.
With nothing set, everything lives under `AIFX_DATA_DIR` (default `./.aifx`): a SQLite
file for the tables, MLflow on SQLite with a local artifact folder.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_ENV_FILE = "mlflow.env"
# The artifact root of an MLflow tracking server that serves artifacts (its default).
SERVED_ARTIFACTS = "mlflow-artifacts:/"


class Settings(BaseSettings):
    """Where every store is. Environment variables win over `mlflow.env`."""

    model_config = SettingsConfigDict(
        env_file=DEFAULT_ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    data_dir: Path = Field(default=Path(".aifx"), validation_alias="AIFX_DATA_DIR")
    database_url: str | None = Field(default=None, validation_alias="AIFX_DATABASE_URL")
    redis_url: str | None = Field(default=None, validation_alias="AIFX_REDIS_URL")
    mlflow_tracking_uri: str | None = Field(default=None, validation_alias="MLFLOW_TRACKING_URI")
    mlflow_registry_uri: str | None = Field(default=None, validation_alias="MLFLOW_REGISTRY_URI")
    artifact_root: str | None = Field(default=None, validation_alias="AIFX_ARTIFACT_ROOT")
    # The folder the market-data deployment imports candle files from (`aifx data watch`).
    drop_dir: Path | None = Field(default=None, validation_alias="AIFX_DROP_DIR")
    api_token: SecretStr | None = Field(default=None, validation_alias="AIFX_API_TOKEN")
    predict_token: SecretStr | None = Field(default=None, validation_alias="AIFX_PREDICT_TOKEN")
    # Input limits of `aifx serve` (README "Limits"): request bodies, and requests per client
    # address in a moving window (`limits` notation, e.g. "60/minute"; "" turns a limit off).
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, le=1024**3, validation_alias="AIFX_MAX_BODY_BYTES"
    )
    rate_limit_writes: str = Field(default="60/minute", validation_alias="AIFX_RATE_LIMIT_WRITES")
    rate_limit_predict: str = Field(default="", validation_alias="AIFX_RATE_LIMIT_PREDICT")
    # NoDecode: the variable holds plain URLs separated by commas or spaces, not a JSON list.
    # How a flow runs the tasks it fans out (README "Past one machine"): "process" (threads of
    # the flow's own process), or "dask": the scheduler at `dask_address`, else a local cluster
    # of `dask_workers` processes with `dask_threads` threads each (TensorFlow's threads too).
    # Unset, it is "dask" when an address is given, else "process".
    task_runner: Literal["process", "dask"] | None = Field(
        default=None, validation_alias="AIFX_TASK_RUNNER"
    )
    dask_address: str | None = Field(default=None, validation_alias="AIFX_DASK_ADDRESS")
    dask_workers: int = Field(default=2, ge=1, le=1024, validation_alias="AIFX_DASK_WORKERS")
    dask_threads: int = Field(default=1, ge=1, le=256, validation_alias="AIFX_DASK_THREADS")
    alert_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=AliasChoices("AIFX_ALERT_URLS")
    )

    @field_validator("alert_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        if value is None:
            return []
        # apprise URLs are separated by commas or whitespace in one variable.
        if isinstance(value, str):
            return [u for u in value.replace(",", " ").split() if u]
        return value

    @field_validator("rate_limit_writes", "rate_limit_predict")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        # Checked here so that a typo stops the server at start, not at the first write.
        from limits import parse_many  # noqa: PLC0415  (only settings that set a limit pay)

        if value.strip():
            try:
                parse_many(value)
            except ValueError as exc:
                raise ValueError(
                    f"invalid rate limit {value!r}: expected e.g. '60/minute' or '10/second'"
                ) from exc
        return value.strip()

    @field_validator(
        "data_dir",
        "database_url",
        "redis_url",
        "mlflow_tracking_uri",
        "mlflow_registry_uri",
        "artifact_root",
        "api_token",
        "predict_token",
        "task_runner",
        "dask_address",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any, info: ValidationInfo) -> Any:
        # `AIFX_DATABASE_URL=` in a shell or env file means "not set", not "the empty string".
        if isinstance(value, str) and not value.strip():
            return cls.model_fields[info.field_name or ""].get_default(call_default_factory=True)
        return value

    @field_validator("dask_address")
    @classmethod
    def _dask_address(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"(tcp|tls|ucx|ws|wss)://[^\s/]+:\d+", value):
            raise ValueError(f"expected a scheduler address like tcp://host:8786, got {value!r}")
        return value

    @model_validator(mode="after")
    def _task_runner(self) -> Settings:
        if self.task_runner is None:
            self.task_runner = "dask" if self.dask_address else "process"
        elif self.task_runner == "process" and self.dask_address:
            raise ValueError(
                "AIFX_DASK_ADDRESS is set but AIFX_TASK_RUNNER=process: unset one of them"
            )
        return self

    @model_validator(mode="after")
    def _embedded_defaults(self) -> Settings:
        data_dir = self.data_dir.expanduser().absolute()
        self.data_dir = data_dir
        if self.database_url is None:
            self.database_url = f"sqlite:///{data_dir / 'aifx.db'}"
        self.database_url = normalize_database_url(self.database_url)
        if self.mlflow_tracking_uri is None:
            self.mlflow_tracking_uri = f"sqlite:///{data_dir / 'mlflow.db'}"
        if self.mlflow_registry_uri is None:
            self.mlflow_registry_uri = self.mlflow_tracking_uri
        # MLflow reads `postgresql://` as psycopg2, which is not installed: psycopg 3 it is.
        self.mlflow_tracking_uri = normalize_database_url(self.mlflow_tracking_uri)
        self.mlflow_registry_uri = normalize_database_url(self.mlflow_registry_uri)
        if self.artifact_root is None:
            # A tracking server keeps the artifacts it serves (`mlflow server`'s
            # --artifacts-destination): every worker on every host then logs and loads
            # through it. Otherwise, a folder in the data directory.
            server = self.mlflow_tracking_uri.startswith(("http://", "https://"))
            self.artifact_root = SERVED_ARTIFACTS if server else str(data_dir / "mlartifacts")
        self.drop_dir = (self.drop_dir or data_dir / "drop").expanduser().absolute()
        return self

    @property
    def db_url(self) -> str:
        """The database URL, never None after validation."""
        assert self.database_url is not None
        return self.database_url

    @property
    def tracking_uri(self) -> str:
        """MLflow's tracking URI, never None after validation."""
        assert self.mlflow_tracking_uri is not None
        return self.mlflow_tracking_uri

    @property
    def registry_uri(self) -> str:
        """MLflow's registry URI, never None after validation."""
        assert self.mlflow_registry_uri is not None
        return self.mlflow_registry_uri

    @property
    def monthly_reports_dir(self) -> Path:
        """Where monthly evaluation reports go: <data dir>/reports/monthly/<month>/."""
        return self.data_dir / "reports" / "monthly"

    @property
    def artifact_location(self) -> str:
        """Where MLflow keeps artifacts, never None after validation."""
        assert self.artifact_root is not None
        return self.artifact_root

    @property
    def is_embedded(self) -> bool:
        """True when the tables live in a SQLite file (the laptop default)."""
        return self.db_url.startswith("sqlite")


def normalize_database_url(url: str) -> str:
    """Let users write `postgresql://` or `postgres://` (for the tables and for MLflow's
    stores alike); we speak psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def load_settings(env_file: str | Path | None = DEFAULT_ENV_FILE, **overrides: Any) -> Settings:
    """Build the settings at an edge. `env_file=None` reads the environment only."""
    return Settings(_env_file=env_file, **overrides)


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
