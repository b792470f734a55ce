"""Settings: embedded defaults under AIFX_DATA_DIR, env file, precedence, and no side effects."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from aifx_ml.config import Settings, load_settings, normalize_database_url
from registry.mlflow_store import artifact_uri

ENV_VARS = (
    "AIFX_DATABASE_URL",
    "AIFX_REDIS_URL",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "AIFX_ARTIFACT_ROOT",
    "AIFX_DATA_DIR",
    "AIFX_API_TOKEN",
    "AIFX_PREDICT_TOKEN",
    "AIFX_ALERT_URLS",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No AIFX/MLflow variables set, and the working directory is an empty temporary one."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_defaults_live_under_dot_aifx(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings(env_file=None)
    data_dir = Path.cwd() / ".aifx"
    assert settings.data_dir == data_dir
    assert settings.data_dir.is_absolute()
    assert settings.database_url == f"sqlite:///{data_dir / 'aifx.db'}"
    assert settings.mlflow_tracking_uri == f"sqlite:///{data_dir / 'mlflow.db'}"
    assert settings.mlflow_registry_uri == settings.mlflow_tracking_uri
    assert settings.artifact_root == str(data_dir / "mlartifacts")
    assert settings.redis_url is None
    assert settings.api_token is None
    assert settings.alert_urls == []
    assert settings.is_embedded


def test_constructing_settings_creates_no_folder(clean_env: pytest.MonkeyPatch) -> None:
    load_settings(env_file=None)
    Settings(_env_file=None)
    assert not (Path.cwd() / ".aifx").exists()
    assert list(Path.cwd().iterdir()) == []


def test_data_dir_moves_every_default(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data_dir = tmp_path / "elsewhere" / "store"
    clean_env.setenv("AIFX_DATA_DIR", str(data_dir))
    settings = load_settings(env_file=None)
    assert settings.data_dir == data_dir
    assert settings.database_url == f"sqlite:///{data_dir / 'aifx.db'}"
    assert settings.mlflow_tracking_uri == f"sqlite:///{data_dir / 'mlflow.db'}"
    assert settings.mlflow_registry_uri == f"sqlite:///{data_dir / 'mlflow.db'}"
    assert settings.artifact_root == str(data_dir / "mlartifacts")
    assert not data_dir.exists()


def test_relative_data_dir_is_made_absolute(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AIFX_DATA_DIR", "store")
    assert load_settings(env_file=None).data_dir == Path.cwd() / "store"


def test_explicit_urls_win(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AIFX_DATABASE_URL", "sqlite:////srv/aifx.db")
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    clean_env.setenv("AIFX_REDIS_URL", "redis://cache:6379/0")
    settings = load_settings(env_file=None)
    assert settings.database_url == "sqlite:////srv/aifx.db"
    assert settings.mlflow_tracking_uri == "http://mlflow:5000"
    assert settings.mlflow_registry_uri == "http://mlflow:5000"  # follows tracking
    assert settings.redis_url == "redis://cache:6379/0"
    # A tracking server keeps the artifacts: every worker logs and loads them through it.
    assert settings.artifact_root == "mlflow-artifacts:/"
    clean_env.setenv("AIFX_ARTIFACT_ROOT", "s3://bucket/aifx")
    assert load_settings(env_file=None).artifact_root == "s3://bucket/aifx"


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        ("mlflow-artifacts:/", "mlflow-artifacts:/"),
        ("s3://bucket/aifx", "s3://bucket/aifx"),
        ("file:///srv/mlartifacts", "file:///srv/mlartifacts"),
        ("/srv/mlartifacts", "file:///srv/mlartifacts"),
    ],
)
def test_artifact_roots_reach_mlflow_as_uris(root: str, expected: str) -> None:
    assert artifact_uri(root) == expected


def test_registry_uri_can_differ_from_tracking(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MLFLOW_REGISTRY_URI", "sqlite:////srv/registry.db")
    settings = load_settings(env_file=None)
    assert settings.mlflow_registry_uri == "sqlite:////srv/registry.db"
    assert settings.mlflow_tracking_uri != settings.mlflow_registry_uri


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db:5432/aifx", "postgresql+psycopg://u:p@db:5432/aifx"),
        ("postgres://u:p@db/aifx", "postgresql+psycopg://u:p@db/aifx"),
        ("postgresql+psycopg://u@db/aifx", "postgresql+psycopg://u@db/aifx"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_normalize_database_url(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


def test_postgres_url_from_env_is_normalized(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AIFX_DATABASE_URL", "postgres://u:p@db/aifx")
    settings = load_settings(env_file=None)
    assert settings.database_url == "postgresql+psycopg://u:p@db/aifx"
    assert not settings.is_embedded


def test_postgres_mlflow_uris_speak_psycopg_3(clean_env: pytest.MonkeyPatch) -> None:
    """MLflow would read `postgresql://` as psycopg2, which is not installed."""
    clean_env.setenv("MLFLOW_TRACKING_URI", "postgresql://u@db/mlflow")
    settings = load_settings(env_file=None)
    assert settings.tracking_uri == settings.registry_uri == "postgresql+psycopg://u@db/mlflow"
    clean_env.setenv("MLFLOW_REGISTRY_URI", "postgres://u@other/registry")
    assert load_settings(env_file=None).registry_uri == "postgresql+psycopg://u@other/registry"
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert load_settings(env_file=None).tracking_uri == "http://mlflow:5000"


def test_env_file_is_read(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text(
        "MLFLOW_TRACKING_URI=http://from-file:5000\nAIFX_REDIS_URL=redis://from-file:6379/0\n"
    )
    settings = load_settings(env_file=env_file)
    assert settings.mlflow_tracking_uri == "http://from-file:5000"
    assert settings.redis_url == "redis://from-file:6379/0"


def test_environment_beats_env_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text("MLFLOW_TRACKING_URI=http://from-file:5000\n")
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert load_settings(env_file=env_file).mlflow_tracking_uri == "http://from-env:5000"


def test_env_file_none_ignores_a_present_mlflow_env(clean_env: pytest.MonkeyPatch) -> None:
    Path("mlflow.env").write_text("MLFLOW_TRACKING_URI=http://from-file:5000\n")
    assert load_settings(env_file=None).mlflow_tracking_uri != "http://from-file:5000"
    assert load_settings().mlflow_tracking_uri == "http://from-file:5000"


@pytest.mark.parametrize("value", ["", "   "])
@pytest.mark.parametrize("name", ENV_VARS)
def test_blank_values_count_as_unset(clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    default = load_settings(env_file=None)
    clean_env.setenv(name, value)
    assert load_settings(env_file=None).model_dump() == default.model_dump()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("json://a", ["json://a"]),
        ("json://a,json://b", ["json://a", "json://b"]),
        (
            "json://a, json://b  mailto://c@d\tslack://e",
            ["json://a", "json://b", "mailto://c@d", "slack://e"],
        ),
    ],
)
def test_alert_urls_split_on_commas_and_whitespace(
    clean_env: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    clean_env.setenv("AIFX_ALERT_URLS", value)
    assert load_settings(env_file=None).alert_urls == expected


def test_alert_urls_split_when_passed_directly(clean_env: pytest.MonkeyPatch) -> None:
    assert load_settings(env_file=None, alert_urls="a://x, b://y").alert_urls == ["a://x", "b://y"]


def test_api_token_is_secret(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AIFX_API_TOKEN", "s3cr3t-token")
    settings = load_settings(env_file=None)
    assert isinstance(settings.api_token, SecretStr)
    assert settings.api_token.get_secret_value() == "s3cr3t-token"
    assert "s3cr3t-token" not in repr(settings)
    assert "s3cr3t-token" not in str(settings)


def test_predict_token_is_secret_and_blank_is_unset(clean_env: pytest.MonkeyPatch) -> None:
    assert load_settings(env_file=None).predict_token is None
    clean_env.setenv("AIFX_PREDICT_TOKEN", "  ")
    assert load_settings(env_file=None).predict_token is None
    clean_env.setenv("AIFX_PREDICT_TOKEN", "read-token")
    token = load_settings(env_file=None).predict_token
    assert isinstance(token, SecretStr) and token.get_secret_value() == "read-token"
    assert "read-token" not in repr(load_settings(env_file=None))
