"""The request dependencies: the backends, and the verified caller with the role a route needs.

A bearer token is a JWT checked by the TokenVerifier built once at start (HS256 with the
shared secret, or an OIDC issuer's JWKS). The static AIOPS_API_TOKEN of earlier releases
still works: it is the identity `api-token` with the viewer, operator and approver roles
(never admin). 401 (with WWW-Authenticate) when no valid token is given, 403 when the
token's roles do not allow the route; both say what is needed.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from aiops.auth import AuthError, Identity, Role
from workers.api.backends import Backends

log = logging.getLogger("aiops.api")

API_TOKEN_SUB = "api-token"
# a shared secret names nobody: it may read and publish, never approve (a signed approval
# says who decided) nor change the registry
API_TOKEN_ROLES = [Role.VIEWER, Role.OPERATOR]
_CHALLENGE = {"WWW-Authenticate": "Bearer"}

_bearer = HTTPBearer(
    auto_error=False,
    description="a JWT from `aiops token create` or the OIDC provider (or AIOPS_API_TOKEN)",
)


def backends(request: Request) -> Backends:
    found: Backends = request.app.state.backends
    return found


Deps = Annotated[Backends, Depends(backends)]


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers=_CHALLENGE)


async def identify(
    b: Deps,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Identity:
    """The caller the bearer token proves, or 401."""
    if credentials is None:
        raise _unauthorized(
            "this endpoint needs Authorization: Bearer <token> (aiops token create)"
        )
    token = credentials.credentials
    static = b.settings.api_token
    if static is not None and hmac.compare_digest(
        token.encode("utf-8", "surrogateescape"),
        static.get_secret_value().encode("utf-8", "surrogateescape"),
    ):
        return Identity(sub=API_TOKEN_SUB, roles=list(API_TOKEN_ROLES), issuer="AIOPS_API_TOKEN")
    try:
        # an OIDC verification may fetch the issuer's keys: not on the event loop
        return await asyncio.to_thread(b.verifier.verify, token)
    except AuthError as error:
        log.info("refused a bearer token: %s", error)
        raise _unauthorized(str(error)) from None


def require(role: Role) -> Callable[[Identity], Awaitable[Identity]]:
    """A dependency: the verified caller, if its roles include `role` (admin has all)."""

    async def allowed(identity: Annotated[Identity, Depends(identify)]) -> Identity:
        if not identity.can(role):
            have = ", ".join(r.value for r in identity.roles) or "no roles"
            raise HTTPException(403, f"this needs the {role.value} role; {identity.sub} has {have}")
        return identity

    return allowed


Viewer = Annotated[Identity, Depends(require(Role.VIEWER))]
Operator = Annotated[Identity, Depends(require(Role.OPERATOR))]
Approver = Annotated[Identity, Depends(require(Role.APPROVER))]
Admin = Annotated[Identity, Depends(require(Role.ADMIN))]
