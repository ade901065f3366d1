"""Encryption of service credentials at rest (Fernet, key from settings or AIOPS_HOME)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from aiops.config import Settings
from aiops.errors import AiopsError


class SecretsError(AiopsError):
    pass


def load_fernet(settings: Settings) -> Fernet:
    if settings.secret_key is not None:
        key = settings.secret_key.get_secret_value().encode()
    else:
        key = _home_key(settings.home_dir / "secret.key")
    try:
        return Fernet(key)
    except ValueError:
        raise SecretsError(
            "AIOPS_SECRET_KEY is not a Fernet key: generate one with `python -c "
            "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
        ) from None


def _home_key(path: Path) -> bytes:
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    # O_EXCL: two processes creating the key at once must not end up with two keys
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return key


def decrypt(fernet: Fernet, token: bytes) -> str:
    try:
        return fernet.decrypt(token).decode()
    except InvalidToken:
        raise SecretsError(
            "stored service credentials cannot be decrypted with this key: "
            "AIOPS_SECRET_KEY (or AIOPS_HOME/secret.key) changed since they were stored"
        ) from None
