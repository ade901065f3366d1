"""Bounded actions: what may run, what needs a human, what never runs."""

from aiops.policy.evaluate import evaluate
from aiops.policy.forbidden import forbidden_reason
from aiops.policy.loader import PolicyError, PolicyFile, load_policy

__all__ = ["PolicyError", "PolicyFile", "evaluate", "forbidden_reason", "load_policy"]
