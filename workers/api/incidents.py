"""Incidents: list and read them (viewer), decide the step one is waiting on (approver).

An approval is always signed here, for the caller's verified identity (the request body's
`approver`, if an old client still sends one, is ignored): the grant names the workflow,
the pending step, its policy decision and the action, and the workflow and the worker
check it. Temporal's own error text stays in the server log.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from aiops.auth import ApprovalRefused, Role
from aiops.auth.pending import signed_decision
from aiops.incident_list import list_incidents
from aiops.models.incident import IncidentStatus
from aiops.notes import IncidentNote, NoteStore
from aiops.notes.store import MAX_NOTE_CHARS
from workers.api.auth import Approver, Deps, Operator, Viewer

log = logging.getLogger("aiops.api")
router = APIRouter(tags=["incidents"])

_QUERY_TIMEOUT_S = 10.0
_UPDATE_TIMEOUT_S = 30.0


class ApproveRequest(BaseModel):
    """A decision on the pending step. The old ApprovalDecision shape is accepted too; its
    `approver` and `grant` are ignored (the token says who decides; the API signs)."""

    model_config = ConfigDict(extra="ignore")

    approved: bool = True
    reason: str = Field(default="", max_length=2000)
    action_id: str | None = Field(
        default=None, description="the step to decide; it must be the pending one"
    )
    approver: str | None = Field(default=None, description="ignored: the token's sub decides")


class NoteRequest(BaseModel):
    note: str = Field(min_length=1, max_length=MAX_NOTE_CHARS)
    resolved: bool = Field(default=False, description="the caller fixed it by hand")


class Approved(BaseModel):
    result: str
    approver: str


def _not_found(workflow_id: str) -> HTTPException:
    return HTTPException(404, f"incident {workflow_id} not found")


@router.get("/incidents")
async def incidents(
    b: Deps,
    _: Viewer,
    include_closed: Annotated[bool, Query(alias="all")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[dict[str, Any]]:
    return await list_incidents(b.temporal, include_closed, limit)


@router.get("/incidents/{workflow_id}", response_model=IncidentStatus)
async def incident(workflow_id: str, b: Deps, _: Viewer) -> IncidentStatus:
    handle = b.temporal.get_workflow_handle(workflow_id)
    try:
        status: IncidentStatus = await asyncio.wait_for(
            handle.query("status", result_type=IncidentStatus), timeout=_QUERY_TIMEOUT_S
        )
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise _not_found(workflow_id) from None
        log.warning("status query of %s failed: %s", workflow_id, error)
        raise HTTPException(502, f"incident {workflow_id} cannot be read right now") from None
    except TimeoutError:
        raise HTTPException(
            504, f"incident {workflow_id} did not answer (is a worker running?)"
        ) from None
    except WorkflowQueryFailedError as error:
        log.warning("status query of %s failed: %s", workflow_id, error)
        raise HTTPException(502, f"{workflow_id} did not answer as an incident") from None
    return status


@router.post("/incidents/{workflow_id}/approve", response_model=Approved)
async def approve(workflow_id: str, body: ApproveRequest, b: Deps, identity: Approver) -> Approved:
    """Approve (or `approved: false`, reject) the step the incident is waiting on."""
    handle = b.temporal.get_workflow_handle(workflow_id)
    try:
        await handle.describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise _not_found(workflow_id) from None
        log.warning("describe %s failed: %s", workflow_id, error)
        raise HTTPException(502, "Temporal refused the decision") from None
    try:
        decision = await signed_decision(
            b.temporal,
            b.signer,
            identity,
            workflow_id,
            approved=body.approved,
            reason=body.reason,
            action_id=body.action_id,
            ttl=timedelta(seconds=b.settings.approval_timeout_s),
        )
        said: str = await asyncio.wait_for(
            handle.execute_update("decide", decision, result_type=str),
            timeout=_UPDATE_TIMEOUT_S,
        )
    except ApprovalRefused as error:
        code = 403 if not identity.can(Role.APPROVER) else 409
        raise HTTPException(code, str(error)) from None
    except WorkflowUpdateFailedError as error:
        cause = error.cause
        if isinstance(cause, ApplicationError):  # the update's validator: our own words
            raise HTTPException(409, f"{workflow_id}: {cause.message}") from None
        log.warning("decide on %s failed: %s (%r)", workflow_id, error, cause)
        raise HTTPException(502, "Temporal refused the decision") from None
    except TimeoutError:
        raise HTTPException(
            504, f"{workflow_id} did not take the decision in time (is a worker running?)"
        ) from None
    except Exception:  # Temporal's text is for the log, not for the caller
        log.exception("decide on %s failed", workflow_id)
        raise HTTPException(502, "Temporal refused the decision") from None
    log.info("%s decided on %s: %s", identity.sub, workflow_id, said)
    return Approved(result=said, approver=identity.sub)


@router.post("/incidents/{workflow_id}/notes", response_model=IncidentNote, status_code=201)
async def add_note(
    workflow_id: str, body: NoteRequest, b: Deps, identity: Operator
) -> IncidentNote:
    """A person's note on an incident (masked, audited as the caller); `resolved: true`
    says they fixed it, which the shadow report counts as how the incident ended."""
    return await NoteStore(b.pool).add(
        workflow_id, identity.sub, body.note, body.resolved, via="api"
    )


@router.get("/incidents/{workflow_id}/notes", response_model=list[IncidentNote])
async def notes(workflow_id: str, b: Deps, _: Viewer) -> list[IncidentNote]:
    return await NoteStore(b.pool).for_incident(workflow_id)
