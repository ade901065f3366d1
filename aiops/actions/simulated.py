"""Outcomes drawn from configured success probabilities: for tests and learning benchmarks."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from aiops.actions.base import ActionContext, ActionOutcome


def _draw(key: str) -> float:
    # derived from the idempotency key, so a replayed attempt draws the same outcome
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class SimulatedAdapter:
    name = "simulated"

    def __init__(self, success_probability: dict[str, float] | None = None, default: float = 0.8):
        self._probability = dict(success_probability or {})
        self._default = default

    def probability(self, ctx: ActionContext) -> float:
        given = ctx.action.parameters.get("success_probability")
        if isinstance(given, int | float):
            return float(given)
        return self._probability.get(ctx.action.action_type, self._default)

    async def prepare(self, ctx: ActionContext) -> dict[str, Any]:
        return {"draw": _draw(ctx.idempotency_key), "probability": self.probability(ctx)}

    async def apply(self, ctx: ActionContext, intent: dict[str, Any]) -> ActionOutcome:
        delay = ctx.action.parameters.get("delay_s")
        if isinstance(delay, int | float) and delay > 0:
            await asyncio.sleep(float(delay))
        success = intent["draw"] < intent["probability"]
        return ActionOutcome(
            success=success,
            detail=(
                f"simulated {ctx.action.action_type} on {ctx.action.target}: "
                f"{'succeeded' if success else 'failed'} (p={intent['probability']:.2f})"
            ),
            data={"draw": intent["draw"]},
            compensable=True,
            compensation_note="simulated: undo always possible",
        )

    async def reconcile(self, ctx: ActionContext, intent: dict[str, Any]) -> ActionOutcome | None:
        return None  # a simulated action has no effect outside its recorded outcome

    async def compensate(self, ctx: ActionContext, intent: dict[str, Any]) -> ActionOutcome:
        return ActionOutcome(
            success=True,
            detail=f"simulated undo of {ctx.action.action_type} on {ctx.action.target}",
        )
