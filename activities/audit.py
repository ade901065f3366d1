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
        in_file = self._anchors.latest()
        known = [c for c in (request.previous, in_file) if c is not None]
        start: Checkpoint | None = max(known, key=lambda c: c.seq, default=None)
        made = await self._audit.checkpoint(start)
        if isinstance(made, AuditVerification):
            problem = f"row {made.broken_seq}: {made.reason}"
            # every later round meets the same row: anchoring has stopped until a person acts
            log.critical(
                "audit chain BROKEN, anchoring stopped (run `aiops audit verify`): %s", problem
            )
            return CheckpointResult(problem=problem)
        held = request.previous
        if in_file is not None and held is not None and in_file.seq < held.seq:
            # the activity writes the file before the history records the result: a
            # file behind the workflow was put back or cut. Appending would bury that,
            # so the file is left as evidence; the workflow's own copy keeps anchoring.
            problem = (
                f"{self._anchors.path} ends at row {in_file.seq}, behind the workflow's "
                f"row {held.seq}: replaced by an older copy or cut short "
                "(not appended to; move it aside once examined)"
            )
            log.critical("audit anchor file tampered with: %s", problem)
            return CheckpointResult(checkpoint=made, problem=problem)
        written = self._anchors.append(made)
        return CheckpointResult(checkpoint=made, written=written)
