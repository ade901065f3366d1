"""Building tools: from the two triggers to a validated draft an admin may approve.

- mined: a sequence of primitive actions approved and healing one problem repeatedly;
- requested: a known fix needs an action type that no adapter and no tool offers
  (diagnosis records it); the chat model drafts it when one is configured, otherwise the
  recorded healed runs of that problem are mined for it, however few.
"""

from __future__ import annotations

import contextlib
import logging

from pydantic import BaseModel, Field

from aiops.actions.guard import target_kind
from aiops.modes import ModeStore
from aiops.policy import PolicyFile
from aiops.policy.models import PolicyContext
from aiops.registry import ServiceRegistry
from aiops.registry.models import ServiceRecord
from aiops.registry.store import UnknownService
from aiops.tools.drafting import LlmDrafter
from aiops.tools.mining import MinedSequence, draft_from_sequence, recorded_runs, repeated_sequences
from aiops.tools.models import Check, ToolDraft, ToolRecord, ToolRequest, ValidationReport
from aiops.tools.spec import ToolSpecError
from aiops.tools.store import ToolError, ToolStore
from aiops.tools.trial import (
    Acts,
    TrialApprover,
    TrialPolicy,
    TrialRun,
    staging_service,
    staging_trial,
)
from aiops.tools.validation import check_policy, check_schema, dry_run

log = logging.getLogger(__name__)


class BuildReport(BaseModel):
    built: list[ToolRecord] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


def _unchanged(current: ToolRecord, draft: ToolDraft) -> bool:
    """The same specification as a decided version, or as one whose trial waits for an
    admin (who may be reading that version now): it keeps its version (ToolStore.save)."""
    same = current.spec.model_dump(mode="json") == draft.spec.model_dump(mode="json")
    return same and (
        current.status in ("proposed", "approved") or current.validation.needs_a_person
    )


