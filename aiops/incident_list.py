"""The incidents Temporal knows of, each with its service, phase, outcome and summary:
what `aiops incidents` prints and `GET /incidents` serves."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError

from aiops import search_attributes as sa
from aiops.models.incident import IncidentStatus


async def _live(client: Client, workflow_id: str) -> IncidentStatus | None:
    """A running incident's own status (phase, pending approval); None if it cannot answer
    (no worker polling right now, or not an aiops incident)."""
    try:
        return await asyncio.wait_for(
            client.get_workflow_handle(workflow_id).query("status", result_type=IncidentStatus),
            timeout=5,
        )
    except (TimeoutError, RPCError, WorkflowQueryFailedError):
        return None


async def list_incidents(client: Client, include_closed: bool, limit: int) -> list[dict[str, Any]]:
    query = "WorkflowType = 'IncidentWorkflow'"
    if not include_closed:
        query += " AND ExecutionStatus = 'Running'"
    rows: list[dict[str, Any]] = []
    async for execution in client.list_workflows(query, limit=limit):
        attrs = execution.typed_search_attributes
        running = execution.status == WorkflowExecutionStatus.RUNNING
        # Search attributes lag a little and are missing on runs started without them (a
        # plain `temporal workflow start`): a running incident answers for itself.
        live = await _live(client, execution.id) if running else None
        rows.append(
            {
                "workflow_id": execution.id,
                "run_id": execution.run_id,
                "status": execution.status.name if execution.status else "UNKNOWN",
                "started": execution.start_time.isoformat(),
                "closed": execution.close_time.isoformat() if execution.close_time else None,
                "service": live.service if live else attrs.get(sa.SERVICE),
                "severity": live.severity.value
                if live and live.severity
                else attrs.get(sa.SEVERITY),
                "phase": live.phase if live else attrs.get(sa.PHASE),
                "outcome": live.outcome if live else attrs.get(sa.OUTCOME),
                "mode": live.mode if live else attrs.get(sa.MODE),
                "pending_approval": live.pending_approval if live else None,
                "summary": live.summary() if live else await execution.memo_value("summary", ""),
            }
        )
    return rows
