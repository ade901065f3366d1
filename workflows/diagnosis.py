"""DiagnosisWorkflow: masked text -> knowledge graph -> ranked candidates -> a plan, or unknown."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from aiops.agents.diagnostic import proposal_of
    from aiops.agents.models import AgentContext, ProposalCollection, ProposalRequest
    from aiops.agents.proposals import VoteResult
    from aiops.agents.vote import DIAGNOSTIC_AGENT, cast_vote, plan_from_proposal
    from aiops.diagnosis import choose_solution, plan_for
    from aiops.diagnosis.choose import applicable
    from aiops.diagnosis.llm import RootCauseNote, RootCauseRequest
    from aiops.models.diagnosis import (
        Candidate,
        CandidateSearch,
        Choice,
        Diagnosis,
        DiagnosisInput,
    )


@workflow.defn(name="DiagnosisWorkflow")
class DiagnosisWorkflow:
    @workflow.run
    async def run(self, input: DiagnosisInput) -> Diagnosis:
        # a local activity: one embedding and one query, no server round trip for the schedule
        search = await workflow.execute_local_activity(
            "search_known_problems",
            input,
            result_type=CandidateSearch,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=5),
        )
        # a fix that already failed for this incident is not offered again
        similar = [
            c
            for c in search.candidates
            if c.similarity >= input.min_similarity and c.solution_id not in input.exclude_solutions
        ]
        known = applicable(similar, input.service, input.closeness)
        picked = choose_solution(known, workflow.random(), input.closeness)
        note = await self._root_cause_note(input, search) if search.llm_configured else None
        if search.agents_configured:
            # gated: with no custom agent installed, nothing here runs and saved histories
            # replay as before
            return await self._collaborate(input, search, similar, picked, note)
        if picked is None:
            return Diagnosis(
                root_cause_note=note,
                outcome="unknown",
                masked_text=search.masked_text,
                candidates=search.candidates,
                why=_unknown_why(input, search, similar),
            )
        chosen, draws = picked
        return Diagnosis(
            root_cause_note=note,
            outcome="matched",
            masked_text=search.masked_text,
            candidates=search.candidates,
            chosen=chosen,
            plan=plan_for(chosen, input.service),
            why=_chosen_why(chosen, draws),
        )

    async def _collaborate(
        self,
        input: DiagnosisInput,
        search: CandidateSearch,
        similar: list[Candidate],
        picked: tuple[Choice, list[Choice]] | None,
        note: str | None,
    ) -> Diagnosis:
        """The agents whose capabilities match propose too; a weighted vote picks the plan.
        The built-in diagnostic agent's proposal is this workflow's own draw."""
        own = [proposal_of(picked[0], input.service)] if picked else []
        collected = await workflow.execute_local_activity(
            "collect_proposals",
            ProposalRequest(
                context=AgentContext(
                    incident_id=input.incident_id,
                    text=search.masked_text,
                    service=input.service,
                    category=input.category,
                    severity=input.severity,
                    candidates=search.candidates,
                    proposals=own,
                )
            ),
            result_type=ProposalCollection,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        vote = cast_vote(
            [*own, *collected.proposals],
            collected.weights,
            service=input.service,
            failures=collected.failures,
        )
        common = {
            "root_cause_note": note,
            "masked_text": search.masked_text,
            "candidates": search.candidates,
            "vote": vote,
        }
        winner = vote.winner
        if winner is None:
            return Diagnosis(
                outcome="unknown",
                why=_unknown_why(input, search, similar) + _not_counted(vote),
                **common,
            )
        if picked is not None and DIAGNOSTIC_AGENT in vote.tallies[0].agents:
            chosen, draws = picked
            return Diagnosis(
                outcome="matched",
                chosen=chosen,
                plan=plan_for(chosen, input.service),
                why=f"{DIAGNOSTIC_AGENT}'s plan won the {vote.why}: "
                + _chosen_why(chosen, draws)
                + _not_counted(vote),
                **common,
            )
        why = f"{winner.agent_id}'s plan won the {vote.why}: {winner.why}" + _not_counted(vote)
        return Diagnosis(
            outcome="matched",
            plan=plan_from_proposal(winner, input.service, why),
            why=why,
            **common,
        )

    async def _root_cause_note(self, input: DiagnosisInput, search: CandidateSearch) -> str | None:
        """Optional and advisory: the writer bounds its own wait and answers with no note
        rather than failing, so a slow model delays the plan by its timeout at most."""
        try:
            written: RootCauseNote = await workflow.execute_activity(
                "write_root_cause_note",
                RootCauseRequest(
                    incident_id=input.incident_id,
                    masked_text=search.masked_text,
                    candidates=search.candidates,
                ),
                result_type=RootCauseNote,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(maximum_attempts=2),
            )
        except ActivityError as error:
            # advisory only: a model that keeps failing costs the note, never the diagnosis
            workflow.logger.warning("no root-cause note: %s", error.cause or error)
            return None
        return written.note


def _chosen_why(chosen: Choice, draws: list[Choice]) -> str:
    others = ", ".join(
        f"{d.candidate.solution_description!r} scored {d.score:.2f}"
        for d in draws
        if d is not chosen
    )
    return f"{chosen.candidate.solution_description!r} scored {chosen.score:.2f}" + (
        f"; against {others}" if others else ""
    )


def _not_counted(vote: VoteResult) -> str:
    if not vote.failures:
        return ""
    return "; not counted: " + ", ".join(f"{f.agent_id} ({f.error})" for f in vote.failures)


def _unknown_why(input: DiagnosisInput, search: CandidateSearch, similar: list[Candidate]) -> str:
    tried = [c for c in search.candidates if c.solution_id in input.exclude_solutions]
    if tried and not similar:
        fixes = ", ".join(sorted({repr(c.solution_description) for c in tried}))
        return f"the known fix ({fixes}) failed already here; escalating without acting"
    if similar:
        hint = max(similar, key=lambda c: c.similarity)
        return (
            f"similar to {hint.problem_description!r} on {hint.problem_service} "
            f"({hint.similarity:.2f}), whose fix {hint.solution_description!r} is for "
            f"{hint.problem_service}, not {input.service}: a hint for the on-call engineer; "
            "escalating without acting"
        )
    if not search.candidates:
        return "nothing in the knowledge graph resembles it; escalating without acting"
    # below the bar a match is a guess, not a plan; the closest one still helps a person
    closest = max(search.candidates, key=lambda c: c.similarity)
    return (
        f"no known problem is similar enough to act on (closest: "
        f"{closest.problem_description!r}, {closest.similarity:.2f} < "
        f"{input.min_similarity:.2f}); escalating without acting"
    )
