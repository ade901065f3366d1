"""What a healing run amounts to once its done steps have been undone (the saga's end)."""

from __future__ import annotations

import asyncio

from aiops.models.healing import CompensationRecord, HealingOutcome


def after_compensation(
    outcome: HealingOutcome, compensations: list[CompensationRecord]
) -> HealingOutcome:
    """A plan that failed is `compensated` only when every undo it needed succeeded; one
    step left as it was makes it `failed` (a person must look). Other outcomes (refused,
    rejected, escalated) keep their name: the rollback is part of them."""
    if outcome != "failed" or not compensations:
        return outcome
    return "compensated" if all(c.outcome.success for c in compensations) else "failed"


def hard_failure_detail(step: str | None, error: BaseException) -> str:
    """One line for a step (or the plan) that failed by exception, timeout or cancellation
    instead of by a reported outcome."""
    where = f"step {step}" if step is not None else "the plan"
    if isinstance(error, asyncio.CancelledError):
        return f"{where} did not finish: the healing was cancelled"
    cause = getattr(error, "cause", None) or error.__cause__ or error
    return f"{where} did not finish: {str(cause) or cause.__class__.__name__}"
