"""The operating modes' models, free of I/O so workflows can import them."""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal, get_args

from pydantic import BaseModel

Mode = Literal["act", "approve-all", "shadow"]
MODES: Final[tuple[str, ...]] = get_args(Mode)
GLOBAL: Final = "*"


class ModeSetting(BaseModel):
    scope: str
    mode: Mode
    reason: str
    set_by: str
    set_at: datetime


class IncidentMode(BaseModel):
    """The mode an incident runs under, and whether the cluster can search by it."""

    mode: Mode
    searchable: bool = False
