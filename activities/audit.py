"""The audit anchor's activity: verify the rows since the last checkpoint, then anchor the
new head in the file (the workflow's history keeps the returned copy)."""

from __future__ import annotations

import logging

from temporalio import activity

from aiops.audit import AnchorFile, AuditLog, AuditVerification, Checkpoint
from aiops.audit.anchors import CHECKPOINT_ACTIVITY, CheckpointRequest, CheckpointResult

log = logging.getLogger(__name__)


class AuditActivities:
    def __init__(self, audit: AuditLog, anchors: AnchorFile) -> None:
        self._audit = audit
        self._anchors = anchors

    @activity.defn(name=CHECKPOINT_ACTIVITY)
    async def checkpoint(self, request: CheckpointRequest) -> CheckpointResult:
        # start from the later of the workflow's and the file's checkpoints: either may
        # have been written without the other (a manual `aiops audit anchor`, a lost file)
        known = [c for c in (request.previous, self._anchors.latest()) if c is not None]
        start: Checkpoint | None = max(known, key=lambda c: c.seq, default=None)
        made = await self._audit.checkpoint(start)
        if isinstance(made, AuditVerification):
            log.error("audit chain broken, not anchored: row %s: %s", made.broken_seq, made.reason)
            return CheckpointResult(problem=f"row {made.broken_seq}: {made.reason}")
        written = self._anchors.append(made)
        return CheckpointResult(checkpoint=made, written=written)
