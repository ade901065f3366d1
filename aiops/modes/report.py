"""The shadow report: for each incident aiops only watched, what it would have done and
how the incident really ended, so a team sees its would-be record before it lets aiops act.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionStatus

from aiops.models.incident import IncidentStatus
from aiops.notes import NoteStore


class WouldRun(BaseModel):
    step: str
    action: str
    verdict: str
    reason: str


class ShadowedIncident(BaseModel):
    workflow_id: str
    service: str | None
    problem: str
    plan: str | None
    would_run: list[WouldRun]
    solution_success_rate: float | None
    solution_attempts: int
    ended: str  # how it really ended, as far as aiops can tell
    ended_on_its_own: bool


class ShadowReport(BaseModel):
    since: datetime
    incidents: list[ShadowedIncident]

    @property
    def with_plan(self) -> int:
        return sum(1 for i in self.incidents if i.would_run)

    def line(self) -> str:
        own = sum(1 for i in self.incidents if i.ended_on_its_own)
        return (
            f"{len(self.incidents)} shadowed incident(s) since {self.since:%Y-%m-%d %H:%M}; "
            f"aiops would have acted on {self.with_plan}; {own} ended without anyone acting "
            "(resolved at the source or healthy again)"
        )


async def _ended(pool: asyncpg.Pool, workflow_id: str, status: IncidentStatus) -> tuple[str, bool]:
    note = await NoteStore(pool).resolution(workflow_id, status.first_seen)
    if note is not None:
        # a person fixed it: not on its own, but not aiops either
        return f"resolved by {note.author}: {note.note[:200]}", False
    if status.source_resolved_at is not None:
        return f"resolved at the source ({status.source_resolved_by})", True
    if status.service and status.last_seen is not None:
        healthy_at = await pool.fetchval(
            "SELECT last_checked_at FROM services WHERE name = $1 AND healthy IS TRUE"
            " AND last_checked_at > $2",
            status.service,
            status.last_seen,
        )
        if healthy_at is not None:
            return f"healthy again at {healthy_at:%Y-%m-%d %H:%M:%S}", True
    return "no sign it ended (still failing, or nothing watches it)", False


async def shadow_report(client: Client, pool: asyncpg.Pool, since: timedelta) -> ShadowReport:
    start = datetime.now().astimezone() - since
    query = (
        "WorkflowType = 'IncidentWorkflow' AND AiopsOutcome = 'shadow'"
        f" AND StartTime >= '{start.isoformat()}'"
    )
    found: list[ShadowedIncident] = []
    async for execution in client.list_workflows(query):
        handle = client.get_workflow_handle(
            execution.id, run_id=execution.run_id, result_type=IncidentStatus
        )
        if execution.status == WorkflowExecutionStatus.RUNNING:
            status = await handle.query("status", result_type=IncidentStatus)
        elif execution.status == WorkflowExecutionStatus.COMPLETED:
            status = await handle.result()
        else:
            continue
        steps = status.healing_result.steps if status.healing_result else []
        would = [
            WouldRun(
                step=s.step,
                action=f"{s.action.action_type} on {s.action.target}",
                verdict=s.decision.verdict if s.decision else "?",
                reason=s.decision.reason if s.decision else "",
            )
            for s in steps
            if s.status == "would_run"
        ]
        rate, attempts = None, 0
        if status.plan and status.plan.solution_id:
            row = await pool.fetchrow(
                "SELECT (data->>'success_rate')::float8 AS rate,"
                " coalesce((data->>'attempt_count')::int, 0) AS attempts"
                " FROM knowledge_nodes WHERE id = $1::uuid",
                status.plan.solution_id,
            )
            if row is not None:
                rate, attempts = row["rate"], row["attempts"]
        ended, on_its_own = await _ended(pool, execution.id, status)
        found.append(
            ShadowedIncident(
                workflow_id=execution.id,
                service=status.service,
                problem=status.template or status.fingerprint,
                plan=status.plan.description if status.plan else None,
                would_run=would,
                solution_success_rate=rate,
                solution_attempts=attempts,
                ended=ended,
                ended_on_its_own=on_its_own,
            )
        )
    return ShadowReport(since=start, incidents=found)
