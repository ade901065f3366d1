"""`aiops api`: serve the HTTP API (workers/api.py) with uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from aiops.config import get_settings
from aiops.errors import AiopsError


class ApiConfigError(AiopsError):
    exit_code = 2


def api(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
) -> None:
    """Serve the HTTP API: GET /health (200 only when PostgreSQL, Redis and Temporal answer),
    /incidents, /incidents/{id}, POST /incidents/{id}/approve, /services, POST /events,
    /kg/search. POSTs need `Authorization: Bearer $AIOPS_API_TOKEN` when it is set.
    OpenAPI docs at /docs. SIGTERM finishes the requests in hand."""
    # FastAPI and uvicorn load here, not for every other command
    import uvicorn

    from workers.api import create_app

    settings = get_settings()
    if settings.api_token is None and host not in ("127.0.0.1", "localhost", "::1"):
        # anyone who reaches the port could approve actions and post events
        raise ApiConfigError(
            f"--host {host} serves beyond this machine: set AIOPS_API_TOKEN (POSTs then need "
            "Authorization: Bearer <token>), or bind 127.0.0.1"
        )
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
