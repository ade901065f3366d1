"""Runs an action through its adapter at most once per idempotency key.

Nothing reaches an adapter before the guard (aiops/actions/guard.py) has cleared it. The
key (workflow id + step) is recorded before the adapter acts. A retried or replayed
activity gets the recorded outcome back. A key left 'started' by a worker that died
mid-action is reconciled with the real world (did the restart happen?) before anything is
done again. A per-key advisory lock keeps two attempts of the same key from overlapping.

The guard's counts (rate limit, blast radius) and the claim of the key are one transaction
under a per-target advisory lock, so two workflows cannot both count "none yet" and both
act. The locks live on a connection of their own pool (`locks`), never one the adapters
or the guard draw from: an action holds its lock connection while it acts and uses the
main pool meanwhile, and a pool whose every connection waits for one more never moves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from pydantic import BaseModel

from aiops.actions.base import ActionContext, ActionError, ActionOutcome, Adapter
from aiops.actions.guard import ActionGuard, Approval, Cleared
from aiops.errors import AiopsError
from aiops.policy.models import ActionSpec
from aiops.registry import ServiceRegistry
from aiops.registry.store import UnknownService


class ExecuteRequest(BaseModel):
    idempotency_key: str
    workflow_id: str
    step: str
    action: ActionSpec
    service: str | None = None
    # the step's approval as the workflow holds it; the guard decides whether it counts
    decision_id: str | None = None
    grant: str | None = None
    approver: str | None = None
    # set by execute_action from the activity's own info, never taken from the caller
    run_id: str | None = None


Operation = Callable[[Adapter, ActionContext, dict[str, Any]], Awaitable[ActionOutcome]]


class ActionExecutor:
    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: ServiceRegistry,
        adapters: dict[str, Adapter],
        guard: ActionGuard,
        locks: asyncpg.Pool | None = None,
    ) -> None:
        """locks: the pool the per-key and per-target locks are held on while an action
        runs, at least as large as the actions run at once (the worker sizes it to
        AIOPS_WORKER_MAX_ACTIVITIES); None: `pool` itself, and then fewer actions hold a
        lock at once than it has connections, so one is always left to draw from."""
        self._pool = pool
        self._locks = locks or pool
        self._holders = asyncio.Semaphore(
            locks.get_max_size() if locks is not None else max(1, pool.get_max_size() - 1)
        )
        self._registry = registry
        self._adapters = adapters
        self._guard = guard

    async def _recorded(self, request: ExecuteRequest) -> ActionOutcome | None:
        """The outcome of this run's earlier attempt at the key; refused when another run
        of the workflow id holds the key (a new run under a closed workflow's id)."""
        row = await self._pool.fetchrow(
            "UPDATE action_executions SET attempts = attempts + 1"
            " WHERE idempotency_key = $1 AND status <> 'started' RETURNING result, run_id",
            request.idempotency_key,
        )
        if row is None:
            return None
        if row["run_id"] is not None and row["run_id"] != request.run_id:
            return _refused(f"{request.idempotency_key} was acted on by another run")
        return ActionOutcome.model_validate(row["result"]).model_copy(update={"replayed": True})

    async def execute(self, request: ExecuteRequest) -> ActionOutcome:
        if request.idempotency_key != f"{request.workflow_id}:{request.step}":
            return _refused("the idempotency key is not this workflow's step")
        # a retry of an action that finished gets its outcome back before any check: the
        # rate limit it counted toward must not refuse its own retry
        done = await self._recorded(request)
        if done is not None:
            return done
        key = request.idempotency_key
        async with self._holders, self._locks.acquire() as conn:
            # session lock: released by PostgreSQL if this worker dies mid-action
            await conn.execute("SELECT pg_advisory_lock(hashtext($1))", key)
            try:
                try:
                    claim = await self._clear_and_claim(conn, request)
                except AiopsError as error:  # refused: an outcome, not a retry
                    return _refused(str(error))
                cleared, fresh = claim
                ctx = ActionContext(
                    idempotency_key=key,
                    workflow_id=request.workflow_id,
                    step=request.step,
                    action=request.action,
                    service=cleared.service,
                )
                adapter = self._adapters[cleared.adapter]

                async def apply(
                    a: Adapter, c: ActionContext, intent: dict[str, Any]
                ) -> ActionOutcome:
                    return await a.apply(c, intent)

                outcome = await self._run(
                    conn, key, ctx, adapter, apply, True, True, request.run_id, fresh
                )
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", key)
        if cleared.approved_by is not None:
            outcome = outcome.model_copy(
                update={"data": {**outcome.data, "approved_by": cleared.approved_by}}
            )
        return outcome

    async def _clear_and_claim(
        self, conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], request: ExecuteRequest
    ) -> tuple[Cleared, bool]:
        """The guard's verdict and the key's claim, atomic per target: (cleared, whether
        this attempt made the claim). A claim left by an attempt that died is re-checked
        with the counts as they were when it was made, so another workflow's later action
        cannot refuse the retry of one that may already have acted."""
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", f"aiops:act:{request.action.target}"
            )
            claimed_at = await conn.fetchval(
                "SELECT started_at FROM action_executions WHERE idempotency_key = $1",
                request.idempotency_key,
            )
            cleared = await self._guard.clear(
                workflow_id=request.workflow_id,
                step=request.step,
                action=request.action,
                plan_service=request.service,
                approval=Approval(request.decision_id, request.grant, request.approver),
                as_of=claimed_at,
            )
            if claimed_at is not None:
                return cleared, False
            await self._claim(
                conn,
                request.idempotency_key,
                request.workflow_id,
                request.step,
                self._adapters[cleared.adapter].name,
                request.action,
                cleared.service.name,
                request.run_id,
            )
            return cleared, True

    @staticmethod
    async def _claim(
        conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record],
        key: str,
        workflow_id: str,
        step: str,
        adapter: str,
        action: ActionSpec,
        service: str | None,
        run_id: str | None,
    ) -> bool:
        # clock_timestamp: claims made one after another under the target lock are
        # ordered by their time (now() is the transaction's start, which may be earlier)
        inserted = await conn.fetchval(
            """
            INSERT INTO action_executions (idempotency_key, workflow_id, step, adapter,
                action_type, target, service, action, status, run_id, started_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'started', $9, clock_timestamp())
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING true
            """,
            key,
            workflow_id,
            step,
            adapter,
            action.action_type,
            action.target,
            service,
            action.model_dump(mode="json"),
            run_id,
        )
        return bool(inserted)

    async def compensate(self, request: ExecuteRequest) -> ActionOutcome:
        """Undo the action recorded under request.idempotency_key, once. What is undone is
        what was recorded (action, service, adapter), never what the request says."""
        row = await self._pool.fetchrow(
            "SELECT workflow_id, run_id, adapter, service, action, intent, status, result"
            " FROM action_executions WHERE idempotency_key = $1",
            request.idempotency_key,
        )
        if row is None:
            return ActionOutcome(success=True, detail="nothing to undo: the action never ran")
        if row["workflow_id"] != request.workflow_id or (
            row["run_id"] is not None and row["run_id"] != request.run_id
        ):
            return ActionOutcome(
                success=False, detail="refused: that action belongs to another workflow run"
            )
        recorded = ActionOutcome.model_validate(row["result"]) if row["result"] else None
        started = row["status"] == "started" and bool(row["intent"])
        if not started and (
            row["status"] != "succeeded" or recorded is None or not recorded.compensable
        ):
            return ActionOutcome(success=True, detail="nothing to undo: no compensable success")
        adapter = self._adapters.get(row["adapter"])
        if adapter is None:
            return ActionOutcome(
                success=False, detail=f"adapter {row['adapter']!r} is not enabled on this worker"
            )
        service = None
        if row["service"]:
            with contextlib.suppress(UnknownService):
                service = await self._registry.get(row["service"])
        ctx = ActionContext(
            idempotency_key=request.idempotency_key,
            workflow_id=request.workflow_id,
            step=request.step,
            action=ActionSpec.model_validate(row["action"]),
            service=service,
        )
        intent = dict(row["intent"])
        if started:
            # the attempt died between acting and recording (its worker, or the database,
            # went away): what the service shows decides whether there is anything to undo
            recorded = await self._settle(request.idempotency_key, ctx, adapter, intent)
            if recorded is None or not recorded.success or not recorded.compensable:
                return ActionOutcome(
                    success=True, detail="nothing to undo: the service shows no trace of it"
                )

        async def undo(a: Adapter, c: ActionContext, _: dict[str, Any]) -> ActionOutcome:
            return await a.compensate(c, intent)

        key = f"{request.idempotency_key}:compensate"
        return await self._once(
            key, ctx, adapter, undo, reconcile=False, prepare=False, run_id=request.run_id
        )

    async def _settle(
        self, key: str, ctx: ActionContext, adapter: Adapter, intent: dict[str, Any]
    ) -> ActionOutcome | None:
        """The outcome of a key left 'started', from the service itself, recorded: found,
        it is a success to undo; not found, the key is closed as failed so that no later
        attempt acts after the saga has moved on. Under the key's lock, so an attempt still
        acting somewhere finishes (or its worker dies) first."""
        async with self._holders, self._locks.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock(hashtext($1))", key)
            try:
                row = await conn.fetchrow(
                    "SELECT status, result FROM action_executions WHERE idempotency_key = $1",
                    key,
                )
                assert row is not None
                if row["status"] != "started":  # an attempt finished meanwhile
                    return ActionOutcome.model_validate(row["result"])
                found = await adapter.reconcile(ctx, intent)
                await self._finish(
                    conn,
                    key,
                    found
                    or ActionOutcome(
                        success=False,
                        detail="the attempt died before its outcome was recorded; the service "
                        "shows no trace of it (checked when compensating)",
                    ),
                )
                return found
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", key)

    async def _once(
        self,
        key: str,
        ctx: ActionContext,
        adapter: Adapter,
        operation: Operation,
        *,
        reconcile: bool,
        prepare: bool = True,
        run_id: str | None = None,
    ) -> ActionOutcome:
        async with self._holders, self._locks.acquire() as conn:
            # session lock: released by PostgreSQL if this worker dies mid-action
            await conn.execute("SELECT pg_advisory_lock(hashtext($1))", key)
            try:
                fresh = await self._claim(
                    conn,
                    key,
                    ctx.workflow_id,
                    ctx.step,
                    adapter.name,
                    ctx.action,
                    ctx.service.name if ctx.service else None,
                    run_id,
                )
                return await self._run(
                    conn, key, ctx, adapter, operation, reconcile, prepare, run_id, fresh
                )
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", key)

    async def _run(
        self,
        conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record],
        key: str,
        ctx: ActionContext,
        adapter: Adapter,
        operation: Operation,
        reconcile: bool,
        prepare: bool,
        run_id: str | None,
        fresh: bool,
    ) -> ActionOutcome:
        """Act under the key's claim; fresh: this attempt made the claim just now."""
        if not fresh:
            row = await conn.fetchrow(
                "UPDATE action_executions SET attempts = attempts + 1"
                " WHERE idempotency_key = $1 RETURNING status, intent, result, run_id",
                key,
            )
            assert row is not None
            if row["run_id"] is not None and row["run_id"] != run_id:
                return _refused(f"{key} was acted on by another run")
            if row["status"] != "started":
                recorded = ActionOutcome.model_validate(row["result"])
                return recorded.model_copy(update={"replayed": True})
            intent = dict(row["intent"] or {})
            if reconcile and intent:
                found = await adapter.reconcile(ctx, intent)
                if found is not None:
                    await self._finish(conn, key, found)
                    return found
        else:
            intent = {}
        try:
            if prepare and not intent:
                intent = await adapter.prepare(ctx)
                await conn.execute(
                    "UPDATE action_executions SET intent = $2 WHERE idempotency_key = $1",
                    key,
                    intent,
                )
            outcome = await operation(adapter, ctx, intent)
        except ActionError as error:
            outcome = ActionOutcome(success=False, detail=str(error))
        await self._finish(conn, key, outcome)
        return outcome

    @staticmethod
    async def _finish(
        conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], key: str, outcome: ActionOutcome
    ) -> None:
        await conn.execute(
            "UPDATE action_executions SET status = $2, result = $3, finished_at = now()"
            " WHERE idempotency_key = $1",
            key,
            "succeeded" if outcome.success else "failed",
            outcome.model_dump(mode="json"),
        )


def _refused(detail: str) -> ActionOutcome:
    said = detail if detail.startswith("refused") else f"refused: {detail}"
    return ActionOutcome(success=False, detail=said, data={"refused": True})
