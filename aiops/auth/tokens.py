"""JWT bearer tokens: issued with the shared secret, verified with it or an OIDC JWKS."""

from __future__ import annotations

import logging
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from jwt import PyJWKClient

from aiops.auth.roles import Identity, Role, parse_roles
from aiops.errors import AiopsError

log = logging.getLogger(__name__)
ISSUER = "aiops"
AUDIENCE = "aiops"
_TTL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# OIDC providers sign with RSA or EC keys; never "none", never HS* with a public key.
_OIDC_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "EdDSA"]


class AuthError(AiopsError):
    """A token is missing, malformed, expired, or lacks the role; the message says which."""


def parse_ttl(text: str) -> timedelta:
    """'8h', '30m', '2d', '90' (seconds)."""
    match = _TTL.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise AuthError(f"bad duration {text!r}: use a number with s, m, h or d, e.g. 8h")
    return timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])


def issue_token(secret: str, sub: str, roles: list[Role], ttl: timedelta) -> str:
    """An HS256 token for the shared-secret setup (`aiops token create`)."""
    if not sub.strip():
        raise AuthError("a token needs a subject (--sub)")
    if not roles:
        raise AuthError("a token needs at least one role (--role)")
    now = datetime.now(UTC)
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "roles": [r.value for r in roles],
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def new_secret() -> str:
    return secrets.token_urlsafe(48)


def _claim(claims: dict[str, Any], path: str) -> object:
    found: object = claims
    for part in path.split("."):
        if not isinstance(found, dict):
            return None
        found = found.get(part)
    return found


class TokenVerifier:
    """Verifies bearer tokens: HS256 ones signed with the shared secret and, when an OIDC
    issuer is configured, the issuer's tokens against its JWKS (PyJWKClient caches the
    key set and fetches it again when a token names a key id it has not seen: rotation)."""

    def __init__(
        self,
        secret: str | None = None,
        *,
        oidc_issuer: str | None = None,
        oidc_audience: str | None = None,
        jwks_url: str | None = None,
        roles_claim: str = "roles",
        leeway_s: float = 30.0,
    ) -> None:
        if secret is None and oidc_issuer is None:
            raise AuthError("no way to verify tokens: set AIOPS_JWT_SECRET or AIOPS_OIDC_ISSUER")
        if oidc_issuer is not None and not oidc_audience:
            raise AuthError("AIOPS_OIDC_AUDIENCE is required with AIOPS_OIDC_ISSUER")
        self._secret = secret
        self._issuer = oidc_issuer  # compared exactly: Auth0's issuers end in a slash
        self._audience = oidc_audience
        self._jwks_url = jwks_url
        self._jwks: PyJWKClient | None = None
        self._roles_claim = roles_claim
        self._leeway = leeway_s

    def _jwks_client(self) -> PyJWKClient:
        if self._jwks is None:
            url = self._jwks_url or self._discover()
            # the key set is cached for 5 minutes and fetched again for an unknown key id;
            # no per-key cache, so a key the provider withdrew stops counting with the set
            self._jwks = PyJWKClient(
                url, cache_keys=False, cache_jwk_set=True, lifespan=300, timeout=10
            )
        return self._jwks

    def _discover(self) -> str:
        import httpx

        url = f"{(self._issuer or '').rstrip('/')}/.well-known/openid-configuration"
        try:
            response = httpx.get(url, timeout=10)
            response.raise_for_status()
            jwks_uri = response.json()["jwks_uri"]
        except (httpx.HTTPError, ValueError, KeyError) as error:
            # the detail is for the server's log; a caller hears only that keys are missing
            log.error("cannot read the OIDC discovery document %s: %s", url, error)
            raise AuthError("the identity provider's keys cannot be read now") from None
        return str(jwks_uri)

    def verify(self, token: str) -> Identity:
        """The identity a token proves; AuthError says why it proves nothing."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as error:
            raise AuthError(f"malformed token: {error}") from None
        issuer = unverified.get("iss")
        try:
            if self._issuer is not None and issuer == self._issuer:
                key = self._jwks_client().get_signing_key(header.get("kid") or "").key
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=_OIDC_ALGORITHMS,
                    audience=self._audience,
                    issuer=self._issuer,
                    leeway=self._leeway,
                    options={"require": ["exp", "sub", "iss"]},
                )
            elif self._secret is not None and issuer == ISSUER:
                claims = jwt.decode(
                    token,
                    self._secret,
                    algorithms=["HS256"],
                    audience=AUDIENCE,
                    issuer=ISSUER,
                    leeway=self._leeway,
                    options={"require": ["exp", "sub", "iss"]},
                )
            else:
                raise AuthError(f"tokens from issuer {issuer!r} are not accepted here")
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired: get a new one") from None
        except jwt.PyJWKClientError as error:
            log.warning("token signing key not found: %s", error)
            raise AuthError("the token's signing key is not the identity provider's") from None
        except jwt.PyJWTError as error:
            raise AuthError(f"invalid token: {error}") from None
        if not str(claims.get("sub") or "").strip():
            raise AuthError("invalid token: it names no subject")
        roles = parse_roles(_claim(claims, self._roles_claim))
        exp = claims.get("exp")
        return Identity(
            sub=str(claims["sub"]),
            roles=roles,
            issuer=str(claims["iss"]),
            expires_at=datetime.fromtimestamp(exp, UTC) if isinstance(exp, int | float) else None,
        )
