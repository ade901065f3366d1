"""What an incident reads before it diagnoses (the `incident_context` local activity)."""

from __future__ import annotations

from pydantic import BaseModel

from aiops.modes.models import IncidentMode
from aiops.policy.models import Policy
from aiops.silences.models import SilenceVerdict


class IncidentContext(BaseModel):
    """Whether a silence holds the incident, the mode of its service (for status, memo and
    AiopsMode; where actions run the mode is read again), and the policy its first plan is
    healed under."""

    silence: SilenceVerdict
    mode: IncidentMode
    policy: Policy
