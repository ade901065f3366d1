"""The operating modes in PostgreSQL (schema/014), read where actions are planned and run."""

from __future__ import annotations

import asyncpg

from aiops.audit import AuditEntry, AuditLog
from aiops.modes.models import GLOBAL, MODES, Mode, ModeSetting


class ModeStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def effective(self, service: str | None) -> Mode:
        """The service's own mode, else the global one, else act."""
        found: str | None = await self._pool.fetchval(
            "SELECT mode FROM operating_modes WHERE scope = ANY($1::text[])"
            " ORDER BY scope = $2 LIMIT 1",
            [service or GLOBAL, GLOBAL],
            GLOBAL,
        )
        return found if found in MODES else "act"  # type: ignore[return-value]

    async def set(
        self, scope: str, mode: Mode, set_by: str, reason: str = "", via: str = "cli"
    ) -> ModeSetting:
        """Set and audit (every change of a mode is in the audit log, whoever made it)."""
        row = await self._pool.fetchrow(
            "INSERT INTO operating_modes (scope, mode, reason, set_by) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (scope) DO UPDATE SET mode = EXCLUDED.mode, reason = EXCLUDED.reason,"
            " set_by = EXCLUDED.set_by, set_at = now() RETURNING *",
            scope,
            mode,
            reason,
            set_by,
        )
        assert row is not None
        await self._audit(set_by, scope, mode, reason, via)
        return ModeSetting.model_validate(dict(row))

    async def clear(self, scope: str, cleared_by: str, via: str = "cli") -> bool:
        result: str = await self._pool.execute(
            "DELETE FROM operating_modes WHERE scope = $1", scope
        )
        cleared = result.endswith(" 1")
        if cleared:
            await self._audit(cleared_by, scope, "cleared", "", via)
        return cleared

    async def _audit(self, actor: str, scope: str, decision: str, reason: str, via: str) -> None:
        await AuditLog(self._pool).append(
            AuditEntry(
                actor=actor,
                action="mode",
                target=scope,
                decision=decision,
                details={"reason": reason, "via": via},
            )
        )

    async def all(self) -> list[ModeSetting]:
        rows = await self._pool.fetch(
            "SELECT * FROM operating_modes ORDER BY scope <> $1, scope", GLOBAL
        )
        return [ModeSetting.model_validate(dict(r)) for r in rows]
