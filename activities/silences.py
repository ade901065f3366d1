"""Whether an incident is held back by a silence or a maintenance window."""

from __future__ import annotations

import asyncpg
from temporalio import activity

from aiops.audit import AuditEntry, AuditLog
from aiops.registry import ServiceRegistry
from aiops.registry.store import UnknownService
from aiops.silences import SilenceCheck, SilenceStore, SilenceVerdict


class SilenceActivities:
    def __init__(self, pool: asyncpg.Pool, registry: ServiceRegistry, audit: AuditLog) -> None:
        self._pool = pool
        self._store = SilenceStore(pool)
        self._registry = registry
        self._audit = audit

    @activity.defn(name="check_silence")
    async def check(self, check: SilenceCheck) -> SilenceVerdict:
        windows = None
        if check.service:
            try:
                windows = (await self._registry.get(check.service)).metadata.get("maintenance")
            except UnknownService:
                windows = None
        held = await self._store.matching(check, windows)
        if held is None:
            return SilenceVerdict(silenced=False)
        until, reason, silence = held
        if check.key:
            seen = await self._pool.fetchval(
                "SELECT 1 FROM audit_log WHERE workflow_id IS NOT DISTINCT FROM $1"
                " AND details->>'audit_key' = $2",
                check.workflow_id,
                check.key,
            )
            if not seen:
                await self._audit.append(
                    AuditEntry(
                        actor="aiops-incident",
                        action="silence",
                        target=check.service,
                        decision="silenced",
                        details={"reason": reason, "silence": silence, "audit_key": check.key},
                        workflow_id=check.workflow_id,
                    )
                )
        return SilenceVerdict(silenced=True, until=until, reason=reason, silence=silence)
