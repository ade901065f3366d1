"""`aiops demo`: the main job. For now a tour of the foundation; it grows into the healing demo."""

from __future__ import annotations

import asyncio
from typing import Annotated

import asyncpg
import redis.asyncio as aioredis
import typer
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from aiops.config import Settings, get_settings
from aiops.db.migrate import migrate
from aiops.endpoints import Endpoints, dev_stack_for, resolve


def _step(text: str) -> None:
    typer.echo(f"==> {text}")


async def _tour(settings: Settings) -> Endpoints:
    endpoints = resolve(settings)
    _step("migrating the schema")
    report = await migrate(endpoints.database_url, settings.resolved_embedding_dim)
    typer.echo(f"    applied {report.applied or 'nothing new'}; vector({report.embedding_dim})")

    _step("PostgreSQL + pgvector")
    conn = await asyncpg.connect(endpoints.database_url)
    try:
        version = await conn.fetchval("SHOW server_version")
        vector = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname='vector'")
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
    finally:
        await conn.close()
    typer.echo(f"    PostgreSQL {version}, pgvector {vector}, {tables} tables")

    _step("Redis")
    client = aioredis.Redis.from_url(endpoints.redis_url)
    try:
        info = await client.info("server")
        aof = (await client.config_get("appendonly")).get("appendonly")
    finally:
        await client.aclose()
    typer.echo(f"    Redis {info['redis_version']}, appendonly={aof}")

    _step("Temporal")
    temporal = await Client.connect(
        endpoints.temporal_address, namespace=endpoints.temporal_namespace
    )
    info_resp = await temporal.workflow_service.get_system_info(GetSystemInfoRequest())
    typer.echo(
        f"    Temporal server {info_resp.server_version} at {endpoints.temporal_address}, "
        f"namespace {endpoints.temporal_namespace}"
    )
    return endpoints


def demo(
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="leave the dev stack up afterwards")
    ] = True,
) -> None:
    """Run the main job on the embedded servers (or the configured ones).

    Starts the dev stack when no server URLs are configured, migrates, and shows each
    server answering. The self-healing demo on a misbehaving service builds on this.
    """
    settings = get_settings()
    stack = None
    if not (settings.database_url and settings.redis_url and settings.temporal_address):
        stack = dev_stack_for(settings)
        _step(f"starting the embedded dev stack under {stack.home}")
        result = asyncio.run(stack.up())
        for name, svc in result.state.services.items():
            typer.echo(
                f"    {name:<9} {svc.url}" + (f"  (Web UI {svc.ui_url})" if svc.ui_url else "")
            )
    asyncio.run(_tour(settings))
    if stack is not None and not keep_running:
        _step("stopping the dev stack")
        stack.down()
    elif stack is not None:
        state = stack.load()
        ui = state.services["temporal"].ui_url if state else None
        typer.echo(f"\nThe dev stack keeps running: Temporal Web UI at {ui}")
        typer.echo("Stop it with `.venv/bin/aiops dev down`.")
