"""DiagnosisWorkflow: masked text -> knowledge graph -> ranked candidates -> a plan, or unknown."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from aiops.diagnosis import choose_solution, plan_for
    from aiops.diagnosis.choose import applicable
    from aiops.diagnosis.llm import RootCauseNote, RootCauseRequest
    from aiops.models.diagnosis import Candidate, CandidateSearch, Diagnosis, DiagnosisInput


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
        similar = [c for c in search.candidates if c.similarity >= input.min_similarity]
        known = applicable(similar, input.service, input.closeness)
        picked = choose_solution(known, workflow.random(), input.closeness)
        note = await self._root_cause_note(input, search) if search.llm_configured else None
        if picked is None:
            return Diagnosis(
                root_cause_note=note,
                outcome="unknown",
                masked_text=search.masked_text,
                candidates=search.candidates,
                why=_unknown_why(input, search, similar),
            )
        chosen, draws = picked
        others = ", ".join(
            f"{d.candidate.solution_description!r} scored {d.score:.2f}"
            for d in draws
            if d is not chosen
        )
        why = f"{chosen.candidate.solution_description!r} scored {chosen.score:.2f}" + (
            f"; against {others}" if others else ""
        )
        return Diagnosis(
            root_cause_note=note,
            outcome="matched",
            masked_text=search.masked_text,
            candidates=search.candidates,
            chosen=chosen,
            plan=plan_for(chosen, input.service),
            why=why,
        )

    async def _root_cause_note(self, input: DiagnosisInput, search: CandidateSearch) -> str | None:
        """Optional and advisory: the writer bounds its own wait and answers with no note
        rather than failing, so a slow model delays the plan by its timeout at most."""
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
        return written.note


def _unknown_why(input: DiagnosisInput, search: CandidateSearch, similar: list[Candidate]) -> str:
    if similar:
        hint = max(similar, key=lambda c: c.similarity)
        return (
            f"similar to {hint.problem_description!r} on {hint.problem_service} "
            f"({hint.similarity:.2f}), whose fix {hint.solution_description!r} is for "
            f"{hint.problem_service}, not {input.service}: a hint for the on-call engineer; "
            "escalating without acting"
        )
    best = max((c.similarity for c in search.candidates), default=0.0)
    return (
        f"no known problem is similar enough (best {best:.2f} < "
        f"{input.min_similarity:.2f}); escalating without acting"
    )
