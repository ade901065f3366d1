"""Notes in PostgreSQL (schema/022): masked before they are stored, audited when added."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import BaseModel, Field

from aiops.audit import AuditEntry, AuditLog
from aiops.errors import AiopsError
from aiops.privacy import mask

MAX_NOTE_CHARS = 4000


class NoteError(AiopsError):
    exit_code = 2


class IncidentNote(BaseModel):
    id: int
    workflow_id: str
    author: str
    note: str
    resolved: bool = Field(description="the author says the problem is resolved")
    created_at: datetime


class NoteStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def add(
        self, workflow_id: str, author: str, note: str, resolved: bool = False, via: str = "cli"
    ) -> IncidentNote:
        text = note.strip()
        if not text:
            raise NoteError("a note needs some text")
        if len(text) > MAX_NOTE_CHARS:
            raise NoteError(f"a note is at most {MAX_NOTE_CHARS} characters")
        # people paste log lines with tokens and e-mails into notes: masked like events
        row = await self._pool.fetchrow(
            "INSERT INTO incident_notes (workflow_id, author, note, resolved)"
            " VALUES ($1, $2, $3, $4) RETURNING *",
            workflow_id,
            author,
            mask(text),
            resolved,
        )
        assert row is not None
        added = IncidentNote.model_validate(dict(row))
        await AuditLog(self._pool).append(
            AuditEntry(
                actor=author,
                action="note",
                target=workflow_id,
                decision="resolved" if resolved else "noted",
                details={"note_id": added.id, "via": via},
                workflow_id=workflow_id,
            )
        )
        return added

    async def for_incident(self, workflow_id: str) -> list[IncidentNote]:
        rows = await self._pool.fetch(
            "SELECT * FROM incident_notes WHERE workflow_id = $1 ORDER BY created_at, id",
            workflow_id,
        )
        return [IncidentNote.model_validate(dict(r)) for r in rows]

    async def resolution(self, workflow_id: str, after: datetime | None) -> IncidentNote | None:
        """The newest note saying the incident is resolved (written after `after`, when
        given: a note about an earlier run of the same problem does not count)."""
        row = await self._pool.fetchrow(
            "SELECT * FROM incident_notes WHERE workflow_id = $1 AND resolved"
            " AND ($2::timestamptz IS NULL OR created_at >= $2) ORDER BY created_at DESC LIMIT 1",
            workflow_id,
            after,
        )
        return IncidentNote.model_validate(dict(row)) if row is not None else None
