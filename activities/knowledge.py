"""Knowledge activities: record problems, search for known ones, learn from outcomes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio import activity

from aiops.diagnosis.llm import RootCauseNote, RootCauseRequest, RootCauseWriter
from aiops.diagnosis.tools import ToolPlanner
from aiops.events.envelope import Event, EventType, Severity
from aiops.events.mesh import EventMesh
from aiops.knowledge import KnowledgeGraph, ProblemIn, SearchHit
from aiops.models.diagnosis import Candidate, CandidateSearch, DiagnosisInput
from aiops.models.incident import EscalationRequest, ProblemRecordRequest, ProblemRef
from aiops.models.learning import (
    InsightRequest,
    LearningInput,
    OutcomeEventRequest,
    PatternOutcome,
    PatternOutcomeRequest,
    SolutionStats,
)
from aiops.monitor.limits import AdjustableLimiter, LimitsCache
from aiops.patterns.errors import PatternNotFound
from aiops.patterns.learning import PatternEvolver
from aiops.policy import PolicyFile
from aiops.policy.models import Policy
from aiops.privacy import mask

_SEVERITIES = {"low", "medium", "high", "critical"}


async def _nothing() -> list[SearchHit]:
    return []


class KnowledgeActivities:
    def __init__(
        self,
        kg: KnowledgeGraph,
        mesh: EventMesh,
        policy: PolicyFile | None = None,
        root_cause: RootCauseWriter | None = None,
        agents_configured: bool = False,
        limits: LimitsCache | None = None,
        tools: ToolPlanner | None = None,
    ) -> None:
        self._kg = kg
        self._tools = tools
        self._mesh = mesh
        # what plans are made with: the worker's one PolicyFile, the one its actions are
        # checked against, read again only when the file changes (None: the shipped policy)
        self._policy = policy or PolicyFile(None)
        self._root_cause = root_cause
        self._agents_configured = agents_configured
        self._limits = limits
        self._diagnoses = AdjustableLimiter(limits.last.max_diagnoses if limits else 10)

    @asynccontextmanager
    async def _diagnosis_slot(self) -> AsyncIterator[None]:
        """At most max_diagnoses searches at once in this worker (`aiops limits set
        max_diagnoses N` applies within seconds): each embeds on the CPU and queries."""
        if self._limits is not None:
            wanted = (await self._limits.current()).max_diagnoses
            if wanted != self._diagnoses.capacity:
                await self._diagnoses.resize(wanted)
        async with self._diagnoses.slot():
            yield

    @activity.defn(name="record_problem")
    async def record_problem(self, request: ProblemRecordRequest) -> ProblemRef:
        # the diagnosis beside this searches with the same text: its vectors first, so the
        # search, on the path to the plan, finds them in this worker's embedding cache (or
        # waits for this call instead of embedding them again)
        await self._kg.prepare_search(request.description)
        severity = request.severity if request.severity in _SEVERITIES else "medium"
        record = await self._kg.add_problem(
            ProblemIn(
                description=request.description,
                category=request.category or "error",
                severity=severity,
                error_patterns=[request.template] if request.template else [],
                context={"service": request.service, "event_type": request.event_type},
                fingerprint=request.fingerprint,
                template=request.template,
                occurrences=request.occurrences,
            )
        )
        return ProblemRef(
            problem_id=record.id, occurrence_count=record.occurrence_count, created=record.created
        )

    @activity.defn(name="search_known_problems")
    async def search(self, request: DiagnosisInput) -> CandidateSearch:
        async with self._diagnosis_slot():
            return await self._search(request)

    async def _search(self, request: DiagnosisInput) -> CandidateSearch:
        # What is known about this service first, so problems recorded for other services
        # (hints, never plans here) cannot push its own out of the top hits; then the rest.
        # The two searches run side by side, on two connections (one embedding: the cache).
        own, anywhere = await asyncio.gather(
            self._kg.find_solutions(
                request.text, limit=request.limit, service=request.service, require_solutions=True
            )
            if request.service
            else _nothing(),
            self._kg.find_solutions(request.text, limit=request.limit, require_solutions=True),
        )
        hits = list(own)
        seen = {hit.problem.id for hit in hits}
        for hit in anywhere:
            if hit.problem.id not in seen:
                hits.append(hit)
        candidates = [
            Candidate(
                problem_id=hit.problem.id,
                problem_description=hit.problem.description,
                problem_service=hit.problem.service,
                similarity=hit.similarity,
                solution_id=solution.id,
                solution_description=solution.description,
                actions=solution.actions,
                successes=solution.successes,
                failures=solution.failures,
                why=hit.why,
            )
            for hit in hits
            for solution in hit.solutions
            if solution.actions
        ]
        if self._tools is not None:  # fixes that use a tool plan its primitive steps
            candidates = await self._tools.expand(candidates, request.service)
        return CandidateSearch(
            masked_text=mask(request.text),
            candidates=candidates,
            llm_configured=self._root_cause is not None,
            agents_configured=self._agents_configured,
        )

    @activity.defn(name="write_root_cause_note")
    async def write_root_cause_note(self, request: RootCauseRequest) -> RootCauseNote:
        if self._root_cause is None:
            return RootCauseNote(error="no LLM configured on this worker (AIOPS_LLM_MODEL)")
        return await self._root_cause.write(request)

    @activity.defn(name="load_policy")
    async def load_policy(self) -> Policy:
        return self._policy.current()

    @activity.defn(name="escalate")
    async def escalate(self, request: EscalationRequest) -> str:
        event = Event(
            id=uuid.uuid5(
                uuid.NAMESPACE_URL,
                f"escalation:{activity.info().workflow_id}"
                + (f":{request.key}" if request.key else ""),
            ),
            event_type=EventType.AGENT_ACTION,
            source="aiops",
            service=request.service,
            severity=Severity.WARNING,
            causation_id=uuid.UUID(request.causation_event_id)
            if request.causation_event_id
            else None,
            payload={
                "kind": "escalation",
                "incident": request.incident_id,
                "reason": request.reason,
            },
        )
        await self._mesh.publish(event, domain="aiops")
        return str(event.id)

    @activity.defn(name="read_solution_stats")
    async def read_solution_stats(self, solution_id: str) -> SolutionStats:
        return await self._kg.solution_stats(solution_id)

    @activity.defn(name="record_solution_outcome")
    async def record_solution_outcome(self, request: LearningInput) -> SolutionStats:
        assert request.solution_id is not None
        # keyed by the learning run, so a retried activity does not count twice
        key = f"outcome:{activity.info().workflow_id}"
        return await self._kg.record_outcome_once(
            key, request.solution_id, request.outcome == "healed", request.resolution_time_s
        )

    @activity.defn(name="record_insight")
    async def record_insight(self, request: InsightRequest) -> str:
        return await self._kg.add_insight(
            f"insight:{activity.info().workflow_id}",
            request.problem_id,
            request.solution_id,
            request.outcome,
            request.summary,
        )

    @activity.defn(name="publish_outcome_event")
    async def publish_outcome_event(self, request: OutcomeEventRequest) -> str:
        event = Event(
            id=uuid.uuid5(uuid.NAMESPACE_URL, f"outcome:{activity.info().workflow_id}"),
            event_type=EventType.OUTCOME_RECORDED,
            source="aiops",
            service=request.service,
            causation_id=uuid.UUID(request.causation_event_id)
            if request.causation_event_id
            else None,
            correlation_id=uuid.UUID(request.correlation_id) if request.correlation_id else None,
            payload=request.model_dump(mode="json"),
        )
        await self._mesh.publish(event, domain="aiops")
        return str(event.id)


class PatternLearningActivities:
    """The outcome of an incident a pattern opened counts for that pattern; a pattern whose
    success rate fell under 0.7 over enough outcomes evolves (aiops.patterns.learning)."""

    def __init__(self, evolver: PatternEvolver) -> None:
        self._evolver = evolver

    @activity.defn(name="record_pattern_outcome")
    async def record_pattern_outcome(self, request: PatternOutcomeRequest) -> PatternOutcome:
        try:
            stats = await self._evolver.tracker.record_outcome(
                request.pattern_id,
                request.success,
                solution_id=request.solution_id,
                # one outcome per learning run (a recurrence of the same fingerprint is a
                # new run of the same incident id), however often the step is retried
                key=f"pattern-outcome:{activity.info().workflow_id or request.incident_id}",
            )
        except PatternNotFound:
            # deleted since the incident opened: nothing left to learn about
            return PatternOutcome(
                pattern_id=request.pattern_id, recorded=False, attempt_count=0, success_rate=0.0
            )
        outcome = PatternOutcome(
            pattern_id=stats.pattern_id,
            recorded=stats.recorded,
            attempt_count=stats.attempt_count,
            success_rate=stats.success_rate,
        )
        # evolve() proposes nothing unless the pattern is due and is a no-op for a pattern
        # already evolved, so a retry cannot evolve twice
        evolved = await self._evolver.evolve(request.pattern_id)
        if evolved is not None:
            outcome.evolved_into = evolved.new_ids
        return outcome
