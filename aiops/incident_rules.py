"""Pure decisions of an incident's life after its first attempt: when to try again, and
when to start a fresh run so its history stays bounded."""

from __future__ import annotations

# outcomes after which the problem may still be there and a new attempt can help: nothing
# fixed it (failed, rolled back) or nothing was known (unknown). A person's no (rejected),
# the policy's no (refused) and an approval nobody gave (escalated) are not retried.
RETRYABLE = frozenset({"failed", "compensated", "unknown"})


def retry_due(outcome: str | None, persisted: bool, retries: int, max_retries: int) -> bool:
    """Whether to re-notify and re-diagnose after a cool-down window: the problem went on
    (events arrived during the window), the last attempt did not fix it, and the budget of
    new attempts is not spent."""
    return persisted and outcome in RETRYABLE and retries < max_retries


def continue_as_new_due(history_length: int, budget: int, suggested: bool) -> bool:
    """Start a new run (carrying the counters) when the server suggests it or the run's
    history reached its budget of events, well before Temporal's hard limits."""
    return suggested or history_length >= budget


def failed_solution(outcome: str | None, solution_id: str | None) -> str | None:
    """The solution to leave out of the next diagnosis: the one whose plan just ran and
    did not heal."""
    if outcome in ("failed", "compensated") and solution_id:
        return solution_id
    return None


def ladder_stop(
    plans_tried: int,
    max_plans: int,
    elapsed_s: float,
    budget_s: float,
    source_resolved: bool,
) -> str | None:
    """Why the escalation ladder stops after a failed plan, or None to try the next known
    fix now: the plans allowed in one incident are spent, its time budget is, or the
    alert's source said it resolved (nothing left to fix)."""
    if source_resolved:
        return "the source says it resolved"
    if plans_tried >= max_plans:
        return f"{plans_tried} of {max_plans} plans tried (max_plans_per_incident)"
    if elapsed_s >= budget_s:
        return f"the ladder's {budget_s:g} s are spent (ladder_budget_s)"
    return None
