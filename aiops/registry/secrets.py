"""Encryption of service credentials at rest (Fernet, key from settings or AIOPS_HOME)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from aiops.config import Settings
from aiops.errors import AiopsError


class SecretsError(AiopsError):
    pass


def secret_key_bytes(settings: Settings) -> bytes:
    """AIOPS_SECRET_KEY, else the key generated once under AIOPS_HOME."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    return home_secret(settings.home_dir / "secret.key", lambda: Fernet.generate_key().decode())


def load_fernet(settings: Settings) -> Fernet:
    try:
        return Fernet(secret_key_bytes(settings))
    except ValueError:
        raise SecretsError(
            "AIOPS_SECRET_KEY is not a Fernet key: generate one with `python -c "
            "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
        ) from None


def home_secret(path: Path, generate: Callable[[], str]) -> bytes:
    """The secret in path, created (mode 0600) on first use."""
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate().encode()
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
