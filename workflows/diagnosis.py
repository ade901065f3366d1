"""DiagnosisWorkflow: masked text -> knowledge graph -> ranked candidates -> a plan, or unknown."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from aiops.diagnosis import choose_solution, plan_for
    from aiops.models.diagnosis import CandidateSearch, Diagnosis, DiagnosisInput


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
        known = [c for c in search.candidates if c.similarity >= input.min_similarity]
        picked = choose_solution(known, workflow.random(), input.closeness)
        if picked is None:
            best = max((c.similarity for c in search.candidates), default=0.0)
            return Diagnosis(
                outcome="unknown",
                masked_text=search.masked_text,
                candidates=search.candidates,
                why=(
                    f"no known problem is similar enough (best {best:.2f} < "
                    f"{input.min_similarity:.2f}); escalating without acting"
                ),
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
            outcome="matched",
            masked_text=search.masked_text,
            candidates=search.candidates,
            chosen=chosen,
            plan=plan_for(chosen, input.service),
            why=why,
        )
