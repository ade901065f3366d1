"""What an incident reads before it diagnoses, in one local activity (`incident_context`)."""

from __future__ import annotations

import asyncio

from temporalio import activity

from activities.modes import ModeActivities
from activities.silences import SilenceActivities
from aiops.incident_context import IncidentContext
from aiops.policy import PolicyFile
from aiops.silences import SilenceCheck


class IncidentContextActivities:
    """check_silence, incident_mode and load_policy in one call: three local activities on
    an incident's path to its fix were three round trips through the workflow task."""

    def __init__(
        self, silences: SilenceActivities, modes: ModeActivities, policy: PolicyFile
    ) -> None:
        self._silences = silences
        self._modes = modes
        self._policy = policy

    @activity.defn(name="incident_context")
    async def context(self, check: SilenceCheck) -> IncidentContext:
        silence, mode = await asyncio.gather(
            self._silences.check(check), self._modes.incident_mode(check.service)
        )
        policy = None if silence.silenced else self._policy.current()
        return IncidentContext(silence=silence, mode=mode, policy=policy)
