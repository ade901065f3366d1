"""The audit keys: derived (HKDF) from AIOPS_AUDIT_KEY, else from AIOPS_SECRET_KEY, the
secret the worker, the API and the CLI already share. Two keys from one secret, one per
use, so a checkpoint signature can never pass for a row's MAC. PostgreSQL never sees them:
a database owner can rewrite rows, but not compute the MACs that make them verify."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict

from aiops.config import Settings


class AuditKeys(BaseModel):
    model_config = ConfigDict(frozen=True)

    chain: bytes
    anchor: bytes
    # where the secret came from, named when a write is refused for another key
    source: str = ""


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def derive_audit_keys(secret: bytes, source: str = "") -> AuditKeys:
    return AuditKeys(
        chain=_derive(secret, b"aiops audit chain v1"),
        anchor=_derive(secret, b"aiops audit anchors v1"),
        source=source,
    )


def audit_keys(settings: Settings) -> AuditKeys:
    if settings.audit_key is not None:
        return derive_audit_keys(settings.audit_key.get_secret_value().encode(), "AIOPS_AUDIT_KEY")
    # imported here: aiops.registry imports aiops.modes, which writes audit rows
    from aiops.registry.secrets import secret_key_bytes

    source = (
        "AIOPS_SECRET_KEY"
        if settings.secret_key is not None
        else str(settings.home_dir.resolve() / "secret.key")
    )
    return derive_audit_keys(secret_key_bytes(settings), source)
