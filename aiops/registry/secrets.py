"""Encryption of service credentials at rest (Fernet, key from settings or AIOPS_HOME)."""

from __future__ import annotations

import os
import secrets
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


# every secret aiops generates is at least this long; a shorter file was cut short
_MIN_SECRET = 32


def home_secret(path: Path, generate: Callable[[], str]) -> bytes:
    """The secret in path, created (mode 0600) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = generate().encode()
        # written whole under another name, then linked: the path never exists half
        # written, and of two processes creating it at once one links, the other reads
        temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(key)
                out.flush()
                os.fsync(out.fileno())
            os.link(temp, path)
            return key
        except FileExistsError:
            pass
        finally:
            temp.unlink(missing_ok=True)
    found = path.read_bytes().strip()
    if len(found) < _MIN_SECRET:
        raise SecretsError(
            f"{path} is empty or truncated ({len(found)} bytes): restore it, or set "
            "AIOPS_SECRET_KEY to the key the worker and the API use"
        )
    return found


def decrypt(fernet: Fernet, token: bytes) -> str:
    try:
        return fernet.decrypt(token).decode()
    except InvalidToken:
        raise SecretsError(
            "stored service credentials cannot be decrypted with this key: "
            "AIOPS_SECRET_KEY (or AIOPS_HOME/secret.key) changed since they were stored"
        ) from None
