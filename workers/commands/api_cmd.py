"""`aiops api`: serve the HTTP API (the workers/api package) with uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from aiops.auth import AuthError
from aiops.auth.keys import token_verifier
from aiops.config import get_settings
from aiops.errors import AiopsError


class ApiConfigError(AiopsError):
    exit_code = 2


def api(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
) -> None:
    """Serve the HTTP API: GET /health (open; 200 only when PostgreSQL, Redis and Temporal
    answer), /incidents, /incidents/{id}, POST /incidents/{id}/approve, /services
    (GET, POST, DELETE), POST /events, /kg/search; alert intake POST /intake/alertmanager,
    /intake/grafana, /intake/cloudevents, /intake/pagerduty (and /v2/enqueue); approve
    links /approve/{token} (the link is the credential). OpenAPI docs at /docs.

    Every route but /health needs `Authorization: Bearer <token>`: a JWT from
    `aiops token create` (AIOPS_JWT_SECRET, or the secret generated under AIOPS_HOME) or
    from the OIDC issuer (AIOPS_OIDC_ISSUER, AIOPS_OIDC_AUDIENCE), with roles viewer
    (reads), operator (POST /events, intake), approver (approvals) or admin (the
    registry). The static AIOPS_API_TOKEN still works as viewer and operator. The server does
    not start when tokens cannot be verified. SIGTERM finishes the requests in hand."""
    # FastAPI and uvicorn load here, not for every other command
    import uvicorn

    from workers.api import create_app

    settings = get_settings()
    try:
        token_verifier(settings)
    except AuthError as error:
        raise ApiConfigError(f"cannot verify bearer tokens, so not serving: {error}") from None
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
