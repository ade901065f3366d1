"""What an incident reads before it diagnoses (the `incident_context` local activity)."""

from __future__ import annotations

from pydantic import BaseModel

from aiops.modes.models import IncidentMode
from aiops.policy.models import Policy
from aiops.silences.models import SilenceVerdict


class IncidentContext(BaseModel):
    """Whether a silence holds the incident, the mode of its service (for status, memo and
    AiopsMode; where actions run the mode is read again), and the policy its first plan is
    healed under: None while a silence holds it (read again when the silence ends, and not
    written to the history once a minute meanwhile). Where actions run the policy is
    checked again."""

    silence: SilenceVerdict
    mode: IncidentMode
    policy: Policy | None
