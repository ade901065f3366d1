"""`aiops config`: the effective settings, and the list of every variable."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from aiops.config import ENV_NAMES, Settings, get_settings


def _variables_help() -> str:
    lines = ["Environment variables (read once at start):\n"]
    for env, field in ENV_NAMES.items():
        info = Settings.model_fields[field]
        default = info.get_default(call_default_factory=True)
        lines.append(f"{env}: {info.description} [default: {default}]\n")
    return "\n".join(lines)


def config(
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """Print the effective configuration (secrets hidden) and check it.

    An unknown AIOPS_* variable or a malformed value is an error that names the variable.
    """
    settings = get_settings()
    values: dict[str, object] = {}
    for env, field in ENV_NAMES.items():
        value = getattr(settings, field)
        if field == "openai_api_key":
            value = "***" if value is not None else None
        values[env] = str(value) if value is not None and not isinstance(value, dict) else value
    values["(embedding dimension)"] = settings.resolved_embedding_dim
    if as_json:
        typer.echo(json.dumps(values, indent=2))
        return
    for key, value in values.items():
        typer.echo(f"{key}={'' if value is None else value}")


config.__doc__ = f"{config.__doc__}\n\n{_variables_help()}"
