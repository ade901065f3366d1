"""An operator's notes on incidents: what a person found or did, and whether it is resolved."""

from aiops.notes.store import IncidentNote, NoteError, NoteStore

__all__ = ["IncidentNote", "NoteError", "NoteStore"]
