"""The pure decisions behind an incident's life after its first attempt, and the saga's end."""

from __future__ import annotations

import asyncio

from aiops.actions.base import ActionOutcome
from aiops.incident_rules import continue_as_new_due, failed_solution, retry_due
from aiops.models.healing import CompensationRecord
from aiops.saga import after_compensation, hard_failure_detail


def test_a_new_attempt_only_when_the_problem_went_on_after_no_fix_within_budget() -> None:
    assert retry_due("failed", True, 0, 2) and retry_due("unknown", True, 1, 2)
    assert retry_due("compensated", True, 0, 1)
    assert not retry_due("failed", False, 0, 2)  # quiet: it is over
    assert not retry_due("failed", True, 2, 2)  # budget spent
    assert not retry_due("healed", True, 0, 2)  # a new problem after a fix is a recurrence
    for said_no in ("rejected", "refused", "escalated", "replay", None):
        assert not retry_due(said_no, True, 0, 2)


def test_continue_as_new_on_the_budget_or_the_servers_word() -> None:
    assert not continue_as_new_due(99, 100, False)
    assert continue_as_new_due(100, 100, False) and continue_as_new_due(5, 100, True)


def test_only_a_fix_that_ran_and_failed_is_left_out() -> None:
    assert failed_solution("compensated", "s1") == "s1" == failed_solution("failed", "s1")
    assert failed_solution("unknown", None) is None
    assert failed_solution("rejected", "s1") is None and failed_solution("healed", "s1") is None


def _undo(success: bool) -> CompensationRecord:
    return CompensationRecord(step="1", outcome=ActionOutcome(success=success, detail=""))


def test_compensated_only_when_every_undo_succeeded() -> None:
    assert after_compensation("failed", [_undo(True), _undo(True)]) == "compensated"
    assert after_compensation("failed", [_undo(True), _undo(False)]) == "failed"
    assert after_compensation("failed", []) == "failed"
    assert after_compensation("rejected", [_undo(False)]) == "rejected"


def test_a_hard_failure_names_the_step_and_the_cause() -> None:
    cause = RuntimeError("connection refused")
    error = ValueError("Activity task failed")
    error.__cause__ = cause
    assert hard_failure_detail("2", error) == "step 2 did not finish: connection refused"
    assert "cancelled" in hard_failure_detail(None, asyncio.CancelledError())
