"""Settings: defaults, validation that names the variable, per-module log levels."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aiops.config import ENV_NAMES, ConfigError, load_settings
from aiops.logging_setup import configure_logging

AIOPS = str(Path(sys.executable).parent / "aiops")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name in ENV_NAMES or name.startswith("AIOPS_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_defaults(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.temporal_address is None
    assert settings.database_url is None
    assert settings.temporal_namespace == "default"
    assert settings.home == Path(".aiops")
    assert settings.embedding_provider == "local"
    assert settings.resolved_embedding_dim == 384


def test_openai_model_dimension(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AIOPS_EMBEDDING_PROVIDER", "openai")
    clean_env.setenv("AIOPS_EMBEDDING_MODEL", "text-embedding-3-small")
    assert load_settings().resolved_embedding_dim == 1536
    clean_env.setenv("AIOPS_EMBEDDING_DIM", "768")
    assert load_settings().resolved_embedding_dim == 768


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("AIOPS_EMBEDDING_DIM", "abc", "AIOPS_EMBEDDING_DIM"),
        ("AIOPS_EMBEDDING_DIM", "-3", "AIOPS_EMBEDDING_DIM"),
        ("DATABASE_URL", "mysql://db/x", "DATABASE_URL"),
        ("REDIS_URL", "http://x", "REDIS_URL"),
        ("TEMPORAL_ADDRESS", "no-port", "TEMPORAL_ADDRESS"),
        ("AIOPS_EMBEDDING_PROVIDER", "bert", "AIOPS_EMBEDDING_PROVIDER"),
        ("AIOPS_LOG_LEVEL", "LOUD", "AIOPS_LOG_LEVEL"),
        ("AIOPS_LOG_LEVELS", "aiops.knowledge", "AIOPS_LOG_LEVELS"),
        ("AIOPS_LOG_LEVELS", "aiops=LOUD", "AIOPS_LOG_LEVELS"),
        ("AIOPS_DEV_REDIS_PORT", "70000", "AIOPS_DEV_REDIS_PORT"),
        ("AIOPS_EMBEDING_DIM", "384", "did you mean AIOPS_EMBEDDING_DIM"),
        ("AIOPS_EMBEDDING_MODEL", "my-own-model", "AIOPS_EMBEDDING_DIM is required"),
    ],
)
def test_bad_values_name_the_variable(
    clean_env: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_secret_is_not_echoed(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OPENAI_API_KEY", "sk-verysecret")
    settings = load_settings()
    assert "verysecret" not in repr(settings)
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-verysecret"


def test_per_module_log_levels(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AIOPS_LOG_LEVEL", "warning")
    clean_env.setenv("AIOPS_LOG_LEVELS", "aiops.knowledge=debug, temporalio=ERROR")
    settings = load_settings()
    configure_logging(settings)
    assert logging.getLogger("aiops.knowledge").getEffectiveLevel() == logging.DEBUG
    assert logging.getLogger("temporalio.worker").getEffectiveLevel() == logging.ERROR


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("AIOPS_") and k not in ENV_NAMES
    }
    return subprocess.run(
        [AIOPS, *args], env={**base, **env}, capture_output=True, text=True, timeout=60
    )


def test_cli_bad_configuration_is_one_line(tmp_path: Path) -> None:
    result = _cli("dev", "status", env={"AIOPS_HOME": str(tmp_path), "AIOPS_DEV_REDIS_PORT": "x"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "AIOPS_DEV_REDIS_PORT" in lines[0]


def test_cli_without_servers_says_what_to_do(tmp_path: Path) -> None:
    result = _cli("migrate", env={"AIOPS_HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "DATABASE_URL is not set" in result.stderr
    assert "aiops dev up" in result.stderr


def test_config_command_lists_every_variable(tmp_path: Path) -> None:
    result = _cli("config", "--help", env={"AIOPS_HOME": str(tmp_path)})
    assert result.returncode == 0
    for name in ENV_NAMES:
        assert name in result.stdout
    shown = _cli("config", "--json", env={"AIOPS_HOME": str(tmp_path), "OPENAI_API_KEY": "sk-x1"})
    assert shown.returncode == 0
    assert "sk-x1" not in shown.stdout
    assert '"AIOPS_HOME"' in shown.stdout