class ToolBuilder:
    def __init__(
        self,
        store: ToolStore,
        registry: ServiceRegistry,
        policy: PolicyFile,
        acts: Acts | None = None,
        drafter: LlmDrafter | None = None,
        *,
        min_runs: int = 3,
        require_approval: bool = True,
    ) -> None:
        self._store = store
        self._registry = registry
        self._policy = policy
        self._acts = acts
        self._drafter = drafter
        self._min_runs = min_runs
        self._require_approval = require_approval

    async def _service(self, name: str | None) -> ServiceRecord | None:
        if name is None:
            return None
        with contextlib.suppress(UnknownService):
            return await self._registry.get(name)
        return None

    async def _context(self, service: ServiceRecord | None) -> PolicyContext | None:
        if service is None:
            return None
        return PolicyContext(
            service_critical=service.critical,
            target_kind=target_kind(service),
            mode=await ModeStore(self._store.pool).effective(service.name),
        )

    async def validate(
        self,
        draft: ToolDraft,
        version: int,
        actor: str,
        approver: TrialApprover | None = None,
    ) -> ValidationReport:
        """The four stages in order; a stage runs only when the ones before it passed.
        approver: the admin of `aiops tools trial`, who approves the trial's steps."""
        spec = draft.spec
        service = await self._service(draft.service)
        report = ValidationReport(checks=[check_schema(spec)])
        if report.ok:
            policy = self._policy.current()
            report.checks.append(check_policy(spec, policy, service, await self._context(service)))
        if report.ok:
            report.checks.append(await dry_run(spec, service))
        if report.ok:
            report.checks.append(await self._trial(draft, version, actor, approver))
        return report

    async def _trial(
        self, draft: ToolDraft, version: int, actor: str, approver: TrialApprover | None
    ) -> Check:
        staging = await staging_service(self._registry, draft.service)
        if staging is None:
            return Check(
                stage="staging_trial",
                ok=True,
                skipped=True,
                detail="no staging service registered for it (registry metadata staging: true)",
            )
        if self._acts is None:
            return Check(
                stage="staging_trial",
                ok=True,
                skipped=True,
                detail=f"staging service {staging.name} exists but nothing here can act",
            )
        run = TrialRun(
            actor=actor,
            audit=self._store.audit,
            policy=TrialPolicy(self._store.pool, self._policy),
            approver=approver,
        )
        return await staging_trial(draft.spec, version, staging, self._acts, run)

    async def submit(self, draft: ToolDraft, actor: str) -> ToolRecord:
        current = await self._store.get(draft.spec.name)
        if current is not None and _unchanged(current, draft):
            return current  # nothing new to validate, nor to try on staging again
        report = await self.validate(draft, (current.version + 1) if current else 1, actor)
        return await self._store.save(draft, report, actor)

    async def trial(self, name: str, version: int, approver: TrialApprover) -> ToolRecord:
        """`aiops tools trial`: validate the stored version an admin has read again, its
        staging steps approved by them, and record the verdict on that version."""
        record = await self._store.require(name)
        self._store.same_version(record, version)
        if record.status not in ("proposed", "refused"):
            raise ToolError(
                f"tool {name} v{version} is {record.status}; only a proposed or refused tool "
                "is tried"
            )
        draft = ToolDraft(
            spec=record.spec,
            origin=record.origin,
            problem_id=record.problem_id,
            service=record.service,
            signature=record.signature,
        )
        report = await self.validate(draft, version, approver.identity.sub, approver)
        return await self._store.record_trial(name, version, report, approver.identity.sub)

    async def mine(self, actor: str) -> BuildReport:
        runs = await recorded_runs(self._store.pool)
        report = BuildReport()
        for mined in repeated_sequences(runs, self._min_runs, self._require_approval):
            if await self._store.signature_known(mined.signature):
                continue
            draft = draft_from_sequence(mined, await self._free_name(mined))
            report.built.append(await self.submit(draft, actor))
        return report

    async def _free_name(self, mined: MinedSequence) -> str:
        base = draft_from_sequence(mined).spec.name
        name, n = base, 1
        while await self._store.get(name) is not None:
            n += 1
            name = f"{base[:60]}_{n}"
        return name

    async def from_requests(self, actor: str) -> BuildReport:
        report = BuildReport()
        for request in await self._store.requests():
            existing = await self._store.get(request.action_type)
            if existing is not None and (
                existing.status in ("proposed", "approved") or existing.validation.needs_a_person
            ):
                continue  # decided, or waiting for an admin's trial of the version they read
            draft = await self._draft_for(request, report)
            if draft is not None:
                report.built.append(await self.submit(draft, actor))
        return report

    async def _draft_for(self, request: ToolRequest, report: BuildReport) -> ToolDraft | None:
        if self._drafter is not None:
            try:
                return await self._drafter.draft(request, await self._service(request.service))
            except ToolSpecError as error:
                report.notes.append(f"{request.action_type}: {error}; trying the recorded runs")
        runs = await recorded_runs(self._store.pool, request.problem_id)
        # what healed this problem, however few times: approved runs first, then any;
        # a single primitive is enough when a fix asks for it by another name
        found = repeated_sequences(runs, 1, self._require_approval, min_steps=1)
        found = found or repeated_sequences(runs, 1, require_approval=False, min_steps=1)
        if not found:
            report.notes.append(
                f"{request.action_type}: no healed run is recorded for its problem and no "
                "chat model is configured (AIOPS_LLM_MODEL): write its specification "
                "(aiops tools draft FILE)"
            )
            return None
        draft = draft_from_sequence(found[0], request.action_type)
        return draft.model_copy(
            update={"signature": None, "why": f"requested by a fix; {draft.why}"}
        )

    async def build(self, actor: str) -> BuildReport:
        mined = await self.mine(actor)
        requested = await self.from_requests(actor)
        return BuildReport(
            built=[*mined.built, *requested.built], notes=[*mined.notes, *requested.notes]
        )
