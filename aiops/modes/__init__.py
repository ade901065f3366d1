"""Operating modes: how far aiops may go, globally and per service.

act: as the policy says. approve-all: every action waits for a person, whatever the policy.
shadow: diagnose and plan, record what would run with its policy decision, run nothing and
learn nothing. A service's own mode wins over the global one, so a team can shadow
everything and let aiops act on one service at a time.
"""

from aiops.modes.models import GLOBAL, MODES, IncidentMode, Mode, ModeSetting
from aiops.modes.store import ModeStore

__all__ = ["GLOBAL", "MODES", "IncidentMode", "Mode", "ModeSetting", "ModeStore"]
