"""A silence, what an incident asks of the silences, and the answer."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

MATCH_FIELDS = ("event_type", "source", "severity")
LABEL_PREFIX = "label."


class Silence(BaseModel):
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    service: str | None = Field(default=None, description="None: every service")
    matchers: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime
    ends_at: datetime
    reason: str = Field(min_length=1)
    created_by: str
    expired_at: datetime | None = None

    def matches(self, check: SilenceCheck) -> bool:
        if self.service is not None and self.service != check.service:
            return False
        for key, wanted in self.matchers.items():
            if key.startswith(LABEL_PREFIX):
                found: Any = check.labels.get(key.removeprefix(LABEL_PREFIX))
            else:
                found = getattr(check, key, None)
            if found is None or str(found) != wanted:
                return False
        return True


class SilenceCheck(BaseModel):
    """What an incident knows of its problem when it asks whether it is silenced."""

    service: str | None
    event_type: str | None = None
    source: str | None = None
    severity: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    key: str = Field(default="", description="audit key: the incident audits its silence once")
    workflow_id: str | None = None


class SilenceVerdict(BaseModel):
    silenced: bool
    until: datetime | None = None
    reason: str = ""
    silence: str | None = Field(default=None, description="the silence's id, or the window's")
