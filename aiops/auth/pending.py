"""Make a signed decision for the step a workflow is waiting on (for the CLI and the API).

Either id works: an incident (its healing child is looked up) or a HealingWorkflow. The
grant names the healing workflow, since that is where the action runs and is checked.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError

from aiops.auth.approvals import ApprovalRefused, ApprovalSigner, action_digest
from aiops.auth.roles import Identity
from aiops.models.healing import ApprovalDecision, HealingStatus
from aiops.models.incident import IncidentStatus


async def _healing_of(client: Client, workflow_id: str) -> tuple[str, HealingStatus]:
    handle = client.get_workflow_handle(workflow_id)
    try:
        described = await handle.describe()
        if described.workflow_type == "IncidentWorkflow":
            incident = await handle.query("status", result_type=IncidentStatus)
            if incident.healing_workflow_id is None:
                raise ApprovalRefused(f"{workflow_id}: nothing awaits approval ({incident.phase})")
            workflow_id = incident.healing_workflow_id
            handle = client.get_workflow_handle(workflow_id)
        elif described.workflow_type != "HealingWorkflow":
            raise ApprovalRefused(f"{workflow_id} is a {described.workflow_type}, not an incident")
        status = await handle.query("status", result_type=HealingStatus)
    except (RPCError, WorkflowQueryFailedError):
        # Temporal's own words stay in the server's log, not in an answer to a client
        raise ApprovalRefused(f"{workflow_id}: cannot read its status (is it running?)") from None
    return workflow_id, status


async def signed_decision(
    client: Client,
    signer: ApprovalSigner,
    identity: Identity,
    workflow_id: str,
    *,
    approved: bool,
    reason: str = "",
    action_id: str | None = None,
    ttl: timedelta,
) -> ApprovalDecision:
    """A decision on the pending step, signed for `identity`; refused when no step is
    pending, when `action_id` names another step (no pre-approval of later steps), or
    when the identity is no approver."""
    healing_id, status = await _healing_of(client, workflow_id)
    pending = status.pending_approval
    if pending is None:
        raise ApprovalRefused(f"{workflow_id}: no step is waiting for approval ({status.phase})")
    if action_id is not None and action_id != pending:
        raise ApprovalRefused(
            f"{workflow_id}: step {pending} is the one waiting; step {action_id} cannot be "
            "decided before it is reached"
        )
    record = next(s for s in status.steps if s.step == pending)
    if record.decision is None or record.decision.decision_id is None:
        raise ApprovalRefused(f"{workflow_id}: step {pending} has no policy decision to approve")
    grant = signer.grant(
        identity,
        workflow_id=healing_id,
        step=pending,
        decision_id=record.decision.decision_id,
        digest=action_digest(record.action, status.plan.service),
        approved=approved,
        reason=reason,
        ttl=ttl,
    )
    return ApprovalDecision(
        approver=identity.sub, approved=approved, reason=reason, action_id=pending, grant=grant
    )
