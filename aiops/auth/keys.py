"""The keys behind identities and approvals, from settings or generated under AIOPS_HOME.

The approval key is derived (HKDF) from the server's secret key, which the worker and the
API already share for the registry's credentials: one secret to manage, and a key that no
producer, service or Temporal client ever holds.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from aiops.auth.tokens import TokenVerifier, new_secret
from aiops.config import Settings
from aiops.registry.secrets import home_secret, secret_key_bytes


def approval_key(settings: Settings) -> bytes:
    return derive_approval_key(secret_key_bytes(settings))


def derive_approval_key(secret_key: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"aiops approval grants v1"
    ).derive(secret_key)


def jwt_secret(settings: Settings) -> str | None:
    """AIOPS_JWT_SECRET, else (without OIDC) the one generated under AIOPS_HOME, so the
    shared-secret setup works from the first `aiops token create`."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    if settings.oidc_issuer is not None:
        return None
    return home_secret(settings.home_dir / "jwt.secret", new_secret).decode()


def token_verifier(settings: Settings) -> TokenVerifier:
    return TokenVerifier(
        jwt_secret(settings),
        oidc_issuer=settings.oidc_issuer,
        oidc_audience=settings.oidc_audience,
        jwks_url=settings.oidc_jwks_url,
        roles_claim=settings.roles_claim,
    )
