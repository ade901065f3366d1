"""Silences and maintenance windows: aiops watches but neither acts nor notifies.

A silence (`aiops silence add`) names a service (or every one), optional matchers on the
event (event_type=..., source=..., severity=..., label.<name>=...) and an end. A recurring
maintenance window is a cron expression with a duration in a service's registry metadata
(`maintenance: [{cron: "0 2 * * 6", for: 2h, reason: weekly patching}]`).
"""

from aiops.silences.models import Silence, SilenceCheck, SilenceVerdict
from aiops.silences.store import SilenceStore, maintenance_window

__all__ = ["Silence", "SilenceCheck", "SilenceStore", "SilenceVerdict", "maintenance_window"]
