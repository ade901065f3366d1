"""The notification activity: tell the people on the channels, audit every send.

Idempotent per request key: each target that got the message is audited as `sent` under
`<key>:<target id>`, and a retried activity skips those. A channel that is down never
raises; the activity fails (so Temporal retries it) only when there was at least one
channel and every one of them failed. No channels configured: nothing sent, no error.

An audit log that refuses rows (its head row changed, or this process holds another key:
AuditKeyMismatch) will refuse them at every retry too, and a retry would send again what
went out: the messages stand, the result says they were not audited, and the log says why.
That is when `audit_broken` is sent.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from aiops.audit import AuditEntry, AuditLog
from aiops.audit.chain import AuditKeyMismatch
from aiops.config import Settings, get_settings
from aiops.notify.models import ChannelResult, NotificationKind, NotifyRequest, NotifyResult
from aiops.notify.sender import Notifier, Target
from aiops.registry import ServiceRegistry

NOTIFY_ACTIVITY = "send_notification"
ACTOR = "aiops-notify"
log = logging.getLogger(__name__)


def _attempt() -> int:
    try:
        return activity.info().attempt
    except RuntimeError:  # called outside an activity (tests, the CLI)
        return 1


class NotifyActivities:
    """settings None: the process's settings (get_settings), read on first use."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: ServiceRegistry,
        audit: AuditLog,
        settings: Settings | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self._pool = pool
        self._registry = registry
        self._audit = audit
        self._settings = settings
        self._notifier = notifier

    @property
    def notifier(self) -> Notifier:
        if self._notifier is None:
            self._notifier = Notifier(self._settings or get_settings(), self._registry)
        return self._notifier

    async def _already_sent(self, request: NotifyRequest) -> set[str]:
        rows = await self._pool.fetch(
            "SELECT details->>'audit_key' AS k FROM audit_log"
            " WHERE workflow_id IS NOT DISTINCT FROM $1 AND action = 'notify'"
            " AND decision = 'sent' AND details->>'audit_key' LIKE $2",
            request.audit_workflow_id,
            request.key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ":%",
        )
        return {str(r["k"]) for r in rows}

    async def _audited(
        self, request: NotifyRequest, result: ChannelResult, audit_key: str
    ) -> str | None:
        """Audit one send; why not, when the log refuses rows for good (see the module)."""
        try:
            await self._record(request, result, audit_key)
        except AuditKeyMismatch as error:
            log.error("notification %s not audited: %s", audit_key, error)
            return str(error)
        return None

    async def _record(self, request: NotifyRequest, result: ChannelResult, audit_key: str) -> None:
        details: dict[str, object] = {
            "kind": request.kind.value,
            "channel": result.channel,
            "scheme": result.scheme,
            "recipient": result.recipient,
            "audit_key": audit_key,
        }
        if request.step:
            details["step"] = request.step
        if result.error:
            details["error"] = result.error
        await self._audit.append(
            AuditEntry(
                actor=ACTOR,
                action="notify",
                target=request.service,
                decision="sent" if result.ok else "failed",
                details=details,
                workflow_id=request.audit_workflow_id,
            )
        )

    @activity.defn(name=NOTIFY_ACTIVITY)
    async def send(self, request: NotifyRequest) -> NotifyResult:
        notifier = self.notifier
        if request.kind == NotificationKind.HEALED and not notifier.settings.notify_healed:
            return NotifyResult(note="healed notifications are off (AIOPS_NOTIFY_HEALED)")
        targets, broken = notifier.targets(await notifier.channels(request.service))
        if not targets and not broken:
            return NotifyResult(note="no notification channels (AIOPS_NOTIFY_URLS)")
        attempt = _attempt()
        done = await self._already_sent(request)
        results: list[ChannelResult] = []
        refused: list[str] = []
        for unusable in broken:
            why = await self._audited(request, unusable, f"{request.key}:invalid:failed:{attempt}")
            refused += [why] if why else []
            results.append(unusable)
        todo: list[Target] = []
        for target in targets:
            if f"{request.key}:{target.id}" in done:
                results.append(target.result(True, skipped=True))
            else:
                todo.append(target)
        outcomes = await asyncio.gather(
            *(notifier.deliver(t, notifier.message(request, t), request.kind) for t in todo)
        )
        for target, outcome in zip(todo, outcomes, strict=True):
            key = f"{request.key}:{target.id}"
            why = await self._audited(
                request, outcome, key if outcome.ok else f"{key}:failed:{attempt}"
            )
            refused += [why] if why else []
            results.append(outcome)
        result = NotifyResult(
            channels=results,
            sent=sum(1 for r in results if r.ok and not r.skipped),
            failed=sum(1 for r in results if not r.ok),
            note=f"not audited: the audit log refuses rows ({refused[0]})" if refused else "",
        )
        if not any(r.ok for r in results):
            errors = "; ".join(f"{r.channel}: {r.error}" for r in results)
            raise ApplicationError(
                f"every notification channel failed ({errors})", type="NotificationFailed"
            )
        return result
