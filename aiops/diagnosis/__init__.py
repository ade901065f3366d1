"""Choosing a solution among candidates: pure functions a workflow can call deterministically."""

from aiops.diagnosis.choose import choose_solution, plan_for

__all__ = ["choose_solution", "plan_for"]
