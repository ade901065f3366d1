"""An adapter that acted, then lost its bookkeeping (the worker's database went away between
the act and the record): the row stays 'started'. The saga compensates the step in flight,
and the executor must undo what really happened, found by reconciling with the service,
not answer "nothing to undo" and leave the change in place. Real PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from cryptography.fernet import Fernet
from known_problems import register_simulated

from aiops.actions.base import ActionContext, ActionOutcome, Adapter
from aiops.actions.executor import ActionExecutor, ExecuteRequest
from aiops.actions.guard import ActionGuard
from aiops.actions.simulated import SimulatedAdapter
from aiops.auth.approvals import ApprovalSigner
from aiops.policy import PolicyFile
from aiops.policy.models import ActionSpec
from aiops.registry import ServiceRegistry


class BookkeepingLost(Exception):
    """What the activity sees when the database drops right after the act."""


class WorldAdapter(SimulatedAdapter):
    """Changes a config value in `world` (the service), reconciles and undoes it from there;
    `lose_track`: the act takes effect, then the attempt dies before it is recorded."""

    def __init__(self, world: dict[str, Any], *, lose_track: bool) -> None:
        super().__init__(default=1.0)
        self.world = world
        self.lose_track = lose_track
        self.undone = 0

    async def prepare(self, ctx: ActionContext) -> dict[str, Any]:
        key = str(ctx.action.parameters["key"])
        return {"key": key, "previous": self.world.get(key)}

    async def apply(self, ctx: ActionContext, intent: dict[str, Any]) -> ActionOutcome:
        self.world[intent["key"]] = ctx.action.parameters["value"]
        if self.lose_track:
            raise BookkeepingLost("connection to the database lost after the act")
        return self._done(ctx, intent)

    async def reconcile(self, ctx: ActionContext, intent: dict[str, Any]) -> ActionOutcome | None:
        if self.world.get(intent["key"]) == ctx.action.parameters["value"]:
            return self._done(ctx, intent)
        return None

    async def compensate(self, ctx: ActionContext, intent: dict[str, Any]) -> ActionOutcome:
        self.world[intent["key"]] = intent["previous"]
        self.undone += 1
        return ActionOutcome(success=True, detail=f"restored {intent['key']}")

    @staticmethod
    def _done(ctx: ActionContext, intent: dict[str, Any]) -> ActionOutcome:
        return ActionOutcome(
            success=True,
            detail=f"set {intent['key']}",
            compensable=True,
            compensation_note=f"undo: set {intent['key']} back to {intent['previous']!r}",
        )


async def _executor(pool: asyncpg.Pool, adapter: Adapter) -> ActionExecutor:
    await register_simulated(pool, "import-service", config_keys=("batch",))
    registry = ServiceRegistry(pool, Fernet(Fernet.generate_key()))
    adapters = {"simulated": adapter}
    guard = ActionGuard(
        pool, registry, PolicyFile(None), ApprovalSigner(b"k" * 32), "open", frozenset(adapters)
    )
    return ActionExecutor(pool, registry, adapters, guard)


def _request(wid: str) -> ExecuteRequest:
    return ExecuteRequest(
        idempotency_key=f"{wid}:1",
        workflow_id=wid,
        step="1",
        service="import-service",
        action=ActionSpec(
            action_type="config_update",
            target="import-service",
            parameters={"key": "batch", "value": 50},
        ),
    )


async def _acted_then_lost(
    pool: asyncpg.Pool,
) -> tuple[dict[str, Any], WorldAdapter, ActionExecutor, ExecuteRequest]:
    """An attempt that set batch to 50 and died before recording it."""
    world: dict[str, Any] = {"batch": 1000}
    adapter = WorldAdapter(world, lose_track=True)
    executor = await _executor(pool, adapter)
    request = _request(f"healing-{uuid.uuid4().hex[:8]}")
    with pytest.raises(BookkeepingLost):
        await executor.execute(request)
    return world, adapter, executor, request


async def test_an_act_whose_record_was_lost_is_found_and_undone(pool: asyncpg.Pool) -> None:
    world, adapter, executor, request = await _acted_then_lost(pool)
    assert world["batch"] == 50  # it acted
    status = await pool.fetchval(
        "SELECT status FROM action_executions WHERE idempotency_key = $1", request.idempotency_key
    )
    assert status == "started"  # and nothing says so

    undone = await executor.compensate(request)
    assert undone.success, undone.detail
    assert world["batch"] == 1000 and adapter.undone == 1
    row = await pool.fetchrow(
        "SELECT status, result->>'detail' AS detail FROM action_executions"
        " WHERE idempotency_key = $1",
        request.idempotency_key,
    )
    assert row is not None and row["status"] == "succeeded"  # reconciled, then undone
    again = await executor.compensate(request)  # a retried compensation undoes nothing twice
    assert again.success and adapter.undone == 1


async def test_an_attempt_that_never_acted_is_not_undone(pool: asyncpg.Pool) -> None:
    world, adapter, executor, request = await _acted_then_lost(pool)
    world["batch"] = 1000  # the act never reached the service after all
    undone = await executor.compensate(request)
    assert undone.success and "nothing to undo" in undone.detail
    assert adapter.undone == 0
    # and the key is closed: nothing acts under it after the saga moved on
    again = await executor.execute(request)
    assert again.replayed and not again.success and world["batch"] == 1000
