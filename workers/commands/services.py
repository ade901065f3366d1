"""`aiops services register | list | deregister` and `aiops agents list`: the registries.

Credentials in a service file are stored encrypted and never printed: listings say only
whether a service has them. Every registry change, from here or from the API, is written to
the audit log with who made it and what changed (env keys, never env values).
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import typer
import yaml
from pydantic import ValidationError

from aiops.auth import AuthError, Role
from aiops.auth.keys import token_verifier
from aiops.config import Settings, get_settings
from aiops.errors import AiopsError
from aiops.monitor.models import ProbeOverrides
from aiops.registry import ServiceDefinition, ServiceRecord, ServiceRegistry
from aiops.registry.agents import AgentRecord, AgentRegistry
from aiops.registry.changes import deregister_audited, register_audited
from aiops.registry.secrets import load_fernet
from workers.commands.pooled import with_pool

app = typer.Typer(
    help="The service registry: what aiops probes and may act on.", no_args_is_help=True
)
agents_app = typer.Typer(
    help="The agents registry: who is running and alive.", no_args_is_help=True
)


class ServicesCommandError(AiopsError):
    exit_code = 2


def _registry(pool: asyncpg.Pool) -> ServiceRegistry:
    return ServiceRegistry(pool, load_fernet(get_settings()))


def load_definitions(path: Path) -> list[ServiceDefinition]:
    """One service (a mapping), a list of them, or {"services": [...]}, in YAML or JSON."""
    try:
        data = yaml.safe_load(path.read_text())  # JSON is YAML
    except OSError as error:
        raise ServicesCommandError(f"cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ServicesCommandError(f"{path} is not YAML or JSON: {error}") from None
    if isinstance(data, dict) and isinstance(data.get("services"), list):
        data = data["services"]
    items = data if isinstance(data, list) else [data]
    definitions = []
    for index, item in enumerate(items):
        where = f"{path}" + (f" item {index + 1}" if len(items) > 1 else "")
        if not isinstance(item, dict):
            raise ServicesCommandError(f"{where}: expected a mapping with name and endpoint")
        try:
            definition = ServiceDefinition.model_validate(item)
            ProbeOverrides.model_validate(
                {k: v for k, v in definition.metadata.items() if k.startswith("probe_")}
            )
        except ValidationError as error:
            raise ServicesCommandError(f"{where}: {_reasons(error)}") from None
        definitions.append(definition)
    return definitions


def _reasons(error: ValidationError) -> str:
    # the message names the field and the rule, never the input (it may be a credential)
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'service'}: {e['msg']}"
        for e in error.errors(include_url=False, include_input=False)
    )


def _service_row(record: ServiceRecord) -> dict[str, Any]:
    row = record.model_dump(mode="json", exclude={"credentials"})
    row["has_credentials"] = record.credentials is not None
    # a restart environment often holds passwords: names only
    row["env"] = dict.fromkeys(record.env, "***")
    return row


def _age(when: datetime | None) -> str:
    if when is None:
        return "never"
    seconds = (datetime.now(UTC) - when).total_seconds()
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


def registry_actor(settings: Settings, role: Role = Role.ADMIN, what: str = "registry") -> str:
    """Who the CLI makes a change as: the sub of an AIOPS_TOKEN with `role`; without one,
    in open mode only, the OS user (with a warning); refused in signed mode."""
    if settings.token is not None:
        try:
            identity = token_verifier(settings).verify(settings.token.get_secret_value())
        except AuthError as error:
            raise ServicesCommandError(f"AIOPS_TOKEN is not accepted: {error}") from None
        if not identity.can(role):
            raise ServicesCommandError(
                f"AIOPS_TOKEN is {identity.sub}'s, who has no {role.value} role: {what} "
                f"changes need one (aiops token create --role {role.value} --sub you)"
            )
        return identity.sub
    if settings.approvals_mode == "signed":
        raise ServicesCommandError(
            f"AIOPS_APPROVALS=signed: {what} changes need a token with the {role.value} role: "
            f"export AIOPS_TOKEN=$(aiops token create --role {role.value} --sub you)"
        )
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown-user"
    typer.echo(
        f"aiops: warning: {what} changes are unauthenticated without AIOPS_TOKEN; "
        f"audited as OS user {user!r}",
        err=True,
    )
    return user


@app.command()
def register(
    file: Annotated[Path, typer.Argument(help="YAML or JSON: one service or a list")],
) -> None:
    """Register services (create or replace); credentials are stored encrypted.

    Audited with who and what changed. The actor is the sub of AIOPS_TOKEN, which must
    carry the admin role; without AIOPS_TOKEN the OS user (open mode only, with a warning;
    AIOPS_APPROVALS=signed requires the token)."""
    definitions = load_definitions(file)
    actor = registry_actor(get_settings())

    async def work(pool: asyncpg.Pool) -> list[ServiceRecord]:
        registry = _registry(pool)
        return [(await register_audited(pool, registry, d, actor, "cli"))[0] for d in definitions]

    for record in with_pool(work):
        extra = ", credentials stored encrypted" if record.credentials is not None else ""
        caps = ",".join(record.capabilities) or "-"
        typer.echo(f"registered {record.name}: {record.endpoint} (capabilities {caps}{extra})")


@app.command("list")
def list_services(
    capability: Annotated[
        list[str] | None, typer.Option("--capability", help="only services with it (repeatable)")
    ] = None,
    healthy_only: Annotated[
        bool, typer.Option(help="only services whose last probe passed")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Registered services with their health as the monitor last saw it."""

    async def work(pool: asyncpg.Pool) -> list[ServiceRecord]:
        return await _registry(pool).discover(capability or None, healthy_only)

    records = with_pool(work)
    if as_json:
        typer.echo(json.dumps([_service_row(r) for r in records], indent=2))
        return
    if not records:
        typer.echo("no services registered" if not (capability or healthy_only) else "no match")
        return
    for r in records:
        health = {True: "healthy", False: "UNHEALTHY", None: "unknown"}[r.healthy]
        latency = f"{r.last_latency_ms:.0f}ms" if r.last_latency_ms is not None else "-"
        typer.echo(
            f"{r.name:<24} {health:<9} {latency:>8} {_age(r.last_checked_at):>10}  "
            f"{r.endpoint:<32} {','.join(r.capabilities) or '-'}"
            + ("  critical" if r.critical else "")
        )


