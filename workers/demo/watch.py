"""Follow the incidents a fault opens and say what each does, as it happens.

Everything printed is read back from Temporal (the incidents' `status` query and
visibility), the same sources an operator has; the demo keeps no state of its own about them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from aiops.auth.approvals import ApprovalSigner
from aiops.auth.pending import signed_decision
from aiops.auth.roles import Identity, Role
from aiops.models.healing import ApprovalDecision
from aiops.models.incident import IncidentStatus

Echo = Callable[[str], None]


@dataclass
class Followed:
    workflow_id: str
    seen: set[str] = field(default_factory=set)
    status: IncidentStatus | None = None
    approval_due: float | None = None
    closed: bool = False


@dataclass
class IncidentWatcher:
    client: Client
    echo: Echo
    label: str
    approve_after_s: float | None  # None: wait for a person (--interactive)
    ui_url: str | None = None
    namespace: str = "default"
    # the demo approves as the approver "aiops-demo", signed as `aiops approve` would sign
    signer: ApprovalSigner | None = None
    followed: dict[str, Followed] = field(default_factory=dict)

    def link(self, workflow_id: str) -> str:
        if self.ui_url is None:
            return workflow_id
        return f"{self.ui_url}/namespaces/{self.namespace}/workflows/{workflow_id}"

    def say(self, what: str, text: str) -> None:
        self.echo(f"  [{self.label}] {what:<10} {text}")

    async def discover(self, since: datetime) -> None:
        query = f"WorkflowType = 'IncidentWorkflow' AND StartTime >= '{since.isoformat()}'"
        async for execution in self.client.list_workflows(query):
            if execution.id not in self.followed:
                self.followed[execution.id] = Followed(execution.id)

    async def poll(self) -> None:
        for item in list(self.followed.values()):
            if item.closed:
                continue
            handle = self.client.get_workflow_handle(item.workflow_id)
            try:
                status = await handle.query("status", result_type=IncidentStatus)
            except RPCError:
                continue
            item.status = status
            self._report(item, status)
            await self._approve_when_due(item, status)
            if status.resolved:
                description = await handle.describe()
                item.closed = description.status != WorkflowExecutionStatus.RUNNING

    def resolved(self) -> list[IncidentStatus]:
        return [i.status for i in self.followed.values() if i.status and i.status.resolved]

    def all_closed(self) -> bool:
        return all(i.closed for i in self.followed.values())

    def _once(self, item: Followed, key: str) -> bool:
        if key in item.seen:
            return False
        item.seen.add(key)
        return True

    def _report(self, item: Followed, s: IncidentStatus) -> None:
        wid = item.workflow_id
        if self._once(item, "detected"):
            sample = s.last_sample
            what = f"{sample.event_type} from {sample.source}" if sample else s.template
            self.say("detected", f"{wid}: {what}: {s.template!r}")
        d = s.diagnosis
        if d is not None and self._once(item, "diagnosed"):
            if d.chosen is not None and d.plan is not None:
                c = d.chosen.candidate
                self.say(
                    "diagnosed",
                    f"matches {c.problem_description!r} (similarity {c.similarity:.2f}); plan "
                    f"{d.plan.description!r}, success posterior Beta({1 + c.successes}, "
                    f"{1 + c.failures}) drew {d.chosen.sampled_success:.2f}",
                )
            else:
                self.say("unknown", d.why)
        if s.pending_approval and self._once(item, f"approval:{s.pending_approval}"):
            step = next(
                (p for p in (s.plan.actions if s.plan else []) if p.step == s.pending_approval),
                None,
            )
            what = f"{step.action.action_type} on {step.action.target}" if step else "a step"
            decision = {"approver": "you", "approved": True, "reason": "", "action_id": None}
            self.say("approval", f"step {s.pending_approval} ({what}) is critical: it waits for")
            self.echo(
                f"               temporal workflow signal --workflow-id {wid} --name approve "
                f"--input '{json.dumps(decision)}'"
            )
            self.echo(f"               or: aiops approve {wid} --approver you")
            if self.approve_after_s is not None:
                self.echo(f"               (the demo approves in {self.approve_after_s:g} s)")
                item.approval_due = time.monotonic() + self.approve_after_s
        healing = s.healing
        for record in healing.steps if healing else []:
            outcome = record.outcome
            finished = record.status in ("done", "failed") and outcome is not None
            if finished and outcome is not None and self._once(item, f"step:{record.step}"):
                verdict = "acted" if record.status == "done" else "FAILED"
                self.say(verdict, f"step {record.step}: {outcome.detail}")
        result = s.healing_result
        if result is not None and self._once(item, "healing"):
            for record in result.steps:
                if record.outcome is not None and self._once(item, f"step:{record.step}"):
                    verdict = "acted" if record.status == "done" else record.status
                    self.say(verdict, f"step {record.step}: {record.outcome.detail}")
                elif record.status == "refused" and record.decision is not None:
                    self.say("refused", f"step {record.step}: {record.decision.reason}")
            for undo in result.compensations:
                self.say("rolled back", f"step {undo.step}: {undo.outcome.detail}")
            if result.outcome != "refused":  # the refused step said why already
                verdict = "verified" if result.outcome == "healed" else result.outcome
                self.say(verdict, result.detail)
        learned = s.learning
        if learned is not None and s.resolved and self._once(item, "learned"):
            before, after = learned.before, learned.after
            if before is not None and after is not None:
                self.say(
                    "learned",
                    f"success rate {before.success_rate:.0%} ({before.attempt_count} tries) -> "
                    f"{after.success_rate:.0%} ({after.attempt_count} tries)",
                )
            else:
                self.say("learned", f"recorded as {s.outcome}; nothing was tried, no fix scored")

    async def _approve_when_due(self, item: Followed, s: IncidentStatus) -> None:
        if item.approval_due is None or time.monotonic() < item.approval_due:
            return
        item.approval_due = None
        if not s.pending_approval:
            return  # somebody approved it first
        reason = f"auto-approved by the demo after {self.approve_after_s:g} s"
        handle = self.client.get_workflow_handle(item.workflow_id)
        try:
            if self.signer is not None:
                decision = await signed_decision(
                    self.client,
                    self.signer,
                    Identity(sub="aiops-demo", roles=[Role.APPROVER]),
                    item.workflow_id,
                    approved=True,
                    reason=reason,
                    ttl=timedelta(minutes=15),
                )
            else:
                decision = ApprovalDecision(approver="aiops-demo", approved=True, reason=reason)
            said = await handle.execute_update("decide", decision, result_type=str)
        except Exception as error:  # decided meanwhile by a person: fine
            said = f"not sent: {getattr(error, 'cause', None) or error}"
        self.say("approved", said)


async def follow(
    watcher: IncidentWatcher,
    since: datetime,
    done: Callable[[IncidentWatcher], bool],
    timeout_s: float,
) -> bool:
    """Poll until `done` says so or the timeout passes; True when done."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        await watcher.discover(since)
        await watcher.poll()
        if done(watcher):
            return True
        await asyncio.sleep(0.5)
    return False
