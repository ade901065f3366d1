"""Where the servers are: the configured URLs, else the running dev stack's."""

from __future__ import annotations

from pydantic import BaseModel

from aiops.config import ConfigError, Settings
from aiops.devstack import DevStack, DevStackState


class Endpoints(BaseModel):
    temporal_address: str
    temporal_namespace: str
    database_url: str
    redis_url: str


def dev_stack_for(
    settings: Settings,
    *,
    temporal_port: int | None = None,
    ui_port: int | None = None,
    postgres_port: int | None = None,
    redis_port: int | None = None,
) -> DevStack:
    """The dev stack the settings describe; a flag given on the command line wins."""
    return DevStack(
        settings.home_dir,
        temporal_port=temporal_port or settings.dev_temporal_port,
        temporal_ui_port=ui_port or settings.dev_temporal_ui_port,
        postgres_port=postgres_port or settings.dev_postgres_port,
        redis_port=redis_port or settings.dev_redis_port,
        namespace=settings.temporal_namespace,
    )


def _from_stack(
    state: DevStackState | None, service: str, variable: str, settings: Settings
) -> str:
    svc = state.services.get(service) if state else None
    if svc is None or not svc.running:
        raise ConfigError(
            f"{variable} is not set and the dev stack under AIOPS_HOME={settings.home_dir} "
            f"is not running: run `aiops dev up`, or set {variable}"
        )
    return svc.url


def resolve_database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    return _from_stack(dev_stack_for(settings).load(), "postgres", "DATABASE_URL", settings)


def resolve_redis_url(settings: Settings) -> str:
    if settings.redis_url:
        return settings.redis_url
    return _from_stack(dev_stack_for(settings).load(), "redis", "REDIS_URL", settings)


def resolve_temporal_address(settings: Settings) -> str:
    if settings.temporal_address:
        return settings.temporal_address
    return _from_stack(dev_stack_for(settings).load(), "temporal", "TEMPORAL_ADDRESS", settings)


def resolve(settings: Settings) -> Endpoints:
    return Endpoints(
        temporal_address=resolve_temporal_address(settings),
        temporal_namespace=settings.temporal_namespace,
        database_url=resolve_database_url(settings),
        redis_url=resolve_redis_url(settings),
    )