@app.command()
def deregister(name: Annotated[str, typer.Argument(help="the service's name")]) -> None:
    """Remove a service; `aiops monitor` deletes its probe schedule at its next sync.

    Audited; needs an admin AIOPS_TOKEN like `register` (the OS user in open mode)."""
    actor = registry_actor(get_settings())

    async def work(pool: asyncpg.Pool) -> bool:
        return await deregister_audited(pool, _registry(pool), name, actor, "cli")

    if not with_pool(work):
        raise ServicesCommandError(f"service {name!r} is not registered")
    typer.echo(f"deregistered {name}")


def _agent_row(record: AgentRecord) -> dict[str, Any]:
    return {**record.model_dump(mode="json"), "status": record.status}


@agents_app.command("list")
def list_agents(
    capability: Annotated[str | None, typer.Option(help="only agents with it")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Registered agents: kind, capabilities, health, last heartbeat; stale when silent."""

    async def work(pool: asyncpg.Pool) -> list[AgentRecord]:
        return await AgentRegistry(pool).discover(capability=capability)

    records = with_pool(work)
    if as_json:
        typer.echo(json.dumps([_agent_row(r) for r in records], indent=2))
        return
    if not records:
        typer.echo("no agents registered")
        return
    for r in records:
        # agents of `aiops worker` heartbeat their track record (aiops.agents.presence)
        track = r.metadata.get("track_record") or {}
        record = (
            f"  {track.get('successes', 0)} healed/{track.get('failures', 0)} failed"
            if track
            else ""
        )
        typer.echo(
            f"{r.id:<36} {r.kind:<12} {r.status:<9} {_age(r.last_heartbeat):>10}  "
            f"{','.join(r.capabilities) or '-'}{record}"
        )
