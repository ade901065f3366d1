from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from aiops.errors import AiopsError
from aiops.policy.models import Policy

DEFAULT_POLICY = Path(__file__).with_name("default_policy.yaml")


class PolicyError(AiopsError):
    pass


def load_policy(path: Path | None) -> Policy:
    """The policy in `path` (AIOPS_POLICY_FILE), or the shipped default."""
    source = path or DEFAULT_POLICY
    try:
        data = yaml.safe_load(source.read_text()) or {}
    except OSError as error:
        raise PolicyError(f"cannot read policy file {source}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise PolicyError(f"{source} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: expected a mapping of policy keys")
    try:
        return Policy.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PolicyError(f"{source}: {where}: {first['msg']}") from None
