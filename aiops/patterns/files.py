"""Patterns files: YAML (or JSON, which YAML reads too) holding the seed's Pattern JSON,
either as a list or under a top-level `patterns` key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import ValidationError

from aiops.patterns.errors import PatternError, PatternFileError
from aiops.patterns.matcher import compile_pattern
from aiops.patterns.models import Pattern

DEFAULT_PATTERNS: Final = Path(__file__).with_name("defaults.yaml")


def parse_patterns(data: Any, source: str) -> list[Pattern]:
    """Validate and compile every pattern; the first bad one raises PatternFileError
    naming it, so nothing of a broken file is loaded."""
    items = data.get("patterns") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise PatternFileError(f"{source}: expected a list of patterns or a 'patterns' list")
    patterns = []
    for index, item in enumerate(items, 1):
        where = f"{source}: pattern {index}"
        if isinstance(item, dict) and item.get("description"):
            where += f" ({item['description']!r})"
        try:
            pattern = Pattern.model_validate(item)
            compile_pattern(str(index), pattern)
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            loc = ".".join(str(part) for part in first["loc"]) or "pattern"
            raise PatternFileError(f"{where}: {loc}: {first['msg']}") from None
        except PatternError as error:
            raise PatternFileError(f"{where}: {error}") from None
        patterns.append(pattern)
    return patterns


def read_patterns(path: Path) -> list[Pattern]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PatternFileError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise PatternFileError(f"{path} is a directory, not a patterns file") from None
    except (PermissionError, UnicodeDecodeError) as error:
        raise PatternFileError(f"cannot read {path}: {error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PatternFileError(f"{path} is not valid YAML: {error}") from None
    return parse_patterns(data, str(path))
