"""The service's command-line options, and the argv that reproduces them (restart_argv)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROG: Final = "python -m examples.bookmark_service"
# the admin token travels in the environment, never in argv (ps and the registry show argv)
TOKEN_ENV: Final = "BOOKMARK_ADMIN_TOKEN"
SECRET_OPTIONS: Final = frozenset({"admin_token"})


class ServiceOptions(BaseModel):
    """Fixed for the life of the process; the runtime config (config.json) can change."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    port: int = Field(ge=1, le=65535, description="TCP port to listen on")
    redis_url: str = Field(min_length=1, description="Redis the events are published to")
    data_dir: Path = Field(description="directory for bookmarks.db and config.json")
    name: str = Field(
        default="bookmark-api",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$",
        description="service name: event source and service, registry name",
    )
    host: str = Field(default="127.0.0.1", min_length=1, description="address to bind")
    stream_prefix: str = Field(
        default="events",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,100}$",
        description="events go to the stream <prefix>:<name> (default events:bookmark-api)",
    )
    admin_token: str | None = Field(
        default=None,
        min_length=1,
        description=f"bearer token required on /admin/* (or the environment variable {TOKEN_ENV})",
    )
    metrics_interval_s: float = Field(
        default=5.0, gt=0, le=3600, description="seconds between MetricReport events"
    )
    memory_budget_mb: float = Field(
        default=256.0, gt=0, description="RSS that counts as memory_usage 100%"
    )
    memory_limit_pct: float = Field(
        default=90.0, gt=0, description="memory_usage at or above this makes /health 503"
    )
    leak_mb_per_s: float = Field(
        default=16.0, gt=0, description="memory_leak fault: MB allocated and held each second"
    )
    leak_max_mb: float = Field(
        default=512.0, gt=0, description="memory_leak fault: stop growing at this many MB"
    )
    slow_item_ms: float = Field(
        default=250.0, ge=0, description="slow_imports fault: upstream wait per imported item"
    )
    pool_timeout_s: float = Field(
        default=0.5, gt=0, description="wait for a database connection before failing"
    )
    crash_exit_code: int = Field(
        default=3, ge=1, le=255, description="crash fault: the process exits with this code"
    )
    # the runtime config's initial values, used while <data-dir>/config.json does not exist
    db_pool_size: int = Field(default=4, ge=0, le=64, description="initial db_pool_size")
    replicas: int = Field(default=2, ge=1, le=64, description="initial import workers")
    import_deadline_s: float = Field(
        default=2.0, gt=0, le=600, description="initial import deadline (seconds)"
    )
    page_size: int = Field(default=50, ge=1, le=1000, description="initial page size")

    @property
    def stream(self) -> str:
        return f"{self.stream_prefix}:{self.name}"

    @property
    def endpoint(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    def to_argv(self) -> list[str]:
        """The command-line arguments that give back these options (required ones always),
        but for the admin token: pass that as TOKEN_ENV in the environment."""
        argv: list[str] = []
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if name in SECRET_OPTIONS or (not field.is_required() and value == field.default):
                continue
            argv += [_flag(name), str(value)]
        return argv


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The bookmark API: CRUD, search and import over SQLite, events to Redis "
        "Streams, and fault switches on /admin/faults.",
    )
    for name, field in ServiceOptions.model_fields.items():
        parser.add_argument(
            _flag(name),
            dest=name,
            required=field.is_required(),
            default=None,
            metavar=name.upper(),
            # argparse %-formats help text
            help=(
                f"{field.description}"
                + ("" if field.is_required() else f" (default: {field.default})")
            ).replace("%", "%%"),
        )
    parser.add_argument(
        "--print-definition",
        action="store_true",
        help="print the aiops ServiceDefinition (JSON, with the admin token) and exit",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> tuple[ServiceOptions, bool]:
    """The options and whether --print-definition was given; exits 2 on bad arguments."""
    parser = _parser()
    namespace = vars(parser.parse_args(argv))
    print_definition = bool(namespace.pop("print_definition"))
    given = {name: value for name, value in namespace.items() if value is not None}
    if "admin_token" not in given and os.environ.get(TOKEN_ENV):
        given["admin_token"] = os.environ[TOKEN_ENV]
    try:
        return ServiceOptions.model_validate(given), print_definition
    except ValidationError as error:
        problems = "; ".join(
            f"{_flag(str(item['loc'][0])) if item['loc'] else 'options'}: {item['msg']}"
            for item in error.errors(include_url=False)
        )
        parser.error(problems)
