from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from aiops.errors import AiopsError
from aiops.policy.models import Policy

DEFAULT_POLICY = Path(__file__).with_name("default_policy.yaml")


class PolicyError(AiopsError):
    pass


def _read(source: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(source.read_text()) or {}
    except OSError as error:
        raise PolicyError(f"cannot read policy file {source}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise PolicyError(f"{source} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: expected a mapping of policy keys")
    return data


# Sections that grant permission are taken whole from the file: merging them key by key
# would let a stricter file (execute_allow: {}) silently keep the shipped commands.
_REPLACED_WHOLE = frozenset({"allowed", "execute_allow"})


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """The file's sections over the shipped ones: a section of settings (rate_limit,
    critical, blast_radius) is merged key by key, so a file that only raises the rate limit
    keeps the shipped critical actions; a permission section replaces the shipped one."""
    merged = dict(base)
    for key, value in override.items():
        if (
            key not in _REPLACED_WHOLE
            and isinstance(value, dict)
            and isinstance(base.get(key), dict)
        ):
            merged[key] = {**base[key], **value}
        else:
            merged[key] = value
    return merged


def load_policy(path: Path | None) -> Policy:
    """The shipped default policy, with `path` (AIOPS_POLICY_FILE) laid over it."""
    source = path or DEFAULT_POLICY
    data = _read(DEFAULT_POLICY)
    if path is not None:
        data = _merged(data, _read(path))
    try:
        return Policy.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PolicyError(f"{source}: {where}: {first['msg']}") from None


class PolicyFile:
    """The policy in force on this server, read again when its file changes: what the
    activities that act check, whatever policy a workflow's input carries."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._stamp: tuple[float, int] | None = None
        self._policy = load_policy(path)

    def _stat(self) -> tuple[float, int] | None:
        if self._path is None:
            return None
        try:
            stat = self._path.stat()
        except OSError:
            return None  # gone or unreadable: keep the last good policy, load_policy says why
        return (stat.st_mtime, stat.st_size)

    def current(self) -> Policy:
        stamp = self._stat()
        if stamp != self._stamp:
            self._policy = load_policy(self._path)
            self._stamp = stamp
        return self._policy
