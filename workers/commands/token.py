"""`aiops token create | verify`: bearer tokens (JWT) for the shared-secret setup.

A token names a subject (who) and roles (what they may do). It is signed with
AIOPS_JWT_SECRET, or the secret generated under AIOPS_HOME/jwt.secret, which `aiops api`,
`aiops approve` and `aiops services` verify it with. With an OIDC provider
(AIOPS_OIDC_ISSUER) tokens come from the provider instead.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from aiops.auth import Role, issue_token, parse_ttl
from aiops.auth.keys import jwt_secret, token_verifier
from aiops.config import get_settings
from aiops.errors import AiopsError

app = typer.Typer(
    help=(
        "Bearer tokens (JWT) for the API and the CLI. "
        "export AIOPS_TOKEN=$(aiops token create --role approver --sub alice --ttl 8h)"
    ),
    no_args_is_help=True,
)


class TokenCommandError(AiopsError):
    exit_code = 2


@app.command()
def create(
    role: Annotated[
        list[Role],
        typer.Option(
            "--role",
            help="a role the token carries (repeatable): viewer reads; operator publishes "
            "events; approver decides critical steps; admin changes the registry and "
            "can do everything",
            case_sensitive=False,
        ),
    ],
    sub: Annotated[str, typer.Option("--sub", help="who holds the token (audited as the actor)")],
    ttl: Annotated[
        str, typer.Option("--ttl", help="how long it is valid: 90s, 30m, 8h, 2d")
    ] = "8h",
) -> None:
    """Print a new token signed with the shared secret (only the token, on stdout):

    export AIOPS_TOKEN=$(aiops token create --role approver --sub alice --ttl 8h)
    """
    settings = get_settings()
    if settings.oidc_issuer is not None and settings.jwt_secret is None:
        raise TokenCommandError(
            f"AIOPS_OIDC_ISSUER is set ({settings.oidc_issuer}): tokens come from that identity "
            "provider; set AIOPS_JWT_SECRET as well to issue local ones"
        )
    secret = jwt_secret(settings)
    if secret is None:  # only with OIDC and no secret, refused above
        raise TokenCommandError("no AIOPS_JWT_SECRET to sign with")
    roles = list(dict.fromkeys(role))
    typer.echo(issue_token(secret, sub, roles, parse_ttl(ttl)))


@app.command()
def verify(
    token: Annotated[
        str | None, typer.Argument(help="the token; default: $AIOPS_TOKEN", show_default=False)
    ] = None,
) -> None:
    """Check a token as the API would; print its sub, roles, issuer and expiry as JSON."""
    settings = get_settings()
    if token is None:
        if settings.token is None:
            raise TokenCommandError("give a TOKEN or set AIOPS_TOKEN")
        token = settings.token.get_secret_value()
    identity = token_verifier(settings).verify(token.strip())
    typer.echo(
        json.dumps(
            {
                "sub": identity.sub,
                "roles": [r.value for r in identity.roles],
                "issuer": identity.issuer,
                "expires_at": identity.expires_at.isoformat() if identity.expires_at else None,
            }
        )
    )
